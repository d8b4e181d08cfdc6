"""Every run setting, declared once: name, type, default, allowed values, help, and how it is used.

This table drives the command line (`train --help`), validation, the params a run logs
(core.schema.Param), which keys sweep and suite specs may set, and docs/schema.md; the runner's
RunConfig (experiments.config) has one field per entry. A model's recipe (experiments.models) is a
set of overrides of these defaults.
"""

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from core.datasets import DATASETS, is_dataset_path

DEFAULT_EXPERIMENT = "cnn-experiments"
REQUIRED = object()  # the default of a setting that has none


class ConfigError(ValueError):
    """A run configuration that cannot run; raised before anything is logged."""


# The values a choice setting allows. The runner's adapters and data module map each name to what it means
# (torch_adapter.OPTIMIZERS, data.scale_images); model names come from the runner's registry (experiments.models).
FRAMEWORKS = ("pytorch", "keras", "numpy")
OPTIMIZERS = ("sgd", "adam", "adadelta")
PRECISIONS = ("auto", "fp32", "bf16")
INPUT_SCALINGS = ("unit", "centered")


@dataclass(frozen=True)
class Setting:
    """One run setting. `check` (with `expected` in words) or `choices` says which values are allowed;
    None is allowed where `optional` (it then means what `help` says)."""

    name: str
    type: type
    default: object
    help: str
    choices: tuple = ()
    check: Callable[[object], bool] | None = None
    expected: str = ""
    optional: bool = False
    frameworks: tuple[str, ...] = ()  # the frameworks whose models use it (and log it); () all
    logged: bool = True  # logged as a run param
    param_doc: str | None = None  # what the logged param holds, where it is not simply the setting's value
    sweepable: bool = True  # a sweep or suite spec may set it
    defines_experiment: bool = True  # False: where or how a run is recorded, not what it trains
    logged_from: str | None = None  # the logged value also depends on this setting (capped by it, resolved from it)
    on_command_line: bool = True

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def applies_to(self, framework: str | None) -> bool:
        """Whether models of `framework` use this setting (and log it)."""
        return not self.frameworks or framework in self.frameworks

    def expectation(self) -> str:
        return f"one of {', '.join(map(str, self.choices))}" if self.choices else self.expected

    def problem(self, value) -> str | None:
        """Why value is not allowed for this setting, or None when it is."""
        if value is None:
            return None if self.optional else f"{self.flag}: required; expected {self.expectation()}"
        if not is_of_type(value, self.type):
            return f"{self.flag}: {value!r} is not {TYPE_WORDS[self.type]}; expected {self.expectation()}"
        if (self.choices and value not in self.choices) or (self.check and not self.check(value)):
            return f"{self.flag}: {value!r} is not allowed; expected {self.expectation()}"
        return None


TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def is_of_type(value, kind: type) -> bool:
    """bool is never a number here, an int is a float, and a float is not an int."""
    if isinstance(value, bool):
        return kind is bool
    return isinstance(value, int if kind is int else (int, float) if kind is float else kind)


def positive(value) -> bool:
    return value > 0


