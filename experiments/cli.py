"""Command line: `python -m experiments {models,schema,has-runs,data,train,suite,sweep,compare,advise,reap,server}`."""

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from core import advice
from core.advice import AdviceError, propose
from core.comparison import ComparisonError, read_side, report, which_is_better
from core.datasets import DATASETS, DataError
from core.diagnosis import ADVICE, DIVERGED
from core.launches import Launch, LaunchBusy, holding
from core.liveness import now_ms
from core.schema import Metric, schema_markdown
from core.settings import REQUIRED, SETTINGS, ConfigError, Setting
from core.store import StoreError, get_client, shown_uri, store_has_runs, tracking_uri
from experiments import interrupts
from experiments.adapters import adapter_for
from experiments.advise import (
    advice_record,
    followed,
    missing_runs,
    planned_runs,
    spec_text,
    train_follow_ups,
    trained_before,
    verdict_lines,
)
from experiments.config import RunConfig
from experiments.data import ensure_dataset
from experiments.heartbeat import reap
from experiments.models import MODELS, REGISTRY_DATA
from experiments.ray_engine import Stopped, ray_runs, ray_sweep
from experiments.run import RunResult, execute, resume
from experiments.specs import SUITE_METHODS, Spec, spec_names, suite_configs
from experiments.spool import StoreAway
from experiments.sweeps import OBJECTIVE, SweepError, run_worker
from experiments.track import RunInterrupted
from experiments.tracking_server import (
    ADMIN_USER,
    SERVER_WORKERS,
    Auth,
    admin_password,
    start_mlflow_server,
    start_postgres,
)
from experiments.train import Diverged


def list_models() -> None:
    """Print the registry: name, parameter count, styles, source and each recipe's overrides of the defaults."""
    for name, spec in MODELS.items():
        adapter = adapter_for(spec.frameworks[0])
        config = RunConfig.from_recipe(name)
        model = adapter.build(spec, config, "cpu")[0]
        params = adapter.size_figures(model, adapter.layer_table(model, REGISTRY_DATA[1]))[Metric.PARAMS_TOTAL]
        overrides = ", ".join(f"{k}={v}" for k, v in spec.recipe.items()) or "the defaults (train --help)"
        written = "; ".join(f"{framework}: {', '.join(spec.styles(framework))}" for framework in spec.frameworks)
        print(f"{name:<20} {params:>10,} params  styles: {written}")
        print(f"{'':<20} {spec.description}")
        print(f"{'':<20} recipe: {overrides}")
        print(f"{'':<20} published: {spec.published_test_acc}")
        print(f"{'':<20} source: {spec.source}\n")


def print_summary(config: RunConfig, result: RunResult) -> None:
    final = result.metrics
    print(f"\n{config.name()}  (run {result.run_id})")
    print(f"  test acc    {final[Metric.TEST_ACC]:.4f}   test loss {final[Metric.TEST_LOSS]:.4f}")
    print(f"  best val    {final[Metric.BEST_VAL_ACC]:.4f}   at epoch {final[Metric.BEST_EPOCH]}")
    print(f"  params      {final[Metric.PARAMS_TOTAL]:,}   time {final[Metric.TOTAL_SECONDS]:.1f} s")


def default_words(setting: Setting) -> str:
    """The default of a setting as --help shows it, with the recipes that override it."""
    if setting.default is REQUIRED:
        return "required unless --resume"
    shown = "" if setting.default is None else f"default: {setting.default}"
    overrides = [f"{name} {spec.recipe[setting.name]}" for name, spec in MODELS.items() if setting.name in spec.recipe]
    recipes = f"recipes: {', '.join(overrides)}" if overrides else ""
    return "; ".join(part for part in (shown, recipes) if part)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per run setting (core.settings); each left unset takes the model's recipe value."""
    parser.add_argument("--resume", metavar="RUN_ID", help="continue a KILLED or FAILED run from its last checkpoint")
    for setting in SETTINGS.values():
        if not setting.on_command_line:
            continue
        words = default_words(setting)
        options = dict(default=None, help=setting.help + (f" ({words})" if words else ""))
        if setting.type is bool:
            options["action"] = argparse.BooleanOptionalAction
        else:
            options["type"] = setting.type
            options["choices"] = setting.choices or None
        if setting.frameworks:
            options["help"] += f" [{' and '.join(setting.frameworks)} models]"
        parser.add_argument(setting.flag, **options)


