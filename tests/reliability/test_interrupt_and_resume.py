"""Ctrl-C/SIGTERM ends a run KILLED with its checkpoint; --resume finishes it exactly like an uninterrupted run."""

import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch

from core.schema import Artifact, Metric, Tag
from dashboard.reader import fetch_runs
from dashboard.state import Key
from experiments import interrupts
from experiments import run as run_module
from experiments.run import execute
from experiments.run_logger import RunLogger
from experiments.track import RunInterrupted
from tests.helpers import cli_in_process, cli_process, open_app, small_config

TRAIN = [
    "--model",
    "conv-conv",
    "--epochs",
    "4",
    "--batch-size",
    "64",
    "--train-size",
    "4000",
    "--test-size",
    "1000",
    "--val-split",
    "0.1",
    "--seed",
    "3",
    "--no-progress",
]


def only_run(client, name):
    experiment = client.get_experiment_by_name("cnn-experiments")
    runs = client.search_runs([experiment.experiment_id], f"attributes.run_name = '{name}'") if experiment else []
    return runs[0] if runs else None


def history(client, run_id, name):
    return [(m.step, m.value) for m in client.get_metric_history(run_id, name)]


def test_sigterm_kills_then_resume_matches_an_uninterrupted_run(store, tmp_path, capsys):
    process = cli_process("train", *TRAIN, "--run-name", "interrupted")
    deadline = time.time() + 240
    while time.time() < deadline:  # wait for the first epoch to be logged, then stop the runner mid-run
        run = only_run(store, "interrupted")
        if run and store.get_metric_history(run.info.run_id, Metric.VAL_ACC):
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    run = store.get_run(only_run(store, "interrupted").info.run_id)
    run_id = run.info.run_id
    assert process.returncode == 130
    assert err.strip().splitlines()[-1].startswith(f"interrupted: run {run_id} is marked KILLED")
    assert run.info.status == "KILLED" and "SIGTERM" in run.data.tags[Tag.ERROR]
    done = [step for step, _ in history(store, run_id, Metric.VAL_ACC)]
    assert 1 <= len(done) < 4 and done == list(range(1, len(done) + 1))
    checkpoint = torch.load(store.download_artifacts(run_id, Artifact.CHECKPOINT, str(tmp_path)), weights_only=True)
    assert sorted(checkpoint["progress"]["epochs"]) == done

    resumed = cli_in_process(capsys, "train", "--resume", run_id, "--no-progress")  # all it needs, from the store
    assert resumed.returncode == 0, resumed.stderr
    reference = cli_in_process(capsys, "train", *TRAIN, "--run-name", "uninterrupted")
    assert reference.returncode == 0, reference.stderr

    finished, straight = store.get_run(run_id), only_run(store, "uninterrupted")
    assert finished.info.status == "FINISHED" and Tag.ERROR not in finished.data.tags
    for name in (Metric.VAL_ACC, Metric.TRAIN_LOSS, Metric.TRAIN_LOSS_STEP):
        resumed_points, straight_points = history(store, run_id, name), history(store, straight.info.run_id, name)
        assert len({s for s, _ in resumed_points}) == len(resumed_points), f"{name} logged twice"
        assert resumed_points == straight_points, name
    assert finished.data.metrics[Metric.TEST_ACC] == straight.data.metrics[Metric.TEST_ACC]
    for name in Artifact.PER_EPOCH:  # every epoch once, each entry as the uninterrupted run logged it
        resumed_series, straight_series = (
            json.loads(Path(store.download_artifacts(r, name, str(tmp_path / r))).read_text())
            for r in (run_id, straight.info.run_id)
        )
        assert resumed_series == straight_series, name


def test_resume_of_unknown_or_finished_run_is_refused(store, capsys):
    unknown = cli_in_process(capsys, "train", "--resume", "0" * 32)
    assert unknown.returncode == 2 and "--resume: no run '000" in unknown.stderr
    finished = cli_in_process(
        capsys,
        "train",
        "--model",
        "softmax-regression",
        "--epochs",
        "1",
        "--train-size",
        "500",
        "--test-size",
        "200",
        "--no-progress",
        "--run-name",
        "done",
    )
    assert finished.returncode == 0, finished.stderr
    run_id = only_run(store, "done").info.run_id
    again = cli_in_process(capsys, "train", "--resume", run_id)
    assert again.returncode == 2 and f"--resume: run {run_id} is FINISHED" in again.stderr
    assert len(store.search_runs([store.get_experiment_by_name("cnn-experiments").experiment_id])) == 1