def fraction(value) -> bool:
    return 0 <= value < 1


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in [
        Setting(
            "model",
            str,
            REQUIRED,
            "registry name of the model (python -m experiments models), or your own PyTorch or Keras model: "
            "FILE.py:factory or package.module:factory (docs/your-own-code.md)",
            expected="a model of the registry (python -m experiments models) or FILE.py:factory",
        ),
        Setting(
            "framework",
            str,
            None,
            "pytorch, or keras (Keras 3 on its PyTorch backend) for two-block and conv-conv "
            "(default: the model's own, numpy for tiny-numpy)",
            optional=True,
            choices=FRAMEWORKS,
            param_doc="the framework the model is written in: pytorch, keras or numpy (experiments.adapters)",
        ),
        Setting(
            "style",
            str,
            None,
            "how the model is built: sequential or functional (default: the model's first)",
            optional=True,
            param_doc="how the model is built: sequential or functional",
        ),
        Setting(
            "dataset",
            str,
            "mnist",
            "mnist, fashion-mnist, or your own: a folder of class folders (PATH/train/<class>/ and "
            "PATH/test/<class>/, or PATH/<class>/ with a test split carved), or an .npz with x_train, y_train, "
            "x_test, y_test and optionally class_names (docs/your-own-code.md)",
            check=lambda value: value in DATASETS or is_dataset_path(value),
            expected=f"one of {', '.join(DATASETS)}, or a folder or .npz path (a path holds a / or ends in .npz)",
            param_doc="the dataset's name, or the path of your own folder or .npz",
        ),
        Setting(
            "image_size",
            int,
            None,
            "resize every image to N x N pixels (your own --dataset; default: as stored, all of one size)",
            optional=True,
            check=positive,
            expected="an integer > 0",
        ),
        Setting(
            "data_dir",
            str,
            None,
            "folder with the four IDX files (raw or .gz) instead of the verified cache",
            optional=True,
            param_doc="folder holding the dataset's IDX files",
            sweepable=False,
            defines_experiment=False,
        ),
        Setting("input_scaling", str, "unit", "unit: x/255; centered: x/255 - 0.5", choices=INPUT_SCALINGS),
        Setting("epochs", int, 5, "number of training epochs", check=positive, expected="an integer > 0"),
        Setting("batch_size", int, 128, "training mini-batch size", check=positive, expected="an integer > 0"),
        Setting("optimizer", str, "adam", "sgd, adam or adadelta", choices=OPTIMIZERS),
        Setting("lr", float, 1e-3, "learning rate", check=positive, expected="a number > 0"),
        Setting("seed", int, 0, "seed for weights, splits and shuffling"),
        Setting(
            "repeats",
            int,
            1,
            "train this many runs, with seeds seed, seed+1, ...: runs that differ only in their "
            "seed share a config_group tag, and the dashboard compares groups over seeds",
            check=positive,
            expected="an integer > 0",
            logged=False,
            defines_experiment=False,
        ),
        Setting(
            "val_split",
            float,
            0.1,
            "fraction of train carved (stratified) for validation, or 0",
            check=fraction,
            expected="a fraction in [0, 1)",
        ),
        Setting(
            "val_from_test",
            float,
            0.0,
            "fraction of test carved (stratified) for validation, or 0",
            check=fraction,
            expected="a fraction in [0, 1)",
        ),
        Setting(
            "train_size",
            int,
            None,
            "use the first N training images (default: all)",
            optional=True,
            check=positive,
            expected="an integer > 0",
            param_doc="training images actually used",
        ),
        Setting(
            "test_size",
            int,
            None,
            "use the first N test images (default: all)",
            optional=True,
            check=positive,
            expected="an integer > 0",
            param_doc="test images actually used",
        ),
        Setting(
            "train_eval_size",
            int,
            10_000,
            "training images re-evaluated each epoch for train_loss/acc",
            check=positive,
            expected="an integer > 0",
            param_doc="training images re-evaluated each epoch (at most train_size)",
            logged_from="train_size",
        ),
        Setting(
            "eval_batch_size",
            int,
            256,
            "images per batch when evaluating train-eval, validation and test sets "
            "(256 measured fastest for conv-conv on CPU; it changes no logged value's meaning)",
            check=positive,
            expected="an integer > 0",
            defines_experiment=False,
        ),
        Setting(
            "best_error",
            float,
            None,
            "best achievable error, for avoidable bias (default: the dataset's published one; 0 for your own data)",
            optional=True,
            check=fraction,
            expected="a fraction in [0, 1)",
            param_doc="estimate of the best achievable error, for avoidable_bias",
        ),
        Setting(
            "log_every",
            int,
            50,
            "steps between train_loss_step points (and one at each epoch's end)",
            check=positive,
            expected="an integer > 0",
            defines_experiment=False,
        ),
        Setting(
            "filters",
            int,
            8,
            "conv filters of the numpy model",
            check=positive,
            expected="an integer > 0",
            frameworks=("numpy",),
        ),
        Setting(
            "dtype",
            str,
            "float64",
            "float type of the numpy model",
            choices=("float64", "float32"),
            frameworks=("numpy",),
        ),
        Setting(
            "device",
            str,
            None,
            "cpu or cuda (default: cuda when present)",
            optional=True,
            param_doc="cpu or cuda",
            sweepable=False,
            defines_experiment=False,
        ),
        Setting(
            "precision",
            str,
            "fp32",
            "fp32, bf16 autocast, or auto: bf16 where the hardware has it natively",
            choices=PRECISIONS,
            frameworks=("pytorch",),
            param_doc="fp32, or bf16 autocast (weights and optimizer in fp32), as resolved on the device",
        ),
        Setting("channels_last", bool, False, "store images and conv weights NHWC", frameworks=("pytorch",)),
        Setting(
            "flush_denormal",
            bool,
            True,
            "on CPU, flush denormal floats (below 1.2e-38 in fp32) to zero, "
            "where CPU kernels slow down on them as weights and gradients shrink",
            frameworks=("pytorch", "keras"),
        ),
        Setting(
            "keep_freed_memory",
            bool,
            True,
            "keep freed memory in the process for the next training step instead "
            "of handing it back to the system (glibc's malloc, on Linux): no page faults in every step, so a fresh "
            "training process runs faster on CPU (conv-conv about 1.35x); the process keeps its peak memory, and "
            "once on it stays on until the process exits",
            sweepable=False,
            defines_experiment=False,
            param_doc="whether the process that started the run kept freed memory for reuse: true also when the run "
            "asked not to but an earlier run in the same process had turned it on; false where the C library is "
            "not glibc",
        ),
        Setting(
            "dropout",
            float,
            None,
            "one rate for every dropout layer (default: the model's own)",
            optional=True,
            check=fraction,
            expected="a rate in [0, 1)",
            frameworks=("pytorch", "keras"),
            param_doc="rates of the model's dropout layers, comma-separated, or 'none'",
        ),
        Setting(
            "weight_decay",
            float,
            None,
            "L2 penalty on the weights, added to each gradient by the optimizer (torch.optim's weight_decay; "
            "default: none)",
            optional=True,
            check=fraction,
            expected="a number in [0, 1)",
            frameworks=("pytorch",),
        ),
        Setting(
            "width",
            float,
            None,
            "multiply the filters and hidden units of a model that scales (conv-conv in "
            "PyTorch; default 1: the published network): a capacity knob",
            optional=True,
            check=positive,
            expected="a number > 0",
            frameworks=("pytorch",),
        ),
        Setting(
            "heartbeat",
            int,
            30,
            "seconds between the run's heartbeats: a RUNNING run silent for 3 of them is "
            "shown LOST, and `python -m experiments reap` ends it FAILED",
            check=positive,
            expected="an integer > 0",
            sweepable=False,
            defines_experiment=False,
        ),
        Setting(
            "store_retry",
            int,
            120,
            "seconds a run waits for a tracking store that stops answering before it stops, "
            "its last epoch and checkpoint saved on this machine for `train --resume`",
            check=positive,
            expected="an integer > 0",
            logged=False,
            sweepable=False,
            defines_experiment=False,
        ),
        Setting(
            "experiment",
            str,
            DEFAULT_EXPERIMENT,
            "MLflow experiment name",
            logged=False,
            sweepable=False,
            defines_experiment=False,
        ),
        Setting(
            "run_name",
            str,
            None,
            "MLflow run name (default: MODEL-DATASET, MODEL-keras-DATASET for a Keras run)",
            optional=True,
            logged=False,
            sweepable=False,
            defines_experiment=False,
        ),
        Setting(
            "suite",
            str,
            None,
            "the suite that started the run (tagged, not a param)",
            optional=True,
            logged=False,
            sweepable=False,
            defines_experiment=False,
            on_command_line=False,
        ),
        Setting(
            "progress",
            bool,
            True,
            "show progress bars and per-epoch lines",
            logged=False,
            sweepable=False,
            defines_experiment=False,
        ),
    ]
}


