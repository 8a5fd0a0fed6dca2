"""Differential privacy for training: DP-SGD with true per-example gradients, and the RDP
accountant that turns a run into an (epsilon, delta) guarantee.

    from minilm.privacy import DPSGD, RDPAccountant, poisson_batches
    opt = SGD(model.parameters(), lr=0.5)
    dp = DPSGD(model, opt, noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=64 / N)
    for idx in poisson_batches(N, dp.sample_rate, steps, rng):
        dp.step(take(train, idx))                      # forward, per-example backward, clip, noise, step
    dp.epsilon(delta=1e-5)                             # the privacy spent so far

DP-SGD (Abadi et al., 2016), one step:
    1. sample a batch: every example joins independently with probability q (Poisson sampling)
    2. g_i = grad of loss_i for every example i, all parameters together (per_example_gradients:
       a backward hook on each layer hands dout and cache to minilm/ops' *_per_example_grads)
    3. clip each example's joint norm to C:     gbar_i = g_i * min(1, C / (||g_i|| + 1e-6))
    4. add noise to the sum:                    gtilde = (sum_i gbar_i + N(0, sigma^2 C^2 I)) / (q N)
    5. optimizer.step() with gtilde as the gradient
Clipping bounds how much one example can move the sum (sensitivity C); the Gaussian noise, scaled
to that bound, hides whether any one example was there. Dividing by the *expected* batch size
q N (not the realised one, which itself depends on who was sampled) keeps that bound intact.
Each step is a sampled Gaussian mechanism; the accountant composes them in Renyi DP (RDP,
Mironov 2017), using the RDP of the sampled Gaussian mechanism (Mironov, Talwar & Zhang 2019)
for integer and fractional orders, and converts to (epsilon, delta) with the bound of Balle et
al. (2020, Thm. 21), the conversion Opacus's RDPAccountant.get_privacy_spent uses. With the
same orders it gives Opacus's epsilon (tests/fixtures/privacy checks 1%; it agrees to ~1e-9).

Shuffled fixed-size batches (sampling="shuffle") are what most code runs; the accountant then
uses q = B / N as if the batches were Poisson-sampled, as Opacus does. That is an approximation
the formal guarantee does not cover; Poisson sampling is the setting the analysis is for.
"""
import math
from types import SimpleNamespace

import numpy as np

from ...backend import get_xp, random_normal

# ---------------------------------------------------------------------------------------------
# The RDP accountant (sampled Gaussian mechanism)
# ---------------------------------------------------------------------------------------------

DEFAULT_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
"""Renyi orders alpha tried for the conversion: Opacus's RDPAccountant.DEFAULT_ALPHAS."""


def _log_add(logx, logy):
    """log(e^x + e^y) without overflow."""
    a, b = min(logx, logy), max(logx, logy)
    if a == -math.inf:
        return b
    return math.log1p(math.exp(a - b)) + b


def _log_sub(logx, logy):
    """log(e^x - e^y), x >= y."""
    if logx < logy:
        raise ValueError("the result of a log-space subtraction must be non-negative")
    if logy == -math.inf:
        return logx
    if logx == logy:
        return -math.inf
    try:
        return math.log(math.expm1(logx - logy)) + logy
    except OverflowError:
        return logx


def _log_erfc(x):
    """log(erfc(x)), accurate also where erfc(x) underflows (x > ~26): there the asymptotic
    series erfc(x) = e^{-x^2} / (x sqrt(pi)) (1 - 1/(2x^2) + 3/(4x^4) - 15/(8x^6) + 105/(16x^8))
    is used (relative error < 1e-11 for x >= 20)."""
    if x < 20.0:
        return math.log(math.erfc(x))
    r = 1.0 / (2.0 * x * x)
    series = 1.0 - r + 3.0 * r ** 2 - 15.0 * r ** 3 + 105.0 * r ** 4
    return -x * x - math.log(x) - 0.5 * math.log(math.pi) + math.log(series)


