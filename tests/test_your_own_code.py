"""Your own loop, model and data: the examples of docs/your-own-code.md run for real, on real MNIST, scikit-learn's
digits and generated colour images, and every dashboard page shows their runs with nothing missing."""

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image

from core.diagnosis import DIVERGED, best_error_for
from core.schema import Artifact, Metric, Param, Tag, Value
from core.settings import ConfigError
from core.store import REPO_ROOT
from dashboard.state import Key
from dashboard.widgets import INSPECTOR_SECTIONS
from examples.make_datasets import digits_folder, shapes_folder, shapes_npz
from experiments import track
from experiments.config import RunConfig
from experiments.run import execute, resume
from experiments.track import RunInterrupted
from experiments.train import Diverged
from experiments.user_models import model_spec
from tests.helpers import (
    all_runs,
    cli,
    cli_in_process,
    click_cell,
    go,
    needs_chromium,
    on_tab,
    open_app,
    shoot,
    sqlite_uri,
    start_server,
    texts,
    wait_idle,
)

pytestmark = pytest.mark.xdist_group("your-own-code")

EXAMPLES = REPO_ROOT / "examples"
EPOCH_ARTIFACTS = {*Artifact.PER_EPOCH, Artifact.VAL_IMAGES}
TEST_ARTIFACTS = {Artifact.CONFUSION_TEST, Artifact.PER_CLASS, Artifact.MISCLASSIFIED, Artifact.TEST_PREDICTIONS}
USER_MODEL = f"{EXAMPLES / 'my_model.py'}:small_cnn"


def example(name: str, *args: str) -> subprocess.CompletedProcess:
    """One of examples/ run as its docstring says, on the environment's store."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def tracking_lines(name: str) -> list[str]:
    """The lines an example adds to the program it tracks: each ends in `# tracking`."""
    return [line for line in (EXAMPLES / name).read_text().splitlines() if line.rstrip().endswith("# tracking")]


def artifacts(client: MlflowClient, run_id: str) -> set[str]:
    return {f.path for f in client.list_artifacts(run_id)}


def the_run(client: MlflowClient, name: str):
    found = [r for r in all_runs(client) if r.info.run_name == name]
    assert len(found) == 1, [r.info.run_name for r in all_runs(client)]
    return found[0]


def assert_complete(client: MlflowClient, run, epochs: int, images: bool = True) -> None:
    """FINISHED with every per-epoch and test artifact, every epoch's metrics, a verdict and, for runs whose images
    no other machine can find, the images."""
    assert run.info.status == "FINISHED", run.data.tags.get(Tag.ERROR)
    logged = artifacts(client, run.info.run_id)
    assert EPOCH_ARTIFACTS | TEST_ARTIFACTS | {Artifact.LAYERS} <= logged
    assert (Artifact.RUN_IMAGES in logged) == images
    for name in Metric.PER_EPOCH:
        assert len(client.get_metric_history(run.info.run_id, name)) == epochs, name
    assert {Metric.TEST_ACC, Metric.BEST_EPOCH, Metric.PARAMS_TOTAL} <= set(run.data.metrics)
    assert run.data.tags[Tag.DIAGNOSIS] and run.data.tags[Tag.CONFIG_GROUP]


@pytest.fixture(scope="module")
def own_store(tmp_path_factory, mnist_dir):
    """One store holding a run of each way in: pytorch/examples' script, a Lightning module, your own model on
    scikit-learn's digits and on colour shapes (two seeds, so Compare pairs them image by image)."""
    folder = tmp_path_factory.mktemp("own")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", sqlite_uri(folder))
        client = MlflowClient(sqlite_uri(folder))
        example("pytorch_mnist.py", "--epochs", "2", "--train-size", "2000", "--test-size", "500")
        example(
            "lightning_mnist.py", "--epochs", "2", "--train-size", "2000", "--val-size", "500", "--test-size", "500"
        )
        digits = digits_folder(folder / "digits")
        shapes = shapes_folder(folder / "shapes", train_per_class=60, test_per_class=20)
        common = ("--epochs", "3", "--no-progress", "--batch-size", "32")
        ran = cli("train", "--model", "lenet5", "--dataset", str(digits), "--image-size", "28", *common)
        assert ran.returncode == 0, ran.stderr[-3000:]
        ran = cli("train", "--model", USER_MODEL, "--dataset", str(shapes), "--image-size", "24", "--repeats", "2",
                  "--lr", "0.01", *common)  # fmt: skip
        assert ran.returncode == 0, ran.stderr[-3000:]
        yield client, folder


