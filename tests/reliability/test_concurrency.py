"""Four runner processes training at once into one fresh embedded store lose and mix nothing."""

import math

from mlflow.tracking import MlflowClient

from core.schema import Metric, Param
from experiments.run_logger import experiment_id
from tests.helpers import cli_process

RUNNERS, EPOCHS, TRAIN, BATCH, LOG_EVERY = 4, 3, 1600, 32, 10


def test_four_concurrent_runners_log_every_point_into_their_own_run(store):
    processes = [
        cli_process(
            "train",
            "--model",
            "softmax-regression",
            "--epochs",
            str(EPOCHS),
            "--batch-size",
            str(BATCH),
            "--train-size",
            str(TRAIN),
            "--test-size",
            "300",
            "--val-split",
            "0.5",
            "--log-every",
            str(LOG_EVERY),
            "--seed",
            str(seed),
            "--run-name",
            f"runner-{seed}",
            "--no-progress",
        )
        for seed in range(RUNNERS)
    ]
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
    runs = store.search_runs([store.get_experiment_by_name("cnn-experiments").experiment_id])
    assert sorted(r.info.run_name for r in runs) == [f"runner-{seed}" for seed in range(RUNNERS)]
    steps_per_epoch = math.ceil(TRAIN // 2 / BATCH)
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.params[Param.SEED] == run.info.run_name.split("-")[1]  # no params mixed between runs
        for name in Metric.PER_EPOCH:
            assert [m.step for m in store.get_metric_history(run.info.run_id, name)] == [1, 2, 3], name
        step_points = store.get_metric_history(run.info.run_id, Metric.TRAIN_LOSS_STEP)
        assert len(step_points) == EPOCHS * math.ceil(steps_per_epoch / LOG_EVERY)  # an epoch's tail is a point
        assert set(Metric.FINAL) <= set(run.data.metrics)
    test_accs = {run.data.metrics[Metric.TEST_ACC] for run in runs}
    assert len(test_accs) > 1  # four different seeds really trained four different runs


class LosesTheRace(MlflowClient):
    """A client that looks for an experiment just before another runner creates it (as two Ray tasks on a new
    tracking server did), so its own create then finds the name taken."""

    def get_experiment_by_name(self, name):
        if not getattr(self, "looked", False):
            self.looked = True
            MlflowClient(self.tracking_uri).create_experiment(name)
            return None
        return super().get_experiment_by_name(name)


def test_a_runner_that_loses_the_race_to_create_the_experiment_logs_into_the_one_the_other_created(store):
    client = LosesTheRace(store.tracking_uri)
    assert experiment_id(client, "raced") == store.get_experiment_by_name("raced").experiment_id
