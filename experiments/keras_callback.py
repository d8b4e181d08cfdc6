"""Track a Keras 3 model.fit with this project's schema: one callback (Keras runs here on its PyTorch backend).

    from experiments.keras_callback import TrackingCallback
    tracking = TrackingCallback(dataset="mnist", train=(x_train, y_train), val=(x_val, y_val), test=(x_test, y_test))
    model.fit(x_train, y_train, epochs=5, callbacks=[tracking])

After each epoch the callback evaluates the model on at most train_eval_size training images and on the
validation arrays and logs the epoch through experiments.track; when training ends it evaluates the test arrays
and finishes the run. Classes are named by their numbers (one per model output) unless class_names names them.
The model's outputs are read as probabilities (a softmax last layer, as the Keras tutorials write it). Keras has
no hook for an error inside model.fit: such a run ends FAILED when the program exits (track.start's exit hook).
model.fit's epochs are logged as the config, with `config` over them.
"""

from experiments import track
from experiments.adapters.keras_adapter import load_keras

keras = load_keras()


class TrackingCallback(keras.callbacks.Callback):
    def __init__(self, config: dict | None = None, *, train, val, test, class_names=None, dataset: str = "", **options):
        super().__init__()
        self.sets = {"train": train, "val": val, "test": test}
        self.config, self.dataset, self.class_names = dict(config or {}), dataset, class_names
        self.start_options = options  # experiment, run_name, tags: as track.start takes them
        self.run: track.Run | None = None

    def on_train_begin(self, logs=None) -> None:
        fit = {"epochs": self.params["epochs"]} if self.params.get("epochs") else {}
        names = self.class_names or [str(k) for k in range(self.model.outputs[0].shape[-1])]  # one per output
        self.run = track.start(
            {**fit, **self.config}, model=self.model, dataset=self.dataset, class_names=names, **self.start_options
        )

    def on_epoch_end(self, epoch, logs=None) -> None:
        self.run.log_epoch(self.model, train=self.sets["train"], val=self.sets["val"], epoch=epoch + 1)

    def on_train_end(self, logs=None) -> None:
        if self.run.logger.final_status is None:
            self.run.finish(self.model, test=self.sets["test"])
