"""minilm.optim: optimisers against torch.optim, clipping, schedules, state dicts.

The torch trajectories come from tests/fixtures/optim/make_optim_fixtures.py (run with the
reference virtualenv that has PyTorch); this file needs only NumPy.
"""
import json
import math
import pathlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minilm.backend import cupy_available
from minilm.layers.base import Parameter
from minilm.optim import (SGD, Adam, AdamW, clip_grad_norm_, cosine_with_warmup,
                          linear_with_warmup, noam, param_groups_with_decay)

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "optim"
CASES = json.loads((FIXTURES / "cases.json").read_text())
OPTIMIZERS = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}


def make_optimizer(case, params):
    cls = OPTIMIZERS[case["optimizer"]]
    if case.get("groups"):
        groups = [dict(extra, params=[params[j] for j in idx]) for idx, extra in case["groups"]]
        return cls(groups, **case["kwargs"])
    return cls(params, **case["kwargs"])


# ----------------------------------------------------------------------------------------
# Against torch.optim
# ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES["cases"], ids=lambda c: c["name"])
def test_matches_torch(case):
    ref = np.load(FIXTURES / (case["name"] + ".npz"), allow_pickle=False)
    n, steps = len(CASES["shapes"]), CASES["steps"]
    params = [Parameter(ref[f"p{j}_init"].copy(), name=f"p{j}") for j in range(n)]
    opt = make_optimizer(case, params)
    base_lrs = [g["lr"] for g in opt.param_groups]
    for t in range(1, steps + 1):
        mult = case.get("lr_multipliers", [1.0] * steps)[t - 1]
        for g, lr in zip(opt.param_groups, base_lrs):
            g["lr"] = lr * mult                       # param_groups[i]["lr"] is settable
        for j, p in enumerate(params):
            p.grad[...] = ref[f"g{j}_step{t}"]
        opt.step()
        for j, p in enumerate(params):
            assert p.data.dtype == np.float64
            np.testing.assert_allclose(p.data, ref[f"p{j}_step{t}"], rtol=1e-12, atol=0,
                                       err_msg=f"{case['name']} param {j} step {t}")


def test_updates_are_in_place():
    params = [Parameter(np.ones((2, 3)), name="w")]
    data = params[0].data
    for opt in (SGD(params, lr=0.1, momentum=0.9), Adam(params), AdamW(params)):
        params[0].grad[...] = 1.0
        opt.step()
        assert params[0].data is data


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW])
def test_float32_stays_float32(cls):
    rng = np.random.default_rng(0)
    params = [Parameter(rng.standard_normal(s).astype(np.float32), name=str(s))
              for s in [(4, 3), (3,), ()]]
    kwargs = {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1} if cls is SGD else {"weight_decay": 0.1}
    opt = cls(params, **kwargs)
    for _ in range(3):
        for p in params:
            p.grad[...] = rng.standard_normal(p.data.shape)
        opt.step()
        clip_grad_norm_(params, 0.5)
    for p in params:
        assert p.data.dtype == np.float32 and p.grad.dtype == np.float32
    for s in opt.state.values():
        for v in s.values():
            assert not hasattr(v, "dtype") or v.dtype == np.float32


def test_groups_take_defaults_and_keep_overrides():
    a, b = Parameter(np.zeros((2, 2)), "a"), Parameter(np.zeros(2), "b")
    opt = AdamW([{"params": [a]}, {"params": [b], "weight_decay": 0.0, "lr": 5e-3}],
                lr=1e-3, weight_decay=0.1)
    assert opt.param_groups[0]["lr"] == 1e-3 and opt.param_groups[0]["weight_decay"] == 0.1
    assert opt.param_groups[1]["lr"] == 5e-3 and opt.param_groups[1]["weight_decay"] == 0.0
    assert opt.param_groups[0]["betas"] == (0.9, 0.999)


