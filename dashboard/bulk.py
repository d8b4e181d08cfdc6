"""Reading many runs at once: every run of a store as StoredRun records, and metric histories as long points.

MLflow's search_runs builds an ORM object per param, tag and metric: 0.77 s for 1,000 runs as the runner logs
them, where the five column queries below take 0.04 s (benchmarks/dashboard_read.py). So on MLflow's own SQL
store (SQLite, PostgreSQL, MySQL) this module asks the same tables, through MLflow's own SQLAlchemy models,
for plain columns. Any other store (a tracking server, a file store, a subclass of the SQL store such as the
workspace-aware one) is read through MLflow's public client, page by page, with the same results. A tracking
server is asked through its REST API directly: its runs in searches over spans of start time, several at once,
read from their JSON; its metric histories a hundred runs per request from the endpoint MLflow's own UI uses.
"""

import math
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import pandas as pd
from mlflow.entities import ViewType
from mlflow.protos.service_pb2 import ViewType as ViewTypeProto
from mlflow.store.tracking.dbmodels.models import (
    SqlDataset,
    SqlInput,
    SqlLatestMetric,
    SqlMetric,
    SqlParam,
    SqlRun,
    SqlTag,
)
from mlflow.store.tracking.rest_store import RestStore
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.tracking import MlflowClient
from mlflow.utils.rest_utils import http_request, verify_rest_response
from sqlalchemy import select

POINT_COLUMNS = ["run_id", "metric", "step", "value"]
IDS_PER_QUERY = 500  # run ids bound in one IN (...) clause, well under every database's limit


@dataclass(frozen=True)
class StoredRun:
    """One run as the dashboard reads it, whichever way it was read."""

    run_id: str
    experiment_id: str
    name: str
    status: str
    lifecycle_stage: str
    start_time: int | None  # ms since the epoch
    end_time: int | None
    params: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # the latest value of each metric
    tags: dict = field(default_factory=dict)
    inputs: tuple[str, ...] = ()  # names of the datasets MLflow recorded as the run's inputs

    @classmethod
    def of(cls, run) -> "StoredRun":
        """From an MLflow Run entity."""
        info, data = run.info, run.data
        inputs = getattr(getattr(run, "inputs", None), "dataset_inputs", None) or []
        return cls(
            info.run_id,
            info.experiment_id,
            info.run_name or "",
            info.status,
            info.lifecycle_stage,
            info.start_time,
            info.end_time,
            dict(data.params),
            dict(data.metrics),
            dict(data.tags),
            tuple(i.dataset.name for i in inputs),
        )

    @classmethod
    def of_json(cls, run: dict) -> "StoredRun":
        """From a run as a tracking server's REST API answers it, as MLflow's client would read it into a Run (an
        absent field is its protobuf default, an end time of 0 none), without the client's protobuf round trip."""
        info, data = run["info"], run.get("data", {})
        return cls(
            info.get("run_id") or info["run_uuid"],  # an old server names it run_uuid only
            info.get("experiment_id", ""),
            info.get("run_name", ""),
            info.get("status", "RUNNING"),
            info.get("lifecycle_stage", ""),
            int(info.get("start_time", 0)),
            int(info.get("end_time", 0)) or None,
            {param["key"]: param.get("value", "") for param in data.get("params", [])},
            {metric["key"]: float(metric.get("value", 0.0)) for metric in data.get("metrics", [])},
            {tag["key"]: tag.get("value", "") for tag in data.get("tags", [])},
            tuple(i["dataset"]["name"] for i in run.get("inputs", {}).get("dataset_inputs", [])),
        )


def store_of(client: MlflowClient):
    """The tracking store behind MLflow's client (MLflow keeps no public handle on it)."""
    return getattr(getattr(client, "_tracking_client", None), "store", None)