def add_ray_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """--ray [ADDRESS] and --gpus-per-run, the same for every command that can run on a Ray cluster."""
    parser.add_argument(
        "--ray",
        nargs="?",
        const="auto",
        metavar="ADDRESS",
        help=f"run {what} as tasks on a Ray cluster (its address, default: the one this machine is part of), as "
        "many at once as it has room for; Ray starts again a task whose process or node dies (docs/scaling.md)",
    )
    parser.add_argument(
        "--gpus-per-run",
        type=float,
        help="with --ray: GPUs each task asks for (default: 1 where the cluster has GPUs, else 0)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiments", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("models", help="list the model registry with each recipe's settings")
    commands.add_parser("schema", help="print the MLflow run schema as Markdown")
    commands.add_parser("has-runs", help="exit 0 if the tracking store holds any run, else 1")
    data = commands.add_parser("data", help="fetch and verify datasets into the cache (once)")
    data.add_argument("names", nargs="*", help=f"any of {', '.join(DATASETS)} (default: all)")
    train = commands.add_parser("train", help="train one model and log it to MLflow")
    add_run_arguments(train)
    add_ray_arguments(train, "the runs (one per seed with --repeats)")
    suite = commands.add_parser(
        "suite", help="run every run of a list or grid spec, one after another (or on a Ray cluster with --ray)"
    )
    suite.add_argument("name", help=f"a spec file, or one of specs/: {', '.join(spec_names(SUITE_METHODS))}")
    suite.add_argument("--list", action="store_true", help="only print the runs the suite would make")
    add_ray_arguments(suite, "the suite's runs")
    sweep = commands.add_parser(
        "sweep", help="run trials of a sweep until it is done; start as many workers as you like"
    )
    sweep.add_argument("spec", help="a TOML spec file, or the name of one in specs/")
    sweep.add_argument(
        "--storage",
        help="Optuna storage URL shared by the workers, e.g. "
        "postgresql://cnn@HOST:5432/optuna (default: optuna.db beside an SQLite "
        "tracking store's database, else in mlruns/)",
    )
    sweep.add_argument(
        "--heartbeat",
        type=int,
        default=30,
        metavar="SECONDS",
        help="a trial whose worker is silent for 2 heartbeats + 10 s is failed and queued again",
    )
    add_ray_arguments(sweep, "the sweep's workers")
    sweep.add_argument("--workers", type=int, default=2, help="with --ray: how many workers (default: 2)")
    compare = commands.add_parser(
        "compare",
        help="which is better: two runs (exact McNemar test on the same test "
        "images) or two config groups over seeds (Welch's t test)",
    )
    compare.add_argument("a", metavar="A", help="a run id, or group:HASH (the config_group tag)")
    compare.add_argument("b", metavar="B", help="a run id, or group:HASH")
    advise = commands.add_parser(
        "advise",
        help="follow-up experiments for a run's or config group's diagnosis (core.advice), printed as a suite spec; "
        "--run trains them over seeds and compares each with the original configuration",
    )
    advise.add_argument("target", metavar="RUN_OR_GROUP", help="a run id, or group:HASH (the config_group tag)")
    advise.add_argument(
        "--run", action="store_true", help="train the follow-ups, tagged advice_of and advice_rule (default: False)"
    )
    advise.add_argument(
        "--seeds",
        type=int,
        default=advice.SEEDS,
        help=f"seeds of each follow-up and of the original configuration (default: {advice.SEEDS})",
    )
    advise.add_argument(
        "--json",
        action="store_true",
        help="print the advice as JSON (proposals, spec, runs a --run would train), as the dashboard reads it",
    )
    advise.add_argument(
        "--max-runs",
        type=int,
        default=advice.MAX_RUNS,
        help=f"refuse a --run that would train more runs than this (default: {advice.MAX_RUNS})",
    )
    commands.add_parser(
        "reap",
        help="end every lost run (RUNNING, its heartbeat silent for 3 intervals) FAILED, "
        "with the reason; `train --resume RUN_ID` continues it",
    )
    server = commands.add_parser("server", help="start PostgreSQL and an MLflow tracking server (docs/scaling.md)")
    server.add_argument("--dir", default=".server", help="PostgreSQL data and MLflow artifacts (default: .server)")
    server.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback only)")
    server.add_argument("--port", type=int, default=5000, help="MLflow server port")
    server.add_argument(
        "--pg-port",
        type=int,
        default=5433,
        help="PostgreSQL port (default 5433: 5432 is left to a system-wide PostgreSQL)",
    )
    server.add_argument("--workers", type=int, default=SERVER_WORKERS, help="MLflow server worker processes")
    server.add_argument(
        "--auth",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="MLflow's basic-auth app: users and per-experiment permissions (default: on whenever "
        "--host is not loopback); admin's password from CNN_ADMIN_PASSWORD or generated",
    )
    return parser