def _log_a_int(q, sigma, alpha):
    """log A_alpha for integer alpha (Mironov, Talwar & Zhang 2019, Sec. 3.3):
        A_alpha = sum_{i=0}^{alpha} C(alpha, i) q^i (1 - q)^(alpha - i) exp((i^2 - i) / (2 sigma^2))"""
    log_a = -math.inf
    for i in range(alpha + 1):
        log_coef = math.log(math.comb(alpha, i)) + i * math.log(q) + (alpha - i) * math.log(1 - q)
        log_a = _log_add(log_a, log_coef + (i * i - i) / (2 * sigma ** 2))
    return log_a


def _log_a_frac(q, sigma, alpha):
    """log A_alpha for fractional alpha (Mironov, Talwar & Zhang 2019, Sec. 3.3): the integral
    split at z0 = sigma^2 log(1/q - 1) + 1/2 into two series in the generalised binomial
    coefficients C(alpha, i) (which alternate in sign past i = alpha), summed until both terms
    drop below e^-30."""
    log_a0, log_a1 = -math.inf, -math.inf
    z0 = sigma ** 2 * math.log(1 / q - 1) + 0.5
    i, coef = 0, 1.0                                  # coef = C(alpha, i), by the recurrence below
    while True:
        log_coef = math.log(abs(coef))
        j = alpha - i
        log_t0 = log_coef + i * math.log(q) + j * math.log(1 - q)
        log_t1 = log_coef + j * math.log(q) + i * math.log(1 - q)
        log_e0 = math.log(0.5) + _log_erfc((i - z0) / (math.sqrt(2) * sigma))
        log_e1 = math.log(0.5) + _log_erfc((z0 - j) / (math.sqrt(2) * sigma))
        log_s0 = log_t0 + (i * i - i) / (2 * sigma ** 2) + log_e0
        log_s1 = log_t1 + (j * j - j) / (2 * sigma ** 2) + log_e1
        if coef > 0:
            log_a0 = _log_add(log_a0, log_s0)
            log_a1 = _log_add(log_a1, log_s1)
        else:
            log_a0 = _log_sub(log_a0, log_s0)
            log_a1 = _log_sub(log_a1, log_s1)
        coef *= (alpha - i) / (i + 1)                 # C(alpha, i+1) = C(alpha, i) (alpha - i) / (i + 1)
        i += 1
        if max(log_s0, log_s1) < -30:
            break
    return _log_add(log_a0, log_a1)


def rdp_sampled_gaussian(q, noise_multiplier, order):
    """RDP epsilon at one order alpha of one step of the sampled Gaussian mechanism
    (sampling rate q, noise std = noise_multiplier x sensitivity): log(A_alpha) / (alpha - 1).
    q = 1 is the plain Gaussian mechanism, alpha / (2 sigma^2)."""
    if q == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    if q == 1.0:
        return order / (2 * noise_multiplier ** 2)
    if math.isinf(order):
        return math.inf
    if float(order).is_integer():
        log_a = _log_a_int(q, noise_multiplier, int(order))
    else:
        log_a = _log_a_frac(q, noise_multiplier, order)
    return log_a / (order - 1)


def compute_rdp(q, noise_multiplier, steps, orders=None):
    """RDP of `steps` compositions (RDP adds up over steps), one value per order: NumPy array."""
    _check_rate(q)
    if noise_multiplier < 0:
        raise ValueError(f"noise_multiplier must be >= 0, got {noise_multiplier}")
    orders = DEFAULT_ORDERS if orders is None else orders
    return np.array([rdp_sampled_gaussian(q, noise_multiplier, a) for a in np.atleast_1d(orders)]) * steps


