"""Property-based tests of the doors around the runner: IDX files, spec files, tracking URIs and hostile
stores. Each property says what any input, however odd, gets: a result, or the one clear error."""

import gzip
import json
import math
import sqlite3
import subprocess
import time

import numpy as np
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from core.datasets import DataError, parse_idx, read_idx
from core.settings import SETTINGS, ConfigError
from core.store import StoreError, get_client
from experiments.specs import Spec
from tests.fuzz import examples
from tests.helpers import cli

# ---------------------------------------------------------------- IDX files


def idx_bytes():
    """Mostly IDX-shaped bytes (a plausible header, any sizes, a payload of any length), sometimes anything."""
    header = st.builds(
        lambda zeros, kind, dims, sizes: (
            bytes(zeros) + bytes([kind, dims]) + b"".join(s.to_bytes(4, "big") for s in sizes[:dims])
        ),
        st.sampled_from([[0, 0], [0, 1], [1, 0]]),
        st.sampled_from([8, 8, 8, 9, 0x0D]),
        st.sampled_from([1, 3, 3, 0, 2, 4]),
        st.lists(st.one_of(st.integers(0, 40), st.integers(0, 2**32 - 1)), min_size=4, max_size=4),
    )
    return st.one_of(st.binary(max_size=64), st.builds(lambda h, body: h + body, header, st.binary(max_size=2000)))


@settings(max_examples=examples(200))
@given(idx_bytes())
def test_any_bytes_parse_to_a_consistent_array_or_raise_data_error(raw):
    try:
        array = parse_idx(raw, "fuzz.idx")
    except DataError as err:
        assert "\n" not in str(err) and str(err).startswith("fuzz.idx: ")
        return
    assert array.dtype == np.uint8 and array.ndim in (1, 3)
    assert 4 + 4 * array.ndim + array.size == len(raw) and math.prod(array.shape) == array.size


@settings(max_examples=examples(50))
@given(st.binary(max_size=300), st.booleans())
def test_any_file_reads_or_raises_data_error_gzipped_or_not(tmp_path_factory, raw, gzipped):
    path = tmp_path_factory.mktemp("idx") / ("file.gz" if gzipped else "file")
    path.write_bytes(gzip.compress(raw) if gzipped and raw[:1] == b"\0" else raw)
    try:
        read_idx(path)
    except DataError as err:
        assert "\n" not in str(err)


# ---------------------------------------------------------------- spec files

SETTING_KEYS = [*SETTINGS, "epochz", "lr ", ""]
# No subnormal floats: a PyTorch run earlier in the process flushes them to zero (the flush_denormal setting).
finite_or_not = st.floats(allow_nan=True, allow_infinity=True, width=32, allow_subnormal=False)
scalars = st.one_of(
    st.integers(-3, 100),
    finite_or_not,
    st.booleans(),
    st.sampled_from(
        [
            0.1,
            0.001,
            0.5,
            1,
            2,
            100,
            "tiny",
            "lenet5",
            "softmax-regression",
            "adam",
            "sgd",
            "mnist",
            "fp32",
            "sequential",
            "{model}-{index}",
            "{nope}",
            "x" * 300,
            "é ü \u2028",
            "",
        ]
    ),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.fixed_dictionaries({}, optional={"low": scalars, "high": scalars, "log": st.booleans()}),
)
settings_tables = st.dictionaries(st.sampled_from(SETTING_KEYS), values, max_size=3)
with_model = st.builds(
    lambda table, model: {**table, "model": model},
    settings_tables,
    st.sampled_from(["tiny", "lenet5", "softmax-regression", "nope", 3]),
)


def mostly(valid):
    """Four times in five a valid value, else any scalar: deep paths get reached, and odd values still come."""
    return st.integers(0, 4).flatmap(lambda draw: valid if draw else scalars)


spec_documents = st.fixed_dictionaries(
    {"method": mostly(st.sampled_from(["list", "grid", "tpe", "random"]))},
    optional={
        "name": mostly(st.just("fuzz")),
        "fixed": mostly(with_model),
        "space": mostly(settings_tables),
        "runs": mostly(st.lists(st.one_of(with_model, settings_tables), max_size=3)),
        "trials": mostly(st.integers(1, 3)),
        "pruner": mostly(st.sampled_from(["none", "median"])),
        "run_name": mostly(st.sampled_from(["{model}-{index}", "r{index:03d}", "{lr}"])),
        "retries": mostly(st.integers(0, 2)),
        "seed": mostly(st.integers(0, 5)),
        "description": mostly(st.just("a fuzzed spec")),
    },
)


