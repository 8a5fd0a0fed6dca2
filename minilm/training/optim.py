"""Optimisers, gradient clipping and learning-rate schedules.

    opt = AdamW(param_groups_with_decay(model.named_parameters(), 0.1), lr=6e-4)
    for step in range(max_steps):
        for group in opt.param_groups:
            group["lr"] = cosine_with_warmup(step, 6e-4, 6e-5, 100, max_steps)
        opt.zero_grad()
        out = model(ids, labels=ids)
        model.backward()
        clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

Each optimiser follows its ``torch.optim`` namesake update for update (the tests compare
them to 1e-12 in float64), with the same ``param_groups`` list of dicts. Updates are
written in place on ``p.data`` with ``xp`` functions, so one code path serves NumPy and
CuPy, and a float32 parameter stays float32 (Python-float scalars do not upcast it).
"""
import math

from ..backend import get_xp, to_numpy


# ----------------------------------------------------------------------------------------
# The shared bookkeeping: parameter groups, state, zero_grad, state_dict
# ----------------------------------------------------------------------------------------

class Optimizer:
    """Base class: parameter groups and per-parameter state; subclasses write `step`.

    ``params`` is a list of Parameters, or a list of group dicts such as
    ``{"params": [...], "weight_decay": 0.0, "lr": 1e-3}``; a key a group leaves out takes
    the optimiser's default. ``param_groups[i]["lr"]`` (or any other hyper-parameter) can
    be changed between steps. ``state[i]`` holds parameter i's running buffers, with i the
    parameter's position when the groups are read in order.
    """

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.param_groups = []
        self.state = {}                  # parameter index -> {"step": int, buffers...}
        self._scratch = {}               # parameter index -> work buffer (never saved)
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(params[0], dict):
            params = [{"params": params}]
        for group in params:
            self.add_param_group(group)

    def add_param_group(self, group):
        """Append a group dict; missing hyper-parameters take the defaults."""
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError("param groups must be dicts with a 'params' list, got "
                            f"{type(group).__name__}")
        group = dict(group)
        params = list(group["params"])
        for p in params:
            if not (hasattr(p, "data") and hasattr(p, "grad")):
                raise TypeError("optimizer params must be Parameters (with .data and .grad), got "
                                f"{type(p).__name__}; pass model.parameters(), not named_parameters()")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        group["params"] = params
        names = group.get("param_names")
        group["param_names"] = list(names) if names is not None else [p.name for p in params]
        if len(group["param_names"]) != len(params):
            raise ValueError("param_names must have one name per parameter")
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self._check_hyperparameters(group)
        self.param_groups.append(group)

    def _check_hyperparameters(self, group):
        """Raise ValueError for an invalid value; each subclass checks its own."""

    def _indexed_params(self):
        """(index, group, Parameter) for every parameter, in group order."""
        i = 0
        for group in self.param_groups:
            for p in group["params"]:
                yield i, group, p
                i += 1

    def _scratch_for(self, i, param):
        """A reusable work array shaped like `param`, so a step allocates no temporaries."""
        buf = self._scratch.get(i)
        if buf is None or buf.shape != param.shape or buf.dtype != param.dtype:
            buf = self._scratch[i] = get_xp(param).empty_like(param)
        return buf

    def zero_grad(self):
        """Set every gradient to zero in place (backward passes add into .grad with +=)."""
        for _, _, p in self._indexed_params():
            if p.grad is not None:
                p.grad[...] = 0

    def step(self):
        raise NotImplementedError

    def state_dict(self):
        """Everything `load_state_dict` needs to continue exactly where this one is.

            {"optimizer": "AdamW",
             "state": {0: {"step": 3, "exp_avg": array, "exp_avg_sq": array}, 1: ...},
             "param_groups": [{"lr": ..., "weight_decay": ..., ..., "params": [0, 1],
                               "param_names": ["wte.weight", ...]}, ...]}

        State is keyed by parameter index; arrays are host (NumPy) copies and everything
        else is a JSON-able number, list or string.
        """
        state = {}
        for i, s in self.state.items():
            state[i] = {k: (to_numpy(v).copy() if hasattr(v, "shape") else v) for k, v in s.items()}
        groups, start = [], 0
        for group in self.param_groups:
            saved = {k: v for k, v in group.items() if k != "params"}
            if "betas" in saved:
                saved["betas"] = list(saved["betas"])
            saved["params"] = list(range(start, start + len(group["params"])))
            saved["param_names"] = list(group["param_names"])
            start += len(group["params"])
            groups.append(saved)
        return {"optimizer": type(self).__name__, "state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore hyper-parameters and buffers saved by `state_dict`.

        The groups must hold the same parameters in the same order (checked by name and
        shape); otherwise ValueError says what differs. Integer state keys may arrive as
        strings (after a JSON round trip).
        """
        kind = state_dict.get("optimizer", type(self).__name__)
        if kind != type(self).__name__:
            raise ValueError(f"optimizer state was saved by {kind}, cannot load it into "
                             f"{type(self).__name__}")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"optimizer state has {len(saved_groups)} parameter groups, "
                             f"this optimizer has {len(self.param_groups)}")
        for g, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            names, saved_names = group["param_names"], saved.get("param_names")
            if len(saved["params"]) != len(names):
                raise ValueError(f"parameter group {g}: optimizer state has {len(saved['params'])} "
                                 f"parameters, this optimizer has {len(names)}")
            for a, b in zip(saved_names or names, names):      # names are optional in the file
                if a != b:
                    raise ValueError(f"parameter group {g}: optimizer state was saved for "
                                     f"parameter {a!r} but this optimizer has {b!r} at that "
                                     "position (were the parameters built in another order?)")
        params = [p for _, _, p in self._indexed_params()]
        new_state = {}
        for key, s in state_dict["state"].items():
            i = int(key)
            if not 0 <= i < len(params):
                raise ValueError(f"optimizer state refers to parameter index {i}, but there "
                                 f"are only {len(params)} parameters")
            p = params[i]
            xp = get_xp(p.data)
            new_state[i] = {}
            for k, v in s.items():
                if hasattr(v, "shape"):
                    if tuple(v.shape) != tuple(p.data.shape):
                        raise ValueError(f"optimizer state {k!r} of parameter {i} ({p.name!r}) "
                                         f"has shape {tuple(v.shape)}, the parameter has "
                                         f"{tuple(p.data.shape)}")
                    v = xp.array(v, dtype=p.data.dtype)         # a fresh copy on p's backend
                new_state[i][k] = v
        for saved, group in zip(saved_groups, self.param_groups):
            for k, v in saved.items():
                if k not in ("params", "param_names"):
                    group[k] = tuple(v) if k == "betas" else v
        self.state = new_state


def _check_nonnegative(group, *keys):
    for key in keys:
        if not group[key] >= 0.0:           # also catches NaN
            raise ValueError(f"invalid {key}: {group[key]} (must be >= 0)")


def _check_adam_hyperparameters(group):
    _check_nonnegative(group, "lr", "eps", "weight_decay")
    _check_betas(group)


def _check_betas(group):
    betas = tuple(group["betas"])
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"invalid betas: {group['betas']} (need two values in [0, 1))")
    group["betas"] = betas


# ----------------------------------------------------------------------------------------
# SGD
# ----------------------------------------------------------------------------------------

class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, as torch.optim.SGD (dampening 0).

        g = grad + weight_decay * p          (L2 penalty folded into the gradient)
        b = momentum * b + g                 (b = g on the first step)
        d = g + momentum * b  if nesterov    else  d = b      (d = g without momentum)
        p = p - lr * d
    """

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params, {"lr": lr, "momentum": momentum,
                                  "weight_decay": weight_decay, "nesterov": nesterov})

    def _check_hyperparameters(self, group):
        _check_nonnegative(group, "lr", "momentum", "weight_decay")
        if group["nesterov"] and group["momentum"] <= 0:
            raise ValueError("nesterov momentum needs momentum > 0")

    def step(self):
        """One update of every parameter from its current .grad."""
        for i, group, p in self._indexed_params():
            if p.grad is None:
                continue
            lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
            param, d = p.data, p.grad
            xp = get_xp(param)
            if wd != 0:
                d = d + wd * param                              # g = grad + wd * p (new array)
            if momentum != 0:
                state = self.state.setdefault(i, {})
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = xp.array(d)  # b = g on the first step (a copy)
                else:
                    buf *= momentum                             # b = momentum * b + g
                    buf += d
                d = d + momentum * buf if group["nesterov"] else buf
            param -= lr * d                                     # p = p - lr * d