def refuse(err: Exception) -> None:
    """Input the command cannot use (a setting, a spec, data, the store): one line naming it, exit 2. Unlike
    argparse's own errors, it is not a mistake in how the command was typed, so no usage block comes with it."""
    print(f"python -m experiments: error: {err}", file=sys.stderr)
    raise SystemExit(2)


def fetch_command(names: list[str]) -> int:
    status = 0
    for name in names:
        try:
            print(f"{name}: verified in {ensure_dataset(name)}")
        except DataError as err:
            print(f"{name}: {err}", file=sys.stderr)
            status = 1
    return status


def train_command(args: argparse.Namespace) -> int:
    try:
        if args.resume:
            if args.ray:
                raise ConfigError("--ray: not with --resume (a run resumes on the machine that resumes it)")
            config, result = resume(args.resume, progress=args.progress is not False)
        else:
            if not args.model:
                raise ConfigError("--model: required; expected one of " + ", ".join(MODELS))
            overrides = {k: v for k, v in vars(args).items() if k in SETTINGS and k != "model"}
            replicas = RunConfig.from_recipe(args.model, **overrides).replicas()
            if args.ray:
                return 1 if reported(replicas, on_ray(replicas, args)) else 0
            for config in replicas:
                result = execute(config)
                print_summary(config, result)
            if len(replicas) > 1:
                print(
                    f"\n{len(replicas)} seeds in config group {result.group}: "
                    f"compare it with `python -m experiments compare group:{result.group} group:OTHER`"
                )
            return 0
    except (ConfigError, DataError) as err:
        refuse(err)
    except Diverged as err:
        print(f"run {err.run_id} FAILED, {err}: {ADVICE[DIVERGED]}", file=sys.stderr)
        return 1
    print_summary(config, result)
    return 0


def suite_command(args: argparse.Namespace) -> int:
    try:
        configs = suite_configs(Spec.load(args.name))
        if args.list:
            for i, config in enumerate(configs, start=1):
                print(f"[{i}/{len(configs)}] {config.run_name}")
            return 0
        trained = on_ray(configs, args) if args.ray else one_after_another(configs)
        return 1 if reported(configs, trained) else 0
    except ConfigError as err:
        refuse(err)


def on_ray(configs: list[RunConfig], args: argparse.Namespace) -> Iterator[tuple[int, RunResult | Exception]]:
    """The configurations trained on the Ray cluster of --ray (checked first), said where."""
    trained = ray_runs(configs, args.ray, args.gpus_per_run)
    print(f"{len(configs)} runs on the Ray cluster at {args.ray}, logged to {shown_uri(tracking_uri())}", flush=True)
    return trained


def one_after_another(configs: list[RunConfig]) -> Iterator[tuple[int, RunResult | Exception]]:
    """Each configuration trained on this machine in turn: its position and result, or the error it failed with
    (the run is logged FAILED with the reason, and the next one starts)."""
    for i, config in enumerate(configs):
        print(f"[{i + 1}/{len(configs)}] {config.run_name}", flush=True)
        try:
            yield i, execute(config)
        except Exception as err:  # noqa: BLE001 - whatever one run failed with, the others still train
            yield i, err