def toml(value) -> str:
    """A TOML rendering of a scalar, list or table (inline), strings escaped, non-finite floats as TOML spells them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON's string escapes are TOML's
    if isinstance(value, list):
        return "[" + ", ".join(map(toml, value)) + "]"
    return "{ " + ", ".join(f"{toml(str(k))} = {toml(v)}" for k, v in value.items()) + " }"


@settings(max_examples=examples(150))
@given(spec_documents)
def test_any_spec_loads_or_is_refused_in_one_line(tmp_path_factory, document):
    path = tmp_path_factory.mktemp("spec") / "fuzz.toml"
    path.write_text("\n".join(f"{toml(k)} = {toml(v)}" for k, v in document.items()))
    try:
        spec = Spec.load(str(path))
    except ConfigError as err:
        message = str(err)
        assert "\n" not in message.strip() and message.startswith("spec "), message
        event("refused: " + message[message.find(": ") + 2 :][:50])
        return
    event("loaded")
    assert spec.method in ("list", "grid", "tpe", "random")  # it loaded: every run it names is a valid config


@settings(max_examples=examples(100))
@given(st.text(max_size=200))
def test_any_text_as_a_spec_loads_or_is_refused_in_one_line(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("spec") / "text.toml"
    path.write_bytes(text.encode("utf-8", errors="replace"))
    try:
        Spec.load(str(path))
    except ConfigError as err:
        assert "\n" not in str(err).strip()


# ---------------------------------------------------------------- tracking URIs

LIMIT_SECONDS = 20


@settings(max_examples=examples(25))  # a new SQLite store takes a second or two to create
@given(
    st.one_of(
        st.builds(
            lambda s, rest: s + rest,
            st.sampled_from(
                [
                    "",
                    "sqlite://",
                    "sqlite:///",
                    "postgresql://",
                    "mysql://",
                    "foo://",
                    "http://",
                    "https://",
                    "databricks://",
                    "file:",
                ]
            ),
            st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40),
        ),
        st.builds(lambda port: f"http://127.0.0.1:{port}", st.integers(1, 1023)),
    )
)
def test_any_tracking_uri_gives_a_client_or_one_line_within_the_limit(tmp_path_factory, monkeypatch, uri):
    assume("\x00" not in uri)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))  # a bare path is a folder store: make it here, not in the repo
    started = time.monotonic()
    try:
        get_client(uri)
    except StoreError as err:
        assert "\n" not in str(err).strip() and "cannot read the tracking store" in str(err)
    assert time.monotonic() - started < LIMIT_SECONDS


@settings(max_examples=examples(20))
@given(st.binary(max_size=2000), st.sampled_from([b"", b"SQLite format 3\x00"]))
def test_any_file_posing_as_an_sqlite_store_is_one_line(tmp_path_factory, body, prefix):
    folder = tmp_path_factory.mktemp("store")
    (folder / "mlflow.db").write_bytes(prefix + body)
    try:
        get_client(f"sqlite:///{folder / 'mlflow.db'}")
    except StoreError as err:
        assert "\n" not in str(err).strip()


def test_an_old_schema_or_a_locked_sqlite_store_is_one_line_within_the_limit(tmp_path):
    """The two SQLite stores random bytes do not make: one migrated by an older MLflow (in a new process: MLflow
    caches a store per URI), and one locked by a writer."""

    def seconds_beyond_a_healthy_store(uri: str) -> tuple[subprocess.CompletedProcess, float]:
        """The command's answer, and its time less that of the same command on a healthy store, measured here:
        a new interpreter's imports take seconds of their own on a loaded machine."""
        started = time.monotonic()
        answer = cli("has-runs", env={"MLFLOW_TRACKING_URI": uri})
        return answer, time.monotonic() - started - healthy

    locked_uri = f"sqlite:///{tmp_path / 'locked.db'}"
    get_client(locked_uri)
    started = time.monotonic()
    assert cli("has-runs", env={"MLFLOW_TRACKING_URI": locked_uri}).returncode == 1  # not locked yet: empty
    healthy = time.monotonic() - started
    uri = f"sqlite:///{tmp_path / 'old.db'}"
    get_client(uri)  # a current store, then marked as MLflow 1.x's first migration left it
    with sqlite3.connect(tmp_path / "old.db") as db:
        db.execute("UPDATE alembic_version SET version_num = '451aebb31d03'")
    refused, beyond = seconds_beyond_a_healthy_store(uri)
    assert refused.returncode == 2 and beyond < LIMIT_SECONDS
    assert "mlflow db upgrade" in refused.stderr.strip().splitlines()[-1]
    writer = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")
    try:
        answer, beyond = seconds_beyond_a_healthy_store(locked_uri)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert beyond < LIMIT_SECONDS
    if answer.returncode == 2:  # the writer kept it past SQLite's busy wait: one line saying so
        assert answer.stderr.strip().splitlines()[-1].endswith("locked.db: database is locked"), answer.stderr
    else:
        assert answer.returncode == 1  # it got in: an empty store
