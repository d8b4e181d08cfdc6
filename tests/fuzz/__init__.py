"""Property-based tests (Hypothesis). CI runs a bounded number of examples per property, the same ones every time;
`CNN_FUZZ_SCALE=25 scripts/test tests/fuzz` runs 25 times as many, freshly drawn."""

import os

SCALE = int(os.environ.get("CNN_FUZZ_SCALE", "1"))


def examples(ci_count: int) -> int:
    """How many examples a property runs: its CI count, times CNN_FUZZ_SCALE."""
    return ci_count * SCALE
