"""Gradient checking: hand-written backward passes against central differences, in float64.

    minilm.gradcheck(layer, x)                       # a Module: inputs and every parameter
    minilm.gradcheck((my_forward, my_backward), x, w) # an op pair in minilm's convention
    minilm.gradcheck(model, ids, labels=ids)          # a model returning .loss: every parameter

The scalar checked is L = sum(out * dout) with a *random* dout (a constant dout can hide
errors that cancel), or the model's own loss. Each numerical derivative is

    dL/dx_i ~ (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)

Float32 is too coarse for this (errors of 100% are common), so everything must be float64.
"""
import numpy as np

from .backend import get_xp, to_numpy


def numerical_grad(f, x, dout=None, h=1e-6, indices=None):
    """Central-difference gradient of sum(f(x) * dout) (or of the scalar f(x) when dout is
    None) w.r.t. the array x. Perturbs a private contiguous copy of x, one element at a time;
    returns an array shaped like x (only `indices`, flat, are filled when given)."""
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
        plus = scalar(f(x))
        flat[i] = old - h
        minus = scalar(f(x))
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * h)
    return grad


class GradcheckResult:
    """Per-tensor comparison of analytic and numerical gradients.

    `rows`: list of (name, max_abs_error, relative_error, passed), where the relative error is
    max|analytic - numeric| / max(max|numeric|, max|analytic|) over the checked entries
    (reported as 0 when both are below atol: a gradient that is zero in exact arithmetic).
    Truthy when every tensor passed `allclose(analytic, numeric, rtol, atol)`.
    """

    def __init__(self, rows):
        self.rows = rows

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
        lines = [f"{'name':<{w}}  {'max abs err':>11}  {'rel err':>9}  ok"]
        lines += [f"{n:<{w}}  {a:11.3e}  {r:9.2e}  {'yes' if p else 'NO'}" for n, a, r, p in self.rows]
        return "\n".join(lines)

    __repr__ = __str__


def _compare(name, analytic, numeric, idx, rtol, atol):
    a = to_numpy(analytic).reshape(-1)[idx]
    n = to_numpy(numeric).reshape(-1)[idx]
    err = float(np.max(np.abs(a - n))) if a.size else 0.0
    scale = float(max(np.max(np.abs(n)), np.max(np.abs(a)))) if a.size else 0.0
    rel = err / scale if scale > atol else 0.0          # an all-zero gradient (an attention key
    #                                                     bias, say) has nothing to be relative to
    return (name, err, rel, bool(np.allclose(a, n, rtol=rtol, atol=atol)))


def _pick(size, max_elements, rng):
    if max_elements is None or size <= max_elements:
        return np.arange(size)
    return np.sort(rng.choice(size, max_elements, replace=False))


def _require_float64(name, a):
    if a.dtype != np.float64:
        raise TypeError(f"gradcheck needs float64 arrays, but {name} is {a.dtype}: "
                        "build the layer or model with dtype='float64'")


def gradcheck(target, *inputs, eps=1e-6, atol=1e-7, rtol=1e-5, seed=0, max_elements=None,
              check_inputs=True, **kwargs):
    """Compare a hand-written backward with central differences; returns a GradcheckResult.

    target: a Module (forward(*inputs, **kwargs) -> array, or a ModelOutput with .loss), or a
    pair (forward, backward) of minilm ops (forward(*inputs, **kwargs) -> (out, cache),
    backward(dout, cache) -> grads). Float inputs are checked (unless check_inputs=False),
    and so is every parameter of a Module. `max_elements` caps the entries checked per tensor
    (a random subset) for big models.
    """
    rng = np.random.default_rng(seed)
    xp_inputs = list(inputs)
    float_idx = [i for i, a in enumerate(xp_inputs)
                 if hasattr(a, "dtype") and a.dtype.kind == "f"] if check_inputs else []
    for i in float_idx:
        _require_float64(f"input {i}", xp_inputs[i])
    rows = []

    if isinstance(target, tuple):                                 # an op pair
        fwd, bwd = target

        def run(args):
            return fwd(*args, **kwargs)[0]

        out, cache = fwd(*xp_inputs, **kwargs)
        xp = get_xp(out)
        dout = xp.asarray(rng.standard_normal(out.shape))
        grads = bwd(dout, cache)
        grads = grads if isinstance(grads, tuple) else (grads,)
        for i in float_idx:
            idx = _pick(xp_inputs[i].size, max_elements, rng)

            def f(a, i=i):
                args = list(xp_inputs)
                args[i] = a
                return run(args)
            rows.append(_compare(f"input {i}", grads[i], numerical_grad(f, xp_inputs[i], dout, eps, idx),
                                 idx, rtol, atol))
        return GradcheckResult(rows)

    module = target
    was_training = module.training
    module.eval()                                                 # dropout off: deterministic
    try:
        for name, p in module.named_parameters():
            _require_float64(name, p.data)
        out = module.forward(*xp_inputs, **kwargs)
        is_loss = hasattr(out, "loss")
        if is_loss and out.loss is None:
            raise ValueError("the model returned no loss: pass labels (or the loss's arguments)")
        module.zero_grad()
        if is_loss:
            dout = None
            dxs = module.backward()
        else:
            xp = get_xp(out)
            dout = xp.asarray(rng.standard_normal(out.shape))
            dxs = module.backward(dout)
        dxs = dxs if isinstance(dxs, tuple) else (dxs,)
        grads = {name: p.grad.copy() for name, p in module.named_parameters()}

        for i in float_idx:
            idx = _pick(xp_inputs[i].size, max_elements, rng)

            def f(a, i=i):
                args = list(xp_inputs)
                args[i] = a
                return module.forward(*args, **kwargs)
            rows.append(_compare(f"input {i}", dxs[i], numerical_grad(f, xp_inputs[i], dout, eps, idx),
                                 idx, rtol, atol))
        for name, p in module.named_parameters():
            idx = _pick(p.data.size, max_elements, rng)
            original = p.data

            def f(a, p=p):
                p.data = a
                return module.forward(*xp_inputs, **kwargs)
            numeric = numerical_grad(f, original, dout, eps, idx)
            p.data = original
            rows.append(_compare(name, grads[name], numeric, idx, rtol, atol))
        module.zero_grad()
        for m in module.modules():                                # leave no stale caches behind
            if hasattr(m, "cache"):
                m.cache = None
        return GradcheckResult(rows)
    finally:
        module.train(was_training)