def sql_store(client: MlflowClient) -> SqlAlchemyStore | None:
    """The client's store when it is MLflow's plain SQL store, whose tables this module may read directly."""
    store = store_of(client)
    return store if type(store) is SqlAlchemyStore else None


def experiment_names(client: MlflowClient) -> dict[str, str]:
    """Every experiment's name by id, deleted ones included: all pages (MLflow answers 1,000 at most per page)."""
    names, token = {}, None
    while True:
        page = client.search_experiments(view_type=ViewType.ALL, max_results=1000, page_token=token)
        names.update({e.experiment_id: e.name for e in page})
        token = page.token
        if not token:
            return names


def stored_runs(client: MlflowClient, experiments: dict[str, str] | None = None) -> list[StoredRun]:
    """Every run of every experiment, deleted ones included (`experiments`: their names by id, if read already)."""
    store = sql_store(client)
    if store is not None:
        return sql_runs(store)
    experiments = list(experiment_names(client) if experiments is None else experiments)
    if isinstance(store_of(client), RestStore):
        return server_runs_in_spans(client, experiments)
    return searched(client, experiments, "", ViewType.ALL)


def by_run(rows) -> defaultdict:
    """(run_id, key, value) rows as {run_id: {key: value}}."""
    found = defaultdict(dict)
    for run_id, key, value in rows:
        found[run_id][key] = value
    return found


def sql_runs(store: SqlAlchemyStore) -> list[StoredRun]:
    """Every run of a SQL store, from its tables in five column queries (no ORM objects)."""
    with store.ManagedSessionMaker() as session:
        read = session.connection().execute
        runs = read(
            select(
                SqlRun.run_uuid,
                SqlRun.experiment_id,
                SqlRun.name,
                SqlRun.status,
                SqlRun.lifecycle_stage,
                SqlRun.start_time,
                SqlRun.end_time,
            )
        ).all()
        params = by_run(read(select(SqlParam.run_uuid, SqlParam.key, SqlParam.value)))
        tags = by_run(read(select(SqlTag.run_uuid, SqlTag.key, SqlTag.value)))
        metrics = by_run(
            (run_id, key, math.nan if is_nan else value)
            for run_id, key, value, is_nan in read(
                select(SqlLatestMetric.run_uuid, SqlLatestMetric.key, SqlLatestMetric.value, SqlLatestMetric.is_nan)
            )
        )
        inputs = defaultdict(list)
        for run_id, name in read(
            select(SqlInput.destination_id, SqlDataset.name)
            .join(SqlDataset, SqlDataset.dataset_uuid == SqlInput.source_id)
            .where(SqlInput.source_type == "DATASET", SqlInput.destination_type == "RUN")
        ):
            inputs[run_id].append(name)
    return [
        StoredRun(
            run_id,
            str(experiment_id),
            name or "",
            status,
            stage,
            start,
            end,
            params.get(run_id, {}),
            metrics.get(run_id, {}),
            tags.get(run_id, {}),
            tuple(inputs.get(run_id, ())),
        )
        for run_id, experiment_id, name, status, stage, start, end in runs
    ]


def chunks(run_ids: list[str], size: int = IDS_PER_QUERY):
    """The run ids `size` at a time (a few hundred for IN (...) clauses)."""
    return (run_ids[i : i + size] for i in range(0, len(run_ids), size))


def metric_names(client: MlflowClient, run_ids: list[str]) -> dict[str, frozenset]:
    """The names of the metrics each of these runs logged (runs not found, or without metrics, may be left out)."""
    store, found = sql_store(client), defaultdict(set)
    if store is not None:
        with store.ManagedSessionMaker() as session:
            for some in chunks(run_ids):
                for run_id, key in session.connection().execute(
                    select(SqlLatestMetric.run_uuid, SqlLatestMetric.key).where(SqlLatestMetric.run_uuid.in_(some))
                ):
                    found[run_id].add(key)
        return {run_id: frozenset(names) for run_id, names in found.items()}
    return {run.run_id: frozenset(run.metrics) for run in runs_by_id(client, list(experiment_names(client)), run_ids)}