def rdp_to_epsilon(orders, rdp, delta):
    """(epsilon, best order) from RDP values at several orders (Balle et al. 2020, Thm. 21):
        epsilon = min_alpha  rdp(alpha) - (log delta + log alpha) / (alpha - 1) + log((alpha - 1) / alpha)"""
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    orders, rdp = np.atleast_1d(np.asarray(orders, float)), np.atleast_1d(np.asarray(rdp, float))
    if orders.shape != rdp.shape:
        raise ValueError(f"orders and rdp must have the same length ({len(orders)} vs {len(rdp)})")
    with np.errstate(invalid="ignore"):
        eps = rdp - (math.log(delta) + np.log(orders)) / (orders - 1) + np.log((orders - 1) / orders)
    if np.isnan(eps).all():
        return math.inf, math.nan
    k = int(np.nanargmin(eps))
    return float(eps[k]), float(orders[k])


class RDPAccountant:
    """Tracks the sampled Gaussian mechanisms a run applied and reports its (epsilon, delta).

        acc = RDPAccountant()
        acc.step(noise_multiplier=1.0, sample_rate=0.01)        # once per DP-SGD step
        acc.get_privacy_spent(delta=1e-5)                       # -> (epsilon, best order)
    Like Opacus's, the history is a list of (noise_multiplier, sample_rate, steps).
    """

    def __init__(self, orders=None):
        self.orders = list(DEFAULT_ORDERS if orders is None else orders)
        self.history = []

    def step(self, noise_multiplier, sample_rate, steps=1):
        if self.history and self.history[-1][:2] == (noise_multiplier, sample_rate):
            sigma, q, n = self.history[-1]
            self.history[-1] = (sigma, q, n + steps)
        else:
            self.history.append((noise_multiplier, sample_rate, steps))

    def get_privacy_spent(self, delta, orders=None):
        """(epsilon, best order); (0, nan) before any step."""
        if not self.history:
            return 0.0, math.nan
        orders = self.orders if orders is None else orders
        rdp = sum(compute_rdp(q, sigma, n, orders) for sigma, q, n in self.history)
        return rdp_to_epsilon(orders, rdp, delta)

    def get_epsilon(self, delta, orders=None):
        return self.get_privacy_spent(delta, orders)[0]

    def __len__(self):
        return len(self.history)


def epsilon_for(noise_multiplier, sample_rate, steps, delta, orders=None):
    """The epsilon of `steps` DP-SGD steps at (noise_multiplier, sample_rate), for `delta`."""
    acc = RDPAccountant(orders)
    acc.step(noise_multiplier, sample_rate, steps)
    return acc.get_epsilon(delta)


def noise_multiplier_for(target_epsilon, sample_rate, steps, delta, orders=None, tol=0.005):
    """The smallest noise multiplier (to within `tol`) whose run spends at most target_epsilon:
    bisection, since epsilon falls as sigma grows (Opacus's get_noise_multiplier does the same)."""
    if target_epsilon <= 0:
        raise ValueError(f"target_epsilon must be > 0, got {target_epsilon}")
    lo, hi = 0.0, 10.0
    while epsilon_for(hi, sample_rate, steps, delta, orders) > target_epsilon:
        hi *= 2
        if hi > 1e4:
            raise ValueError(f"no noise multiplier reaches epsilon={target_epsilon} in {steps} steps")
    while hi - lo > tol:
        mid = (lo + hi) / 2
        if mid > 0 and epsilon_for(mid, sample_rate, steps, delta, orders) <= target_epsilon:
            hi = mid
        else:
            lo = mid
    return hi


def _check_rate(q):
    if not 0 <= q <= 1:
        raise ValueError(f"sample_rate must be in [0, 1], got {q}")


# ---------------------------------------------------------------------------------------------
# Per-example gradients and clipping
# ---------------------------------------------------------------------------------------------