def test_a_pytorch_examples_script_is_tracked_by_a_few_added_lines(own_store):
    client, _ = own_store
    added = tracking_lines("pytorch_mnist.py")
    assert 1 <= len(added) <= 6
    run = the_run(client, "Net-mnist")
    assert_complete(client, run, epochs=2)
    assert run.data.params["lr"] == "1.0" and run.data.params["gamma"] == "0.7"  # its own arguments, as params
    assert run.data.metrics[Metric.TEST_ACC] > 0.8  # 2,000 real MNIST images, two epochs of Adadelta
    assert run.data.params[Param.VAL_SIZE] == "500" and run.data.params[Param.TRAIN_EVAL_SIZE] == "2000"


def test_a_lightning_module_is_tracked_by_its_callback(own_store):
    client, _ = own_store
    added = tracking_lines("lightning_mnist.py")
    assert len(added) <= 3
    run = the_run(client, "LitConvNet-mnist")
    assert_complete(client, run, epochs=2)
    assert run.data.params["lr"] == "0.001" and run.data.params[Param.FRAMEWORK] == "pytorch"


@pytest.mark.keras
def test_a_keras_model_is_tracked_by_its_callback(store):
    assert len(tracking_lines("keras_mnist.py")) <= 3
    example("keras_mnist.py", "--epochs", "2", "--train-size", "2000", "--val-size", "500", "--test-size", "500")
    run = the_run(store, "Sequential-mnist")
    assert_complete(store, run, epochs=2)
    assert run.data.params[Param.FRAMEWORK] == "keras" and run.data.metrics[Metric.TEST_ACC] > 0.7


@pytest.mark.keras
def test_a_keras_model_factory_trains_through_the_runner(store, tmp_path):
    model_file = tmp_path / "keras_net.py"
    model_file.write_text(
        "import keras\nfrom keras import layers\n\n\n"
        "def build(num_classes, input_shape):\n"
        "    return keras.Sequential([\n"
        "        keras.Input(shape=input_shape), layers.Conv2D(8, 3, activation='relu'),\n"
        "        layers.GlobalAveragePooling2D(), layers.Dense(num_classes, activation='softmax')])\n"
    )
    data = shapes_npz(tmp_path / "shapes.npz", train_per_class=20, test_per_class=5)
    result = execute(RunConfig.from_recipe(f"{model_file}:build", dataset=str(data), epochs=1, progress=False))
    run = store.get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.data.params[Param.FRAMEWORK] == "keras"
    assert run.data.params[Param.INPUT_SHAPE] == "3x24x24" and Artifact.RUN_IMAGES in artifacts(store, result.run_id)


def test_logits_you_computed_make_an_epoch_and_a_diverged_loss_ends_the_run_failed(store):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    logits = rng.normal(size=(300, 3)) + 2 * np.eye(3)[labels]
    run = track.start({"lr": 0.1, "seed": 0, "augment": "flip"}, dataset="toy", class_names=["a", "b", "c"])
    record = run.log_epoch(train=(logits[:200], labels[:200]), val=(logits[200:], labels[200:]))
    assert record.val_confusion.sum() == 100 and record.val_confusion.shape == (3, 3)
    with pytest.raises(Diverged):
        run.log_epoch(train=(np.full((200, 3), np.nan), labels[:200]), val=(logits[200:], labels[200:]))
    logged = store.get_run(run.run_id)
    assert logged.info.status == "FAILED" and logged.data.tags[Tag.DIAGNOSIS] == DIVERGED
    assert logged.data.params["augment"] == "flip"  # not a setting: logged as it is
    assert [m.step for m in store.get_metric_history(run.run_id, Metric.VAL_ACC)] == [1]