def metric_points(client: MlflowClient, run_ids: list[str], names: list[str]) -> pd.DataFrame:
    """Every logged point of `names` for `run_ids`, as logged (no downsampling): columns run_id, metric, step,
    value, ordered as MLflow orders a history (by run, then time), so the last of a step logged twice is last."""
    if sql_store(client) is not None:
        rows = sql_points(sql_store(client), run_ids, names)
    elif isinstance(store_of(client), RestStore):  # requests side by side: the server answers them on its workers
        asks = [(some, name) for name in names for some in chunks(run_ids, SERVER_RUNS)]
        with ThreadPoolExecutor(max_workers=SERVER_REQUESTS) as pool:
            rows = [row for got in pool.map(lambda ask: server_points(client, *ask), asks) for row in got]
    else:
        rows = [row for name in names for run_id in run_ids for row in history_points(client, run_id, name)]
    return pd.DataFrame(rows, columns=POINT_COLUMNS)


def history_points(client: MlflowClient, run_id: str, name: str) -> list[tuple]:
    """One run's history of one metric through MLflow's public client (one request, paged)."""
    return [(run_id, name, m.step, m.value) for m in client.get_metric_history(run_id, name)]


SERVER_HISTORIES = "/ajax-api/2.0/mlflow/metrics/get-history-bulk"  # what MLflow's own UI draws its charts from
SERVER_RUNS, SERVER_POINTS = 100, 25_000  # that endpoint's limits per request: run ids, points returned
SERVER_REQUESTS = 4  # history or search requests in flight at once


def server_points(client: MlflowClient, run_ids: list[str], name: str) -> list[tuple]:
    """The histories of one metric for up to SERVER_RUNS runs from a tracking server in one request (a request
    per run and metric takes about 50 ms: 100 s for the Runs table of 10,000 runs). A full answer may have been
    cut, so it is asked again in halves; a server without the endpoint is asked run by run."""
    response = http_request(
        store_of(client).get_host_creds(),
        SERVER_HISTORIES,
        "GET",
        params={"run_id": run_ids, "metric_key": name, "max_results": SERVER_POINTS},
    )
    if response.status_code == 404:
        return [row for run_id in run_ids for row in history_points(client, run_id, name)]
    points = verify_rest_response(response, SERVER_HISTORIES).json().get("metrics", [])
    if len(points) < SERVER_POINTS:
        return [(p["run_id"], name, int(p.get("step", 0)), float(p["value"])) for p in points]
    if len(run_ids) == 1:
        return history_points(client, run_ids[0], name)
    half = len(run_ids) // 2
    return server_points(client, run_ids[:half], name) + server_points(client, run_ids[half:], name)


def sql_points(store: SqlAlchemyStore, run_ids: list[str], names: list[str]) -> list[tuple]:
    """The points of a SQL store's metric table, a column query per few hundred runs. The key is compared as
    `key || ''` so that SQLite looks the runs up by their run index: left to itself it walks the (key, ...)
    primary key through every run's points of those names, 1.5x slower at 10,000 runs."""
    rows = []
    with store.ManagedSessionMaker() as session:
        for some in chunks(run_ids):
            query = (
                select(SqlMetric.run_uuid, SqlMetric.key, SqlMetric.step, SqlMetric.value, SqlMetric.is_nan)
                .where((SqlMetric.key + "").in_(names), SqlMetric.run_uuid.in_(some))
                .order_by(SqlMetric.run_uuid, SqlMetric.timestamp, SqlMetric.step, SqlMetric.value)
            )
            rows += [
                (run_id, key, step, math.nan if is_nan else value)
                for run_id, key, step, value, is_nan in session.connection().execute(query)
            ]
    return rows


# ---------------------------------------------------------------- reading only what changed

