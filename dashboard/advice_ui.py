"""Advice on the pages: the inspector's next experiments (proposals, spec, launch, progress, stop) and the verdict
tables the inspector, Compare and the advice record share."""

import time

import pandas as pd
import streamlit as st

from core.comparison import GROUP_PREFIX
from core.follow_ups import follow_ups
from core.launches import Launch
from dashboard import launcher, reader
from dashboard.advice_tables import touching, verdict_frame
from dashboard.state import Key
from dashboard.widgets import md

PROGRESS_SECONDS = 3
MAX_SEEDS, MAX_RUNS = 10, 200


def verdicts_ui(judgements: list, names: dict[str, str]) -> None:
    """The verdict table, with what its columns mean."""
    st.dataframe(
        verdict_frame(judgements, names),
        hide_index=True,
        key="advice_verdicts",
        column_config={
            "rule's figure": st.column_config.TextColumn(
                help="The last epoch's figure the rule set out to lower, mean over the original's seeds → over the "
                "follow-up's, with Welch's test (variance = val error - train error; avoidable bias = train error "
                "- the dataset's best error)"
            ),
            "test accuracy": st.column_config.TextColumn(
                help="Follow-up minus original, ± the 95% interval's half width, with compare's test (Welch's over "
                "seeds): the numbers `python -m experiments compare` gives for the two groups"
            ),
            "verdict": st.column_config.TextColumn(
                help="helped: the figure fell or test accuracy rose, beyond chance (p < 0.05); hurt: test accuracy "
                "fell beyond chance; otherwise no detectable effect, with the seeds that would resolve it"
            ),
            "group": st.column_config.TextColumn(help="the follow-up's config group: compare group:HASH"),
        },
    )


def verdict_sentences_ui(judgements: list) -> None:
    """Each verdict in one line, as `advise` ends: the rule's figure and test accuracy, then the outcome."""
    st.markdown(
        "\n".join(f"- **{md(judged.heading)}**: {md(judged.findings())}" for judged in judgements),
        help="The figure the rule set out to lower (the last epoch's, mean over seeds, Welch's test) and test "
        "accuracy, follow-up minus original ± the 95% interval's half width, with compare's test: the numbers "
        "`python -m experiments compare group:A group:B` gives. Helped: the figure fell or test accuracy rose beyond "
        "chance (p < 0.05); hurt: test accuracy fell beyond chance.",
    )


def target_ui(run_id: str, row, runs: pd.DataFrame) -> str:
    """What advice follows: the run's config group when it has several finished seeds not trained by advice (a
    firmer diagnosis), or the run alone."""
    group = row["config_group"]
    own = (runs["config_group"] == group) & (runs["status"] == "FINISHED") & (runs["advice_of"] == "")
    seeds = int(own.sum()) if group else 0
    if seeds < 2:
        return run_id
    options = [f"{GROUP_PREFIX}{group}", run_id]
    words = {options[0]: f"its configuration over {seeds} seeds", run_id: "this run alone"}
    return st.radio("Advise on", options, format_func=words.get, horizontal=True, key=Key.per_run("advise_on", run_id))


def proposals_ui(advice: launcher.Advice) -> None:
    st.markdown(f"**{md(advice.label)}**: {md(advice.diagnosis)}. Next experiments, each over the same seeds:")
    for proposal in advice.proposals:
        runs = "; ".join(md(run) for run in proposal["runs"])
        st.markdown(f"- **{proposal['rule']}** ({runs}): expects {md(proposal['expects'])}", help=proposal["why"])


