"""One tracked run: configuration -> data -> model -> fit -> test -> everything logged to MLflow.

The model's framework (PyTorch, Keras, numpy) is its adapter's business (experiments.adapters); nothing here
branches on it.
"""

import json
import platform
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow.exceptions import MlflowException

from core.diagnosis import Yardstick, best_error_for
from core.schema import Artifact, Param, Tag
from core.settings import SETTINGS, ConfigError, config_group
from core.store import get_client
from experiments import interrupts
from experiments.adapters import ModelAdapter, adapter_for
from experiments.config import RunConfig
from experiments.data import Splits, make_splits, scale_images
from experiments.memory import keep_freed_memory
from experiments.models import MODELS, ModelSpec
from experiments.run_logger import RunLogger
from experiments.spool import SPOOL_DIR, read_spool
from experiments.track import Run
from experiments.train import Diverged, EpochRecord, evaluate, fit
from experiments.user_models import file_sha256, model_spec


@dataclass
class RunResult:
    """A finished run: its id, the epochs it trained, its final metrics by schema name, and its config group."""

    run_id: str
    epochs_trained: int
    metrics: dict
    group: str = ""


def check(config: RunConfig) -> tuple[ModelSpec, ModelAdapter]:
    """Validate every setting, then what the model and its framework allow; raises ConfigError."""
    config.validate()
    spec = model_spec(config.model)
    try:
        framework = spec.framework_of(config.framework)
    except ValueError as err:
        raise ConfigError(f"--framework: {err}") from err
    styles = spec.styles(framework)
    if config.style is not None and config.style not in styles:
        raise ConfigError(
            f"--style: model {config.model!r} has no style {config.style!r} in {framework}; "
            f"expected one of {', '.join(styles)}"
        )
    adapter = adapter_for(framework)
    if config.width is not None and framework not in spec.scalable:
        scaling = ", ".join(f"{m.name} in {' or '.join(m.scalable)}" for m in MODELS.values() if m.scalable)
        raise ConfigError(f"--width: {config.model} in {framework} has a fixed width (scalable: {scaling})")
    ignored = next(  # an optional setting given to a framework that would ignore it
        (
            setting
            for name, setting in SETTINGS.items()
            if setting.optional and getattr(config, name) is not None and not setting.applies_to(framework)
        ),
        None,
    )
    if ignored:
        frameworks = " and ".join(ignored.frameworks)
        raise ConfigError(f"{ignored.flag}: {config.model} in {framework} does not take it ({frameworks} models only)")
    adapter.check(config, spec)
    return spec, adapter


@dataclass
class Prepared:
    """Everything a run needs before it is logged: data on the device, the model and its learner."""

    spec: ModelSpec
    adapter: ModelAdapter
    splits: Splits
    device: str
    yardstick: Yardstick  # best error and the train-eval and validation sizes, for the diagnosis
    model: object
    learner: object
    inputs: dict  # split name -> images in the learner's own type
    memory_kept: bool  # the allocator keeps freed memory for reuse (experiments.memory)


def prepare(config: RunConfig) -> Prepared:
    """Validate, load the splits and build the model; raises ConfigError or DataError before any logging.
    Also sets the process-wide allocator setting (experiments.memory) before the model allocates anything."""
    spec, adapter = check(config)
    try:
        splits = make_splits(
            config.dataset,
            data_dir=config.data_dir,
            val_split=config.val_split,
            val_from_test=config.val_from_test,
            train_size=config.train_size,
            test_size=config.test_size,
            image_size=config.image_size,
            seed=config.seed,
        )
    except ValueError as err:  # sizes that do not fit the data
        raise ConfigError(str(err)) from err
    data = (len(splits.class_names), splits.input_shape)
    problem = spec.data_problem(*data)
    if problem:
        raise ConfigError(f"--dataset {config.dataset}: {problem}")
    device = adapter.device(config)
    memory_kept = keep_freed_memory(config.keep_freed_memory)
    model, learner = adapter.build(spec, config, device, data)
    dtype = adapter.input_dtype(config)
    inputs = {
        name: learner.to_inputs(scale_images(part.images, config.input_scaling, dtype))
        for name, part in (("train", splits.train), ("val", splits.val), ("test", splits.test))
    }
    yardstick = Yardstick(
        best_error_for(config.dataset, config.best_error),
        train_eval_size=min(config.train_eval_size, len(splits.train)),
        val_size=len(splits.val),
    )
    check_outputs(config, learner, inputs["val"][:2], len(splits.class_names))
    return Prepared(
        spec,
        adapter,
        splits,
        device,
        yardstick,
        model,
        learner,
        inputs,
        memory_kept=memory_kept,
    )


