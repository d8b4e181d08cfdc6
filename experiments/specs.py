"""Specs: named sets of runs in TOML, for suites and sweeps alike (specs/NAME.toml or any path).

A spec says which run settings are `fixed` and which vary, in one of four ways (`method`):
- list: `runs`, a list of tables, one per run (each over `fixed`);
- grid: `space`, a list of values per setting; every combination runs once;
- tpe / random: `space` with lists or {low, high, log} ranges, searched by Optuna for `trials` runs.
`python -m experiments suite NAME` runs a list or grid spec's runs one after another in one process;
`python -m experiments sweep NAME` shares a grid, tpe or random spec between any number of workers
(experiments.sweeps). Every key is checked against core.settings before any run starts.
"""

import json
import re
import tomllib
from dataclasses import dataclass, field, fields
from itertools import product
from pathlib import Path
from typing import get_args, get_type_hints

from core.settings import SWEEPABLE, TYPE_WORDS, ConfigError, is_of_type, refuse_unknown
from core.store import REPO_ROOT
from experiments.config import RunConfig
from experiments.run import check

SPEC_DIR = REPO_ROOT / "specs"
METHODS = ("list", "grid", "tpe", "random")
SUITE_METHODS = ("list", "grid")  # runs known in advance
SWEEP_METHODS = ("grid", "tpe", "random")
PRUNERS = ("none", "median", "successive-halving")


class SpecError(ConfigError):
    """A spec that cannot be used; raised before any run starts."""