def per_example_gradients(model, batch, params=None, check=True):
    """One forward and backward, collecting every example's own gradient.

    Returns (loss, [g_p for p in params]) with g_p of shape (B, *p.shape): g_p[i] is the
    gradient of example i's own loss. Each Linear, Embedding and LayerNorm layer gets a
    backward hook (Module.register_backward_hook) that hands its upstream gradient and cache
    to the layer's `per_example_param_grads`, i.e. to the op's `*_per_example_grads`
    (minilm/ops), and the pieces are added up per parameter (a tied weight collects both
    uses). The model's loss is the batch *mean*, so each piece is (1/B) grad loss_i; it is
    multiplied by B here. (For a loss that is a mean over tokens rather than examples, g_p[i]
    is B x example i's share of that mean.) `.grad` ends up holding the ordinary batch
    gradient, sum_i g_p[i] / B; with check=True (one extra sum per parameter) that identity
    is verified, which catches a parameter some layer updates without a per-example term.
    Both problems raise a ValueError naming it.
    """
    params = model.parameters() if params is None else list(params)
    pieces = {}                                          # id(p) -> sum of its (B, *shape) pieces

    def collect(layer, dout, cache):
        for p, g in layer.per_example_param_grads(dout, cache):
            pieces[id(p)] = g if id(p) not in pieces else pieces[id(p)] + g

    handles = [m.register_backward_hook(collect) for m in model.modules()
               if hasattr(m, "per_example_param_grads")]
    try:
        model.zero_grad()
        out = model(**batch)
        if getattr(out, "loss", None) is None:
            raise ValueError("the model returned no loss: the batch needs labels")
        model.backward()
    finally:
        for h in handles:
            h.remove()
    B = _batch_size(batch)
    names = {id(p): n for n, p in model.named_parameters()}
    grads = [_example_grads(p, pieces.get(id(p)), names.get(id(p), p.name), B, check) for p in params]
    return out.loss, grads


def _example_grads(p, gs, name, B, check):
    """B x the summed per-example pieces gs of p, checked: (B, *p.shape)."""
    if gs is None:
        if bool(get_xp(p.grad).any(p.grad != 0)):
            raise ValueError(f"parameter {name!r} got a gradient but no per-example gradient: "
                             "its layer has no per_example_param_grads")
        return get_xp(p.data).zeros((B,) + tuple(p.shape), dtype=p.data.dtype)   # no gradient arrived
    if tuple(gs.shape) != (B,) + tuple(p.shape):
        raise ValueError(
            f"parameter {name!r} has per-example gradients of shape {tuple(gs.shape)}, not "
            f"(B={B}, *{tuple(p.shape)}): its layer summed over the batch before the per-example step. "
            "Leave that parameter out of `params` (it then stays at its initial value) or fix the layer.")
    if check:                           # the per-example pieces must add up to the batch gradient
        xp = get_xp(gs)
        err = float(xp.abs(gs.sum(axis=0) - p.grad).max())
        scale = float(xp.abs(p.grad).max())
        if err > 1e-3 * scale + 1e-12 * B:
            raise ValueError(
                f"parameter {name!r}: its per-example gradients do not add up to the batch gradient "
                f"(max error {err:.3g}, gradient scale {scale:.3g}); some use of it (a tied weight, such "
                "as the MLM decoder tied to the word embeddings) adds to .grad without a per-example term")
    return gs * B


def _batch_size(batch):
    for key in ("labels", "input_ids"):
        if key in batch:
            return len(batch[key])
    return len(next(iter(batch.values())))


def per_example_norms(grads):
    """Joint L2 norm over all parameters, per example: (B,) = sqrt(sum_p ||g_p[i]||^2)."""
    xp = get_xp(grads[0])
    B = grads[0].shape[0]
    sq = xp.zeros(B, dtype=grads[0].dtype)
    for g in grads:
        sq += (g.reshape(B, -1) ** 2).sum(axis=1)
    return xp.sqrt(sq)


def clip_per_example(grads, max_grad_norm):
    """Scale every example's gradient (all parameters together) to joint norm <= C:
        gbar_i = g_i * min(1, C / (||g_i|| + 1e-6))            (Opacus's factor)
    Returns (clipped grads, norms before clipping (B,), the factors (B,))."""
    if not max_grad_norm > 0:
        raise ValueError(f"max_grad_norm (the clipping bound C) must be > 0, got {max_grad_norm}")
    xp = get_xp(grads[0])
    norms = per_example_norms(grads)                                  # (B,)
    factor = xp.minimum(1.0, max_grad_norm / (norms + 1e-6))          # (B,)
    clipped = [g * factor.reshape((-1,) + (1,) * (g.ndim - 1)) for g in grads]
    return clipped, norms, factor


