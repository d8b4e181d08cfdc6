"""Track a PyTorch Lightning training with this project's schema: one callback.

    from experiments.lightning_callback import TrackingCallback
    tracking = TrackingCallback(class_names=names, dataset="mnist", test=test_loader)
    trainer = L.Trainer(max_epochs=5, callbacks=[tracking])

After each training epoch (and its validation) the callback evaluates the module on at most train_eval_size images
of the trainer's train loader and on its validation loader, and logs the epoch through experiments.track; when
fit ends it evaluates the test loader (given, or the datamodule's) and finishes the run. The module's hparams and
max_epochs are logged as the config, with `config` over them.
"""

import lightning.pytorch as L

from core.settings import ConfigError
from experiments import track


class TrackingCallback(L.Callback):
    def __init__(self, config: dict | None = None, *, class_names, dataset: str = "", test=None, **start_options):
        self.config, self.class_names, self.dataset, self.test = dict(config or {}), class_names, dataset, test
        self.start_options = start_options  # experiment, run_name, tags: as track.start takes them
        self.run: track.Run | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.test is None and not hasattr(trainer.datamodule, "test_dataloader"):
            raise ConfigError(
                "TrackingCallback(test=...): give the test loader (or fit with a datamodule that has one)"
            )
        config = {**dict(pl_module.hparams), "epochs": trainer.max_epochs, **self.config}
        self.run = track.start(
            config, model=pl_module, dataset=self.dataset, class_names=self.class_names, **self.start_options
        )

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Lightning has run this epoch's validation loop by now."""
        val = trainer.val_dataloaders
        if val is None:
            raise ConfigError("TrackingCallback: the trainer has no validation loader; pass val_dataloaders to fit")
        val = val[0] if isinstance(val, list | tuple) else val
        self.run.log_epoch(pl_module, train=trainer.train_dataloader, val=val, epoch=trainer.current_epoch + 1)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.run.logger.final_status is None:
            test = self.test if self.test is not None else trainer.datamodule.test_dataloader()
            self.run.finish(pl_module, test=test)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self.run is not None:
            self.run.end_after(exception)
