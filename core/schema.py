"""The MLflow run schema: every metric, param, tag and artifact name a run carries.

Runners write these names and the dashboard reads them; no other module spells them. A param that is
a run setting takes its meaning from core.settings, so `Param.LR` is the setting `lr`.
`python -m experiments schema` prints the table below as Markdown.

Metrics are fractions in [0, 1] for accuracies and errors. Per-epoch metrics use
step = epoch (1-based); `train_loss_step` uses step = global optimisation step.
"""

from core.settings import SETTINGS


class Name(str):
    """One schema entry: the string MLflow stores (the str itself) and what it means (.doc)."""

    def __new__(cls, key: str, doc: str):
        name = super().__new__(cls, key)
        name.doc = doc
        return name

    def __getnewargs__(self):  # so copies and pickles of dicts keyed by Names work
        return str(self), self.doc


def setting_param(name: str) -> Name:
    """The param that logs the run setting `name`, meaning what the setting's help says."""
    setting = SETTINGS[name]
    only = f" ({' and '.join(setting.frameworks)} models)" if setting.frameworks else ""
    return Name(name, (setting.param_doc or setting.help) + only)


class Metric:
    """Metrics. Per-epoch ones are logged with step = epoch."""

    TRAIN_LOSS = Name("train_loss", "mean cross-entropy on the train-eval subset, model in eval mode (per epoch)")
    TRAIN_ACC = Name("train_acc", "accuracy on the train-eval subset (per epoch)")
    VAL_LOSS = Name("val_loss", "mean cross-entropy on the validation set (per epoch)")
    VAL_ACC = Name("val_acc", "accuracy on the validation set (per epoch)")
    VAL_ECE = Name(
        "val_ece",
        "expected calibration error on the validation set, 15 equal-width confidence bins "
        "(per epoch; core.calibration)",
    )
    BIAS = Name("bias", "train error = 1 - train_acc (per epoch)")
    VARIANCE = Name("variance", "val error - train error (per epoch)")
    AVOIDABLE_BIAS = Name("avoidable_bias", "train error - best achievable error (param best_error) (per epoch)")
    EPOCH_SECONDS = Name("epoch_seconds", "seconds of the epoch's training phase (per epoch)")
    SAMPLES_PER_S = Name("samples_per_s", "training samples / epoch_seconds (per epoch)")
    TRAIN_LOSS_STEP = Name(
        "train_loss_step",
        "mean training loss of the last log_every steps, or of an epoch's last fewer (step = global step)",
    )
    TEST_LOSS = Name("test_loss", "mean cross-entropy on the test set, best-val weights (final)")
    TEST_ACC = Name("test_acc", "accuracy on the test set, best-val weights (final)")
    BEST_EPOCH = Name("best_epoch", "first epoch with the highest val_acc (final; core.diagnosis.best_epoch)")
    BEST_VAL_ACC = Name("best_val_acc", "highest val_acc over the epochs (final)")
    EPOCHS_TRAINED = Name(
        "epochs_trained", "epochs actually trained: fewer than param epochs when stopped early (final)"
    )
    PARAMS_TOTAL = Name("params_total", "number of parameters (final)")
    PARAMS_TRAINABLE = Name("params_trainable", "number of trainable parameters (final)")
    MODEL_BYTES = Name("model_bytes", "bytes of parameters and buffers (final)")
    ACTIVATION_BYTES = Name("activation_bytes_per_image", "bytes of layer outputs for one image's forward pass (final)")
    TOTAL_SECONDS = Name("total_seconds", "wall time of the whole run, evaluation included (final)")
    SWEEP_BEST = Name("sweep_best_value", "sweep parent: the best objective value among complete trials")
    SWEEP_COMPLETE = Name("sweep_complete_trials", "sweep parent: trials that finished")
    SWEEP_PRUNED = Name("sweep_pruned_trials", "sweep parent: trials stopped early by the pruner")
    SWEEP_FAILED = Name("sweep_failed_trials", "sweep parent: trials that failed (errors, killed workers)")

    PER_EPOCH = (
        TRAIN_LOSS,
        TRAIN_ACC,
        VAL_LOSS,
        VAL_ACC,
        VAL_ECE,
        BIAS,
        VARIANCE,
        AVOIDABLE_BIAS,
        EPOCH_SECONDS,
        SAMPLES_PER_S,
    )
    FINAL = (
        TEST_LOSS,
        TEST_ACC,
        BEST_EPOCH,
        BEST_VAL_ACC,
        EPOCHS_TRAINED,
        PARAMS_TOTAL,
        PARAMS_TRAINABLE,
        MODEL_BYTES,
        ACTIVATION_BYTES,
        TOTAL_SECONDS,
    )