def test_the_sizes_logged_are_those_of_the_sets_handed_over_whatever_the_config_says(store):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 400)
    logits = rng.normal(size=(400, 2)) + np.eye(2)[labels]
    config = {"test_size": None, "train_eval_size": 10_000}  # a script's own arguments may say so
    run = track.start(config, dataset="toy", class_names=["no", "yes"])
    run.log_epoch(train=(logits[:200], labels[:200]), val=(logits[200:300], labels[200:300]))
    final = run.finish(test=(logits[300:], labels[300:]))
    logged = store.get_run(run.run_id)
    assert logged.info.status == "FINISHED" and final[Metric.TEST_ACC] == logged.data.metrics[Metric.TEST_ACC]
    assert {k: logged.data.params[k] for k in (Param.TRAIN_EVAL_SIZE, Param.VAL_SIZE, Param.TEST_SIZE)} == {
        Param.TRAIN_EVAL_SIZE: "200",
        Param.VAL_SIZE: "100",
        Param.TEST_SIZE: "100",
    }


def test_a_run_of_your_own_model_resumes_only_with_the_file_it_started_with(store, tmp_path):
    model_file = tmp_path / "net.py"
    model_file.write_text((EXAMPLES / "my_model.py").read_text())
    data = shapes_npz(tmp_path / "shapes.npz", train_per_class=20, test_per_class=5)
    config = RunConfig.from_recipe(f"{model_file}:small_cnn", dataset=str(data), epochs=2, progress=False)

    def interrupt(record):
        raise KeyboardInterrupt("SIGTERM")  # after epoch 1 and its checkpoint

    with pytest.raises(RunInterrupted) as stopped:
        execute(config, should_stop=interrupt)
    model_file.write_text(model_file.read_text().replace("width: int = 16", "width: int = 8"))
    with pytest.raises(ConfigError, match=f"the model file {model_file} changed since run"):
        resume(stopped.value.run_id, progress=False)
    model_file.write_text((EXAMPLES / "my_model.py").read_text())
    _, result = resume(stopped.value.run_id, progress=False)
    assert result.epochs_trained == 2 and store.get_run(result.run_id).info.status == "FINISHED"


def test_arrays_of_images_and_a_flat_model_are_evaluated_by_the_model_you_hand_over(store):
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(120, 1, 6, 6)).astype(np.float32), rng.integers(0, 3, 120)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 3))
    with track.start({"seed": np.int64(3)}, model=model, class_names=["a", "b", "c"]) as run:
        with pytest.raises(ConfigError, match=r"scores of shape \(10, 4\) for 3 class names"):
            run.log_epoch(train=(rng.normal(size=(10, 4)), y[:10]), val=(rng.normal(size=(10, 4)), y[:10]))
        run.log_epoch(model, train=(x, y), val=(x[:60], y[:60]))
        run.finish(model, test=(x[60:], y[60:]))
    logged = store.get_run(run.run_id)
    assert logged.info.status == "FINISHED" and logged.data.params[Param.INPUT_SHAPE] == "1x6x6"
    assert logged.data.tags[Tag.TESTED_WEIGHTS] == Value.TESTED_AS_HANDED
    kept = np.load(store.download_artifacts(run.run_id, Artifact.RUN_IMAGES))
    assert kept["test"].shape == (60, 6, 6) and kept["val"].shape == (60, 6, 6)


def test_leaving_the_with_block_before_finish_ends_the_run_failed(store):
    with track.start(class_names=["a", "b"]) as run:
        pass
    logged = store.get_run(run.run_id)
    assert logged.info.status == "FAILED" and "ended before finish()" in logged.data.tags[Tag.ERROR]