# ----------------------------------------------------------------------------------------
# Adam and AdamW
# ----------------------------------------------------------------------------------------

def adam_update(param, grad, state, lr, beta1, beta2, eps, scratch):
    """One Adam step on one array, in place (the part Adam and AdamW share).

    param, grad, scratch: same shape and dtype; scratch is overwritten (a work buffer that
    saves allocating temporaries every step). state: {"step", "exp_avg", "exp_avg_sq"},
    created on the first call.

        t   = t + 1
        m   = beta1 * m + (1 - beta1) * g           (written m += (1 - beta1) (g - m), torch's lerp_)
        v   = beta2 * v + (1 - beta2) * g^2
        p   = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """
    xp = get_xp(param)
    if not state:
        state["step"] = 0
        state["exp_avg"] = xp.zeros_like(param)
        state["exp_avg_sq"] = xp.zeros_like(param)
    state["step"] += 1
    t, m, v, tmp = state["step"], state["exp_avg"], state["exp_avg_sq"], scratch
    # first moment: m += (1 - beta1) * (g - m)
    xp.subtract(grad, m, out=tmp)
    tmp *= 1.0 - beta1
    m += tmp
    # second moment: v = beta2 * v + ((1 - beta2) * g) * g
    v *= beta2
    xp.multiply(grad, 1.0 - beta2, out=tmp)
    tmp *= grad
    v += tmp
    # bias correction: m and v start at 0, so early averages are too small by (1 - beta^t)
    step_size = lr / (1.0 - beta1 ** t)
    bias_correction2_sqrt = (1.0 - beta2 ** t) ** 0.5
    xp.sqrt(v, out=tmp)                                  # denom = sqrt(v_hat) + eps
    tmp /= bias_correction2_sqrt
    tmp += eps
    xp.divide(m, tmp, out=tmp)                           # m / denom
    tmp *= step_size
    param -= tmp


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015), as torch.optim.Adam: weight decay is an L2 term in the gradient.

        g = grad + weight_decay * p,   then the update of `adam_update`.

    With adaptive step sizes an L2 term is scaled by 1/sqrt(v) like the rest of the
    gradient, so large-gradient weights are barely decayed; AdamW decouples the decay.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps,
                                  "weight_decay": weight_decay})

    def _check_hyperparameters(self, group):
        _check_adam_hyperparameters(group)

    def step(self):
        """One update of every parameter from its current .grad."""
        for i, group, p in self._indexed_params():
            if p.grad is None:
                continue
            beta1, beta2 = group["betas"]
            grad, wd = p.grad, group["weight_decay"]
            if wd != 0:
                grad = grad + wd * p.data                    # L2: g = grad + wd * p
            adam_update(p.data, grad, self.state.setdefault(i, {}), group["lr"],
                        beta1, beta2, group["eps"], self._scratch_for(i, p.data))


