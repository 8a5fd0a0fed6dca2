"""Gradient checking: hand-written backward passes against central differences, in float64.

    minilm.gradcheck(layer, x)                       # a Module: inputs and every parameter
    minilm.gradcheck((my_forward, my_backward), x, w) # an op pair in minilm's convention
    minilm.gradcheck(model, ids, labels=ids)          # a model returning .loss: every parameter

The scalar checked is L = sum(out * dout) with a *random* dout (a constant dout can hide
errors that cancel), or the model's own loss. Each numerical derivative is

    dL/dx_i ~ (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)

Float32 is too coarse for this (errors of 100% are common), so everything must be float64.

What a pass means, for each tensor T (an input or a parameter):

    max_i |analytic_i - numeric_i|  <=  rtol * scale_T + floor

scale_T is the largest |entry| of T's gradient. The floor is not a fixed number (a fixed
one lets a gradient that is 2x too big pass whenever the inputs are small): it is the larger
of `atol` times the largest gradient entry of any checked tensor, and the round-off noise of
the finite differences themselves, about 2^-52 |L| / eps. So a gradient that is zero in
exact arithmetic (an attention key bias) passes, and a wrong one is caught at any scale.

Besides the numbers it checks the contract of a backward: it must not write into the
upstream gradient it is given (a residual connection reuses that array), it must return one
gradient per array argument of forward, each shaped like its tensor, and a Module must *add*
into `.grad` (two backward passes give twice the gradient of one).
"""
import inspect

import numpy as np

from ..backend import get_xp, to_numpy

_ROUNDOFF = float(np.finfo(np.float64).eps)    # 2^-52
_STREAM = 0x67726164    # 'grad': the random stream's second key, see gradcheck
_NOISE = 16.0          # finite-difference noise floor = _NOISE * 2^-52 * |L| / eps (measured
#                        over the test suite's checks: a zero gradient's numeric value reached 2.3x)


def numerical_grad(f, x, dout=None, h=1e-6, indices=None):
    """Central-difference gradient of sum(f(x) * dout) (or of the scalar f(x) when dout is
    None) w.r.t. the array x. Perturbs a private contiguous copy of x, one element at a time;
    returns an array shaped like x (only `indices`, flat, are filled when given).

    The step divided by is the one actually taken (x + h rounds when |x| is much larger
    than h), so large inputs get the right slope."""
    xp = get_xp(x)
    x = xp.array(x, copy=True)
    grad = xp.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)

    def scalar(out):
        out = getattr(out, "loss", out) if dout is None else out
        return float(out) if dout is None else float((out * dout).sum())

    for i in (range(x.size) if indices is None else indices):
        old = float(flat[i])
        flat[i] = old + h
        up = float(flat[i]) - old                         # exact (Sterbenz): the step taken
        plus = scalar(f(x))
        flat[i] = old - h
        down = old - float(flat[i])
        minus = scalar(f(x))
        flat[i] = old
        gflat[i] = (plus - minus) / (up + down)
    return grad


class Row(tuple):
    """One checked tensor. Unpacks as (name, max_abs_error, relative_error, passed), and
    also says what was checked: `checked` entries of `total`, the gradient's `scale`
    (largest |entry|), the error `floor` it was allowed, and a `note` when it failed for a
    reason other than the numbers (an overwritten .grad, a written upstream gradient)."""

    def __new__(cls, name, max_abs_error, relative_error, passed, checked=0, total=0,
                scale=0.0, floor=0.0, note=""):
        row = super().__new__(cls, (name, max_abs_error, relative_error, bool(passed)))
        row.checked, row.total, row.scale, row.floor, row.note = checked, total, scale, floor, note
        return row

    name = property(lambda self: self[0])
    max_abs_error = property(lambda self: self[1])
    relative_error = property(lambda self: self[2])
    passed = property(lambda self: self[3])