def test_param_groups_with_decay():
    named = [("wte.weight", Parameter(np.zeros((5, 3)))), ("ln.gamma", Parameter(np.ones(3))),
             ("attn.W_q", Parameter(np.zeros((3, 3)))), ("attn.b_q", Parameter(np.zeros(3)))]
    decay, no_decay = param_groups_with_decay(named, 0.1)
    assert decay["param_names"] == ["wte.weight", "attn.W_q"] and decay["weight_decay"] == 0.1
    assert no_decay["param_names"] == ["ln.gamma", "attn.b_q"] and no_decay["weight_decay"] == 0.0
    opt = AdamW([decay, no_decay], lr=1e-2)
    for _, p in named:
        p.grad[...] = 0.0          # zero gradient: only the decay moves the weights
    named[0][1].data[...] = 1.0
    named[1][1].data[...] = 1.0
    opt.step()
    np.testing.assert_allclose(named[0][1].data, 1.0 - 1e-2 * 0.1)   # decayed
    np.testing.assert_array_equal(named[1][1].data, 1.0)             # not decayed


def test_zero_grad():
    p = Parameter(np.ones(3), "p")
    p.grad[...] = 2.0
    grad = p.grad
    SGD([p], lr=0.1).zero_grad()
    assert p.grad is grad and not p.grad.any()


@pytest.mark.parametrize("make", [
    lambda ps: SGD(ps, lr=-1.0),
    lambda ps: SGD(ps, lr=0.1, momentum=-0.5),
    lambda ps: SGD(ps, lr=0.1, nesterov=True),
    lambda ps: Adam(ps, lr=-1e-3),
    lambda ps: Adam(ps, betas=(0.9, 1.0)),
    lambda ps: Adam(ps, betas=(-0.1, 0.999)),
    lambda ps: AdamW(ps, eps=-1e-8),
    lambda ps: AdamW(ps, weight_decay=-0.1),
    lambda ps: AdamW([{"params": ps, "lr": float("nan")}]),
    lambda ps: AdamW([]),
])
def test_invalid_hyperparameters(make):
    with pytest.raises(ValueError):
        make([Parameter(np.zeros(2), "p")])


def test_named_parameters_rejected_with_hint():
    with pytest.raises(TypeError, match="named_parameters"):
        AdamW([("w", Parameter(np.zeros(2)))])


# ----------------------------------------------------------------------------------------
# state_dict
# ----------------------------------------------------------------------------------------

def json_round_trip(sd):
    """What a checkpoint does: arrays kept aside, everything else through JSON."""
    arrays = {(i, k): v for i, s in sd["state"].items() for k, v in s.items() if hasattr(v, "shape")}
    meta = {"optimizer": sd["optimizer"], "param_groups": sd["param_groups"],
            "state": {i: {k: v for k, v in s.items() if not hasattr(v, "shape")}
                      for i, s in sd["state"].items()}}
    meta = json.loads(json.dumps(meta))
    for (i, k), v in arrays.items():
        meta["state"][str(i)][k] = v
    return meta


@pytest.mark.parametrize("make", [
    lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
    lambda ps: Adam(ps, lr=1e-2, weight_decay=0.1),
    lambda ps: AdamW(param_groups_with_decay([(p.name, p) for p in ps], 0.1), lr=1e-2),
])
def test_state_dict_round_trip_continues_identically(make):
    rng = np.random.default_rng(1)
    shapes = [(3, 4), (4,), (2, 2)]
    params = [Parameter(rng.standard_normal(s), name=f"p{j}") for j, s in enumerate(shapes)]
    grads = [[rng.standard_normal(s) for s in shapes] for _ in range(6)]
    opt = make(params)

    def run(opt, params, grads):
        for gs in grads:
            for p, g in zip(params, gs):
                p.grad[...] = g
            opt.step()

    run(opt, params, grads[:3])
    sd = json_round_trip(opt.state_dict())
    clones = [Parameter(p.data.copy(), name=p.name) for p in params]
    opt2 = make(clones)
    opt2.param_groups[0]["lr"] = 123.0          # overwritten by the load
    opt2.load_state_dict(sd)
    run(opt, params, grads[3:])
    run(opt2, clones, grads[3:])
    for p, q in zip(params, clones):
        np.testing.assert_array_equal(p.data, q.data)