def test_a_model_factory_is_found_by_file_or_module_path_and_shaped_by_the_data():
    by_module, by_file = model_spec("examples.my_model:small_cnn"), model_spec(USER_MODEL)
    assert by_module.source_file == by_file.source_file == EXAMPLES / "my_model.py"
    model = by_module.build(data=(3, (3, 20, 30)))
    assert model(torch.zeros(2, 3, 20, 30)).shape == (2, 3)
    with pytest.raises(ConfigError, match="has no function or class 'nope'"):
        model_spec("examples.my_model:nope")
    with pytest.raises(ConfigError, match="cannot import no_such_package"):
        model_spec("no_such_package.models:build")


def test_your_own_data_is_judged_against_no_published_error(tmp_path):
    assert best_error_for(str(tmp_path / "shapes.npz")) == 0.0 and best_error_for("mnist") == 0.002


def test_a_wrong_setting_in_your_config_is_refused_before_any_run(store):
    with pytest.raises(ConfigError, match="lr: -1 is not allowed; expected a number > 0"):
        track.start({"lr": -1}, class_names=["a", "b"])
    assert not all_runs(store)


def test_sigterm_ends_a_run_of_your_own_loop_killed(store, tmp_path):
    script = tmp_path / "loop.py"
    script.write_text(
        "import time\nfrom experiments import track\n"
        "run = track.start({'epochs': 100}, class_names=['a', 'b'])\n"
        "while True:\n    time.sleep(0.1)\n"
    )
    loop = subprocess.Popen(
        [sys.executable, str(script)], cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    )
    deadline = time.monotonic() + 60
    while not all_runs(store) and time.monotonic() < deadline:
        time.sleep(0.5)
    loop.send_signal(signal.SIGTERM)
    assert loop.wait(timeout=60) != 0
    (run,) = all_runs(store)
    assert run.info.status == "KILLED" and "SIGTERM" in run.data.tags[Tag.ERROR]


def test_scikit_learns_digits_as_a_png_folder_train_a_registry_model(own_store):
    client, folder = own_store
    run = the_run(client, "lenet5-digits")
    assert_complete(client, run, epochs=3)
    assert run.data.params[Param.DATASET] == str(folder / "digits")
    assert run.data.params[Param.INPUT_SHAPE] == "1x28x28" and len(run.data.params[Param.DATASET_SHA256]) == 64
    assert run.data.params[Param.TEST_SIZE] == str(math.ceil(1797 * 0.2))  # the carved, stratified test split
    assert run.data.metrics[Metric.TEST_ACC] > 0.5


def test_your_own_model_on_colour_images_keeps_its_file_and_its_images(own_store, tmp_path):
    client, _ = own_store
    runs = [r for r in all_runs(client) if r.data.params.get(Param.MODEL) == USER_MODEL]
    assert len(runs) == 2 and {r.data.params[Param.SEED] for r in runs} == {"0", "1"}
    assert len({r.data.tags[Tag.CONFIG_GROUP] for r in runs}) == 1  # repeats of one configuration
    run = runs[0]
    assert_complete(client, run, epochs=3)
    source = Path(client.download_artifacts(run.info.run_id, Artifact.MODEL_SOURCE, str(tmp_path)))
    assert source.read_text() == (EXAMPLES / "my_model.py").read_text()
    assert run.data.params[Param.MODEL_SHA256] == hashlib.sha256(source.read_bytes()).hexdigest()
    confusion = json.loads(
        Path(client.download_artifacts(run.info.run_id, Artifact.CONFUSION_TEST, str(tmp_path))).read_text()
    )
    assert confusion["class_names"] == ["disc", "square", "triangle"]  # the folders' names, sorted
    kept = np.load(client.download_artifacts(run.info.run_id, Artifact.RUN_IMAGES, str(tmp_path)))
    assert kept["test"].shape == (60, 24, 24, 3) and kept["val"].ndim == 4  # in colour


