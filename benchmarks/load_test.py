"""A team dashboard under load: 20 browser sessions signed in as 4 users at once, on loopback only.

    .venv/bin/python -m benchmarks.load_test [--sessions 20] [--users 4] [--rounds 3] [--runs 1000]

Starts PostgreSQL, `mlflow server` behind MLflow's basic-auth app and the dashboard with no user of its own (so each
session signs in), on a store of --runs synthetic runs (benchmarks/dashboard_read.py's) in 8 experiments. Each user
may read some of them: user 0 all 8, user k k of them (1, 2, 3: different counts). Then --sessions headless Chromium
sessions, as many per user, each: opens a shared link to Compare with 5 of its user's runs and one it may not read,
signs in, and --rounds times goes Runs -> Compare -> Run detail from the sidebar. A page's time is from the sign-in
or click until the app is idle (its script finished and the page unchanged for half a second; page_times.py).
Prints p50, p95 and the slowest per page, the errors (an error box, a page that never settled, a Runs caption counting
other than the runs the user may read), and any run named in a page's HTML to a session whose user may not read it
(each run's name says its experiment; the Runs table's HTML holds only the rows in view, so its count is what covers
the rest). Nothing here leaves loopback.
"""

import argparse
import asyncio
import os
import re
import shutil
import signal
import statistics
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests
from mlflow.tracking import MlflowClient
from playwright.async_api import Page, async_playwright
from sqlalchemy import create_engine, text

from benchmarks.dashboard_read import build_store
from benchmarks.page_times import PAGE_STATE, QUIET_SECONDS, RECORD_CHANGES, SIDEBAR_LINKS, Watch
from core.store import search_all
from experiments.tracking_server import ADMIN_USER, Auth, free_port, start_mlflow_server, start_postgres
from tests.helpers import CHROMIUM, CHROMIUM_ARGS, start_server

EXPERIMENTS = tuple(f"team-{k}" for k in range(8))
RUN_NAME = re.compile(r"\bteam-(\d)-run-\d+\b")
ADMIN_PASSWORD = "load-test-admin-password"
SETTLE_SECONDS = 300  # a page that has not settled by then counts as an error
CHECK_MS = 10_000  # an idle page's element looked for that long at most
SHOTS = Path("test-output/load-test")  # a screenshot of each failure


def readable(user: int, users: int) -> set[int]:
    """The experiments (by index) user `user` may read: user 0 all, user k the next k after those of users 1..k-1
    (wrapping), so that users read different numbers of runs and a count mixed up between two of them shows."""
    if user == 0:
        return set(range(len(EXPERIMENTS)))
    first = sum(range(1, user))
    return {(first + i) % len(EXPERIMENTS) for i in range(user)}


@dataclass
class Session:
    """One browser session's measurements and what it saw that it should not have."""

    number: int
    user: int
    allowed: set[int]  # the experiments its user may read
    readable_runs: int  # how many runs they hold
    times: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    leaks: set[str] = field(default_factory=set)


