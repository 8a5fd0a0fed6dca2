"""The NumPy / CuPy switch and the rule that compute code never imports NumPy."""
import os
import re

import numpy as np
import pytest

import minilm
from minilm.backend import cupy_available, get_xp, to_numpy

ROOT = os.path.join(os.path.dirname(__file__), "..", "minilm")
COMPUTE = ["ops", "layers", "models", "training/optim.py", "training/precision.py"]
# The gradient checker lives with the ops it checks, but it is not compute code: it perturbs
# inputs one element at a time in float64 on the host, by design.
NOT_COMPUTE = {os.path.join("ops", "check.py")}


def test_compute_code_never_imports_numpy():
    offenders = []
    for entry in COMPUTE:
        path = os.path.join(ROOT, entry)
        files = [path] if path.endswith(".py") else [
            os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs if f.endswith(".py")]
        for f in files:
            assert os.path.exists(f), f"{f} is gone: update COMPUTE"
            if os.path.relpath(f, ROOT) in NOT_COMPUTE:
                continue
            src = open(f, encoding="utf-8").read()
            if re.search(r"^\s*(import numpy|from numpy)", src, re.M):
                offenders.append(os.path.relpath(f, ROOT))
    assert offenders == [], f"compute modules must use xp = get_xp(...), not numpy: {offenders}"


def test_set_and_get_backend_roundtrip():
    before = minilm.get_backend()
    minilm.set_backend("numpy")
    assert minilm.get_backend() == "numpy"
    assert get_xp() is np
    minilm.set_backend(before)


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown backend"):
        minilm.set_backend("tensorflow")


def test_cupy_without_gpu_says_why():
    ok, why = cupy_available()
    if ok:
        pytest.skip("a GPU is available here; the failure path cannot be exercised")
    with pytest.raises(RuntimeError, match="CuPy|CUDA"):
        minilm.set_backend("cupy")
    assert why


def test_get_xp_follows_the_arrays(xp):
    a = xp.ones(3)
    assert get_xp(a) is xp
    assert isinstance(to_numpy(a), np.ndarray)
    np.testing.assert_array_equal(to_numpy(a), np.ones(3))