def test_a_sweep_spec_trains_your_own_model_on_your_own_npz(store, tmp_path):
    data = shapes_npz(tmp_path / "shapes.npz", train_per_class=30, test_per_class=10)
    spec = tmp_path / "own.toml"
    spec.write_text(
        'name = "own-sweep"\nmethod = "grid"\n'
        f'fixed = {{ model = "{USER_MODEL}", dataset = "{data}", epochs = 1, batch_size = 16 }}\n'
        "space = { lr = [0.01, 0.003] }\n"
    )
    ran = cli("sweep", str(spec))
    assert ran.returncode == 0, ran.stderr[-3000:]
    trials = [r for r in all_runs(store) if r.data.tags.get(Tag.SWEEP) == "own-sweep" and Tag.TRIAL in r.data.tags]
    assert sorted(r.data.params[Param.LR] for r in trials) == ["0.003", "0.01"]
    assert all(r.info.status == "FINISHED" and r.data.params[Param.MODEL] == USER_MODEL for r in trials)


def test_every_page_shows_your_runs_with_nothing_missing(own_store):
    client, _ = own_store
    mine = {r.info.run_name: r.info.run_id for r in all_runs(client)}
    at = open_app(**{Key.RUNS_COLUMNS: ["best_val_acc", "diagnosis"]})
    table = at.dataframe[0].value.set_index("run_name")
    shapes = [name for name in mine if name.startswith("small_cnn-shapes")]
    assert set(table.loc[shapes, "model"]) == {"my_model.py:small_cnn"}
    assert table.loc[list(mine), ["best_val_acc", "gap", "diagnosis", "test_acc"]].notna().all().all()
    for name, run_id in mine.items():
        pages = {section: on_tab("overfitting", [run_id], section) for section in INSPECTOR_SECTIONS[:3]}
        for page, at in {**pages, "detail": go(open_app(selection=[run_id]), "detail")}.items():
            assert not at.exception, (name, page)
            assert not at.warning, (name, page, [w.value for w in at.warning])
            shown = texts(at)
            assert "not logged" not in shown and "not on this machine" not in shown, (name, page)
    at = go(open_app(selection=[mine[shapes[0]], mine[shapes[1]]]), "compare")
    assert not at.exception and "McNemar" in texts(at)


def test_the_gallery_of_a_colour_run_shows_colour_images(own_store):
    client, _ = own_store
    run_id = next(r.info.run_id for r in all_runs(client) if r.info.run_name.startswith("small_cnn-shapes"))
    rows = pd.read_csv(client.download_artifacts(run_id, Artifact.MISCLASSIFIED))
    assert len(rows), "the shapes model got every test image right: no gallery to look at"
    true, pred = int(rows["true"].iloc[0]), int(rows["predicted"].iloc[0])
    at = go(open_app(selection=[run_id]), "detail")
    at.session_state[Key.GALLERY_CELL] = (run_id, true, pred)
    at.run()
    assert not at.exception and at.get("image")


@needs_chromium
def test_your_colour_run_in_chromium_names_its_classes_and_shows_its_images_in_colour(own_store, page):
    client, folder = own_store
    run = next(r for r in all_runs(client) if r.info.run_name == "small_cnn-shapes-seed0")
    matrix = np.array(
        json.loads(Path(client.download_artifacts(run.info.run_id, Artifact.CONFUSION_TEST, str(folder))).read_text())[
            "matrix"
        ]
    )
    np.fill_diagonal(matrix, 0)
    true, pred = np.unravel_index(matrix.argmax(), matrix.shape)
    assert matrix[true, pred], "the shapes model got every test image right: no gallery to look at"
    with start_server(sqlite_uri(folder)) as url:
        page.set_viewport_size({"width": 1500, "height": 2600})
        page.goto(f"{url}/detail?runs={run.info.run_id[:8]}")
        page.get_by_text("Test set, best-val weights").wait_for(timeout=60_000)
        wait_idle(page)
        page.wait_for_timeout(1000)
        click_cell(page, Key.per_run(Key.CONFUSION_CHART, run.info.run_id), int(true), int(pred), 3)
        names = ["disc", "square", "triangle"]
        page.get_by_text(f"Test images of true {names[true]}, predicted {names[pred]}").wait_for(timeout=30_000)
        page.locator('img[src*="/media/"]').first.wait_for(timeout=30_000)
        assert page.locator('[data-testid="stException"]').count() == 0
        shoot(page, "your-own-colour-run-detail")
        page.goto(f"{url}/overfitting?runs={run.info.run_id[:8]}&section=Calibration")
        page.get_by_text("Reliability after epoch").wait_for(timeout=60_000)
        wait_idle(page)
        assert page.locator('[data-testid="stException"]').count() == 0
        shoot(page, "your-own-colour-run-inspector")


