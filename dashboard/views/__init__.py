"""Thin pages: read through dashboard.reader, compute with analysis, draw with figures and widgets."""

import time

import numpy as np
import pandas as pd
import streamlit as st

from core.datasets import DATASETS, images_sha256
from core.schema import Artifact, Param
from dashboard import reader, state
from dashboard.widgets import LIVE_SECONDS, live_seconds, md, selection_ui


def read(load, *args):
    """One read through the cached layer; if the store cannot be read, the page shows why and stops."""
    try:
        return load(reader.current_store(), *args)
    except reader.StoreError as err:
        st.error(str(err))
        st.stop()


def artifact(run_id: str, path: str):
    """A run's parsed artifact, or None; a corrupt file is named on the page. A run still training is read afresh
    every CACHE_SECONDS (its per-epoch artifacts grow, and one not written yet appears); a finished one once."""
    running = state.live() and read(reader.load_run, run_id).status == "RUNNING"
    got = read(reader.load_artifact, run_id, path, int(time.time() // reader.CACHE_SECONDS) if running else 0)
    if got.problem:
        st.warning(got.problem)
    return got.value


def run_images(run_id: str, params: dict, split: str) -> np.ndarray | None:
    """A run's images: "test", the whole test file's (by index), or "val", the validation set's (in its order).
    From the images the run kept (your own data, your own loop), else, for the test file, from this machine's copy
    of the dataset found by name and content hash; None where neither has them."""
    kept = artifact(run_id, Artifact.RUN_IMAGES)
    if kept is not None and split in kept:
        return kept[split]
    if split != "test":
        return None
    return reader.load_images(params.get(Param.DATASET, "mnist"), "test", params.get(Param.TEST_IMAGES_SHA256))


def test_pictures(run_id: str, params: dict, rows: pd.DataFrame) -> list | None:
    """The pictures of rows of a run's misclassified_test.csv (run_images), or of an older run's own thumbnails
    (misclassified_test_images.npz); None if none of them has them."""
    images = run_images(run_id, params, "test")
    if images is not None:
        return [images[i] for i in rows["index"]]
    kept = artifact(run_id, Artifact.MISCLASSIFIED_IMAGES)
    return None if kept is None else [kept["images"][row] for row in rows.index]


def val_pictures(run_id: str, params: dict, val: dict) -> np.ndarray | None:
    """The run's validation images, in val_images.json's order: those it kept (your own data), else this machine's
    copy of its dataset when they are the very images it validated on (same SHA-256: an older run that logged no
    hash shows none)."""
    kept = run_images(run_id, params, "val")
    if kept is not None:
        return kept
    images = reader.load_images(params.get(Param.DATASET, "mnist"), val["source"])
    chosen = None if images is None else images[np.asarray(val["index"], dtype=int)]
    return chosen if chosen is not None and images_sha256(chosen) == val.get("sha256") else None


def why_no_images(params: dict) -> str:
    """Why a run's images cannot be shown here, in words: a known dataset not fetched here or another copy of it,
    or a run that kept none of its own."""
    dataset = params.get(Param.DATASET, "mnist")
    if dataset not in DATASETS:
        return (
            f"it kept no {Artifact.RUN_IMAGES} (a run of your own loop that handed over logits has no images, and "
            "images over 64 MB are not kept)"
        )
    if reader.load_images(dataset, "test") is None:
        return f"{md(dataset)} is not in this machine's dataset cache (`python -m experiments data` fetches it)"
    return f"it was trained on another copy of {md(dataset)} (a different content hash)"


def image_strip(pictures, positions, captions: list[str], width: int, where=st) -> None:
    """The pictures at `positions` (of an array of images, or None), captioned, in `where` (a column, say); the
    captions alone when the pictures are not on this machine."""
    if pictures is None:
        where.caption("These images are not on this machine: " + "; ".join(captions))
    elif len(positions):
        where.image([pictures[r] for r in positions], width=width, caption=captions)


def artifact_location_note(run_id: str) -> None:
    """Say once, at the top of a page, when the run's artifacts are not where the store recorded them."""
    note = read(reader.load_location_note, run_id)
    if note:
        st.warning(note)


def runs_or_message() -> tuple[pd.DataFrame | None, list[str]]:
    """All runs and the current selection (drawn in the sidebar), or None after showing why there is nothing."""
    seconds = state.refresh_seconds(LIVE_SECONDS)
    tick = int(time.time() // seconds) if state.live() else 0  # fresh reads while live
    runs = read(reader.load_runs, tick)
    state.set_live(bool((runs["status"] == "RUNNING").any()), live_seconds(runs.attrs.get(reader.READ_SECONDS, 0.0)))
    selection = selection_ui(runs)
    if runs.empty:
        st.info(
            f"No runs in the tracking store ({reader.current_store().uri}) yet. Train some with "
            "`.venv/bin/python -m experiments suite demo` (about 3 minutes; `scripts/start` does it for an "
            "empty store)."
        )
        return None, []
    return runs, selection


def selected_or_story(selection: list[str], story: list[str], what: str) -> list[str]:
    """The selected runs; with none selected, the store's story runs (at least two) and a line saying so, so that
    a page opened first shows what the store holds rather than asking for a selection."""
    if selection or len(story) < 2:
        return selection
    st.caption(f"Nothing is selected, so this shows {what}. Select runs (Runs page or sidebar) to see yours.")
    return story
