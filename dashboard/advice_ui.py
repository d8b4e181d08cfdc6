"""Advice on the pages: the inspector's next experiments (proposals, spec, launch, progress, stop) and the verdicts
the inspector, Compare and the advice record share."""

import time

import pandas as pd
import streamlit as st

from core import advice as rules
from core.comparison import GROUP_PREFIX
from core.follow_ups import follow_ups
from core.launches import Launch
from dashboard import launcher, reader
from dashboard.advice_tables import status_words, touching, verdict_frame
from dashboard.state import Key
from dashboard.views import read
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
                "fell beyond chance; otherwise no detectable effect"
            ),
            "to resolve": st.column_config.TextColumn(
                help="for no detectable effect: the seeds per side at which Welch's test would find the difference "
                "seen, 80% of the time"
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


def budget_ui(run_id: str, training: bool) -> tuple[int, int]:
    """Seeds per follow-up and the cap on runs per launch; drawn during a launch too (disabled), so that the
    choices survive it."""
    seeds_box, cap_box, _ = st.columns([1, 1, 2])
    seeds = seeds_box.number_input(
        "Seeds per follow-up", 1, MAX_SEEDS, rules.SEEDS, disabled=training, key=Key.per_run("advice_seeds", run_id)
    )
    cap = cap_box.number_input(
        "At most runs per launch", 1, MAX_RUNS, rules.MAX_RUNS, disabled=training, key=Key.per_run("advice_cap", run_id)
    )
    return int(seeds), int(cap)


def last_launch_ui(launch: Launch) -> None:
    """A launch that failed (a store refusing, a bad setting): how it exited and its log's last lines."""
    exit_code = launch.record().get("exit")
    if exit_code not in (None, 0):
        stopped = exit_code in (130, -15)
        st.warning(f"The last launch {'was stopped' if stopped else f'failed (exit {exit_code})'}; its log ends:")
        st.code("\n".join(launch.log_tail()), language=None)


def next_experiments_ui(run_id: str, row, runs: pd.DataFrame) -> None:
    """The inspector's next experiments for one run: verdicts of what was tried, the proposals, and their launch."""
    target = target_ui(run_id, row, runs)
    store = reader.current_store()
    launch = Launch(store.uri, target)
    training = launch.training()
    version = f"{launch.record().get('started', 0)}:{training}"  # a launch started or ended: read afresh
    tried = touching(read(reader.load_judgements, version), [run_id], {row["config_group"]})
    if tried:
        st.markdown("**Follow-ups trained so far**, each against the original configuration:")
        verdict_sentences_ui(tried)
    proposals_box = st.container()
    seeds, cap = budget_ui(run_id, training)
    if training:
        progress_ui(store, target, run_id)
        return
    last_launch_ui(launch)
    with proposals_box, st.spinner("Asking `python -m experiments advise` for its proposals..."):
        advice = read(reader.load_advice, target, seeds, version)
    if isinstance(advice, str):
        proposals_box.info(f"No advice: {md(advice)}")
        return
    if not advice.proposals:
        proposals_box.info(f"{md(advice.label)}: {md(advice.diagnosis)}; no rule of core.advice proposes a follow-up.")
        return
    with proposals_box:
        proposals_ui(advice)
    launch_ui(store, run_id, advice, seeds, cap)


def launch_ui(store: reader.Store, run_id: str, advice: launcher.Advice, seeds: int, cap: int) -> None:
    """The launch button with its bound, or, where this dashboard may not launch, the spec and the command."""
    experiment = read(reader.load_experiment_id, advice.experiment)
    problem = launcher.why_cannot_launch(store.uri, experiment, store.signed_in)
    with st.expander("The spec and the command"):
        st.code(advice.spec, language="toml")
        st.code(launcher.shown_command(advice.target, seeds, cap), language="bash")
    if advice.missing == 0:
        st.caption(f"All {advice.runs} runs of this advice are trained: the verdicts above are its answer.")
        return
    over = advice.missing > cap
    if over:
        st.warning(
            f"This advice needs {advice.missing} more runs, more than the {cap} allowed per launch: raise the cap, "
            "or fewer seeds. Nothing is launched in part."
        )
    if problem:
        st.info(f"Launching is off here: {md(problem)}. Train the advice from a terminal with the command above.")
        return
    if not over:
        resumed = f", {advice.resumed} of them resumed from where they were stopped" if advice.resumed else ""
        st.caption(
            f"The advice is {advice.runs} runs: the seeds the original configuration lacks, then each follow-up over "
            f"{seeds} seeds. A launch trains the {advice.missing} not trained yet{resumed}, in the background: it "
            "goes on if this page or the dashboard closes, and can be stopped here."
        )
    if st.button(
        f"Launch {advice.missing} runs", type="primary", disabled=over, key=Key.per_run("advice_launch", run_id)
    ):
        # False when already training: shown next
        launcher.start(store.uri, advice.target, seeds, cap, advice.missing, store.signed_in)
        st.rerun()


@st.fragment(run_every=PROGRESS_SECONDS)
def progress_ui(store: reader.Store, target: str, run_id: str) -> None:
    """The launch in progress: its runs by status, its log's last lines and a stop button; when it ends, the page
    runs again (its reads are keyed by the launch) and shows the verdicts."""
    launch = Launch(store.uri, target)
    if not launch.training():
        st.rerun()
    record = launch.record()
    started = record.get("started", time.time())
    try:
        trained = [run for fu in follow_ups(reader.client_for(store), target) for run in fu.runs]
    except Exception as err:  # noqa: BLE001 - a store that does not answer now may on the next poll
        trained, so_far = [], f"the store cannot be read now ({type(err).__name__})"
    else:
        ours = [r for r in trained if max(r.info.start_time, r.info.end_time or 0) >= 1000 * started]
        so_far = status_words([r.info.status for r in ours]) or "none started yet"
    st.markdown(
        f"**Training this advice**: {record.get('missing', '?')} runs, started "
        f"{time.strftime('%H:%M:%S', time.localtime(started))} (process {record.get('pid', '?')}); so far {so_far}."
    )
    st.code("\n".join(launch.log_tail()) or "(starting)", language=None)
    refusal = launcher.why_cannot_stop(store.uri, record, store.user)
    if refusal:
        st.caption(f"No Stop button here: {md(refusal)}.")
    elif st.button("Stop the launch", key=Key.per_run("advice_stop", run_id)):
        stopping = launcher.stop(store.uri, target)
        st.caption(
            "Stopping: the run in progress ends KILLED with its checkpoint; a next launch resumes it."
            if stopping
            else "Not stopped: the process training it is not one this dashboard can signal (another machine?)."
        )