class AdamW(Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019), as torch.optim.AdamW.

    For each parameter p with gradient g, at step t = 1, 2, ...:

        p   = p - lr * weight_decay * p                 decoupled decay (before the Adam step)
        m   = beta1 * m + (1 - beta1) * g               first moment (running mean of g)
        v   = beta2 * v + (1 - beta2) * g^2             second moment (running mean of g^2)
        m_hat = m / (1 - beta1^t)                       bias correction: m, v start at 0
        v_hat = v / (1 - beta2^t)
        p   = p - lr * m_hat / (sqrt(v_hat) + eps)

    The decay shrinks p towards 0 at a rate that does not depend on the gradient's scale.
    Decay the weight matrices and embeddings (ndim >= 2) but not the biases and LayerNorm
    gains/shifts (ndim < 2), which have no reason to be small: build the two groups with
    `param_groups_with_decay(model.named_parameters(), weight_decay)`.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps,
                                  "weight_decay": weight_decay})

    def _check_hyperparameters(self, group):
        _check_adam_hyperparameters(group)

    def step(self):
        """One update of every parameter from its current .grad."""
        for i, group, p in self._indexed_params():
            if p.grad is None:
                continue
            beta1, beta2 = group["betas"]
            lr, wd = group["lr"], group["weight_decay"]
            if wd != 0:
                p.data *= 1.0 - lr * wd                      # decoupled decay: p -= lr * wd * p
            adam_update(p.data, p.grad, self.state.setdefault(i, {}), lr,
                        beta1, beta2, group["eps"], self._scratch_for(i, p.data))


