"""The strict backend's rules, each tested directly (minilm/strict.py says which are CuPy's).

What CuPy does was checked on CuPy 14.2 (H200): the expected errors below are its errors,
except where strict.py's docstring says the strict backend is stricter on purpose.
"""
import json
import operator
import os
import subprocess
import sys

import numpy as np
import pytest

import minilm
from minilm import backend, strict
from minilm.backend import get_xp, host_transfer_log, host_transfers, reset_host_transfers, to_numpy
from minilm.strict import StrictArray

IMPLICIT = "Implicit conversion to a NumPy array is not allowed"
MIXING = r"Unsupported type <class 'numpy\.ndarray'>"


@pytest.fixture
def on_strict():
    before = minilm.get_backend()
    minilm.set_backend("strict")
    reset_host_transfers()
    try:
        yield strict
    finally:
        minilm.set_backend(before)


def device(values, dtype=np.float32):
    return strict.asarray(np.asarray(values, dtype=dtype))


# ---------------------------------------------------------------------------------------
# The backend switch
# ---------------------------------------------------------------------------------------

def test_set_backend_strict_makes_get_xp_the_strict_namespace(on_strict):
    assert minilm.get_backend() == "strict"
    assert get_xp() is strict
    a = get_xp().zeros((2, 3), dtype=get_xp().float32)
    assert type(a) is StrictArray and a.dtype == np.float32 and a.shape == (2, 3)
    assert not isinstance(a, np.ndarray)


def test_get_xp_of_a_strict_array_is_strict_whatever_the_active_backend():
    a = device([1.0, 2.0])
    assert minilm.get_backend() != "strict" or True
    assert get_xp(a) is strict
    assert get_xp(np.ones(2), a) is strict          # as get_xp gives cupy for a mix
    assert get_xp(np.ones(2)) is np


def test_minilm_backend_environment_variable_selects_strict():
    code = "import minilm; print(minilm.get_backend(), type(minilm.get_xp().ones(1)).__name__)"
    env = dict(os.environ, MINILM_BACKEND="strict")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["strict", "StrictArray"]


def test_row_blocks_treat_a_strict_array_as_a_device_array():
    big = np.zeros((4096, 64), np.float32)                    # 1 MiB: several host blocks
    assert len(backend.row_blocks(big)) > 1
    assert backend.row_blocks(strict.asarray(big)) == [slice(None)]


def test_dtypes_and_constants_are_numpys_own_objects_as_in_cupy():
    assert strict.float32 is np.float32 and strict.int64 is np.int64 and strict.dtype is np.dtype
    assert strict.inf == np.inf and strict.newaxis is None
    assert device([1.0]).dtype == np.dtype("float32")


def test_a_name_cupy_may_lack_is_a_clear_attribute_error():
    with pytest.raises(AttributeError, match="strict backend.*'histogramdd'"):
        strict.histogramdd


# ---------------------------------------------------------------------------------------
# No implicit conversion to NumPy
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("convert", [np.asarray, np.array, lambda a: a.__array__(),
                                     lambda a: np.array([a, a]), np.float32,
                                     lambda a: np.testing.assert_allclose(a, 1.0)],
                         ids=["asarray", "array", "__array__", "list-of", "np.float32", "testing"])
def test_implicit_conversion_to_numpy_raises_cupys_type_error(convert):
    a = device(1.0)
    with pytest.raises(TypeError, match=IMPLICIT):
        convert(a)


@pytest.mark.parametrize("call", [np.exp, np.sum, np.isfinite, lambda a: np.concatenate([a, a]),
                                  lambda a: np.allclose(a, a), lambda a: np.add(a, a),
                                  lambda a: np.maximum(a, 0.0), lambda a: np.argmax(a)],
                         ids=["exp", "sum", "isfinite", "concatenate", "allclose", "add",
                              "maximum", "argmax"])