class Param:
    """Params: the run's configuration, all logged at the start: one per logged run setting (core.settings,
    whose help they give), then what the runner adds. tests/test_architecture.py checks they agree."""

    MODEL = setting_param("model")
    FRAMEWORK = setting_param("framework")
    STYLE = setting_param("style")
    DATASET = setting_param("dataset")
    DATA_DIR = setting_param("data_dir")
    IMAGE_SIZE = setting_param("image_size")
    INPUT_SCALING = setting_param("input_scaling")
    EPOCHS = setting_param("epochs")
    BATCH_SIZE = setting_param("batch_size")
    OPTIMIZER = setting_param("optimizer")
    LR = setting_param("lr")
    SEED = setting_param("seed")
    VAL_SPLIT = setting_param("val_split")
    VAL_FROM_TEST = setting_param("val_from_test")
    TRAIN_SIZE = setting_param("train_size")
    TEST_SIZE = setting_param("test_size")
    TRAIN_EVAL_SIZE = setting_param("train_eval_size")
    EVAL_BATCH_SIZE = setting_param("eval_batch_size")
    BEST_ERROR = setting_param("best_error")
    LOG_EVERY = setting_param("log_every")
    FILTERS = setting_param("filters")
    DTYPE = setting_param("dtype")
    DEVICE = setting_param("device")
    PRECISION = setting_param("precision")
    CHANNELS_LAST = setting_param("channels_last")
    FLUSH_DENORMAL = setting_param("flush_denormal")
    KEEP_FREED_MEMORY = setting_param("keep_freed_memory")
    DROPOUT = setting_param("dropout")
    WEIGHT_DECAY = setting_param("weight_decay")
    WIDTH = setting_param("width")
    HEARTBEAT = setting_param("heartbeat")

    VAL_SIZE = Name("val_size", "validation images")
    TEST_IMAGES_SHA256 = Name(
        "test_images_sha256",
        "SHA-256 of the whole test file's images: the dashboard finds the "
        "same images by dataset name and this hash on any machine",
    )
    DATASET_SHA256 = Name(
        "dataset_sha256",
        "your own --dataset: SHA-256 of its class names, images and labels as read (after any resize)",
    )
    INPUT_SHAPE = Name("input_shape", "one image as the model takes it: channels x height x width")
    MODEL_SHA256 = Name("model_sha256", "your own --model FILE.py:factory: SHA-256 of the file (a copy is logged)")
    TORCH_VERSION = Name("torch_version", "PyTorch version")
    KERAS_VERSION = Name("keras_version", "Keras version (keras models)")
    NUMPY_VERSION = Name("numpy_version", "numpy version")
    MLFLOW_VERSION = Name("mlflow_version", "MLflow version")
    PYTHON_VERSION = Name("python_version", "Python version")
    SWEEP_METHOD = Name("sweep_method", "sweep parent: grid, tpe or random")
    SWEEP_PRUNER = Name("sweep_pruner", "sweep parent: none, median or successive-halving")
    SWEEP_TRIALS = Name("sweep_trials", "sweep parent: trials asked for (a grid's size, or the search budget)")
    SWEEP_OBJECTIVE = Name("sweep_objective", "sweep parent: the metric the sweep maximises")
    SWEEP_STORAGE = Name("sweep_storage", "sweep parent: the Optuna storage URL, password removed")