# ---------------------------------------------------------------------------------------------
# DP-SGD
# ---------------------------------------------------------------------------------------------

def poisson_batches(n, sample_rate, steps, rng):
    """`steps` index arrays; each example joins each batch independently with probability q
    (so batch sizes vary, and may be 0)."""
    _check_rate(sample_rate)
    for _ in range(steps):
        yield np.flatnonzero(rng.random(n) < sample_rate)


def shuffled_batches(n, batch_size, epochs, rng):
    """Fixed-size batches of a fresh permutation every epoch (the last one may be smaller)."""
    for _ in range(epochs):
        order = rng.permutation(n)
        for i in range(0, n, batch_size):
            yield order[i:i + batch_size]


class DPSGD:
    """Make any minilm optimiser differentially private (DP-SGD, Abadi et al. 2016).

    model: a minilm model whose `model(**batch)` returns a mean loss and whose layers keep
        per-example gradients (Linear, Embedding, LayerNorm do);
    optimizer: built over exactly the parameters to train privately (`params`, default all);
    noise_multiplier sigma > 0, max_grad_norm C > 0;
    sample_rate q: the probability each example joins a batch (Poisson sampling), and
    expected_batch_size = q N is what the noised sum is divided by. With sampling="shuffle",
    pass the fixed batch size as expected_batch_size and q = B / N (the accountant's
    approximation; see the module docstring).
    """

    def __init__(self, model, optimizer, noise_multiplier, max_grad_norm, sample_rate,
                 expected_batch_size=None, dataset_size=None, params=None, seed=0, sampling="poisson"):
        if not noise_multiplier > 0:
            raise ValueError(f"noise_multiplier must be > 0 for differential privacy, got {noise_multiplier} "
                             "(for non-private training use the optimiser directly)")
        if not max_grad_norm > 0:
            raise ValueError(f"max_grad_norm (the clipping bound C) must be > 0, got {max_grad_norm}")
        _check_rate(sample_rate)
        if sampling not in ("poisson", "shuffle"):
            raise ValueError(f"sampling must be 'poisson' or 'shuffle', got {sampling!r}")
        if expected_batch_size is None:
            if dataset_size is None:
                raise ValueError("pass expected_batch_size (= sample_rate x dataset size) or dataset_size")
            expected_batch_size = sample_rate * dataset_size
        if not expected_batch_size > 0:
            raise ValueError(f"expected_batch_size must be > 0, got {expected_batch_size}")
        self.model, self.optimizer = model, optimizer
        self.params = model.parameters() if params is None else list(params)
        opt_ids = {id(p) for g in optimizer.param_groups for p in g["params"]}
        if opt_ids != {id(p) for p in self.params}:
            raise ValueError("the optimizer must hold exactly the parameters trained privately "
                             "(`params`): any other parameter would move without noise")
        self.noise_multiplier, self.max_grad_norm = float(noise_multiplier), float(max_grad_norm)
        self.sample_rate, self.expected_batch_size = float(sample_rate), float(expected_batch_size)
        self.sampling = sampling
        self.rng = np.random.default_rng(seed)
        self.accountant = RDPAccountant()

    def noisy_gradient(self, batch):
        """Steps 2-4: per-example gradients, clipping, noise, averaging; writes p.grad of every
        private parameter and returns a dict of statistics."""
        B = _batch_size(batch) if batch is not None else 0
        stats = {"batch_size": B, "loss": math.nan, "mean_norm": math.nan, "clipped_fraction": math.nan}
        if B > 0:
            loss, grads = per_example_gradients(self.model, batch, self.params)
            clipped, norms, factor = clip_per_example(grads, self.max_grad_norm)
            sums = [g.sum(axis=0) for g in clipped]                       # sum_i gbar_i
            stats.update(loss=float(loss), mean_norm=float(norms.mean()),
                         clipped_fraction=float((factor < 1).mean()))
        else:                                                             # an empty Poisson batch: noise only
            sums = [get_xp(p.data).zeros_like(p.data) for p in self.params]
        std = self.noise_multiplier * self.max_grad_norm
        denom = self.expected_batch_size if self.sampling == "poisson" else max(B, 1)
        for p, s in zip(self.params, sums):
            noise = random_normal(self.rng, p.shape, std, p.data.dtype)   # N(0, sigma^2 C^2)
            p.grad[...] = (s + noise) / denom
        return stats

    def step(self, batch):
        """One private step: noisy gradient, optimizer.step(), accountant.step()."""
        stats = self.noisy_gradient(batch)
        self.optimizer.step()
        self.accountant.step(self.noise_multiplier, self.sample_rate)
        return stats

    def epsilon(self, delta):
        return self.accountant.get_epsilon(delta)