def is_model_reference(model: str) -> bool:
    """Whether a model setting names your own factory (FILE.py:factory or package.module:factory), not a registry
    model."""
    return ":" in model


def model_label(model: str) -> str:
    """How a run's model is named in tables and run names: a registry model by its name, your own by its file's
    (or module's last) name and factory: models/net.py:build -> net.py:build."""
    if not is_model_reference(model):
        return model
    target, _, factory = model.rpartition(":")
    return f"{target.replace(chr(92), '/').rsplit('/', 1)[-1]}:{factory}"


def dataset_label(dataset: str) -> str:
    """How a run's dataset is named in tables and run names: a known dataset by its name, your own by its folder's
    or file's name."""
    return dataset.rstrip("/").rsplit("/", 1)[-1] if is_dataset_path(dataset) else dataset


SWEEPABLE = tuple(name for name, s in SETTINGS.items() if s.sweepable)
EXPERIMENT_SETTINGS = tuple(name for name, s in SETTINGS.items() if s.logged and s.defines_experiment)
GROUP_SETTINGS = tuple(name for name in EXPERIMENT_SETTINGS if name != "seed")  # what a config_group hashes


def unset(name: str, logged) -> bool:
    """An optional setting logged as None: read as if the run had not logged it, so a setting added later leaves
    older runs' config groups and series as they were."""
    return SETTINGS[name].optional and str(logged) == "None"