RECENT_MS = 10 * 60 * 1000  # new runs are looked for from this long before the newest start seen (clock skew)
IDS_PER_SEARCH = 100  # run ids in one `attributes.run_id IN (...)` filter


@dataclass(frozen=True)
class Snapshot:
    """Every run of a store as last read, and the newest start time among them (ms)."""

    runs: dict[str, StoredRun]
    newest_start: int

    @classmethod
    def of(cls, runs: list[StoredRun]) -> "Snapshot":
        return cls({run.run_id: run for run in runs}, max((run.start_time or 0 for run in runs), default=0))


def searched(client: MlflowClient, experiments: list[str], where: str, view: int) -> list[StoredRun]:
    """Every run of `experiments` matching `where`, all pages."""
    runs, token = [], None
    while experiments:
        if isinstance(store_of(client), RestStore):
            page, token = server_page(client, experiments, where, view, token)
        else:
            page = client.search_runs(experiments, where, run_view_type=view, max_results=5000, page_token=token)
            page, token = [StoredRun.of(run) for run in page], page.token
        runs += page
        if not token:
            break
    return runs


SERVER_SEARCH = "/api/2.0/mlflow/runs/search"
# Runs per search request: fewer requests (behind auth each checks a password, about 0.3 s of server CPU here), or
# smaller ones that share the work more evenly among the server's workers.
SERVER_PAGE = 2500


def server_page(
    client: MlflowClient,
    experiments: list[str],
    where: str,
    view: int,
    token: str | None = None,
) -> tuple[list[StoredRun], str | None]:
    """One page of a tracking server's runs search, newest first, read from its JSON: MLflow's client would turn
    10,000 runs into protobuf messages and Run entities first, about a second of the first read."""
    body = {
        "experiment_ids": experiments,
        "filter": where,
        "run_view_type": ViewTypeProto.Name(ViewType.to_proto(view)),
        "max_results": SERVER_PAGE,
        "order_by": ["attributes.start_time DESC"],  # then by run id: MLflow's tie-break
        **({"page_token": token} if token else {}),
    }
    response = http_request(store_of(client).get_host_creds(), SERVER_SEARCH, "POST", json=body)
    answer = verify_rest_response(response, SERVER_SEARCH).json()
    return [StoredRun.of_json(run) for run in answer.get("runs", [])], answer.get("next_page_token")


EARLIEST, LATEST = -(2**63), 2**63 - 1  # the start times a span can reach (MLflow keeps them as 64-bit integers)


@dataclass(frozen=True)
class Span:
    """The runs started from `first` to `last` (ms since the epoch, both included), read on from `token`."""

    first: int = EARLIEST
    last: int = LATEST
    token: str | None = None

    def where(self) -> str:
        """The span as a search filter; none for the whole store (a run without a start time is in no range)."""
        bounds = []
        if self.first > EARLIEST:
            bounds.append(f"attributes.start_time >= {self.first}")
        if self.last < LATEST:
            bounds.append(f"attributes.start_time <= {self.last}")
        return " AND ".join(bounds)