def check_outputs(config: RunConfig, learner, images, classes: int) -> None:
    """A model must give one score per class: ConfigError before the run exists when it does not."""
    try:
        width = learner.logits(images).shape[-1]
    except Exception as err:  # your own model's forward pass failed on the dataset's images
        raise ConfigError(
            f"--model {config.model}: fails on this dataset's images ({type(err).__name__}: {err})"
        ) from err
    if width != classes:
        raise ConfigError(
            f"--model {config.model}: outputs {width} scores per image, but the dataset has {classes} classes"
        )


def run_params(config: RunConfig, ready: Prepared) -> dict:
    """Every logged setting that applies to the model's framework, as resolved for this run, and the versions."""
    spec, splits = ready.spec, ready.splits
    settings = {
        name: getattr(config, name)
        for name, setting in SETTINGS.items()
        if setting.logged and setting.applies_to(ready.adapter.framework)
    }
    return {
        **settings,
        Param.FRAMEWORK: ready.adapter.framework,
        Param.STYLE: config.style or spec.styles(ready.adapter.framework)[0],
        Param.DATA_DIR: splits.data_dir,
        Param.TRAIN_SIZE: len(splits.train),
        Param.VAL_SIZE: len(splits.val),
        Param.TEST_SIZE: len(splits.test),
        Param.TEST_IMAGES_SHA256: splits.test_sha256,
        Param.INPUT_SHAPE: "x".join(map(str, splits.input_shape)),
        **({Param.DATASET_SHA256: splits.dataset_sha256} if splits.dataset_sha256 else {}),
        **({Param.MODEL_SHA256: file_sha256(spec.source_file)} if spec.source_file else {}),
        Param.TRAIN_EVAL_SIZE: ready.yardstick.train_eval_size,
        Param.BEST_ERROR: ready.yardstick.best_error,
        Param.DEVICE: ready.device,
        Param.KEEP_FREED_MEMORY: ready.memory_kept,
        **ready.adapter.resolved_params(config, ready.model, ready.device),
        Param.TORCH_VERSION: torch.__version__,
        Param.NUMPY_VERSION: np.__version__,
        Param.MLFLOW_VERSION: mlflow.__version__,
        Param.PYTHON_VERSION: platform.python_version(),
    }


def execute(
    config: RunConfig,
    tags: dict | None = None,
    should_stop: Callable[[EpochRecord], bool] | None = None,
    on_start: Callable[[str], None] | None = None,
) -> RunResult:
    """Train and test one configuration, logging it as one new MLflow run; returns the final metrics.

    tags are added to the run's own; should_stop(epoch record) can end training early (a sweep's
    pruner); on_start(run_id) is called once the run exists.
    """
    ready = prepare(config)
    params = run_params(config, ready)
    tags = {
        Tag.RECIPE_SOURCE: ready.spec.source,
        Tag.CONFIG_GROUP: config_group(params),
        **({Tag.SUITE: config.suite} if config.suite else {}),
        **(tags or {}),
    }
    with Run.open(
        params,
        tags,
        config.as_dict(),
        ready.splits.class_names,
        ready.yardstick,
        experiment=config.experiment,
        run_name=config.name(),
        heartbeat_seconds=config.heartbeat,
        retry_seconds=config.store_retry,
    ) as run:
        with interrupts.held():  # described whole: an interrupt waits for that, then ends the run
            describe(run, ready)
            if on_start:
                on_start(run.run_id)
        result = train_and_log(config, ready, run, should_stop=should_stop)
    return replace(result, group=config_group(params))


def describe(run: Run, ready: Prepared) -> None:
    """What a new run logs before training: its validation images, and a copy of your own model's file."""
    run.describe_val(ready.splits.val_source, ready.splits.val)
    if ready.splits.kept_images:
        run.keep_images(ready.splits.kept_images)
    if ready.spec.source_file:
        run.keep_source(ready.spec.source_file)