def test_numpy_functions_and_ufuncs_refuse_strict_arrays(call):
    a = device([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(TypeError, match=r"numpy\.\w+ was called on a strict \(device\) array.*xp\."):
        call(a)


def test_a_host_array_indexed_by_a_device_array_raises_as_on_cupy():
    h = np.arange(4.0)
    with pytest.raises(TypeError, match=IMPLICIT):
        h[device([1, 0], np.int64)]
    with pytest.raises(TypeError):
        [10, 20][device(1, np.int64)]                # no __index__, as CuPy
    with pytest.raises(TypeError):
        range(device(3, np.int64))


# ---------------------------------------------------------------------------------------
# No mixing of host and device arrays
# ---------------------------------------------------------------------------------------

BINARY = [operator.add, operator.sub, operator.mul, operator.truediv, operator.pow,
          operator.eq, operator.ne, operator.lt, operator.ge]


@pytest.mark.parametrize("op", BINARY, ids=lambda f: f.__name__)
def test_mixing_a_numpy_array_in_an_operator_raises_either_way_round(op):
    a, h = device([1.0, 2.0, 3.0]), np.ones(3, np.float32)
    with pytest.raises(TypeError, match=MIXING):
        op(a, h)
    with pytest.raises(TypeError, match=MIXING):
        op(h, a)
    with pytest.raises(TypeError, match=MIXING):        # a 0-d host array is an array too
        op(a, np.array(2.0, np.float32))


def test_matmul_and_in_place_operators_refuse_host_arrays():
    a, h = device(np.ones((2, 2))), np.ones((2, 2), np.float32)
    for f in (lambda: a @ h, lambda: h @ a, lambda: operator.iadd(a, h),
              lambda: operator.imul(a, h)):
        with pytest.raises(TypeError, match=MIXING):
            f()
    with pytest.raises(TypeError):
        h += a
    np.testing.assert_array_equal(to_numpy(a), np.ones((2, 2)))     # nothing half-done


@pytest.mark.parametrize("call", [
    lambda xp, a, h: xp.exp(h),
    lambda xp, a, h: xp.concatenate([a, h]),
    lambda xp, a, h: xp.stack([a, h]),
    lambda xp, a, h: xp.where(a > 1, a, h),
    lambda xp, a, h: xp.maximum(a, h),
    lambda xp, a, h: xp.matmul(a, h),
    lambda xp, a, h: xp.einsum("i,i->", a, h),              # CuPy lets this one through
    lambda xp, a, h: xp.take_along_axis(a, h.astype(np.int64), axis=0),   # and this one
    lambda xp, a, h: xp.zeros_like(h),                       # and this one
    lambda xp, a, h: xp.add(a, a, out=h),
    lambda xp, a, h: xp.add.at(a, h.astype(np.int64), 1.0),   # and this one
    lambda xp, a, h: xp.copyto(a, h),                        # CuPy: ValueError
], ids=["exp", "concatenate", "stack", "where", "maximum", "matmul", "einsum",
        "take_along_axis", "zeros_like", "out=", "add.at", "copyto"])
def test_xp_functions_refuse_host_arrays(call):
    a, h = device([1.0, 2.0, 3.0]), np.zeros(3, np.float32)
    with pytest.raises(TypeError, match=MIXING):
        call(strict, a, h)


def test_ufuncs_refuse_lists_as_cupys_do():
    with pytest.raises(TypeError, match="Unsupported type <class 'list'>"):
        strict.exp([1.0, 2.0])


def test_python_and_numpy_scalars_mix_freely_and_keep_the_dtype():
    a = device([1.0, 2.0])
    for r in (a * 2, 2 * a, a * 2.0, a / 3, 1.0 - a, np.float32(2) * a, a * np.float32(2),
              strict.maximum(a, 0.0), a ** 2):
        assert type(r) is StrictArray and r.dtype == np.float32
    assert (a * np.float64(2)).dtype == np.float64          # NumPy 2 / CuPy 14 promotion
    np.testing.assert_array_equal(to_numpy(np.float32(1.5) < a), [False, True])
    np.testing.assert_array_equal(to_numpy(a == None), [False, False])   # noqa: E711, as CuPy


def test_in_place_operators_write_into_the_array():
    a = device([1.0, 2.0])
    alias = a[:]
    a += 1
    a *= device([2.0, 3.0])
    np.testing.assert_array_equal(to_numpy(alias), [4.0, 9.0])


# ---------------------------------------------------------------------------------------
# Indexing (NumPy index arrays are fine, as on CuPy)
# ---------------------------------------------------------------------------------------

def test_indexing_with_numpy_integer_and_boolean_arrays_and_lists_works():
    a = device(np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(to_numpy(a[np.array([1, 0])]), [[3, 4, 5], [0, 1, 2]])
    np.testing.assert_array_equal(to_numpy(a[1, np.array([0, 2])]), [3, 5])
    np.testing.assert_array_equal(to_numpy(a[np.arange(6.0).reshape(2, 3) > 3]), [4, 5])
    np.testing.assert_array_equal(to_numpy(a[[1, 0], [0, 2]]), [3, 2])
    idx = device([1, 1], np.int64)
    np.testing.assert_array_equal(to_numpy(a[idx, device([0, 2], np.int64)]), [3, 5])
    assert type(a[0, 0]) is StrictArray and a[0, 0].ndim == 0


def test_setitem_takes_scalars_and_device_arrays_not_host_arrays():
    a = device(np.zeros((2, 3)))
    a[0] = 1.0
    a[1, np.array([0, 2])] = device([5.0, 6.0])
    a[0, 0] = np.float32(7)
    np.testing.assert_array_equal(to_numpy(a), [[7, 1, 1], [5, 0, 6]])
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray cannot be used"):
        a[0] = np.ones(3)
    with pytest.raises(TypeError, match="list"):              # CuPy's fill takes no list
        a[0] = [1.0, 2.0, 3.0]


def test_an_element_is_a_view_as_on_cupy():
    """a[i, j] is a 0-d view on CuPy (a NumPy scalar copy on NumPy): `old = a[i]; a[i] = old
    + eps` moves `old` as well, which broke a finite difference written for NumPy."""
    a = device(np.arange(6.0).reshape(2, 3))
    old = a[1, 2]
    a[1, 2] = old + 1.0
    assert float(old) == 6.0 and old.shape == ()
    kept = float(a[0, 1])
    a[0, 1] = 10.0
    assert kept == 1.0


def test_a_device_slice_bound_is_read_and_counted(on_strict):
    a = device(np.arange(5.0))
    n = device(3, np.int64)
    assert to_numpy(a[:n]).tolist() == [0, 1, 2]
    assert host_transfers() == 2                        # the bound and the to_numpy


def test_add_at_accumulates_repeated_indices():
    a = strict.zeros(3)
    strict.add.at(a, device([0, 0, 2], np.int64), device([1.0, 2.0, 3.0], np.float64))
    np.testing.assert_array_equal(to_numpy(a), [3.0, 0.0, 3.0])


# ---------------------------------------------------------------------------------------
# Scalars out, explicit ways in and out, counting
# ---------------------------------------------------------------------------------------

def test_reductions_return_0d_device_arrays_not_numpy_scalars():
    a = device([[1.0, 2.0], [3.0, 4.0]])
    for r in (a.sum(), a.max(), strict.sum(a), a.mean(), strict.vdot(a, a), a.argmax()):
        assert type(r) is StrictArray and r.ndim == 0


def test_float_int_bool_item_work_on_scalars_as_on_cupy_and_are_counted(on_strict):
    s = device(2.5)
    assert float(s) == 2.5 and int(s) == 2 and bool(s) is True and s.item() == 2.5
    assert f"{s:.2f}" == "2.50"
    assert bool(device([[1.0]])) and device([[3.0]]).item() == 3.0      # size 1 is enough here
    assert host_transfers() == 7
    assert [kind for kind, _ in host_transfer_log()] == ["float", "int", "bool", "item", "format",
                                                         "bool", "item"]
    assert all(where.startswith(os.path.join("tests", "test_strict.py"))
               for _, where in host_transfer_log()), host_transfer_log()
    reset_host_transfers()
    assert host_transfers() == 0 and host_transfer_log() == []


def test_scalar_conversions_refuse_arrays_as_cupy_does():
    with pytest.raises(TypeError, match="only 0-dimensional arrays"):
        float(device([[1.0]]))                          # NumPy would take a size-1 array
    with pytest.raises(ValueError, match="ambiguous"):
        bool(device([1.0, 2.0]))
    with pytest.raises(ValueError, match="size 1"):
        device([1.0, 2.0]).item()


def test_to_numpy_and_get_are_the_counted_ways_out_and_return_copies(on_strict):
    a = device([1.0, 2.0])
    h1, h2 = to_numpy(a), a.get()
    assert type(h1) is np.ndarray and type(h2) is np.ndarray and h1.dtype == np.float32
    h1[0] = 99.0
    h2[0] = 98.0
    assert to_numpy(a).tolist() == [1.0, 2.0]
    assert strict.asnumpy(a).tolist() == [1.0, 2.0]
    assert a.tolist() == [1.0, 2.0]
    assert host_transfers() == 5


def test_asarray_is_the_explicit_way_in_and_copies_like_a_host_to_device_copy(on_strict):
    h = np.array([1.0, 2.0], np.float32)
    a = strict.asarray(h)
    h[0] = 5.0
    assert to_numpy(a).tolist() == [1.0, 2.0]
    assert strict.asarray(a) is a                        # already on the device
    assert strict.asarray([1, 2]).dtype == np.int64
    assert to_numpy(strict.asarray([a, a])).shape == (2, 2)            # a list of device arrays
    with pytest.raises(TypeError, match=IMPLICIT):
        strict.asarray([a, h])                                          # mixing, as CuPy
    assert backend.asarray([1.0, 2.0], dtype=np.float32).dtype == np.float32
    assert type(backend.asarray(np.ones(2))) is StrictArray


def test_strict_arrays_are_unhashable_and_iterate_as_device_rows():
    a = device(np.ones((2, 3)))
    with pytest.raises(TypeError):
        hash(a)
    rows = list(a)
    assert len(rows) == 2 and all(type(r) is StrictArray and r.shape == (3,) for r in rows)
    assert len(a) == 2


def test_strict_random_generator_gives_numpys_numbers_as_device_arrays():
    g, ref = strict.random.default_rng(3), np.random.default_rng(3)
    r = g.random((2, 3), dtype=np.float32)
    assert type(r) is StrictArray and r.dtype == np.float32
    np.testing.assert_array_equal(to_numpy(r), ref.random((2, 3), dtype=np.float32))
    assert callable(g.bit_generator.state)                   # as CuPy's: not a saveable dict
    with pytest.raises(AttributeError):
        g.bit_generator.state = ref.bit_generator.state


def test_models_draw_dropout_from_a_saveable_counter_stream_on_device_backends(on_strict):
    """CuPy's Generators cannot save their state, so on cupy and strict a model's dropout
    comes from CounterRNG: the same numbers on every backend for a seed, a JSON-able state
    that restores the stream, and a clear error for another generator's state."""
    from minilm.backend import CounterRNG
    from minilm.models import GPT, GPTConfig
    a, b = CounterRNG(7, np), CounterRNG(7, strict)
    np.testing.assert_array_equal(a.random((3, 5), dtype="float32"),
                                  to_numpy(b.random((3, 5), dtype="float32")))
    assert CounterRNG(8, np).random(6).tolist() != CounterRNG(7, np).random(6).tolist()
    saved = a.state
    x = a.random(4)
    a.state = saved
    np.testing.assert_array_equal(a.random(4), x)
    with pytest.raises(TypeError, match="seed must be an int"):
        CounterRNG("7", np)
    with pytest.raises(TypeError, match="float32 or float64"):
        a.random(3, dtype="float16")
    now = a.state
    with pytest.raises(ValueError, match="counter must be an int"):
        a.state = dict(saved, counter=-1)
    with pytest.raises(ValueError, match="another kind"):
        a.state = np.random.default_rng(0).bit_generator.state
    assert a.state == now                                      # a refused state changes nothing
    u = CounterRNG(1, np).random(200_000)                      # uniform on [0, 1)
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 5e-3
    assert abs((u < 0.1).mean() - 0.1) < 5e-3
    cfg = GPTConfig(vocab_size=11, n_positions=8, n_embd=8, n_layer=1, n_head=2, resid_pdrop=0.3)
    model, ids = GPT(cfg), np.array([[1, 2, 3, 4]])              # built on the strict backend
    assert isinstance(model.dropout_generator(), CounterRNG)
    state = json.loads(json.dumps(model.rng_state()))          # what a checkpoint writes
    first = to_numpy(model(ids).logits)
    model.set_rng_state(state)
    np.testing.assert_array_equal(to_numpy(model(ids).logits), first)
    with pytest.raises(ValueError, match="PCG64"):
        model.set_rng_state(np.random.default_rng(0).bit_generator.state)


# ---------------------------------------------------------------------------------------
# The library under the strict backend
# ---------------------------------------------------------------------------------------

def test_a_gpt_forward_and_backward_run_strict_and_match_numpy(on_strict):
    from minilm.models import GPT, GPTConfig
    cfg = dict(vocab_size=13, n_positions=12, n_embd=8, n_layer=2, n_head=2, seed=0,
               resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    ids = np.random.default_rng(0).integers(0, 13, (2, 5))
    model = GPT(GPTConfig(**cfg), dtype="float64")
    assert all(type(p.data) is StrictArray for p in model.parameters())
    out = model(ids, labels=ids)
    model.backward()
    minilm.set_backend("numpy")
    ref = GPT(GPTConfig(**cfg), dtype="float64")
    ref_out = ref(ids, labels=ids)
    ref.backward()
    assert type(out.logits) is StrictArray
    np.testing.assert_allclose(to_numpy(out.logits), ref_out.logits, rtol=1e-12, atol=1e-12)
    assert out.loss == pytest.approx(ref_out.loss, rel=1e-12)
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        np.testing.assert_allclose(to_numpy(p.grad), q.grad, rtol=1e-10, atol=1e-12, err_msg=name)


def test_a_training_step_moves_only_the_loss_and_the_grad_norm_to_the_host(on_strict):
    """Per step, the Trainer reads two numbers on the host: the loss (the model's out.loss
    is a float) and the gradient norm (clip_grad_norm_ returns a float and stops a run whose
    norm is nan/inf). The progress bar and the history show only those and host values
    (lr, tokens/s): nothing else crosses, at logging steps either."""
    from minilm.models import GPT, GPTConfig
    from minilm.optim import AdamW
    from minilm.train import Trainer
    model = GPT(GPTConfig(vocab_size=13, n_positions=12, n_embd=8, n_layer=2, n_head=2, seed=0,
                          resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1))

    def get_batch(rng):
        ids = rng.integers(0, 13, (2, 6))
        return {"input_ids": ids, "labels": ids}

    steps = 4
    trainer = Trainer(model, AdamW(model.parameters(), lr=1e-2), get_batch, max_steps=steps,
                      grad_clip=1.0, progress=True, log_every=1)
    reset_host_transfers()
    history = trainer.fit()
    log = host_transfer_log()
    assert host_transfers() == 2 * steps, log
    where = {(os.path.basename(w.split(":")[0]), w.split(" in ")[-1]) for _, w in log}
    assert where == {("losses.py", "cross_entropy_forward"), ("optim.py", "clip_grad_norm_")}, log
    assert all(np.isfinite(h["loss"]) and np.isfinite(h["grad_norm"]) for h in history)
    assert type(model.parameters()[0].data) is StrictArray


def test_cross_entropy_reads_the_host_once_and_still_names_bad_targets(on_strict):
    from minilm.ops.losses import cross_entropy_forward
    logits = strict.asarray(np.random.default_rng(0).standard_normal((4, 5)))
    loss, _ = cross_entropy_forward(logits, device([1, -100, 3, 0], np.int64))
    assert host_transfers() == 1 and isinstance(loss, float)
    with pytest.raises(ValueError, match=r"targets must be in \[0, 5\) or -100; got values in \[0, 7\]"):
        cross_entropy_forward(logits, device([1, -100, 7, 0], np.int64))
    assert cross_entropy_forward(logits, device([-100] * 4, np.int64))[0] == 0.0


def test_base_is_the_owning_array_one_object_per_owner_as_cupys():
    a = strict.zeros((4, 4))
    v, t, r = a[1:], a.T, a.reshape(16)
    assert a.base is None
    assert v.base is a and t.base is a and r.base is a          # every view finds the same owner
    b = a + 1                                                   # a new array owns its memory
    assert b.base is None and b.reshape(2, 8).base is b
    v[0, 0] = 5.0
    assert float(a[1, 0]) == 5.0                                # a view writes into its owner


def test_greedy_generation_reads_the_host_once_per_new_token(on_strict):
    """One sync per token (the chosen ids; greedy takes its argmax on the device), plus the
    prompt's check; the tokens are NumPy's."""
    from minilm.models import GPT, GPTConfig
    cfg = dict(vocab_size=13, n_positions=32, n_embd=8, n_layer=2, n_head=2, seed=0)
    prompt = np.random.default_rng(0).integers(0, 13, (2, 3))
    out = GPT(GPTConfig(**cfg)).generate(prompt, 6)
    assert host_transfers() == 1 + 6, host_transfer_log()
    assert [w.split(" in ")[-1] for _, w in host_transfer_log()[1:]] == ["_generate"] * 6
    minilm.set_backend("numpy")
    np.testing.assert_array_equal(out, GPT(GPTConfig(**cfg)).generate(prompt, 6))


def test_a_ufunc_with_out_returns_that_array_and_views_keep_their_owner(on_strict):
    """As CuPy: `xp.add(c, 1, out=c)` returns `c` itself, and a later view's .base is still
    `c` (a second wrapper of the same memory must not take over as its owner)."""
    xp = on_strict
    c = xp.zeros(5)
    r = xp.add(c, 1.0, out=c)
    assert r is c
    assert xp.multiply(c, 2.0, out=(c,)) is c
    del r
    assert c[2:].base is c and c[:1].base is c
    assert to_numpy(c).tolist() == [2.0] * 5