def rest_of(span: Span, page: list[StoredRun], token: str | None, parts: int) -> list[Span]:
    """What is left of `span` after a page of it (newest first): nothing without a next page; where the whole page
    started in one millisecond, the span's next page; else the runs no newer than the page's oldest, in `parts`
    spans to read at once. Each is as long as the page's oldest three quarters took to start (a few runs far newer
    do not stretch it), so it likely holds under a page wherever runs are dense; the last reaches back to the
    span's start. Runs that started in the page's oldest millisecond may come twice."""
    if token is None:
        return []
    starts = sorted((run.start_time or 0 for run in page), reverse=True)
    oldest = starts[-1]
    if oldest == starts[0]:
        return [Span(span.first, span.last, token)]
    length = max(1, starts[len(starts) // 4] - oldest)
    spans, last = [], oldest
    for _ in range(parts - 1):
        if last - length < span.first:
            break
        spans.append(Span(last - length + 1, last))
        last -= length
    return [*spans, Span(span.first, last)]


def read_in_spans(read: Callable[[Span], tuple[list[StoredRun], str | None]], at_once: int) -> list[StoredRun]:
    """Every run, read newest first a page at a time as one search would, except that a page that comes back full
    has the rest of its span cut into spans of start time (rest_of) read `at_once` at a time: a server answers a
    search on one of its workers; split, on several, whether the runs are spread over months or a sweep put
    thousands in one afternoon. A store of one page is one request, as before."""
    found: dict[str, StoredRun] = {}
    with ThreadPoolExecutor(max_workers=at_once) as pool:
        pending = {pool.submit(read, Span()): Span()}
        try:
            while pending:
                done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                for future in done:
                    page, token = future.result()
                    found.update((run.run_id, run) for run in page)
                    rest = rest_of(pending.pop(future), page, token, at_once)
                    pending.update({pool.submit(read, span): span for span in rest})
        except BaseException:
            pool.shutdown(cancel_futures=True)  # a refused or failed search: the spans not yet asked never are
            raise
    return list(found.values())


def server_runs_in_spans(client: MlflowClient, experiments: list[str]) -> list[StoredRun]:
    """Every run of `experiments` on a tracking server, deleted ones included, in spans of start time read
    SERVER_REQUESTS at once: 10,000 runs in one search take about 10 s of one server worker here
    (benchmarks/dashboard_read.py)."""
    if not experiments:
        return []

    def read(span: Span) -> tuple[list[StoredRun], str | None]:
        return server_page(client, experiments, span.where(), ViewType.ALL, span.token)

    return read_in_spans(read, SERVER_REQUESTS)


def runs_by_id(client: MlflowClient, experiments: list[str], run_ids: list[str]) -> list[StoredRun]:
    """These runs (those still in the store), whatever their lifecycle, IDS_PER_SEARCH to a search."""
    found = []
    for some in chunks(run_ids, IDS_PER_SEARCH):
        quoted = ", ".join(f"'{run_id}'" for run_id in some)
        found += searched(client, experiments, f"attributes.run_id IN ({quoted})", ViewType.ALL)
    return found


def read_changes(client: MlflowClient, before: Snapshot, experiments: dict[str, str] | None = None) -> Snapshot:
    """`before` brought up to date by reading only what can have changed since: runs started since (a margin for
    clocks that disagree), runs RUNNING now or then (ended, killed, their heartbeat and metrics), and runs
    deleted now or then (deleted, restored, or removed for good); runs of an experiment the reader may no longer
    see are dropped (`experiments`: those it sees, if read already). A finished run's params, metrics and tags do
    not change as this project and the trainers it reads write them; a full read (stored_runs) takes any other
    edit."""
    experiments = list(experiment_names(client) if experiments is None else experiments)
    since = before.newest_start - RECENT_MS
    changed = searched(client, experiments, f"attributes.start_time >= {since}", ViewType.ALL)
    changed += searched(client, experiments, "attributes.status = 'RUNNING'", ViewType.ACTIVE_ONLY)
    deleted = searched(client, experiments, "", ViewType.DELETED_ONLY)
    seen = {run.run_id for run in [*changed, *deleted]}
    was = [
        run.run_id
        for run in before.runs.values()
        if (run.status == "RUNNING" or run.lifecycle_stage == "deleted") and run.run_id not in seen
    ]
    again = runs_by_id(client, experiments, was)
    runs = dict(before.runs)
    for run_id in set(was) - {run.run_id for run in again}:  # removed for good (mlflow gc), or its experiment
        runs.pop(run_id, None)
    runs.update({run.run_id: run for run in [*changed, *deleted, *again]})
    visible = set(experiments)  # a server shows a user the experiments they may read now: a revoked one's runs go
    return Snapshot.of([run for run in runs.values() if run.experiment_id in visible])