@contextmanager
def team_stack(folder: Path, runs: int, epochs: int, users: int):
    """PostgreSQL, the authenticated server with `users` users and their grants, and a dashboard without a user of
    its own; yields the dashboard's URL and each experiment's run ids."""
    postgres = start_postgres(folder / "pg", free_port())
    built = folder / f"built-{runs}x{epochs}"
    if not built.exists():
        build_store(postgres.url("mlflow"), runs, epochs, EXPERIMENTS)
        with create_engine(postgres.url("mlflow")).begin() as db:  # artifacts through the server's proxy
            db.execute(text("UPDATE runs SET artifact_uri = 'mlflow-artifacts:/' || experiment_id || '/' || run_uuid"))
        built.touch()
    port = free_port()
    server = start_mlflow_server(
        postgres.url("mlflow"),
        folder / "artifacts",
        port,
        workers=2,
        log_path=folder / "server.log",
        auth=Auth(postgres.url("mlflow_auth"), ADMIN_PASSWORD),
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        runs_of = grant(uri, users)
        for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            os.environ.pop(name, None)
        with start_server(uri, log=folder / "dashboard.log") as url:
            yield url, runs_of
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        postgres.stop()


def password(user: int) -> str:
    return f"user-{user}-password"


def grant(uri: str, users: int) -> dict[int, list[str]]:
    """Create the users and grant each READ on its experiments; each experiment's run ids (as the admin reads them)."""
    admin = (ADMIN_USER, ADMIN_PASSWORD)
    os.environ.update(MLFLOW_TRACKING_USERNAME=ADMIN_USER, MLFLOW_TRACKING_PASSWORD=ADMIN_PASSWORD)
    client = MlflowClient(uri)
    ids = {name: client.get_experiment_by_name(name).experiment_id for name in EXPERIMENTS}
    for user in range(users):
        answer = requests.post(
            f"{uri}/api/2.0/mlflow/users/create",
            json={"username": f"user-{user}", "password": password(user)},
            auth=admin,
            timeout=30,
        )
        assert answer.ok or "already exists" in answer.text, answer.text
        for k in readable(user, users):
            answer = requests.post(
                f"{uri}/api/3.0/mlflow/users/permissions/grant",
                json={"username": f"user-{user}", "resource_type": "experiment", "resource_id": ids[EXPERIMENTS[k]],
                      "permission": "READ"},
                auth=admin,
                timeout=30,
            )  # fmt: skip
            assert answer.ok or "already exists" in answer.text, answer.text
    runs_of = defaultdict(list)
    for run in search_all(client, max_results=50_000):
        runs_of[int(run.info.run_name.split("-")[1])].append(run.info.run_id)
    return runs_of


async def idle_seconds(page: Page, watch: Watch, finished_before: int, started: float) -> float:
    """Seconds from `started` (the page's clock, ms) until its last change once the app is idle (page_times.py)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        await page.wait_for_timeout(100)
        if watch.finished <= finished_before:
            continue
        running, last, now = await page.evaluate(PAGE_STATE)
        if not running and now - last >= QUIET_SECONDS * 1000:
            return (last - started) / 1000
    raise TimeoutError(f"the page did not settle within {SETTLE_SECONDS} s")


async def looked_at(page: Page, session: Session, name: str) -> None:
    """Any run of an experiment the session's user may not read, or an exception box, on the page now; on Runs, the
    caption's count against what the user may read."""
    content = await page.content()
    session.leaks |= {m.group(0) for m in RUN_NAME.finditer(content) if int(m.group(1)) not in session.allowed}
    if await page.locator('[data-testid="stException"], [data-testid="stAlertContentError"]').count():
        await failed(page, session, name, "an error box")
    if name == SIDEBAR_LINKS["runs"]:
        caption = await page.get_by_text("runs shown").first.text_content(timeout=CHECK_MS)
        shown = int(re.search(r"of ([\d,]+) runs shown", caption).group(1).replace(",", ""))
        if shown != session.readable_runs:
            await failed(page, session, name, f"{shown} runs shown, the user may read {session.readable_runs}")


async def failed(page: Page, session: Session, name: str, what: str) -> None:
    """Count a failure, with a screenshot of the page as it was."""
    session.errors.append(f"{name}: {what}")
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"session-{session.number}-{len(session.errors)}-{name}.png"))


async def timed(page: Page, watch: Watch, session: Session, name: str, action) -> None:
    """Do `action` (a click, a sign-in) and time it until the page is idle; then look at what the page shows."""
    before, started = watch.finished, await page.evaluate("performance.now()")
    try:
        await action()
        session.times[name].append(await idle_seconds(page, watch, before, started))
        await looked_at(page, session, name)
    except Exception as err:  # noqa: BLE001 - every failure of a session is counted and named, then it goes on
        await failed(page, session, name, f"{type(err).__name__}: {str(err).splitlines()[0][:200]}")


async def one_session(browser, url: str, session: Session, runs: list[str], forbidden: list[str], rounds: int) -> None:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    await page.add_init_script(RECORD_CHANGES)
    watch = Watch()
    page.on("websocket", lambda socket: socket.on("framereceived", watch.received))
    linked = runs[:5] + forbidden[:1]  # a run it may not read in the link too: it must not be shown
    await page.goto(f"{url}/compare?runs={','.join(run_id[:8] for run_id in linked)}")
    await page.get_by_label("User name").wait_for(timeout=SETTLE_SECONDS * 1000)

    async def sign_in():
        await page.get_by_label("User name").fill(f"user-{session.user}")
        await page.get_by_label("Password", exact=True).fill(password(session.user))
        await page.get_by_role("button", name="Sign in").click()

    await timed(page, watch, session, "sign in, then Compare (5 runs)", sign_in)
    if not await page.get_by_text("Signed in as").count():  # counted above; nothing more to measure
        await context.close()
        return
    for _ in range(rounds):
        for name in ("runs", "compare", "detail"):
            link = page.locator('[data-testid="stSidebarNav"]').get_by_text(SIDEBAR_LINKS[name], exact=True)
            await timed(page, watch, session, SIDEBAR_LINKS[name], link.click)
    await context.close()


