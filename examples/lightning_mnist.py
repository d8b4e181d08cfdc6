"""A LightningModule on MNIST, tracked by this project's callback: the lines marked `# tracking` are all it adds.

PYTHONPATH=. .venv/bin/python examples/lightning_mnist.py --epochs 3
"""

import argparse

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from experiments.data import fetched_split
from experiments.lightning_callback import TrackingCallback  # tracking


class LitConvNet(L.LightningModule):
    def __init__(self, lr: float = 1e-3, channels: int = 16):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(
            nn.Conv2d(1, channels, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(channels, 2 * channels, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(2 * channels * 5 * 5, 10),
        )

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def mnist(split: str, first: int, count: int) -> TensorDataset:
    subset = fetched_split("mnist", split)
    images = torch.from_numpy(subset.images[first : first + count]).float()[:, None] / 255
    return TensorDataset(images, torch.from_numpy(subset.labels[first : first + count]).long())


def main():
    parser = argparse.ArgumentParser(description="LightningModule on MNIST")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=50_000)
    parser.add_argument("--val-size", type=int, default=10_000)
    parser.add_argument("--test-size", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    L.seed_everything(args.seed)
    train = DataLoader(mnist("train", 0, args.train_size), batch_size=64, shuffle=True)
    val = DataLoader(mnist("train", 50_000, args.val_size), batch_size=500)
    test = DataLoader(mnist("test", 0, args.test_size), batch_size=500)
    tracking = TrackingCallback(class_names=list("0123456789"), dataset="mnist", test=test)  # tracking
    trainer = L.Trainer(max_epochs=args.epochs, logger=False, enable_checkpointing=False, callbacks=[tracking])  # tracking
    trainer.fit(LitConvNet(), train, val)


if __name__ == "__main__":
    main()