def resume(run_id: str, progress: bool = True) -> tuple[RunConfig, RunResult]:
    """Continue a KILLED or FAILED run from its last checkpoint, in the same MLflow run."""
    client = get_client()
    try:
        run = client.get_run(run_id)
    except MlflowException as err:
        raise ConfigError(f"--resume: no run {run_id!r} in the tracking store ({err.message})") from err
    spooled = read_spool(run_id)  # this machine's copy of an epoch its store was away for
    if run.info.status not in ("KILLED", "FAILED") and spooled is None:
        raise ConfigError(f"--resume: run {run_id} is {run.info.status}; only KILLED or FAILED runs can resume")
    if spooled is None and not any(f.path == Artifact.CHECKPOINT for f in client.list_artifacts(run_id)):
        raise ConfigError(
            f"--resume: run {run_id} has no {Artifact.CHECKPOINT} (it stopped before its first checkpoint was written)"
        )
    record = spooled_record(spooled, run_id) if spooled else None
    with tempfile.TemporaryDirectory() as tmp:
        stored = json.loads(Path(client.download_artifacts(run_id, Artifact.CONFIG, tmp)).read_text())
    config = replace(RunConfig.from_dict(stored, f"--resume: run {run_id}'s {Artifact.CONFIG}"), progress=progress)
    ready = prepare(config)
    logged = {name: run.data.params.get(name) for name in (Param.MODEL_SHA256, Param.DATASET_SHA256)}
    now = {Param.MODEL_SHA256: ready.spec.source_file and file_sha256(ready.spec.source_file)}
    now[Param.DATASET_SHA256] = ready.splits.dataset_sha256
    changed = [name for name, value in logged.items() if value and value != now[name]]
    if changed:  # the weights in the checkpoint belong to the model and data the run started with
        what = {Param.MODEL_SHA256: f"the model file {ready.spec.source_file}", Param.DATASET_SHA256: config.dataset}
        raise ConfigError(f"--resume: {what[changed[0]]} changed since run {run_id} started; restore it to resume")
    with interrupts.held():  # reopened RUNNING and ended by the Run whatever happens next, or not reopened
        logger, checkpoint = RunLogger.reopen(
            run_id,
            ready.splits.class_names,
            config.heartbeat,
            config.store_retry,
            spooled["checkpoint"] if spooled else None,
        )
    with Run(logger, ready.splits.class_names, ready.yardstick) as run:
        logged = {f.path for f in client.list_artifacts(run_id)}
        if Artifact.VAL_IMAGES not in logged:  # logged by an older version
            run.describe_val(ready.splits.val_source, ready.splits.val)
        if ready.splits.kept_images and Artifact.RUN_IMAGES not in logged:  # not uploaded again on every resume
            run.keep_images(ready.splits.kept_images)
        if record:  # log the epoch the store missed, then forget the spool
            run.commit_epoch(record, checkpoint)
            shutil.rmtree(SPOOL_DIR / run_id)
        result = train_and_log(config, ready, run, resume_from=checkpoint)
    return config, result


def spooled_record(spooled: dict, run_id: str) -> EpochRecord:
    """The spooled epoch's record, or one line saying it cannot be read (spooled by an older version)."""
    try:
        return EpochRecord.from_dict(spooled["record"])
    except (KeyError, TypeError) as err:
        raise ConfigError(
            f"--resume: the epoch spooled in {SPOOL_DIR / run_id} was written by an older version "
            f"(no {err}); move that folder away to resume from the store's last checkpoint"
        ) from err


def train_and_log(
    config: RunConfig,
    ready: Prepared,
    run: Run,
    resume_from: dict | None = None,
    should_stop: Callable[[EpochRecord], bool] | None = None,
) -> RunResult:
    """fit, test with the best-val weights, log the results; a diverged run ends FAILED with its diagnosis, and
    the Run around it ends any other stopped run."""
    splits, learner, inputs = ready.splits, ready.learner, ready.inputs
    eval_rows = np.sort(np.random.default_rng(config.seed).permutation(len(splits.train))[: config.train_eval_size])
    try:
        fitted = fit(
            learner,
            (inputs["train"], learner.to_labels(splits.train.labels)),
            (inputs["val"], splits.val.labels),
            (inputs["train"][eval_rows], splits.train.labels[eval_rows]),
            epochs=config.epochs,
            batch_size=config.batch_size,
            seed=config.seed,
            best_error=ready.yardstick.best_error,
            log_every=config.log_every,
            num_classes=len(splits.class_names),
            eval_batch_size=config.eval_batch_size,
            progress=config.progress,
            on_epoch=run.commit_epoch,
            resume_from=resume_from,
            should_stop=should_stop,
        )
        if fitted.epochs_trained < config.epochs:
            run.stopped_early(fitted.epochs_trained)
        learner.load_weights(fitted.best_weights)
        tested = evaluate(learner, inputs["test"], splits.test.labels, batch_size=config.eval_batch_size)
        final = run.log_results(tested, splits.test, ready.model, ready.adapter, splits.input_shape, fitted.history)
        run.end("FINISHED")
    except Diverged as err:
        run.end_diverged(err)
        raise
    return RunResult(run.run_id, fitted.epochs_trained, final)
