"""RunConfig: one run's configuration, one field per entry of core.settings.SETTINGS, in its order.

The fields are written out so that readers and tools find them; tests/test_architecture.py checks their names,
types and defaults against the settings table, which stays the one place that says what each means.
"""

from dataclasses import dataclass, replace
from pathlib import Path

from core.datasets import is_dataset_path
from core.settings import (
    DEFAULT_EXPERIMENT,
    SETTINGS,
    ConfigError,
    dataset_label,
    is_model_reference,
    model_label,
    refuse_unknown,
)
from experiments.user_models import model_spec


def absolute_model(model: str) -> str:
    """Your own FILE.py:factory with the file's absolute path (a run resumes, and groups, wherever it is started
    from); any other model as it is."""
    target, _, factory = model.rpartition(":")
    return f"{Path(target).resolve()}:{factory}" if is_model_reference(model) and target.endswith(".py") else model


@dataclass(frozen=True)
class RunConfig:
    """One run's configuration: what it trains, on what data, how, and where it is recorded."""

    model: str
    framework: str | None = None
    style: str | None = None
    dataset: str = "mnist"
    image_size: int | None = None
    data_dir: str | None = None
    input_scaling: str = "unit"
    epochs: int = 5
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 0.001
    seed: int = 0
    repeats: int = 1
    val_split: float = 0.1
    val_from_test: float = 0.0
    train_size: int | None = None
    test_size: int | None = None
    train_eval_size: int = 10_000
    eval_batch_size: int = 256
    best_error: float | None = None
    log_every: int = 50
    filters: int = 8
    dtype: str = "float64"
    device: str | None = None
    precision: str = "fp32"
    channels_last: bool = False
    flush_denormal: bool = True
    keep_freed_memory: bool = True
    dropout: float | None = None
    weight_decay: float | None = None
    width: float | None = None
    heartbeat: int = 30
    store_retry: int = 120
    experiment: str = DEFAULT_EXPERIMENT
    run_name: str | None = None
    suite: str | None = None
    progress: bool = True

    @classmethod
    def from_recipe(cls, model: str, **overrides) -> "RunConfig":
        """The model's recipe over the defaults, then every override that is not None.

        An override of val_split or val_from_test replaces the recipe's choice of split kind.
        """
        refuse_unknown(overrides, "run configuration")
        model = absolute_model(model)
        recipe = dict(model_spec(model).recipe)
        given = {k: v for k, v in overrides.items() if v is not None}
        if isinstance(given.get("dataset"), str) and is_dataset_path(given["dataset"]):
            given["dataset"] = str(Path(given["dataset"]).resolve())
        if given.get("val_split") or given.get("val_from_test"):
            recipe.update(val_split=0.0, val_from_test=0.0)
        return cls(**{**recipe, **given, "model": model})

    @classmethod
    def from_dict(cls, values: dict, where: str) -> "RunConfig":
        """A full configuration as stored (config.json), refused if it names an unknown setting."""
        refuse_unknown(values, where)
        return cls(**values)

    def validate(self) -> None:
        """Raise ConfigError naming the first bad setting and its allowed values."""
        for setting in SETTINGS.values():
            problem = setting.problem(getattr(self, setting.name))
            if problem:
                raise ConfigError(problem)
        model_spec(self.model)
        if (self.val_split > 0) == (self.val_from_test > 0):
            raise ConfigError("--val-split/--val-from-test: exactly one of them must be > 0")

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in SETTINGS}

    def name(self) -> str:
        """The run's name: run_name, else MODEL[-FRAMEWORK]-DATASET (the framework when not the model's own; your own
        model and data by their factory's and folder's names)."""
        if self.run_name:
            return self.run_name
        own = model_spec(self.model).frameworks[0]
        framework = [self.framework] if self.framework not in (None, own) else []
        return "-".join([model_label(self.model).rsplit(":", 1)[-1], *framework, dataset_label(self.dataset)])

    def replicas(self) -> list["RunConfig"]:
        """One configuration per repeat, with seeds seed, seed+1, ...; a named run gets its seed in its name."""
        if self.repeats == 1:
            return [self]
        name = self.name()
        return [
            replace(self, seed=seed, run_name=f"{name}-seed{seed}")
            for seed in range(self.seed, self.seed + self.repeats)
        ]