def test_a_run_killed_with_sigkill_shows_lost_then_reap_fails_it_and_resume_finishes_it(store, capsys):

    train = [
        "--model",
        "conv-conv",
        "--epochs",
        "3",
        "--batch-size",
        "64",
        "--train-size",
        "3000",
        "--test-size",
        "500",
        "--val-split",
        "0.1",
        "--no-progress",
    ]
    process = cli_process("train", *train, "--heartbeat", "1", "--run-name", "lost")
    deadline = time.time() + 240
    while time.time() < deadline:  # SIGKILL once the first epoch is committed: no handler runs, nothing is tidied
        run = only_run(store, "lost")
        if run and any(f.path == Artifact.CHECKPOINT for f in store.list_artifacts(run.info.run_id)):
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    killed_at, run_id = time.time(), run.info.run_id
    assert store.get_run(run_id).info.status == "RUNNING"
    while fetch_runs(store).set_index("run_id").loc[run_id, "status"] != "LOST":
        assert time.time() - killed_at < 3 * 1 + 15, "not LOST within three heartbeat intervals (and 15 s to read)"
        time.sleep(0.2)
    table = open_app(**{Key.RUNS_COLUMNS: ["status"]}).dataframe[0].value
    assert table.loc[table["run_name"] == "lost", "status"].tolist() == ["LOST"]

    reaped = cli_in_process(capsys, "reap")
    assert reaped.returncode == 0 and f"run {run_id} FAILED, lost: no heartbeat since" in reaped.stdout
    after = store.get_run(run_id)
    assert after.info.status == "FAILED" and after.data.tags[Tag.ERROR].startswith("lost: no heartbeat")
    resumed = cli_in_process(capsys, "train", "--resume", run_id, "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    done = store.get_run(run_id)
    assert done.info.status == "FINISHED" and Tag.ERROR not in done.data.tags
    assert [step for step, _ in history(store, run_id, Metric.VAL_ACC)] == [1, 2, 3]


def test_an_interrupt_between_the_code_that_starts_or_resumes_a_run_and_its_training_ends_it_killed(
    store, mnist_dir, monkeypatch
):
    """SIGTERM in the statements between a run's start (or resume) and training: KILLED, not left RUNNING (a sweep
    worker stopped as its trial began once left its run RUNNING on CI)."""

    def stop_after_an_epoch(record):
        raise KeyboardInterrupt("SIGTERM")

    with pytest.raises(RunInterrupted) as first:
        run_module.execute(
            small_config("softmax-regression", epochs=2, run_name="stopped-after-an-epoch"),
            should_stop=stop_after_an_epoch,
        )

    def interrupted(*args, **kwargs):  # the signal lands before training's own code runs
        raise KeyboardInterrupt("SIGTERM")

    monkeypatch.setattr(run_module, "train_and_log", interrupted)
    with pytest.raises(KeyboardInterrupt) as started:  # a bare one would end the whole test session
        run_module.execute(small_config("softmax-regression", run_name="stopped-before-training"))
    with pytest.raises(KeyboardInterrupt) as resumed:
        run_module.resume(first.value.run_id, progress=False)
    for stopped in (first, started, resumed):
        assert isinstance(stopped.value, RunInterrupted), "the run was left without being ended"
        run = store.get_run(stopped.value.run_id)
        assert run.info.status == "KILLED" and "SIGTERM" in run.data.tags[Tag.ERROR], run.info.run_name


def test_a_signal_while_a_trained_run_finishes_waits_and_the_run_stays_finished(store, mnist_dir, monkeypatch):
    """SIGTERM after a finished run's checkpoint is dropped: ended KILLED there, it could neither show its result
    nor resume. Finishing is held whole; the signal then stops the process, and the run stays FINISHED."""

    drop = RunLogger.drop_checkpoint

    def drop_then_signal(self):
        drop(self)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(RunLogger, "drop_checkpoint", drop_then_signal)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    interrupts.install()
    try:
        with pytest.raises(RunInterrupted) as stopped:
            execute(small_config("softmax-regression", run_name="signalled-while-finishing"))
    finally:
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])
    assert only_run(store, "signalled-while-finishing").info.status == stopped.value.status == "FINISHED"


def test_a_second_signal_during_a_commit_interrupts_at_once():
    """The first Ctrl-C waits for the commit to end; a second one (the store hangs, the user insists) does not."""

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    interrupts.install()
    reached = []
    try:
        with pytest.raises(KeyboardInterrupt), interrupts.held():
            os.kill(os.getpid(), signal.SIGINT)
            reached.append("after the first")
            os.kill(os.getpid(), signal.SIGINT)
            reached.append("after the second")
    finally:
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])
    assert reached == ["after the first"]
    assert interrupts._held == {"depth": 0, "pending": None}  # nothing left over for the next commit


def test_an_error_before_training_ends_the_run_failed(store, mnist_dir):
    """A sweep's database failing as its trial starts (on_start) ends the run FAILED, not RUNNING and beating."""

    def database_gone(run_id):
        raise RuntimeError("the sweep's database went away")

    with pytest.raises(RuntimeError):
        execute(small_config("softmax-regression", run_name="failed-at-start"), on_start=database_gone)
    run = only_run(store, "failed-at-start")
    assert run.info.status == "FAILED" and "went away" in run.data.tags[Tag.ERROR]


def test_an_interrupt_right_after_the_run_is_created_ends_it_killed(store, mnist_dir):
    """SIGTERM between the run's creation and its first epoch (a sweep worker stopped as its trial starts)."""

    def interrupted(run_id):
        raise KeyboardInterrupt("SIGTERM")

    with pytest.raises(RunInterrupted) as stopped:
        execute(small_config("softmax-regression", run_name="stopped-at-start"), on_start=interrupted)
    run = store.get_run(stopped.value.run_id)
    assert run.info.status == "KILLED" and "SIGTERM" in run.data.tags[Tag.ERROR]