def config_group(params: dict) -> str:
    """A short, stable hash of a run's logged GROUP_SETTINGS (as MLflow stores them, strings): every setting
    that defines the experiment except the seed, so runs that differ only in their seed share it, whenever
    and wherever they ran. Empty for a run without our `model` param: another tool's params (Keras autolog
    logs `epochs` and `batch_size` too) do not say what defines its experiment."""
    if "model" not in params:
        return ""
    logged = {name: params[name] for name in GROUP_SETTINGS if name in params and not unset(name, params[name])}
    return group_hash(logged)


def free_config_group(config: dict) -> str:
    """The config group of a run of your own loop (experiments.track): a hash of its whole config but the seed and
    the settings that do not define the experiment (where and how it is recorded), so that its repeats over seeds
    group as the runner's do."""
    return group_hash(
        {
            name: value
            for name, value in config.items()
            if name != "seed" and (name not in SETTINGS or SETTINGS[name].defines_experiment)
        }
    )


def group_hash(values: dict) -> str:
    """A short, stable hash of settings by name, each as the string MLflow stores."""
    strings = {name: str(value) for name, value in values.items()}
    return hashlib.sha256(json.dumps(strings, sort_keys=True).encode()).hexdigest()[:10]


def unknown_keys(keys: Iterable[str], allowed: Iterable[str] = SETTINGS) -> list[str]:
    return sorted(set(keys) - set(allowed))


def refuse_unknown(keys: Iterable[str], where: str, allowed: Iterable[str] = SETTINGS) -> None:
    """ConfigError naming every key that is not a run setting."""
    unknown = unknown_keys(keys, allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown run setting{'s' * (len(unknown) > 1)} {', '.join(unknown)}; "
            f"expected one of {', '.join(sorted(allowed))}"
        )


def recipe_problems(recipe: dict) -> list[str]:
    """Keys of a recipe that are not settings, and values a setting does not allow."""
    problems = [f"{key}: not a run setting" for key in unknown_keys(recipe)]
    return problems + [
        p for key, value in recipe.items() if key in SETTINGS for p in [SETTINGS[key].problem(value)] if p
    ]
