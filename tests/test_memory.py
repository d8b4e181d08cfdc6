"""Keeping freed memory (experiments.memory): the same numbers, without a page fault per training step.

Each side runs in its own process, because the setting is process-wide and one-way.
"""
import json
import subprocess
import sys

import pytest

from experiments.memory import glibc
from experiments.tracking import REPO_ROOT

# Twelve bf16 steps of conv-conv on real MNIST; prints each step's loss (exact, as a repr) and the minor page
# faults of the last eight (the first few allocate what later steps reuse, Adam's state among it). Measured over
# steps 5-12: 1,152 to 9,216 faults with freed memory kept (eight runs), 131,000 to 210,000 without (four runs).
STEPS = """
import json, resource, sys
import torch
from experiments.adapters.torch_adapter import TorchLearner, resolve_precision
from experiments.data import load_split, scale_images
from experiments.memory import keep_freed_memory
from experiments.models import conv_conv_sequential

kept = keep_freed_memory(sys.argv[1] == "keep")
torch.manual_seed(0)
learner = TorchLearner(conv_conv_sequential(), "adam", 1e-3, "cpu", resolve_precision("auto", "cpu"),
                       channels_last=True)
train = load_split("mnist", "train").first(3072)
inputs, labels = learner.to_inputs(scale_images(train.images, "unit")), learner.to_labels(train.labels)
step = lambda i: repr(learner.train_step(inputs[i:i + 256], labels[i:i + 256])[0])
losses = [step(i) for i in range(0, 1024, 256)]
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
losses += [step(i) for i in range(1024, 3072, 256)]
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
print(json.dumps({"kept": kept, "losses": losses, "faults": faults}))
"""


def train_steps(memory: str) -> dict:
    done = subprocess.run([sys.executable, "-c", STEPS, memory], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.skipif(glibc() is None, reason="the C library is not glibc")
def test_kept_memory_gives_the_same_losses_without_faulting_on_every_step():
    kept, handed_back = train_steps("keep"), train_steps("hand back")
    assert kept["kept"] and not handed_back["kept"]
    assert kept["losses"] == handed_back["losses"] and len(set(kept["losses"])) == 12
    assert handed_back["faults"] > 40_000  # tens of megabytes of fresh pages in each step
    assert kept["faults"] < handed_back["faults"] / 5
