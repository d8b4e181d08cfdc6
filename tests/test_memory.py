"""Keeping freed memory (experiments.memory): the same numbers, without a page fault per training step.

Training runs each side in its own process, because the setting is process-wide and one-way.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.store import REPO_ROOT
from experiments import memory
from experiments.memory import glibc, keep_freed_memory

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")

# Twelve bf16 steps of conv-conv on real MNIST; prints each step's loss (exact, as a repr) and the minor page
# faults of the last eight (the first few allocate what later steps reuse, Adam's state among it). Measured over
# steps 5-12: 1,152 to 9,216 faults with freed memory kept (eight runs), 131,000 to 210,000 without (four runs).
STEPS = """
import json, resource, sys
import torch
from experiments.adapters.torch_adapter import TorchLearner, resolve_precision
from experiments.data import fetched_split, scale_images
from experiments.memory import keep_freed_memory
from experiments.models import conv_conv_sequential

kept = keep_freed_memory(sys.argv[1] == "keep")
torch.manual_seed(0)
learner = TorchLearner(conv_conv_sequential(), "adam", 1e-3, "cpu", resolve_precision("auto", "cpu"),
                       channels_last=True)
train = fetched_split("mnist", "train").first(3072)
inputs, labels = learner.to_inputs(scale_images(train.images, "unit")), learner.to_labels(train.labels)
step = lambda i: repr(learner.train_step(inputs[i:i + 256], labels[i:i + 256])[0])
losses = [step(i) for i in range(0, 1024, 256)]
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
losses += [step(i) for i in range(1024, 3072, 256)]
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
print(json.dumps({"kept": kept, "losses": losses, "faults": faults}))
"""


def train_steps(freed: str) -> dict:
    """STEPS in a new process ("keep" or not), with no allocator choice from the environment (LD_PRELOAD etc.)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("LD_PRELOAD", "GLIBC_TUNABLES") and not name.startswith("MALLOC_")
    }
    done = subprocess.run(
        [sys.executable, "-c", STEPS, freed], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.skipif(glibc() is None, reason="the C library is not glibc")
@pytest.mark.skipif(
    THP.exists() and "[always]" in THP.read_text(),
    reason="transparent huge pages always on: one fault maps 2 MB, so faults count something else",
)
def test_kept_memory_gives_the_same_losses_without_faulting_on_every_step(mnist_dir):
    kept, handed_back = train_steps("keep"), train_steps("hand back")
    assert kept["kept"] and not handed_back["kept"]
    assert kept["losses"] == handed_back["losses"] and len(set(kept["losses"])) == 12
    assert handed_back["faults"] > 40_000  # tens of megabytes of fresh pages in each step
    assert kept["faults"] < handed_back["faults"] / 5


class FakeGlibc:
    """glibc's mallopt, answering 1 (applied) or 0 (refused), remembering what it was asked."""

    def __init__(self, answer: int):
        self.answer, self.calls = answer, []

    def mallopt(self, option: int, value: int) -> int:
        self.calls.append((option, value))
        return self.answer


@pytest.fixture
def fresh_process(monkeypatch):
    """experiments.memory as in a process where no run has set the allocator yet."""
    monkeypatch.setattr(memory, "_kept", False)


def test_kept_memory_is_one_way_and_reports_what_the_process_does(fresh_process, monkeypatch):
    libc = FakeGlibc(answer=1)
    monkeypatch.setattr(memory, "glibc", lambda: libc)
    assert keep_freed_memory(False) is False and libc.calls == []
    assert keep_freed_memory(True) is True
    assert libc.calls == [(memory.M_MMAP_THRESHOLD, 32 << 20), (memory.M_TRIM_THRESHOLD, 2**31 - 1)]
    assert keep_freed_memory(False) is True  # a later run that does not want it still has it
    assert len(libc.calls) == 2


def test_nothing_is_kept_without_glibc_or_when_mallopt_refuses(fresh_process, monkeypatch):
    monkeypatch.setattr(memory, "glibc", lambda: None)
    assert keep_freed_memory(True) is False
    monkeypatch.setattr(memory, "glibc", lambda: FakeGlibc(answer=0))
    assert keep_freed_memory(True) is False