def test_state_dict_is_a_copy_and_json_able():
    p = Parameter(np.ones((2, 2)), "w")
    opt = AdamW([p])
    p.grad[...] = 1.0
    opt.step()
    sd = opt.state_dict()
    assert sd["state"][0]["step"] == 1
    sd["state"][0]["exp_avg"][...] = 99.0
    assert not (opt.state[0]["exp_avg"] == 99.0).any()
    json.dumps(sd["param_groups"])


def test_load_state_dict_mismatch_errors():
    a, b = Parameter(np.zeros((2, 2)), "a"), Parameter(np.zeros(3), "b")
    opt = AdamW([a, b])
    a.grad[...] = 1.0
    opt.step()
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="'a'.*'b'"):
        AdamW([b, a]).load_state_dict(sd)
    with pytest.raises(ValueError, match="1 parameters|2 parameters"):
        AdamW([a]).load_state_dict(sd)
    with pytest.raises(ValueError, match="saved by AdamW"):
        SGD([a, b], lr=0.1).load_state_dict(sd)
    c = Parameter(np.zeros((3, 3)), "a")
    with pytest.raises(ValueError, match="shape"):
        AdamW([c, b]).load_state_dict(sd)


# ----------------------------------------------------------------------------------------
# Gradient clipping
# ----------------------------------------------------------------------------------------

def test_clip_grad_norm_by_hand():
    a, b = Parameter(np.zeros(2), "a"), Parameter(np.zeros((1, 1)), "b")
    a.grad[...] = [3.0, 4.0]
    b.grad[...] = 12.0                                     # total = sqrt(9 + 16 + 144) = 13
    total = clip_grad_norm_([a, b], 6.5)
    assert isinstance(total, float) and total == 13.0
    coef = 6.5 / (13.0 + 1e-6)
    np.testing.assert_allclose(a.grad, [3.0 * coef, 4.0 * coef], rtol=1e-15)
    np.testing.assert_allclose(b.grad, [[12.0 * coef]], rtol=1e-15)
    # under the limit: untouched
    a.grad[...] = [0.3, 0.4]
    b.grad[...] = 0.0
    assert clip_grad_norm_([a, b], 1.0) == pytest.approx(0.5, rel=1e-15)
    np.testing.assert_array_equal(a.grad, [0.3, 0.4])


@settings(deadline=None, max_examples=25)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=4), st.floats(1e-3, 1e3),
       st.floats(1e-3, 1e3), st.sampled_from([np.float32, np.float64]))
def test_clip_grad_norm_properties(sizes, scale, max_norm, dtype):
    rng = np.random.default_rng(len(sizes))
    params = [Parameter(np.zeros(n, dtype=dtype), f"p{j}") for j, n in enumerate(sizes)]
    for p in params:
        p.grad[...] = scale * rng.standard_normal(p.data.shape)
    before = [p.grad.astype(np.float64) for p in params]
    expected = math.sqrt(sum(float((g ** 2).sum()) for g in before))
    total = clip_grad_norm_(params, max_norm)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert total == pytest.approx(expected, rel=tol)
    after = math.sqrt(sum(float((p.grad.astype(np.float64) ** 2).sum()) for p in params))
    assert after <= max_norm * (1 + tol) or after == pytest.approx(expected, rel=tol)
    coef = min(1.0, max_norm / (expected + 1e-6))
    for p, g in zip(params, before):
        assert p.grad.dtype == dtype
        np.testing.assert_allclose(p.grad, g * coef, rtol=tol, atol=0)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_clip_grad_norm_non_finite_raises(bad):
    a, b = Parameter(np.zeros(2), "good"), Parameter(np.zeros(2), "bad")
    b.grad[0] = bad
    with pytest.raises(FloatingPointError, match="gradient norm is nan/inf.*'bad'"):
        clip_grad_norm_([a, b], 1.0)


