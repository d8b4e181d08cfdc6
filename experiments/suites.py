"""Named sets of runs: `python -m experiments suite NAME`."""
from experiments.models import MODELS
from experiments.run import RunConfig

DATA_SIZES = (1_000, 5_000, 20_000, 60_000)


def quick() -> list[RunConfig]:
    """Every model and style on a small real slice: the demo and CI suite (a few minutes on 2 cores)."""
    return [RunConfig.from_recipe(name, style=style, epochs=3, train_size=3000, test_size=1000,
                                  suite="quick", run_name=f"{name}-{style}-quick")
            for name, spec in MODELS.items() for style in spec.styles]


def tutorials() -> list[RunConfig]:
    """Each model's recipe exactly as its source published it, to reproduce the headline numbers."""
    return [RunConfig.from_recipe(name, suite="tutorials", run_name=f"{name}-tutorial") for name in MODELS]


def data_size() -> list[RunConfig]:
    """conv-conv over growing training sets, validation fixed (carved from test): the learning curve."""
    return [RunConfig.from_recipe("conv-conv", train_size=size, epochs=10, suite="data-size",
                                  run_name=f"conv-conv-{size}")
            for size in DATA_SIZES]


SUITES = {"quick": quick, "tutorials": tutorials, "data-size": data_size}
