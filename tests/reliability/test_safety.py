"""Safety: a read-only dashboard, no unsafe unpickling, every dependency pinned."""

import hashlib
import re

import mlflow.pytorch
import pytest
import torch

from core.schema import Artifact
from core.store import REPO_ROOT
from dashboard.state import Key
from experiments.run import execute
from tests.helpers import PAGES, cli, go, open_app, small_config


def store_fingerprint(folder) -> dict:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.suffix != ".lock"
    }


def test_browsing_every_page_leaves_the_store_byte_for_byte_unchanged(dashboard_store):
    client, ids = dashboard_store
    folder = REPO_ROOT.__class__(client.tracking_uri.removeprefix("sqlite:///")).parent
    before = store_fingerprint(folder)
    at = open_app(selection=[ids["conv"], ids["lenet5"], ids["failed"], ids["foreign"]])
    for page in ("runs", "compare", "overfitting", "detail"):
        at = go(at, page)
        assert not at.exception
    at.session_state[Key.GALLERY_CELL] = (ids["conv"], 4, 9)
    at.run()
    assert store_fingerprint(folder) == before


class Payload:
    """Unpickled, it creates the file `marker`: proof that a pickle was loaded unsafely."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def killed_run_with_a_hostile_checkpoint(store, tmp_path) -> tuple[str, object]:
    """A real run killed after its first epoch, whose checkpoint.pt is then replaced by a hostile pickle."""

    def interrupt(record):
        raise KeyboardInterrupt("stopped by the test")

    with pytest.raises(KeyboardInterrupt):
        execute(small_config("softmax-regression", epochs=2, run_name="hostile"), should_stop=interrupt)
    [run] = store.search_runs([store.get_experiment_by_name("cnn-experiments").experiment_id])
    marker = tmp_path / "pwned"
    hostile = tmp_path / "upload" / Artifact.CHECKPOINT
    hostile.parent.mkdir()
    torch.save({"progress": Payload(marker)}, hostile)
    store.log_artifact(run.info.run_id, str(hostile))
    return run.info.run_id, marker


def test_resume_refuses_a_hostile_checkpoint_without_running_it(store, mnist_dir, tmp_path):
    run_id, marker = killed_run_with_a_hostile_checkpoint(store, tmp_path)
    result = cli("train", "--resume", run_id, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "checkpoint.pt cannot be read safely" in result.stderr.strip().splitlines()[-1]
    assert not marker.exists()
    assert store.get_run(run_id).info.status == "KILLED"


def test_browsing_a_run_with_hostile_pickles_never_loads_them(store, mnist_dir, tmp_path, monkeypatch):
    """The dashboard reads JSON and CSV only: a hostile checkpoint.pt and model file are never loaded."""

    run_id, marker = killed_run_with_a_hostile_checkpoint(store, tmp_path)
    store.log_artifact(run_id, str(tmp_path / "upload" / Artifact.CHECKPOINT), "model")
    loads = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append("torch.load"))
    monkeypatch.setattr(mlflow.pytorch, "load_model", lambda *a, **k: loads.append("load_model"))
    at = open_app(selection=[run_id])
    for page in PAGES:
        at = go(at, page)
        assert not at.exception, page
    assert not marker.exists() and loads == []


def test_every_requirement_is_pinned_to_an_exact_version():
    lines = [line.split("#")[0].strip() for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()]
    requirements = [line for line in lines if line]
    assert requirements
    unpinned = [line for line in requirements if not re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[A-Za-z0-9_.+\-]+", line)]
    assert not unpinned