class GradcheckResult:
    """Per-tensor comparison of analytic and numerical gradients.

    `rows`: list of Row, one per checked tensor, unpacking as (name, max_abs_error,
    relative_error, passed), where the relative error is max|analytic - numeric| / scale over
    the checked entries (reported as 0 when the scale is below the floor: a gradient that is
    zero in exact arithmetic). A backward that writes into its upstream gradient adds a
    failing row named "dout (upstream gradient)". Truthy when every row passed.
    """

    def __init__(self, rows, floor=None, sampled=False):
        self.rows = rows
        self.floor = floor
        self.sampled = sampled

    @property
    def ok(self):
        return all(r[3] for r in self.rows)

    def __bool__(self):
        return self.ok

    @property
    def worst(self):
        """{name: relative error}"""
        return {r[0]: r[2] for r in self.rows}

    def __str__(self):
        w = max([len(r[0]) for r in self.rows] + [4])
        checked = [f"{getattr(r, 'checked', 0)}/{getattr(r, 'total', 0)}" for r in self.rows]
        c = max([len(s) for s in checked] + [7])
        lines = [f"{'name':<{w}}  {'checked':>{c}}  {'scale':>9}  {'max abs err':>11}  {'rel err':>9}  ok"]
        for r, s in zip(self.rows, checked):
            n, a, rel, p = r
            lines.append(f"{n:<{w}}  {s:>{c}}  {getattr(r, 'scale', 0.0):9.2e}  {a:11.3e}  {rel:9.2e}  "
                         f"{'yes' if p else 'NO'}")
        if self.floor is not None:
            lines.append(f"pass: max abs err <= rtol * scale + {self.floor:.2e} (the floor: round-off of "
                         "the finite differences, or atol x the largest gradient)")
        if self.sampled:
            lines.append("checked: entries compared / entries in the tensor (max_elements sampled the rest)")
        lines += [f"{r[0]}: {r.note}" for r in self.rows if getattr(r, "note", "")]
        return "\n".join(lines)

    __repr__ = __str__


def _pick(size, max_elements, rng):
    if max_elements is None or size <= max_elements:
        return np.arange(size)
    return np.sort(rng.choice(size, max_elements, replace=False))


def _require_float64(name, a):
    if a.dtype != np.float64:
        raise TypeError(f"gradcheck needs float64 arrays, but {name} is {a.dtype}: "
                        "build the layer or model with dtype='float64'")