def train_dp(model, train, steps, noise_multiplier, max_grad_norm, sample_rate, lr=0.5,
             optimizer="sgd", params=None, delta=1e-5, seed=0, eval_data=None, eval_every=None,
             sampling="poisson", momentum=0.0, log=None):
    """Train `model` privately on a batch dict `train` (see minilm.trust_common) for `steps`
    steps; returns (history, epsilon). noise_multiplier=0 trains *without* privacy on the same
    batches (clipping still applied when max_grad_norm is set) as a baseline; epsilon is inf."""
    from ...training.optim import SGD, AdamW
    from ...training.trainer import Trainer
    from .common import accuracy_of, take
    params = model.parameters() if params is None else list(params)
    opt = (SGD(params, lr=lr, momentum=momentum) if optimizer == "sgd"
           else AdamW(params, lr=lr, weight_decay=0.0))
    n = len(train["labels"])
    rng = np.random.default_rng(seed + 1)
    batch_size = max(1, int(round(sample_rate * n)))
    if sampling == "poisson":
        batches = poisson_batches(n, sample_rate, steps, rng)
    else:
        batches = shuffled_batches(n, batch_size, math.ceil(steps * batch_size / n) + 1, rng)
    private = noise_multiplier > 0
    dp = DPSGD(model, opt, noise_multiplier, max_grad_norm, sample_rate, expected_batch_size=sample_rate * n,
               params=params, seed=seed, sampling=sampling) if private else None
    history = []

    def step_fn(idx):
        """Gradients of one batch into p.grad: DP-SGD's noisy ones, or plain (clipped by the
        Trainer) for the baseline, which skips empty batches."""
        batch = take(train, idx) if len(idx) else None
        if private:
            stats = dp.noisy_gradient(batch)
            return SimpleNamespace(loss=stats["loss"], stats=stats)
        if batch is None:
            return None
        out = model(**batch)
        model.backward()
        return SimpleNamespace(loss=float(out.loss), stats={"batch_size": len(idx), "loss": float(out.loss)})

    def after_step(trainer):
        if private:
            dp.accountant.step(dp.noise_multiplier, dp.sample_rate)
        step = trainer.step
        if eval_data is not None and eval_every and (step % eval_every == 0 or step == steps):
            out = trainer.last_output
            stats = out.stats if out is not None else {"batch_size": 0}
            row = {"step": step, **stats, "test_acc": accuracy_of(model, eval_data)}
            if private:
                row["epsilon"] = dp.epsilon(delta)
            history.append(row)
            if log:
                log(row)

    Trainer(model, opt, batches, max_steps=steps, progress=False, step_fn=step_fn, after_step=after_step,
            grad_clip=None if private or not max_grad_norm else max_grad_norm).fit()
    model.eval()
    return history, (dp.epsilon(delta) if private else math.inf)
