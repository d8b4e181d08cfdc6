"""The command line: listing, bad arguments (exit 2, nothing logged), and a real run end to end."""
from tests.helpers import all_runs, cli


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
    runs = all_runs(store)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"


def test_a_bad_argument_exits_2_with_one_line_and_no_run(store):
    result = cli("train", "--model", "tiny", "--epochs", "0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith("--epochs: 0 is not allowed; expected an integer > 0")
    assert all_runs(store) == []
