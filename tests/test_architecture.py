"""The layout the code base promises (docs/architecture.md): three packages, the core contract between the runner
and the dashboard, no import circle, session state in one module, and the written-out types agreeing with the
settings table they mirror."""

import ast
import dataclasses
import typing
from pathlib import Path

import pytest

from core.schema import Name, Param, schema_markdown
from core.settings import FRAMEWORKS, OPTIMIZERS, REQUIRED, SETTINGS
from core.store import REPO_ROOT
from experiments.adapters import ADAPTERS
from experiments.adapters.keras_adapter import OPTIMIZERS as KERAS_OPTIMIZERS
from experiments.adapters.torch_adapter import OPTIMIZERS as TORCH_OPTIMIZERS
from experiments.config import RunConfig

PACKAGES = ("core", "experiments", "dashboard")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in (REPO_ROOT / package).rglob("*.py")}


def imported(path: Path, known: set[str]) -> set[str]:
    """The project modules a file imports, anywhere in it (a function-level import counts too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {
                f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module
                for alias in node.names
            }
    return {name for name in found if name.split(".")[0] in PACKAGES}


def import_graph() -> dict[str, set[str]]:
    files = modules()
    return {name: imported(path, set(files)) for name, path in files.items()}


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("core", ("experiments", "dashboard")), ("experiments", ("dashboard",)), ("dashboard", ("experiments",))],
)
def test_runner_and_dashboard_meet_only_in_the_core(package, forbidden):
    crossing = {
        module: sorted(target for target in targets if target.split(".")[0] in forbidden)
        for module, targets in import_graph().items()
        if module.split(".")[0] == package
    }
    assert {module: targets for module, targets in crossing.items() if targets} == {}


def test_no_module_imports_itself_back_through_others():
    graph = import_graph()
    circles = []

    def visit(module: str, path: list[str]) -> None:
        for target in graph.get(module, ()):
            if target in path:
                circles.append(path[path.index(target) :] + [target])
            elif target not in done:
                visit(target, [*path, target])
        done.add(module)

    done: set[str] = set()
    for module in graph:
        if module not in done:
            visit(module, [module])
    assert circles == []


def test_session_state_is_touched_only_by_dashboard_state():
    state = REPO_ROOT / "dashboard" / "state.py"
    users = [
        path.relative_to(REPO_ROOT)
        for path in (REPO_ROOT / "dashboard").rglob("*.py")
        if path != state and "session_state" in path.read_text()
    ]
    assert users == []


def test_run_config_has_one_field_per_setting_with_its_type_and_default():
    hints = typing.get_type_hints(RunConfig)
    fields = {field.name: field for field in dataclasses.fields(RunConfig)}
    assert list(fields) == list(SETTINGS)
    for name, setting in SETTINGS.items():
        expected_type = setting.type | None if setting.optional else setting.type
        assert hints[name] == expected_type, name
        default = fields[name].default
        assert (default is dataclasses.MISSING) if setting.default is REQUIRED else default == setting.default, name


def test_param_names_every_logged_setting_as_the_setting_says():
    params = {key: value for key, value in vars(Param).items() if isinstance(value, Name)}
    for name, setting in SETTINGS.items():
        if setting.logged:
            assert params.get(name.upper()) == name, f"Param.{name.upper()} missing"
            assert setting.help in params[name.upper()].doc or setting.param_doc in params[name.upper()].doc
        else:
            assert name.upper() not in params, f"Param.{name.upper()}: {name} is not logged"


def test_every_framework_and_optimizer_named_in_the_settings_is_implemented():
    assert tuple(ADAPTERS) == FRAMEWORKS
    assert tuple(TORCH_OPTIMIZERS) == OPTIMIZERS
    assert tuple(KERAS_OPTIMIZERS) == OPTIMIZERS


def test_docs_schema_is_the_schema_as_it_is_now():
    """docs/schema.md is `python -m experiments schema`'s table: a name added or renamed shows there too."""
    assert schema_markdown() in (REPO_ROOT / "docs" / "schema.md").read_text()
