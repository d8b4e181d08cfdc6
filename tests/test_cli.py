"""The command line: listing, bad arguments (exit 2, nothing logged), and a real run end to end."""
import subprocess
import sys

from experiments.tracking import REPO_ROOT


def cli(*args, env_store=None):
    return subprocess.run([sys.executable, "-m", "experiments", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600)


def test_models_lists_every_model_with_parameter_counts():
    out = cli("models").stdout
    for name, count in [("conv-conv", "1,199,882"), ("tiny", "13,602"), ("lenet5", "61,706"),
                        ("softmax-regression", "7,850")]:
        assert name in out and count in out


def test_train_command_logs_a_run_and_prints_a_summary(store):
    result = cli("train", "--model", "softmax-regression", "--epochs", "1", "--train-size", "2000",
                 "--test-size", "500", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "test acc" in result.stdout
    runs = [r for e in store.search_experiments() for r in store.search_runs([e.experiment_id])]
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