def _arg_names(fn, n):
    """Names of the first n positional parameters of fn ("input i" where unknown)."""
    try:
        params = [p.name for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    return [params[i] if i < len(params) else f"input {i}" for i in range(n)]


def _label(i, names):
    return f"input {i}" if names[i] == f"input {i}" else f"input {i} ({names[i]})"


def _input_grads(grads, inputs, check_idx, names):
    """{input index: gradient} for the inputs to check, from what backward returned.

    Accepted: one gradient per argument of forward, one per array argument, or one per float
    array argument (ids have no gradient). Trailing Nones (linear_backward's db without a
    bias) are ignored. Anything else, a None where a gradient is needed, or a gradient not
    shaped like its input is a ValueError that says what was expected."""
    if grads is None:
        grads = []
    elif isinstance(grads, (tuple, list)):
        grads = list(grads)
    else:
        grads = [grads]
    arrays = [i for i, a in enumerate(inputs) if hasattr(a, "dtype") and hasattr(a, "shape")]
    floats = [i for i in arrays if inputs[i].dtype.kind == "f"]
    while len(grads) > len(inputs) and grads[-1] is None:
        grads.pop()
    for positions in (list(range(len(inputs))), arrays, floats):
        if len(grads) == len(positions):
            given = dict(zip(positions, grads))
            break
    else:
        what = ", ".join(names[i] for i in arrays)
        raise ValueError(f"backward returned {len(grads)} gradient{'s' if len(grads) != 1 else ''}, expected "
                         f"{len(arrays)} (one per array argument of forward: {what}); a float argument "
                         "that gets no gradient (a mask) goes in as a keyword, or pass check_inputs=False "
                         "to check parameters only")
    out = {}
    for i in check_idx:
        g = given.get(i)
        if g is None:
            raise ValueError(f"backward returned no gradient for {_label(i, names)}, expected an array of "
                             f"shape {tuple(inputs[i].shape)} (pass check_inputs=False to check parameters only)")
        shape = tuple(g.shape) if hasattr(g, "shape") else tuple(np.shape(g))
        if shape != tuple(inputs[i].shape):
            raise ValueError(f"gradient for {_label(i, names)} has shape {shape}, "
                             f"expected {tuple(inputs[i].shape)}")
        out[i] = get_xp(g).array(g, copy=True)   # a later forward may reuse a buffer it returned
    return out


def _written_row(dout, given):
    """A failing row when backward wrote into the upstream gradient it was handed."""
    a, b = to_numpy(dout), to_numpy(given)
    if np.array_equal(a, b):
        return []
    err = float(np.max(np.abs(a - b)))
    return [Row("dout (upstream gradient)", err, float("inf"), False, int(np.sum(a != b)), a.size,
                float(np.max(np.abs(a))) if a.size else 0.0, 0.0,
                "backward wrote into the upstream gradient it was given (e.g. `dout *= ...`); the "
                "caller may still need it (a residual connection passes the same array to two "
                "branches): compute into a new array instead")]


class _Check:
    """Analytic and numeric values of one tensor, compared once the floor is known."""

    def __init__(self, name, analytic, numeric, idx, total):
        self.name, self.idx, self.total = name, idx, total
        self.a = to_numpy(analytic).reshape(-1)[idx]
        self.n = to_numpy(numeric).reshape(-1)[idx]
        self.note = ""

    def row(self, rtol, floor):
        a, n = self.a, self.n
        err = float(np.max(np.abs(a - n))) if a.size else 0.0
        scale = float(max(np.max(np.abs(n)), np.max(np.abs(a)))) if a.size else 0.0
        rel = err / scale if scale > floor else 0.0       # an all-zero gradient (an attention key
        #                                                   bias, say) has nothing to be relative to
        passed = err <= rtol * scale + floor and not self.note
        return Row(self.name, err, rel, passed, len(self.idx), self.total, scale, floor, self.note)


def _finish(checks, rtol, atol, loss_scale, eps, extra_rows=(), sampled=False):
    largest = max([float(np.max(np.abs(c.n))) for c in checks if c.n.size] + [0.0])
    floor = max(atol * largest, _NOISE * _ROUNDOFF * loss_scale / eps)
    return GradcheckResult(list(extra_rows) + [c.row(rtol, floor) for c in checks], floor, sampled)


def _random_dout(out, rng):
    xp = get_xp(out) if hasattr(out, "dtype") else np
    return xp.asarray(rng.standard_normal(out.shape if hasattr(out, "shape") else np.shape(out)))


def _loss_scale(out, dout):
    """Size of the terms summed into L, for the round-off floor."""
    if dout is None:
        return abs(float(out))
    return float(get_xp(dout).abs(out * dout).sum())


def gradcheck(target, *inputs, eps=1e-6, atol=1e-8, rtol=1e-5, seed=0, max_elements=None,
              check_inputs=True, **kwargs):
    """Compare a hand-written backward with central differences; returns a GradcheckResult.

    target: a Module (forward(*inputs, **kwargs) -> array, or a ModelOutput with .loss), or a
    pair (forward, backward) of minilm ops (forward(*inputs, **kwargs) -> (out, cache),
    backward(dout, cache) -> grads, one per array argument of forward). Float inputs are
    checked (unless check_inputs=False), and so is every parameter of a Module; every entry
    of each, or a random `max_elements` of them for big models (the table says how many).

    A tensor passes when max|analytic - numeric| <= rtol * (its largest gradient entry) +
    floor, with floor = max(atol * the largest gradient entry of any checked tensor, the
    finite differences' round-off). Raises ValueError when there is nothing to check, or when
    backward returns the wrong number of gradients or one of the wrong shape.

    A Module's NumPy inputs (keyword arrays too) are moved to the backend of its parameters
    first, as a model call moves its inputs, so the same check runs on NumPy, CuPy and the
    strict backend; an op pair runs on whatever arrays it is given.
    """
    # dout and the sampled entries come from their own stream: with default_rng(seed) a
    # caller who drew x from default_rng(0) would get dout == x, which hides a transposed dW
    rng = np.random.default_rng([seed, _STREAM])
    inputs = list(inputs)
    float_idx = [i for i, a in enumerate(inputs)
                 if hasattr(a, "dtype") and a.dtype.kind == "f"] if check_inputs else []
    for i in float_idx:
        _require_float64(f"input {i}", inputs[i])
    if isinstance(target, tuple):
        return _check_pair(target, inputs, float_idx, eps, atol, rtol, rng, max_elements, kwargs)
    params = target.parameters() if hasattr(target, "parameters") else []
    if params:
        xp = get_xp(params[0].data)
        inputs = [_to_backend(a, xp) for a in inputs]
        kwargs = {k: _to_backend(v, xp) for k, v in kwargs.items()}
    return _check_module(target, inputs, float_idx, eps, atol, rtol, rng, max_elements, kwargs)


def _to_backend(a, xp):
    """A NumPy array moved to the array module xp (a device); anything else as it is."""
    return xp.asarray(a) if isinstance(a, np.ndarray) and xp is not np else a


def _input_checks(run, inputs, float_idx, grads, dout, eps, rng, max_elements):
    """One _Check per float input: grads[i] against central differences of run(*inputs)."""
    checks = []
    for i in float_idx:
        idx = _pick(inputs[i].size, max_elements, rng)

        def f(a, i=i):
            args = list(inputs)
            args[i] = a
            return run(*args)
        checks.append(_Check(f"input {i}", grads[i], numerical_grad(f, inputs[i], dout, eps, idx),
                             idx, inputs[i].size))
    return checks


def _check_pair(target, inputs, float_idx, eps, atol, rtol, rng, max_elements, kwargs):
    fwd, bwd = target
    if not float_idx:
        raise ValueError("nothing to check: an op pair needs at least one float64 array argument "
                         "(and check_inputs=True)")
    names = _arg_names(fwd, len(inputs))
    out, cache = fwd(*inputs, **kwargs)
    dout = _random_dout(out, rng)
    given = dout.copy()                                   # backward gets a copy: see _written_row
    grads = _input_grads(bwd(given, cache), inputs, float_idx, names)
    written = _written_row(dout, given)

    checks = _input_checks(lambda *args: fwd(*args, **kwargs)[0], inputs, float_idx, grads, dout, eps, rng,
                           max_elements)
    return _finish(checks, rtol, atol, _loss_scale(out, dout), eps, written,
                   sampled=any(len(c.idx) < c.total for c in checks))


def _check_module(module, inputs, float_idx, eps, atol, rtol, rng, max_elements, kwargs):
    was_training = module.training
    module.eval()                                                 # dropout off: deterministic
    try:
        params = module.named_parameters()
        for name, p in params:
            _require_float64(name, p.data)
        if not float_idx and not params:
            raise ValueError(f"nothing to check: {type(module).__name__} has no parameters and no float64 "
                             "input is checked")
        names = _arg_names(module.forward, len(inputs))
        module.zero_grad()

        def forward_backward(dout):
            out = module.forward(*inputs, **kwargs)
            if hasattr(out, "loss"):
                if out.loss is None:
                    raise ValueError("the model returned no loss: pass labels (or the loss's arguments)")
                return out, None, module.backward(), []
            dout = _random_dout(out, rng) if dout is None else dout
            given = dout.copy()
            dxs = module.backward(given)
            return out, dout, dxs, _written_row(dout, given)

        out, dout, dxs, written = forward_backward(None)
        dxs = _input_grads(dxs, inputs, float_idx, names) if float_idx else {}
        for name, p in params:
            if tuple(p.grad.shape) != tuple(p.data.shape):
                raise ValueError(f"gradient of parameter {name} has shape {tuple(p.grad.shape)}, "
                                 f"expected {tuple(p.data.shape)}")
        once = {name: to_numpy(p.grad).copy() for name, p in params}
        forward_backward(dout)                                    # a second pass must add as much again
        twice = {name: to_numpy(p.grad).copy() for name, p in params}
        module.zero_grad()
        loss_scale = _loss_scale(getattr(out, "loss", out), dout)

        checks = _input_checks(lambda *args: module.forward(*args, **kwargs), inputs, float_idx, dxs, dout, eps,
                               rng, max_elements)
        largest = max([float(np.max(np.abs(g))) for g in once.values() if g.size] + [0.0])
        for name, p in params:
            idx = _pick(p.data.size, max_elements, rng)
            original = p.data

            def f(a, p=p):
                p.data = a
                return module.forward(*inputs, **kwargs)
            numeric = numerical_grad(f, original, dout, eps, idx)
            p.data = original
            check = _Check(name, once[name], numeric, idx, p.data.size)
            g1, g2 = once[name], twice[name]
            drift = float(np.max(np.abs(g2 - 2 * g1))) if g1.size else 0.0
            if drift > 1e-9 * (float(np.max(np.abs(g1))) + largest):
                ratio = float((g2 * g1).sum() / max((g1 * g1).sum(), 1e-300))
                check.note = (f"after two backward passes .grad holds {ratio:.2f}x the gradient of one, "
                              "expected 2x: backward must add into .grad (`p.grad += ...`), not overwrite it")
            checks.append(check)
        for m in module.modules():                                # leave no stale caches behind
            if hasattr(m, "cache"):
                m.cache = None
        return _finish(checks, rtol, atol, loss_scale, eps, written,
                       sampled=any(len(c.idx) < c.total for c in checks))
    finally:
        module.train(was_training)