def param_groups_with_decay(named_params, weight_decay):
    """Two AdamW groups: matrices and embeddings decayed, biases and LayerNorm not.

    named_params: (name, Parameter) pairs, e.g. model.named_parameters().
    Returns [{"params": ndim >= 2, "weight_decay": weight_decay, "param_names": [...]},
             {"params": ndim < 2,  "weight_decay": 0.0,          "param_names": [...]}]
    (nanoGPT's rule: "any parameter that is 2D will be weight decayed").
    """
    if not weight_decay >= 0.0:
        raise ValueError(f"invalid weight_decay: {weight_decay} (must be >= 0)")
    decay, no_decay = [], []
    for name, p in named_params:
        (decay if p.data.ndim >= 2 else no_decay).append((name, p))
    return [
        {"params": [p for _, p in decay], "param_names": [n for n, _ in decay],
         "weight_decay": weight_decay},
        {"params": [p for _, p in no_decay], "param_names": [n for n, _ in no_decay],
         "weight_decay": 0.0},
    ]


# ----------------------------------------------------------------------------------------
# ZeRO-1: AdamW with its state sharded across data-parallel ranks
# ----------------------------------------------------------------------------------------

class ZeroAdamW(AdamW):
    """AdamW whose moments live in shards, one per rank (ZeRO stage 1, as llm.c's).

    Lay every parameter end to end in one flat vector of P numbers, padded to N * S with
    S = ceil(P / N); rank r owns [r S, (r + 1) S). A step is

        g_r   = reduce_scatter(local gradients)[r]     the summed gradient, shard r only
        norm  = sqrt(allreduce(sum g_r^2))              for clipping, from the shards
        w_r   = AdamW(w_r, g_r; m_r, v_r)               the update above, on the shard
        w     = allgather(w_r)                          every rank gets every weight

    so each rank keeps 2P/N moment numbers instead of 2P. The gradients it reads are this
    rank's (weighted) local sums: wrap the model in `minilm.dist.DataParallel(...,
    reduce=False)`. `clip_grad_norm_(max_norm)` reduces and clips (the Trainer calls it
    before `step`); `step` reduces first if nobody did. state_dict() gathers the shards
    into an AdamW state dict (a collective call: every rank must make it), so a checkpoint
    loads into AdamW or into ZeroAdamW on any number of ranks. With comm=None (one
    process) it is AdamW, update for update.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01,
                 comm=None):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        if comm is None:
            from .dist import SingleProcess
            comm = SingleProcess()
        self.comm = comm
        plist = [p for _, _, p in self._indexed_params()]
        self._offsets, n = [], 0
        for p in plist:
            self._offsets.append(n)
            n += p.data.size
        self._numel = n
        N = comm.world_size
        self._shard = -(-n // N)                              # S = ceil(P / N)
        self._lo = min(comm.rank * self._shard, n)
        self._hi = min(self._lo + self._shard, n)
        xp = get_xp(plist[0].data)
        self._dtype = plist[0].data.dtype
        self._m = xp.zeros(self._shard, dtype=self._dtype)   # this rank's exp_avg
        self._v = xp.zeros(self._shard, dtype=self._dtype)   # this rank's exp_avg_sq
        self._t = 0
        self._g = None                                      # the reduced gradient shard

    def _pieces(self):
        """(group, index, param, a, b, s): parameter elements [a, b) live at shard offset s."""
        for i, group, p in self._indexed_params():
            off = self._offsets[i]
            a, b = max(self._lo, off), min(self._hi, off + p.data.size)
            if a < b:
                yield group, i, p, a - off, b - off, a - self._lo

    def _reduce(self):
        xp = get_xp(self._m)
        flat = xp.zeros(self._shard * self.comm.world_size, dtype=self._dtype)
        for i, _, p in self._indexed_params():
            if p.grad is not None:
                flat[self._offsets[i]:self._offsets[i] + p.data.size] = p.grad.ravel()
        self._g = self.comm.reduce_scatter(flat)                     # (S,)

    def clip_grad_norm_(self, max_norm):
        """Reduce-scatter the gradients, clip the shard by the global norm; return the norm
        before clipping (clip_grad_norm_'s contract)."""
        if not max_norm > 0:
            raise ValueError(f"max_norm must be > 0, got {max_norm}")
        self._reduce()
        xp = get_xp(self._g)
        total = math.sqrt(self.comm.allreduce_scalar(float(xp.vdot(self._g, self._g))))
        if not math.isfinite(total):
            raise FloatingPointError(f"gradient norm is nan/inf ({total}). The loss has probably "
                                     "diverged; lower the learning rate or check the inputs.")
        coef = max_norm / (total + 1e-6)
        if coef < 1.0:
            self._g *= coef
        return total

    def step(self):
        """Update this rank's shard, then all-gather the weights."""
        if self._g is None:
            self._reduce()
        xp = get_xp(self._m)
        w = xp.zeros(self._shard, dtype=self._dtype)
        self._t += 1
        for group, i, p, a, b, s in self._pieces():
            beta1, beta2 = group["betas"]
            lr, wd = group["lr"], group["weight_decay"]
            seg = w[s:s + b - a]
            seg[...] = p.data.ravel()[a:b]
            if wd != 0:
                seg *= 1.0 - lr * wd                      # decoupled decay: p -= lr * wd * p
            state = {"step": self._t - 1, "exp_avg": self._m[s:s + b - a],
                     "exp_avg_sq": self._v[s:s + b - a]}
            adam_update(seg, self._g[s:s + b - a], state, lr, beta1, beta2, group["eps"],
                        xp.empty_like(seg))
        self._g = None
        full = self.comm.allgather(w)                                # (N S,)
        for i, _, p in self._indexed_params():
            off = self._offsets[i]
            p.data[...] = full[off:off + p.data.size].reshape(p.data.shape)

    def zero_grad(self):
        super().zero_grad()
        self._g = None

    def state_dict(self):
        """AdamW's state dict, gathered from every rank's shard (collective)."""
        m, v = self.comm.allgather(self._m), self.comm.allgather(self._v)
        full = {}
        if self._t > 0:
            for i, _, p in self._indexed_params():
                off, n = self._offsets[i], p.data.size
                full[i] = {"step": self._t, "exp_avg": m[off:off + n].reshape(p.data.shape),
                           "exp_avg_sq": v[off:off + n].reshape(p.data.shape)}
        self.state = full
        try:
            sd = super().state_dict()
        finally:
            self.state = {}
        sd["optimizer"] = "AdamW"                       # loads into either optimiser
        return sd

    def load_state_dict(self, state_dict):
        """Load an AdamW (or ZeroAdamW) state dict and keep this rank's shard of it."""
        state_dict = dict(state_dict, optimizer=type(self).__name__) \
            if state_dict.get("optimizer") in ("AdamW", "ZeroAdamW") else state_dict
        super().load_state_dict(state_dict)
        xp = get_xp(self._m)
        m = xp.zeros(self._shard * self.comm.world_size, dtype=self._dtype)
        v = xp.zeros_like(m)
        t = 0
        for i, s in self.state.items():
            off, n = self._offsets[i], s["exp_avg"].size
            m[off:off + n] = s["exp_avg"].ravel()
            v[off:off + n] = s["exp_avg_sq"].ravel()
            t = int(s["step"])
        lo = self.comm.rank * self._shard
        self._m = m[lo:lo + self._shard].copy()
        self._v = v[lo:lo + self._shard].copy()
        self._t = t
        self.state = {}


# ----------------------------------------------------------------------------------------
# Gradient clipping
# ----------------------------------------------------------------------------------------

def clip_grad_norm_(params, max_norm):
    """Scale all gradients together so that their joint L2 norm is at most max_norm.

        total = sqrt(sum over parameters of sum(grad^2))
        coef  = min(1, max_norm / (total + 1e-6));   grad = coef * grad   (in place)

    Same semantics as torch.nn.utils.clip_grad_norm_; max_norm=inf only measures.
    Returns total (the norm *before* clipping) as a Python float. Raises FloatingPointError
    if total is nan or inf: an update with such gradients would ruin the weights.
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    params = [p for p in params if p.grad is not None]
    if not params:
        return 0.0
    xp = get_xp(params[0].grad)
    squares = [xp.vdot(p.grad.ravel(), p.grad.ravel()) for p in params]   # sum(g^2) per param
    total = float(xp.sqrt(xp.sum(xp.stack(squares))))                    # one device sync
    if not math.isfinite(total):
        bad = [p.name or f"#{i}" for i, p in enumerate(params)
               if not bool(xp.isfinite(p.grad).all())]
        where = (f"non-finite values in the gradients of {bad[:5]}" if bad else
                 "all gradients are finite but the sum of their squares overflowed")
        raise FloatingPointError(f"gradient norm is nan/inf ({total}): {where}. The loss has "
                                 "probably diverged; lower the learning rate or check the inputs.")
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for p in params:
            p.grad *= coef
    return total


# ----------------------------------------------------------------------------------------
# Learning-rate schedules: plain functions step -> lr
# ----------------------------------------------------------------------------------------

def _check_schedule(step, warmup_steps, max_steps=None, **lrs):
    for name, value in lrs.items():
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if max_steps is not None and max_steps < warmup_steps:
        raise ValueError(f"max_steps ({max_steps}) must be >= warmup_steps ({warmup_steps})")


def cosine_with_warmup(step, max_lr, min_lr, warmup_steps, max_steps):
    """Linear warmup, then cosine decay from max_lr to min_lr; nanoGPT's `get_lr(it)` exactly.

    step counts from 0 (the step about to be taken):
        step <  warmup_steps:   lr = max_lr * (step + 1) / (warmup_steps + 1)
        step >  max_steps:      lr = min_lr
        otherwise:              r  = (step - warmup_steps) / (max_steps - warmup_steps)
                                lr = min_lr + 0.5 * (1 + cos(pi * r)) * (max_lr - min_lr)
    (This is nanoGPT's current train.py; older versions warmed up as max_lr * step / warmup.)
    With max_steps == warmup_steps, where nanoGPT would divide by zero, lr = min_lr after warmup.
    """
    _check_schedule(step, warmup_steps, max_steps, max_lr=max_lr, min_lr=min_lr)
    if step < warmup_steps:
        return max_lr * (step + 1) / (warmup_steps + 1)
    if step > max_steps or max_steps == warmup_steps:
        return min_lr
    decay_ratio = (step - warmup_steps) / (max_steps - warmup_steps)      # 0 -> 1
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))                 # 1 -> 0
    return min_lr + coeff * (max_lr - min_lr)


def linear_with_warmup(step, max_lr, warmup_steps, max_steps):
    """Linear warmup from 0 to max_lr, then linear decay to 0 at max_steps (absolute lr).

    The shape of Hugging Face's get_linear_schedule_with_warmup, whose multiplier is
        step <  warmup_steps:   step / max(1, warmup_steps)
        otherwise:              max(0, (max_steps - step) / max(1, max_steps - warmup_steps))
    and this returns max_lr * multiplier (pass max_lr=1.0 to get the multiplier itself).
    """
    _check_schedule(step, warmup_steps, max_steps, max_lr=max_lr)
    if step < warmup_steps:
        return max_lr * (float(step) / float(max(1, warmup_steps)))
    return max_lr * max(0.0, float(max_steps - step) / float(max(1, max_steps - warmup_steps)))


def noam(step, d_model, warmup, factor=1.0):
    """The "Attention Is All You Need" schedule (Vaswani et al. 2017, eq. 3); step counts from 1.

        lr = factor * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)

    It rises linearly for `warmup` steps, peaks at factor / sqrt(d_model * warmup), then
    decays as 1/sqrt(step). (The paper uses factor 1 with Adam betas (0.9, 0.98), eps 1e-9.)
    """
    if step < 1:
        raise ValueError(f"noam counts steps from 1, got step={step}")
    if not warmup > 0:
        raise ValueError(f"warmup must be > 0, got {warmup}")
    if not d_model > 0:
        raise ValueError(f"d_model must be > 0, got {d_model}")
    if not factor >= 0:
        raise ValueError(f"factor must be >= 0, got {factor}")
    return factor * d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)