# A process is of the first kind whose word is in its command line or its nearest ancestor's that has one (the
# server's workers are its children; its own command line names PostgreSQL, so it is matched first).
CATEGORIES = (("mlflow server", "server"), ("streamlit", "dashboard"), ("postgres", "PostgreSQL"),
              ("chrom", "Chromium"), ("playwright", "Playwright's driver"))  # fmt: skip
TICKS = os.sysconf("SC_CLK_TCK")


def kind_of(pid: int, parent: dict[int, int], command: dict[int, str]) -> str:
    """The kind of process `pid` is (CATEGORIES), from its command line or its ancestors'."""
    while pid in command:
        kind = next((name for word, name in CATEGORIES if word in command[pid]), None)
        if kind:
            return kind
        pid = parent[pid]
    return "other"


class CpuMeter:
    """CPU seconds per kind of process on this machine while the sessions run, from /proc sampled every second (so
    the figures say where the two cores went: the browsers, the dashboard, the server or PostgreSQL)."""

    def __init__(self):
        self.seen: dict[int, float] = {}  # each process's CPU seconds at the last sample
        self.seconds: dict[str, float] = defaultdict(float)
        self.sample(count=False)

    def sample(self, count: bool = True) -> None:
        used, parent, command = {}, {}, {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                line = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:  # ended meanwhile: its last second is not counted
                continue
            pid = int(stat.parent.name)
            used[pid], parent[pid], command[pid] = (int(fields[11]) + int(fields[12])) / TICKS, int(fields[1]), line
        for pid, seconds in used.items():
            if count:
                self.seconds[kind_of(pid, parent, command)] += seconds - self.seen.get(pid, 0.0)
            self.seen[pid] = seconds

    async def run(self) -> None:
        while True:
            await asyncio.sleep(1)
            self.sample()


async def load(
    url: str, runs_of: dict[int, list[str]], sessions: int, users: int, rounds: int
) -> tuple[list[Session], dict[str, float]]:
    allowed = {user: readable(user, users) for user in range(users)}
    everyone = [
        Session(i, i % users, allowed[i % users], sum(len(runs_of[k]) for k in allowed[i % users]))
        for i in range(sessions)
    ]
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        meter = CpuMeter()
        sampling = asyncio.create_task(meter.run())
        await asyncio.gather(
            *(
                one_session(
                    browser,
                    url,
                    session,
                    [run for k in sorted(session.allowed) for run in runs_of[k]],
                    [run for k in sorted(set(runs_of) - session.allowed) for run in runs_of[k]],
                    rounds,
                )
                for session in everyone
            )
        )
        sampling.cancel()
        meter.sample()
        await browser.close()
    return everyone, meter.seconds


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def row(name: str, times: list[float]) -> str:
    return f"{name:<34} {len(times):>6} {percentile(times, 50):>7.2f} {percentile(times, 95):>7.2f} {max(times):>7.2f}"


def report(everyone: list[Session], cpu: dict[str, float], wall: float) -> None:
    pages = defaultdict(list)
    for session in everyone:
        for name, times in session.times.items():
            pages[name] += times
    print(f"{'page':<34} {'views':>6} {'p50 s':>7} {'p95 s':>7} {'max s':>7}")
    for name, times in pages.items():
        print(row(name, times))
    print(row("all pages", [t for times in pages.values() for t in times]))
    errors = [f"session {i} (user-{s.user}): {e}" for i, s in enumerate(everyone) for e in s.errors]
    leaks = sorted({leak for s in everyone for leak in s.leaks})
    print(f"{len(everyone)} sessions in {wall:.0f} s; errors: {len(errors)}; runs shown to a user who may not read")
    print(f"them: {len(leaks)}")
    for line in errors[:20] + leaks[:20]:
        print("  " + line)
    spent = ", ".join(f"{kind} {seconds:.0f}" for kind, seconds in sorted(cpu.items(), key=lambda kv: -kv[1]))
    print(f"CPU seconds meanwhile ({os.cpu_count()} cores x {wall:.0f} s = {os.cpu_count() * wall:.0f}): {spent}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument(
        "--folder", default=str(Path(tempfile.gettempdir()) / "cnn-load-test"), help="PostgreSQL's data, kept"
    )
    args = parser.parse_args()
    with team_stack(Path(args.folder), args.runs, args.epochs, args.users) as (url, runs_of):
        started = time.monotonic()
        shutil.rmtree(SHOTS, ignore_errors=True)
        everyone, cpu = asyncio.run(load(url, runs_of, args.sessions, args.users, args.rounds))
        report(everyone, cpu, time.monotonic() - started)


if __name__ == "__main__":
    main()