@pytest.mark.parametrize(
    "make, problem",
    [
        ("one_class", "one class only"),
        ("unreadable", "cannot read the image"),
        ("truncated", "cannot read the image"),
        ("mixed_sizes", "set --image-size"),
        ("labels_out_of_range", "out of range 0..2"),
        ("empty_split", "the test split has no images"),
        ("train_and_val_folders", "but not both train/ and test/"),
    ],
)
def test_bad_data_is_refused_in_one_line_before_any_run(store, capsys, tmp_path, make, problem):
    path, named = BAD_DATA[make](tmp_path)
    result = cli_in_process(capsys, "train", "--model", USER_MODEL, "--dataset", str(path), "--epochs", "1")
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert problem in line and str(named) in line, line
    assert not all_runs(store)


def grey_folder(root: Path, classes: dict[str, int], size: int = 8) -> Path:
    rng = np.random.default_rng(0)
    for name, count in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for n in range(count):
            Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(root / name / f"{n}.png")
    return root


def one_class(tmp):
    root = grey_folder(tmp / "one", {"cat": 5})
    return root, root


def unreadable(tmp):
    root = grey_folder(tmp / "bad", {"a": 5, "b": 5})
    (root / "b" / "5.png").write_text("not an image")
    return root, root / "b" / "5.png"


def truncated(tmp):
    root = grey_folder(tmp / "cut", {"a": 5, "b": 5}, size=64)
    whole = (root / "a" / "0.png").read_bytes()
    (root / "a" / "0.png").write_bytes(whole[: len(whole) // 2])
    return root, root / "a" / "0.png"


def mixed_sizes(tmp):
    root = grey_folder(tmp / "mixed", {"a": 5, "b": 5})
    Image.fromarray(np.zeros((12, 10), dtype=np.uint8)).save(root / "b" / "9.png")
    return root, root / "b" / "9.png"


def labels_out_of_range(tmp):
    path = shapes_npz(tmp / "shapes.npz", train_per_class=4, test_per_class=2)
    arrays = dict(np.load(path))
    arrays["y_test"][0] = 7
    np.savez(path, **arrays)
    return path, path


def empty_split(tmp):
    path = shapes_npz(tmp / "shapes.npz", train_per_class=4, test_per_class=2)
    arrays = dict(np.load(path))
    arrays["x_test"], arrays["y_test"] = arrays["x_test"][:0], arrays["y_test"][:0]
    np.savez(path, **arrays)
    return path, path


def train_and_val_folders(tmp):
    grey_folder(tmp / "tv" / "train", {"a": 5, "b": 5})
    grey_folder(tmp / "tv" / "val", {"a": 2, "b": 2})
    return tmp / "tv", tmp / "tv"


BAD_DATA = {
    f.__name__: f
    for f in (one_class, unreadable, truncated, mixed_sizes, labels_out_of_range, empty_split, train_and_val_folders)
}


def test_run_detail_of_a_store_where_no_run_logged_its_test_size(store):
    """Another tool's runs may log a test accuracy and no test_size param (the load test's synthetic runs did):
    the page shows the accuracy without an interval instead of failing."""
    experiment = store.create_experiment("theirs")
    run_id = store.create_run(experiment, run_name="their-run").info.run_id
    store.log_metric(run_id, Metric.TEST_ACC, 0.9)
    store.set_terminated(run_id)
    at = go(open_app(selection=[run_id]), "detail")
    assert not at.exception and "90.00%" in [m.value for m in at.metric]