def reported(configs: list[RunConfig], trained: Iterator[tuple[int, object]]) -> list[str]:
    """Print each run's summary, or why it failed, as it ends; the names of those that failed, also printed.
    Ctrl-C while a summary prints is handed to what trains the runs, as if it had come while it waited: on Ray it
    cancels the tasks still running and says so (Stopped)."""
    failures = []
    try:
        for i, outcome in trained:
            if isinstance(outcome, BaseException):
                print(f"run {configs[i].run_name} failed: {outcome}", file=sys.stderr)
                failures.append(configs[i].run_name)
            else:
                print_summary(configs[i], outcome)
    except KeyboardInterrupt as stop:
        trained.throw(stop)
        raise
    if failures:
        print(f"{len(failures)} of {len(configs)} runs failed: {', '.join(failures)}", file=sys.stderr)
    return failures


def sweep_command(args: argparse.Namespace) -> int:
    try:
        spec = Spec.load(args.spec)
        if args.heartbeat < 1:
            raise SweepError("--heartbeat: expected seconds >= 1")
        if args.workers < 1 or (args.gpus_per_run is not None and args.gpus_per_run < 0):
            raise SweepError("--workers: expected an integer >= 1; --gpus-per-run: expected a number >= 0")
        if args.ray:
            summary = ray_sweep(args.spec, args.storage, args.ray, args.workers, args.gpus_per_run, args.heartbeat)
            print(f"sweep {spec.name}: {args.workers} workers on the Ray cluster at {args.ray} are done")
        else:
            summary = run_worker(spec, args.storage, heartbeat_seconds=args.heartbeat)
    except (ConfigError, DataError) as err:
        refuse(err)
    print(
        f"sweep {spec.name} done (parent run {summary['parent_run_id']}): "
        f"{summary[Metric.SWEEP_COMPLETE]} complete, {summary[Metric.SWEEP_PRUNED]} pruned, "
        f"{summary[Metric.SWEEP_FAILED]} failed; best {OBJECTIVE} "
        f"{summary.get(Metric.SWEEP_BEST, float('nan')):.4f}"
    )
    return 0


def compare_command(args: argparse.Namespace) -> int:
    """Print the "Which is better?" panel for two runs or groups."""
    client = get_client()
    try:
        a, b = read_side(client, args.a), read_side(client, args.b)
    except ComparisonError as err:
        refuse(err)
    print(report(a, b, which_is_better(a, b)))
    return 0


def advise_command(args: argparse.Namespace) -> int:
    """Print the follow-ups as a spec (or, with --json, as the dashboard reads them); with --run, train what is
    missing, one training of a target's advice at a time, and compare each with the original."""
    client = get_client()
    try:
        if args.seeds < 1 or args.max_runs < 1:
            raise AdviceError("--seeds and --max-runs: expected integers >= 1")
        follow = followed(client, args.target)
        proposals = propose(follow.situation)
        plan = planned_runs(follow, proposals, args.seeds) if proposals else []
        if args.json:
            print(json.dumps(advice_record(follow, proposals, plan, trained_before(client, follow), args.seeds)))
            return 0
        if not proposals:
            print(f"# {follow.label}: {follow.situation.diagnosis}; no rule of core.advice applies, nothing to advise")
            return 0
        print(spec_text(follow, proposals, args.seeds))
        if not args.run:
            return 0
        with holding(Launch(tracking_uri(), follow.target)):
            train_advice(client, follow, plan, trained_before(client, follow), args)
    except (AdviceError, ConfigError, DataError, ComparisonError, LaunchBusy) as err:
        refuse(err)
    return 0


def train_advice(client, follow, plan, trained, args: argparse.Namespace) -> None:
    """Train the advice's missing runs within --max-runs, then print each follow-up's verdict."""
    missing = missing_runs(plan, trained)
    if missing > args.max_runs:
        raise AdviceError(
            f"--max-runs: this advice trains {missing} runs (--seeds {args.seeds}), more than {args.max_runs}; "
            "raise --max-runs or lower --seeds"
        )
    print(f"# training {missing} of the advice's {len(plan)} runs (the others were trained before)", flush=True)
    train_follow_ups(
        follow,
        plan,
        trained,
        lambda item, result: print_summary(item.config, result),
        lambda item, err: print(f"run {err.run_id} ({item.variant.rule}) FAILED, {err}", file=sys.stderr),
    )
    print("\n".join(verdict_lines(client, follow)))


