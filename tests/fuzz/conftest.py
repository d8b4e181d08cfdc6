"""Hypothesis settings shared by the properties: no per-example deadline (a store takes a second to create), and
the same examples on every CI run (a failure reproduces) unless CNN_FUZZ_SCALE asks for more."""

from hypothesis import HealthCheck, settings

from tests.fuzz import SCALE

settings.register_profile(
    "cnn",
    deadline=None,
    derandomize=SCALE == 1,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile("cnn")