class Tag:
    """Tags: facts about the run that are not configuration."""

    DIAGNOSIS = Name(
        "diagnosis",
        "high bias / high variance / high bias and variance / good fit / inconclusive (an "
        "interval straddles its threshold; 'high bias, variance inconclusive' and the "
        "reverse when the other figure is firm) / diverged, of the last trained epoch "
        "(core.diagnosis)",
    )
    DIAGNOSIS_RULE = Name("diagnosis_rule", "the thresholds and numbers that gave the diagnosis")
    RECIPE_SOURCE = Name("recipe_source", "where the model and its recipe come from")
    CONFIG_GROUP = Name(
        "config_group",
        "hash of every setting that defines the experiment except the seed "
        "(core.settings.config_group): runs that differ only in their seed "
        "share it",
    )
    SUITE = Name("suite", "the suite that started the run, if any")
    ADVICE_OF = Name(
        "advice_of",
        "the run id, or group:HASH, whose diagnosis the run follows up (`python -m experiments advise`)",
    )
    ADVICE_RULE = Name("advice_rule", "the rule of core.advice that proposed the run")
    ADVICE_CHANGES = Name("advice_changes", 'JSON of the settings the rule changed, e.g. {"lr": 0.003}')
    ADVICE_DIAGNOSIS = Name("advice_diagnosis", "the diagnosis of what the run follows, when advice was given")
    ERROR = Name("error", "why the run failed or was killed, if it was")
    DIVERGED_AT_STEP = Name(
        "diverged_at_step",
        "global step at which the training loss became NaN or inf, or "
        "exploded past 100 x ln(classes) (experiments.train)",
    )
    RUN_NAME = Name("mlflow.runName", "MLflow's own run name tag")
    TESTED_WEIGHTS = Name(
        "tested_weights",
        "the weights the test set was evaluated with: best-val (the runner) or as handed to finish() (your own loop)",
    )
    STOPPED_AT_EPOCH = Name("stopped_at_epoch", "epoch after which training stopped early (a pruned sweep trial)")
    PARENT_RUN = Name("mlflow.parentRunId", "MLflow's nesting tag: a sweep trial's parent is its sweep run")
    HEARTBEAT = Name(
        "heartbeat",
        "ms since the epoch of the runner's last heartbeat, stamped every "
        "heartbeat_seconds while it lives (experiments.heartbeat.Heartbeat)",
    )
    HEARTBEAT_SECONDS = Name(
        "heartbeat_seconds",
        "seconds between heartbeats; a RUNNING run silent for 3 of them is shown LOST and `reap` ends it FAILED",
    )
    RUN_KIND = Name("run_kind", "'sweep' on a sweep's parent run; absent on training runs")
    SWEEP = Name("sweep", "name of the sweep the run belongs to (trials and their parent)")
    TRIAL = Name("sweep_trial", "Optuna trial number of a sweep trial")
    TRIAL_PARAMS = Name("sweep_trial_params", "JSON of the values the sweep chose for this trial")
    TRIAL_STATE = Name("sweep_trial_state", "running, complete, pruned or failed, as Optuna has the trial")


class Value:
    """Tag values that readers compare against."""

    RUN_KIND_SWEEP = "sweep"  # Tag.RUN_KIND of a sweep's parent run
    TRIAL_RUNNING, TRIAL_COMPLETE, TRIAL_PRUNED, TRIAL_FAILED = "running", "complete", "pruned", "failed"
    TRIAL_STATES = (TRIAL_RUNNING, TRIAL_COMPLETE, TRIAL_PRUNED, TRIAL_FAILED)  # Tag.TRIAL_STATE
    TESTED_BEST_VAL, TESTED_AS_HANDED = "best-val", "as handed to finish()"  # Tag.TESTED_WEIGHTS