def test_clip_grad_norm_inf_only_measures():
    a = Parameter(np.zeros(2), "a")
    a.grad[...] = [30.0, 40.0]
    assert clip_grad_norm_([a], float("inf")) == 50.0
    np.testing.assert_array_equal(a.grad, [30.0, 40.0])


# ----------------------------------------------------------------------------------------
# Schedules
# ----------------------------------------------------------------------------------------

def test_cosine_with_warmup_known_values():
    lr = lambda s: cosine_with_warmup(s, max_lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=110)
    assert lr(0) == pytest.approx(1 / 11)             # nanoGPT: lr * (it + 1) / (warmup + 1)
    assert lr(9) == pytest.approx(10 / 11)
    assert lr(10) == pytest.approx(1.0)               # cosine starts at max_lr
    assert lr(60) == pytest.approx(0.55)              # half way: (max + min) / 2
    assert lr(35) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert lr(110) == pytest.approx(0.1)
    assert lr(111) == 0.1 and lr(10_000) == 0.1
    assert cosine_with_warmup(0, 1.0, 0.0, 0, 10) == 1.0     # no warmup
    assert cosine_with_warmup(5, 1.0, 0.2, 5, 5) == 0.2      # degenerate: no decay phase


def test_linear_with_warmup_known_values():
    lr = lambda s: linear_with_warmup(s, max_lr=2.0, warmup_steps=4, max_steps=12)
    assert [lr(s) for s in (0, 1, 2, 4, 8, 12, 20)] == pytest.approx(
        [0.0, 0.5, 1.0, 2.0, 1.0, 0.0, 0.0])


def test_noam_known_values():
    assert noam(4000, 512, 4000) == pytest.approx(512 ** -0.5 * 4000 ** -0.5)   # the peak
    assert noam(1, 512, 4000) == pytest.approx(512 ** -0.5 * 4000 ** -1.5)
    assert noam(16000, 512, 4000) == pytest.approx(512 ** -0.5 / 126.49110640673517)
    assert noam(4000, 512, 4000) > noam(3999, 512, 4000)
    assert noam(4000, 512, 4000) > noam(4001, 512, 4000)


@pytest.mark.parametrize("call", [
    lambda: cosine_with_warmup(0, -1.0, 0.0, 10, 100),
    lambda: cosine_with_warmup(0, 1.0, -0.1, 10, 100),
    lambda: cosine_with_warmup(0, 1.0, 0.1, -1, 100),
    lambda: cosine_with_warmup(0, 1.0, 0.1, 100, 10),
    lambda: cosine_with_warmup(-1, 1.0, 0.1, 10, 100),
    lambda: linear_with_warmup(0, -1.0, 10, 100),
    lambda: linear_with_warmup(0, 1.0, -10, 100),
    lambda: noam(0, 512, 4000),
    lambda: noam(1, 512, -5),
])
def test_schedule_argument_errors(call):
    with pytest.raises(ValueError):
        call()


# ----------------------------------------------------------------------------------------
# Backend rules
# ----------------------------------------------------------------------------------------

def test_optim_does_not_import_numpy():
    src = (pathlib.Path(__file__).parents[1] / "minilm" / "training" / "optim.py").read_text()
    assert "import numpy" not in src and "np." not in src


def test_cupy_matches_numpy():
    ok, reason = cupy_available()
    if not ok:
        pytest.skip(f"CuPy backend unavailable: {reason}")
    import cupy as cp
    rng = np.random.default_rng(0)
    init = rng.standard_normal((64, 32))
    grads = [rng.standard_normal((64, 32)) for _ in range(4)]
    results = []
    for xp in (np, cp):
        p = Parameter(xp.array(init), "w")              # a copy: the NumPy run updates in place
        opt = AdamW([p], lr=1e-2, weight_decay=0.1)
        for g in grads:
            p.grad[...] = xp.asarray(g)
            clip_grad_norm_([p], 5.0)
            opt.step()
        results.append(cp.asnumpy(p.data) if xp is cp else p.data)
    np.testing.assert_allclose(results[1], results[0], rtol=1e-12, atol=1e-14)
