"""Shared test setup: hypothesis profiles, the `xp` backend fixture, small helpers.

Hypothesis: the "ci" profile (CI=true) draws fewer examples; no test has a deadline.
Backends: tests that take the `xp` fixture run once per available backend (NumPy always,
CuPy when a GPU answers), CuPy's numpy_cupy_allclose idea. With MINILM_BACKEND=cupy the
whole suite's default backend is CuPy; with MINILM_BACKEND=strict it is the strict backend
(NumPy with CuPy's rules, minilm/strict.py), which then also takes NumPy's place in `xp`.
"""
import os

# Small matrix products on a busy 2-core machine spend most of their time spin-waiting in
# OpenBLAS threads (15x slower measured); the suite runs them single-threaded. Must be set
# before NumPy is imported. Benchmarks (python -m minilm bench) keep the machine's default.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import minilm  # noqa: E402
from minilm.backend import cupy_available  # noqa: E402

settings.register_profile("ci", max_examples=8, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
settings.register_profile("dev", max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")

_CUPY_OK, _CUPY_WHY = cupy_available()
STRICT = os.environ.get("MINILM_BACKEND", "").strip().lower() == "strict"
BACKENDS = ["strict" if STRICT else "numpy", pytest.param("cupy", marks=pytest.mark.skipif(
    not _CUPY_OK, reason=f"CuPy backend unavailable: {_CUPY_WHY}"))]


@pytest.fixture(params=BACKENDS)
def xp(request):
    """Run the test under each backend; restores the previous backend afterwards."""
    before = minilm.get_backend()
    minilm.set_backend(request.param)
    try:
        yield minilm.get_xp()
    finally:
        minilm.set_backend(before)


def distinct(*dims):
    """True when every dimension differs, so a transposed axis cannot pass by accident."""
    return len(set(dims)) == len(dims)


def grad_close(analytic, reference, rel=1e-10, floor=1e-12, total_norm=None):
    """Compare a gradient tensor with a reference: max error relative to the reference's
    largest entry, with a floor relative to the whole gradient's norm (entries that are zero
    in exact arithmetic, like an attention key bias, are round-off on both sides)."""
    a, r = minilm.to_numpy(analytic), minilm.to_numpy(reference)
    scale = max(np.abs(r).max(), floor * (total_norm if total_norm is not None else 1.0))
    return float(np.abs(a - r).max()) / scale <= rel


@st.composite
def distinct_dims(draw, exclude=(), **ranges):
    """{name: size}, each drawn from its inclusive (low, high) range, all different from each
    other and from `exclude`, so that a transposed axis cannot pass by accident.

    The sizes are built distinct (each one is drawn from what is left of its range), not
    filtered afterwards: `assume(distinct(...))` rejected 781 of 797 draws in one CI run and
    every draw it kept had B = 1. Ranges are taken in order; each must hold more values than
    the dimensions before it plus `exclude`.
    """
    used, out = set(exclude), {}
    for name, (low, high) in ranges.items():
        choices = [v for v in range(low, high + 1) if v not in used]
        if not choices:
            raise ValueError(f"distinct_dims: no size left for {name} in [{low}, {high}] after {sorted(used)}")
        out[name] = draw(st.sampled_from(choices))
        used.add(out[name])
    return out


@st.composite
def attention_dims(draw, cross=False, max_batch=4, max_len=6):
    """Multi-head attention sizes: heads H, head width D (D >= 2, so C = H * D differs from H),
    C = H * D, batch B and length T (and source length S != T with cross=True), with B, T, S
    different from each other and from H, D, C (H = 1 makes C = D, which is the same axis)."""
    hd = draw(distinct_dims(H=(1, 3), D=(2, 4)))
    C = hd["H"] * hd["D"]
    lengths = dict(B=(1, max_batch), T=(1, max_len)) | ({"S": (1, max_len + 1)} if cross else {})
    rest = draw(distinct_dims(exclude={hd["H"], hd["D"], C}, **lengths))
    return dict(hd, C=C, **rest)
