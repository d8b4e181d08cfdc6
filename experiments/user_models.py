"""Your own model through the runner: `--model path/to/file.py:factory` or `--model package.module:factory`.

The factory returns a PyTorch nn.Module or a Keras model that outputs one score per class (logits for PyTorch, a
softmax for Keras, as the tutorials write them). It may take any of `num_classes`, `in_channels`, `image_size`
(height, width) and `input_shape` (channels, height, width for PyTorch; height, width, channels for Keras, as
keras.Input takes it): each it names is given from the run's dataset. The
framework is the one the file imports (Keras if it imports keras and not torch), unless --framework says.
"""

import functools
import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from pathlib import Path
from types import ModuleType

from core.settings import ConfigError, is_model_reference
from experiments.adapters.keras_adapter import BACKEND
from experiments.models import REGISTRY_DATA, ModelSpec, get_model_spec

SHAPE_ARGUMENTS = ("num_classes", "in_channels", "image_size", "input_shape")


def model_spec(model: str) -> ModelSpec:
    """The spec of a registry model or of your own; ConfigError when there is none."""
    if is_model_reference(model):
        return user_model_spec(model)
    try:
        return get_model_spec(model)
    except ValueError as err:
        raise ConfigError(f"--model: {err} (or your own: FILE.py:factory)") from err


@functools.cache
def user_model_spec(reference: str) -> ModelSpec:
    """The ModelSpec of FILE.py:factory or package.module:factory, its module imported once per process;
    ConfigError naming what is wrong with the reference."""
    module, factory, path = load_factory(reference)
    framework = "keras" if imports(module, "keras") and not imports(module, "torch") else "pytorch"

    def build(data: tuple[int, tuple[int, int, int]] | None = None):
        num_classes, (channels, height, width) = data or REGISTRY_DATA
        one_input = (height, width, channels) if framework == "keras" else (channels, height, width)
        given = dict(zip(SHAPE_ARGUMENTS, (num_classes, channels, (height, width), one_input), strict=True))
        accepted = inspect.signature(factory).parameters
        return factory(**{name: value for name, value in given.items() if name in accepted})

    return ModelSpec(
        name=reference,
        description=f"your own: {factory.__name__} in {path}",
        source=f"{path} (sha256 {file_sha256(path)[:12]})",
        recipe={},
        published_test_acc="-",
        builders={framework: {"factory": build}},
        data=None,
        source_file=path,
    )


def load_factory(reference: str) -> tuple[ModuleType, object, Path]:
    target, _, name = reference.rpartition(":")
    if not target or not name:
        raise ConfigError(f"--model {reference}: expected FILE.py:factory or package.module:factory")
    os.environ.setdefault("KERAS_BACKEND", BACKEND)  # a file that imports keras loads it on the backend we run
    try:
        module = import_file(Path(target)) if target.endswith(".py") else importlib.import_module(target)
    except ConfigError:
        raise
    except Exception as err:  # the user's module failed to import: say which and why, in one line
        raise ConfigError(f"--model {reference}: cannot import {target} ({type(err).__name__}: {err})") from err
    factory = getattr(module, name, None)
    if not callable(factory):
        raise ConfigError(f"--model {reference}: {target} has no function or class {name!r}")
    return module, factory, Path(inspect.getfile(module)).resolve()


def import_file(path: Path) -> ModuleType:
    """A .py file as a module of its own (named after its path and content), importable again by that name."""
    if not path.is_file():
        raise ConfigError(f"--model {path}: no such file")
    name = f"user_model_{hashlib.sha256(f'{path.resolve()}:{file_sha256(path)}'.encode()).hexdigest()[:16]}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


def imports(module: ModuleType, package: str) -> bool:
    """Whether the module's globals hold anything of `package` (the package itself, a submodule, a class)."""
    for value in vars(module).values():
        origin = value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", None) or ""
        if origin == package or origin.startswith(f"{package}."):
            return True
    return False


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