def reap_command() -> int:
    """Print one line per reaped run, with the command that continues it."""
    reaped = reap(get_client(), now_ms())
    for run_id, reason in reaped:
        print(f"run {run_id} FAILED, {reason}; continue it with `python -m experiments train --resume {run_id}`")
    print(f"{len(reaped)} lost run{'s' * (len(reaped) != 1)} reaped")
    return 0


def server_command(args: argparse.Namespace) -> int:
    """Run PostgreSQL and the MLflow server until Ctrl-C; both stop together."""
    root = Path(args.dir).resolve()
    loopback = args.host in ("127.0.0.1", "localhost", "::1")
    postgres = start_postgres(root / "postgres", args.pg_port, args.host)
    try:
        auth, generated = None, False
        if args.auth if args.auth is not None else not loopback:
            password, generated = admin_password()
            auth = Auth(postgres.url("mlflow_auth"), password)
        server = start_mlflow_server(
            postgres.url("mlflow"),
            root / "artifacts",
            args.port,
            args.host,
            workers=args.workers,
            log_path=root / "mlflow-server.log",
            auth=auth,
        )
        try:
            print(
                f"MLflow server on http://{args.host}:{args.port} (artifacts in {root / 'artifacts'}, "
                f"log {root / 'mlflow-server.log'})\n"
                f"  export MLFLOW_TRACKING_URI=http://{args.host}:{args.port}\n"
                + (
                    "  export MLFLOW_TRACKING_USERNAME=... MLFLOW_TRACKING_PASSWORD=...   (users: docs/scaling.md)\n"
                    if auth
                    else "  (no authentication: anyone who reaches the port reads and writes every run)\n"
                )
                + (
                    f"  the {ADMIN_USER} user's password, shown once (it applies to a new auth database only): "
                    f"{auth.admin_password}\n"
                    if generated
                    else ""
                )
                + f"  python -m experiments sweep SPEC --storage {postgres.url('optuna')}\n"
                "Ctrl-C stops both.",
                flush=True,
            )
            server.wait()
        except KeyboardInterrupt:
            print("stopping the MLflow server and PostgreSQL", file=sys.stderr)
        finally:
            server.terminate()
            server.wait()
    finally:
        postgres.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    interrupts.install()  # SIGTERM behaves as Ctrl-C: the run in progress ends KILLED with its checkpoint
    try:
        return dispatch(argv)
    except StoreAway as away:
        print(str(away), file=sys.stderr)
        return 75  # EX_TEMPFAIL: try again later
    except Stopped:
        print(
            "interrupted: the runs in progress on the Ray cluster are marked KILLED and keep their last checkpoints; "
            "continue each with `python -m experiments train --resume RUN_ID`",
            file=sys.stderr,
        )
        return 130
    except RunInterrupted as stopped:
        if stopped.status == "KILLED":
            print(
                f"interrupted: run {stopped.run_id} is marked KILLED and keeps its last checkpoint; continue it "
                f"with `python -m experiments train --resume {stopped.run_id}`",
                file=sys.stderr,
            )
        else:
            print(f"interrupted: run {stopped.run_id} had just ended {stopped.status}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted: no run was in progress", file=sys.stderr)
        return 130


STORE_COMMANDS = ("has-runs", "train", "suite", "sweep", "reap", "compare", "advise")


def dispatch(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in STORE_COMMANDS and not getattr(args, "list", False):
        try:
            get_client()  # before any work: a store that cannot be used is one line and exit 2, within seconds
        except StoreError as err:
            refuse(err)
    if args.command == "models":
        list_models()
        return 0
    if args.command == "schema":
        print(schema_markdown())
        return 0
    if args.command == "has-runs":
        return 0 if store_has_runs() else 1
    if args.command == "data":
        return fetch_command(args.names or list(DATASETS))
    if args.command == "train":
        return train_command(args)
    if args.command == "sweep":
        return sweep_command(args)
    if args.command == "server":
        return server_command(args)
    if args.command == "reap":
        return reap_command()
    if args.command == "compare":
        return compare_command(args)
    if args.command == "advise":
        return advise_command(args)
    return suite_command(args)