@dataclass(frozen=True)
class Spec:
    """What to run. `fixed` holds settings shared by every run (`model` may sit in fixed, space or runs);
    `run_name` is a template filled with each run's settings (and {name}, {index})."""

    name: str
    method: str
    description: str = ""
    fixed: dict = field(default_factory=dict)
    space: dict = field(default_factory=dict)
    runs: list = field(default_factory=list)
    run_name: str = "{name}-{index:03d}"
    trials: int | None = None  # tpe/random budget; list and grid run each point once
    pruner: str = "none"
    pruner_startup_trials: int = 2  # median: trials that finish before any is pruned
    pruner_warmup_epochs: int = 0  # median: epochs before a trial can be pruned
    retries: int = 1  # times a dead worker's trial is queued again
    experiment: str | None = None  # default: cnn-experiments for a suite, cnn-sweeps for a sweep
    seed: int = 0  # the search's sampler seed; a run's own seed is the setting `seed`

    @classmethod
    def load(cls, spec: str) -> "Spec":
        """A spec from a TOML file path, or the name of one in specs/ (`specs/NAME.toml`)."""
        path = spec_path(spec)
        if not path.exists():
            raise SpecError(f"spec {spec!r}: no such file, and not one of specs/: {', '.join(spec_names())}")
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise SpecError(f"spec {path}: not valid TOML ({err})") from err
        data.setdefault("name", path.stem)
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise SpecError(
                f"spec {path}: unknown keys {', '.join(unknown)}; expected {', '.join(f.name for f in fields(cls))}"
            )
        try:
            loaded = cls(**data)
        except TypeError as err:
            raise SpecError(f"spec {path}: {err}") from err
        loaded.validate()
        return loaded

    def fail(self, message: str) -> SpecError:
        return SpecError(f"spec {self.name!r}: {message}")

    def validate(self) -> None:
        """Every key a sweepable setting, the shape the method needs, and every known run a valid config."""
        for name, hint in get_type_hints(Spec).items():
            problem = type_problem(getattr(self, name), hint)
            if problem:
                raise self.fail(f"{name} {problem}")
        checks = [
            (
                isinstance(self.name, str) and re.fullmatch(r"[A-Za-z0-9._-]+", self.name) is not None,
                "name: use letters, digits, '.', '_' and '-' only",
            ),
            (self.method in METHODS, f"method {self.method!r}: expected one of {', '.join(METHODS)}"),
            (self.pruner in PRUNERS, f"pruner {self.pruner!r}: expected one of {', '.join(PRUNERS)}"),
            (
                isinstance(self.fixed, dict)
                and isinstance(self.space, dict)
                and isinstance(self.runs, list)
                and all(isinstance(run, dict) for run in self.runs),
                "fixed and space: expected tables; runs: a list of tables",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise self.fail(message)
        shape = [
            (self.method != "list" or (self.runs and not self.space), "a list spec needs runs (and no space)"),
            (
                self.method == "list" or (self.space and not self.runs),
                "space: empty; give at least one setting to vary" if not self.space else "runs: only for method list",
            ),
            (
                not set(self.space) & set(self.fixed),
                f"{', '.join(sorted(set(self.space) & set(self.fixed)))}: both in space and fixed",
            ),
            (
                self.method not in ("tpe", "random") or (self.trials or 0) > 0,
                f"trials: a {self.method} spec needs trials > 0",
            ),
            (self.retries >= 0, "retries: expected an integer >= 0"),
        ]
        for ok, message in shape:
            if not ok:
                raise self.fail(message)
        keys = {*self.fixed, *self.space, *(k for run in self.runs for k in run)}
        try:
            refuse_unknown(keys, f"spec {self.name!r}", SWEEPABLE)
        except ConfigError as err:
            raise SpecError(str(err)) from err
        points = self.points_or_sample()
        if any("model" not in point for point in points):
            raise self.fail("model: give it in fixed, space or every run")
        for index, point in enumerate(points):
            self.check(self.config(point, index))

    def points_or_sample(self) -> list[dict]:
        """Every run's settings for list and grid; one sample (first values, range bounds) for a search."""
        if self.method in SUITE_METHODS:
            return self.points()
        sample = {}
        for key, values in self.space.items():
            if isinstance(values, list) and values:
                sample[key] = values[0]
            elif isinstance(values, dict) and {"low", "high"} <= set(values):
                sample[key] = values["low"]
            else:
                raise self.fail(f"{key}: expected a non-empty list of values or a {{low, high, log}} range")
        return [{**self.fixed, **sample}]

    def points(self) -> list[dict]:
        """The settings of every run of a list or grid spec, fixed ones included, in the spec's order."""
        if self.method == "list":
            return [{**self.fixed, **run} for run in self.runs]
        for key, values in self.space.items():
            if not (isinstance(values, list) and values):
                raise self.fail(f"{key}: expected a non-empty list of values")
        keys = list(self.space)
        return [
            {**self.fixed, **dict(zip(keys, values, strict=True))} for values in product(*(self.space[k] for k in keys))
        ]

    def grid(self) -> list[dict]:
        """The varied settings of every grid point (what a sweep enqueues), in the spec's order."""
        return [{k: point[k] for k in self.space} for point in self.points()]

    @property
    def size(self) -> int:
        return len(self.points()) if self.method in SUITE_METHODS else self.trials

    def config(self, point: dict, index: int, **extra) -> RunConfig:
        """The run configuration of one point: the model's recipe, then the point's settings, then `extra`."""
        values = dict(point)
        model = values.pop("model")
        try:
            name = self.run_name.format(name=self.name, index=index, **point)
        except (KeyError, ValueError, IndexError) as err:
            raise self.fail(f"run_name {self.run_name!r}: cannot fill it ({err})") from err
        try:
            return RunConfig.from_recipe(model, **values, **{"run_name": name, **extra})
        except (ConfigError, TypeError) as err:
            raise self.fail(str(err)) from err

    def check(self, config: RunConfig) -> None:
        """Refuse, as this spec's problem, a configuration that could not run."""
        try:
            check(config)
        except ConfigError as err:
            raise self.fail(str(err)) from err


def spec_path(spec: str) -> Path:
    """A spec's file: the path given, or the file of that name in specs/ (`specs/NAME.toml`) where there is one."""
    path = Path(spec)
    return SPEC_DIR / f"{spec}.toml" if not path.exists() and (SPEC_DIR / f"{spec}.toml").exists() else path


def toml_inline(values: dict) -> str:
    """A TOML inline table of settings (strings, numbers, booleans), for specs written out (`advise`)."""

    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        return repr(v) if isinstance(v, int | float) else json.dumps(str(v), ensure_ascii=False)

    return "{ " + ", ".join(f"{key} = {value(v)}" for key, v in values.items()) + " }"


SPEC_TYPE_WORDS = {**TYPE_WORDS, dict: "a table", list: "a list"}


def type_problem(value, hint) -> str | None:
    """What is wrong with a spec field's value for its annotated type (e.g. `int | None`), or None."""
    kinds = get_args(hint) or (hint,)
    if any(value is None if kind is type(None) else is_of_type(value, kind) for kind in kinds):
        return None
    expected = " or ".join(SPEC_TYPE_WORDS.get(kind, kind.__name__) for kind in kinds if kind is not type(None))
    return f"{value!r}: expected {expected}"


def spec_names(methods: tuple[str, ...] = METHODS) -> list[str]:
    """The names of the specs in specs/ whose method is one of `methods` (a file that is not valid TOML is left
    out here, and refused with one line when it is loaded)."""
    names = []
    for path in sorted(SPEC_DIR.glob("*.toml")):
        try:
            method = tomllib.loads(path.read_text()).get("method")
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            continue
        if method in methods:
            names.append(path.stem)
    return names


def suite_configs(spec: Spec) -> list[RunConfig]:
    """The runs of a list or grid spec run as a suite: tagged with its name, in its experiment."""
    if spec.method not in SUITE_METHODS:
        raise spec.fail(f"a {spec.method} spec is a search: run it with `sweep`, not `suite`")
    extra = {"suite": spec.name, **({"experiment": spec.experiment} if spec.experiment else {})}
    return [
        replica
        for index, point in enumerate(spec.points(), start=1)
        for replica in spec.config(point, index, **extra).replicas()
    ]