def next_experiments_ui(run_id: str, row, runs: pd.DataFrame) -> None:
    """The inspector's next experiments for one run: verdicts of what was tried, the proposals, and their launch."""
    target = target_ui(run_id, row, runs)
    store = reader.current_store()
    launch = Launch(store.uri, target)
    version = launch.version()
    tried = touching(reader.load_judgements(store, None, version), [run_id], {row["config_group"]})
    if tried:
        st.markdown("**Follow-ups trained so far**, each against the original configuration:")
        verdict_sentences_ui(tried)
    if launch.training():
        progress_ui(store, target)
        return
    proposals_box, (seeds_box, cap_box, _) = st.container(), st.columns([1, 1, 2])
    seeds = seeds_box.number_input(
        "Seeds per follow-up", 1, MAX_SEEDS, launcher.DEFAULT_SEEDS, key=Key.per_run("advice_seeds", run_id)
    )
    with proposals_box, st.spinner("Asking `python -m experiments advise` for its proposals..."):
        advice = reader.load_advice(store, target, seeds, version)
    if isinstance(advice, str):
        proposals_box.info(f"No advice: {md(advice)}")
        return
    if not advice.proposals:
        proposals_box.info(f"{md(advice.label)}: {md(advice.diagnosis)}; no rule of core.advice proposes a follow-up.")
        return
    with proposals_box:
        proposals_ui(advice)
    launch_ui(store, run_id, advice, seeds, cap_box)


def launch_ui(store: reader.Store, run_id: str, advice: launcher.Advice, seeds: int, cap_box) -> None:
    """The launch button with its bound, or, where this dashboard may not launch, the spec and the command."""
    experiment = reader.load_run(store, run_id).experiment_id
    problem = launcher.why_cannot_launch(store.uri, experiment)
    max_runs = launcher.DEFAULT_MAX_RUNS
    if not problem:
        max_runs = cap_box.number_input(
            "At most runs per launch", 1, MAX_RUNS, launcher.DEFAULT_MAX_RUNS, key=Key.per_run("advice_cap", run_id)
        )
    command = launcher.shown_command(advice.target, seeds, max_runs)
    with st.expander("The spec and the command"):
        st.code(advice.spec, language="toml")
        st.code(command, language="bash")
    if problem:
        st.info(f"Launching is off here: {md(problem)}. Train the advice from a terminal with the command above.")
        return
    if advice.missing == 0:
        st.caption(f"All {advice.runs} runs of this advice are trained: the verdicts above are its answer.")
        return
    resumed = f", {advice.resumed} of them resumed from where they were stopped" if advice.resumed else ""
    st.caption(
        f"A launch trains {advice.missing} of the advice's {advice.runs} runs{resumed}, in the background: it goes "
        "on if this page or the dashboard closes, and can be stopped here."
    )
    over = advice.missing > max_runs
    if over:
        st.warning(f"{advice.missing} runs is more than the {max_runs} allowed per launch: raise it, or fewer seeds.")
    if st.button(
        f"Launch {advice.missing} runs", type="primary", disabled=over, key=Key.per_run("advice_launch", run_id)
    ):
        if not launcher.start(store.uri, advice.target, seeds, max_runs, advice.missing):
            st.warning("This advice is being trained already: its progress is shown instead.")
        st.rerun()


@st.fragment(run_every=PROGRESS_SECONDS)
def progress_ui(store: reader.Store, target: str) -> None:
    """The launch in progress: its runs by status, its log's last lines and a stop button; when it ends, the page
    reads the store again and shows the verdicts."""
    launch = Launch(store.uri, target)
    if not launch.training():
        st.rerun()  # the whole page: its reads are keyed by the launch's version, which has changed
    record = launch.record()
    started_ms = record.get("started", 0) * 1000
    ours = [
        run
        for fu in follow_ups(reader.client_for(store), target)
        for run in fu.runs
        if run.info.start_time >= started_ms
    ]
    counts = pd.Series([run.info.status.lower() for run in ours], dtype=str).value_counts()
    so_far = ", ".join(f"{n} {status}" for status, n in counts.items()) or "none started yet"
    since = time.strftime("%H:%M:%S", time.localtime(record.get("started", time.time())))
    st.markdown(
        f"**Training this advice**: {record.get('missing', '?')} runs, started {since} (process "
        f"{record.get('pid', '?')}); so far {so_far}."
    )
    st.code("\n".join(launch.log_tail()) or "(starting)", language=None)
    if st.button("Stop the launch", key=f"advice_stop_{launch.stem.name}"):
        launcher.stop(store.uri, target)
        st.caption("Stopping: the run in progress ends KILLED with its checkpoint; a next launch resumes it.")