class Artifact:
    """Artifact paths, relative to the run's artifact root."""

    LAYERS = Name("layers.csv", "per-layer table: layer, type, output_shape, activations, params")
    CONFUSION_TEST = Name("confusion_test.json", "{class_names, matrix}: rows true, columns predicted, test set")
    CONFUSION_VAL_EPOCHS = Name(
        "confusion_val_epochs.json", "{class_names, epochs, matrices}: validation matrix of every epoch so far"
    )
    VAL_IMAGES = Name(
        "val_images.json",
        "{source, index, labels}: the validation set's images: the file they come "
        "from (train or test), their indexes in it, their labels",
    )
    VAL_PREDICTIONS_EPOCHS = Name(
        "val_predictions_epochs.json",
        "{class_names, epochs, predicted}: every validation image's predicted class after "
        "each epoch, in val_images.json's order",
    )
    PER_CLASS_EPOCHS = Name(
        "per_class_epochs.json",
        "{class_names, epochs, train_error, val_error, train_support, val_support}: each class's "
        "error (1 - recall) and image count on the train-eval subset and the validation set, "
        "one list of classes per epoch",
    )
    RELIABILITY_VAL_EPOCHS = Name(
        "reliability_val_epochs.json",
        "{class_names, epochs, edges, counts, accuracy, confidence}: the validation "
        "reliability table of "
        "every epoch (core.calibration), one list of bins per epoch",
    )
    PER_EPOCH = (CONFUSION_VAL_EPOCHS, VAL_PREDICTIONS_EPOCHS, PER_CLASS_EPOCHS, RELIABILITY_VAL_EPOCHS)
    PER_CLASS = Name("per_class_accuracy.csv", "class, name, support, correct, accuracy on the test set")
    MISCLASSIFIED = Name("misclassified_test.csv", "index (in the dataset's test file), true, predicted, confidence")
    TEST_PREDICTIONS = Name(
        "test_predictions.npz",
        "every test image's `index` (in the dataset's test file), `label`, `predicted` class and "
        "`confidence` (float16), best-val weights: two runs on the same test images are "
        "compared image by image (McNemar, flipped examples)",
    )
    RUN_IMAGES = Name(
        "images.npz",
        "runs on images no other machine can find by name (your own --dataset or --data-dir, your own loop): "
        "`test`, the test file's images by index, and `val`, the validation images in val_images.json's order; "
        "uint8 (N, H, W) or (N, H, W, 3); not kept over 64 MB",
    )
    MISCLASSIFIED_IMAGES = Name(
        "misclassified_test_images.npz",
        "older runs on your own --data-dir: `images`, uint8 (N, 28, 28), the images of "
        "misclassified_test.csv's rows in its order (images.npz replaced it)",
    )
    MODEL_SOURCE = Name("model_source.py", "your own --model FILE.py:factory: a copy of the file")
    MODEL = Name(
        "model",
        "PyTorch model (mlflow.pytorch.log_model), best-val weights; MLflow 3 stores it as a "
        "logged model linked to the run (run.outputs), beside the run's artifacts",
    )
    NUMPY_WEIGHTS = Name("weights.npz", "numpy model weights, best-val")
    SWEEP_SPEC = Name("sweep.json", "sweep parent: the sweep's spec, its search space as Optuna distributions")
    CONFIG = Name("config.json", "the run's full configuration (experiments.run.RunConfig), for --resume")
    CHECKPOINT = Name(
        "checkpoint.pt",
        "last end-of-epoch checkpoint of a killed or failed run (torch.save of "
        "tensors and numbers, loads with weights_only=True), for --resume",
    )


def schema_markdown() -> str:
    """The whole schema as a Markdown table, for the docs and the CLI."""
    rows = ["| kind | name | meaning |", "|---|---|---|"]
    for kind, group in (("metric", Metric), ("param", Param), ("tag", Tag), ("artifact", Artifact)):
        for value in vars(group).values():
            if isinstance(value, Name):
                rows.append(f"| {kind} | `{value}` | {value.doc} |")
    return "\n".join(rows)
