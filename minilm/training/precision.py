"""float16 mixed precision: float16 compute, float32 master weights, dynamic loss scaling.

What `Trainer(..., precision="fp16")` does in one step (Micikevicius et al., "Mixed Precision
Training", 2018; NVIDIA Apex's O2 mode):

    half = float16(master)                     # the weights' float16 copy, this step's
    loss = model(batch)                        # forward in float16 (see below)
    model.backward(loss_scale=S)               # gradients of S * loss, in float16
    g = float32(half grads) / S                # unscaled into float32
    if g holds inf or NaN:  skip the step, S = S / 2
    else:                   clip, optimizer.step() on the float32 masters;
                            S = 2 S after `growth_interval` good steps in a row

Why each piece:
- float16 has 10 fraction bits (eps16 = 2^-10, so a rounding costs up to 2^-11 relative)
  and a range of 6.1e-5 (smallest normal) to 65504. Weights and activations live well in
  it; half the bytes means half the memory traffic and, on a GPU, the tensor cores.
- Sums do not: adding 10^4 terms in float16 loses up to 10^4 x 2^-11, and an update
  lr * g of 1e-3 * 1e-3 is below half an ulp of a weight near 1 (2^-11), so it would vanish.
  Hence float32 accumulation inside the matrix products and reductions (the ops' float16
  branches: `ops.linear.half_matmul`, LayerNorm statistics, softmax, the loss), and float32
  *master* weights that the optimiser updates (its m and v are float32 too).
- Gradients are small: a loss averaged over 10^3 tokens gives logit gradients near 1e-6,
  below float16's smallest normal, where they lose digits and then flush to 0. Multiplying
  the loss by S (the gradient of S * loss is S times the gradient, backward being linear
  in its upstream gradient) lifts them into range; dividing by S afterwards, in float32,
  gives the true gradient back. S is a power of two, so neither step rounds.
- No fixed S is right all run long, so S is found by trial (dynamic loss scaling): too
  large and some float16 gradient overflows to inf (then the step is skipped and S
  halved: the weights and the optimiser state are untouched, only the batch is lost);
  after `growth_interval` steps without overflow S doubles, to probe for more headroom.
  The defaults are PyTorch's GradScaler's: S0 = 2^16, x2 / x0.5, interval 2000.

minilm keeps the model itself float32: its Parameters' `.data` are the master weights, the
ones the optimiser holds, `state_dict()` and checkpoints show. `MixedPrecision` swaps each
Parameter's `.data` and `.grad` for float16 arrays for the forward and backward only
(`half()`), then back (`master()`). So any float32 model and optimiser work unchanged, and a
float16 model never has to be built (`resolve_dtype` still refuses float16 for that reason).
"""
import math

from ..backend import get_xp

HALF = "float16"


class LossScaler:
    """Dynamic loss scaling: the scale S and its rules; `events` logs every change.

        scaler = LossScaler()                    # S = 2^16
        model.backward(loss_scale=scaler.scale)
        finite = ...                             # all unscaled gradients finite?
        if scaler.update(finite, step): optimizer.step()

    update(False): skip (the caller does not step), S *= backoff_factor, good run restarts.
    update(True): the caller steps; after growth_interval such steps in a row,
    S *= growth_factor. Events are dicts {"step", "event": "skip" | "grow", "scale"}: the
    step number the caller passed (the Trainer's count from 1, as in its history) and the
    scale after the event. A scale that falls below min_scale means the float16 forward
    itself overflows (no scale can help): FloatingPointError.
    """

    def __init__(self, init_scale=2.0 ** 16, growth_factor=2.0, backoff_factor=0.5,
                 growth_interval=2000, min_scale=2.0 ** -24):
        def power_of_two(x):                # multiplying by one never rounds (module docstring)
            return x > 0 and math.isfinite(x) and math.frexp(x)[0] == 0.5
        if not power_of_two(init_scale):
            raise ValueError(f"init_scale must be a power of two (2.0 ** k), got {init_scale!r}")
        if not (growth_factor > 1 and power_of_two(growth_factor)):
            raise ValueError(f"growth_factor must be a power of two > 1, got {growth_factor!r}")
        if not (0 < backoff_factor < 1 and power_of_two(backoff_factor)):
            raise ValueError(f"backoff_factor must be a power of two in (0, 1), got {backoff_factor!r}")
        if not (isinstance(growth_interval, int) and growth_interval >= 1):
            raise ValueError(f"growth_interval must be an int >= 1, got {growth_interval!r}")
        self.scale = float(init_scale)
        self.growth_factor = float(growth_factor)
        self.backoff_factor = float(backoff_factor)
        self.growth_interval = growth_interval
        self.min_scale = float(min_scale)
        self.good_steps = 0                 # steps without overflow since the last change
        self.events = []                    # {"step", "event", "scale"}

    def update(self, finite, step=None):
        """Apply the rules after one backward; True when the optimiser may step."""
        if not finite:
            self.scale *= self.backoff_factor
            self.good_steps = 0
            self.events.append({"step": step, "event": "skip", "scale": self.scale})
            if self.scale < self.min_scale:
                raise FloatingPointError(
                    f"loss scale fell to {self.scale:g} at step {step}: the float16 forward or "
                    "the loss itself is inf/NaN (a diverged model or an activation above 65504)")
            return False
        self.good_steps += 1
        if self.good_steps >= self.growth_interval:
            self.scale *= self.growth_factor
            self.good_steps = 0
            self.events.append({"step": step, "event": "grow", "scale": self.scale})
        return True

    def state_dict(self):
        return {"scale": self.scale, "good_steps": self.good_steps, "events": list(self.events)}

    def load_state_dict(self, state):
        self.scale = float(state["scale"])
        self.good_steps = int(state["good_steps"])
        self.events = list(state.get("events", []))


class MixedPrecision:
    """The float16 working copies of a float32 model's Parameters, and the swaps.

    half():   every p.data becomes float16(master), every p.grad a float16 buffer (zeroed);
              the float32 arrays are kept aside.
    master(scale) -> finite: p.data is the float32 master again, and p.grad the float32
              gradient float16 grad / scale. Returns False when any of them holds inf or
              NaN (one host read for the whole model, see below).
    Outside half()...master() the model is exactly the float32 one (state_dict, checkpoints,
    the optimiser's view).
    """

    def __init__(self, params):
        self.params = list(params)
        for p in self.params:
            if p.data.dtype != "float32":
                raise TypeError(f"mixed precision needs float32 master weights; parameter "
                                f"{p.name or '?'} is {p.data.dtype} (build the model in float32)")
        self._half_grads = None             # float16 gradient buffers, made on first use
        self._masters = None                # (data, grad) float32 arrays while in half()

    @property
    def in_half(self):
        return self._masters is not None

    def half(self):
        """Swap in float16 weights (fresh copies of the masters) and zeroed float16 grads."""
        if self.in_half:
            raise RuntimeError("MixedPrecision.half() twice without master() in between")
        if self._half_grads is None:
            self._half_grads = [get_xp(p.data).zeros(p.data.shape, dtype=HALF) for p in self.params]
        self._masters = [(p.data, p.grad) for p in self.params]
        for p, g16 in zip(self.params, self._half_grads):
            p.data = p.data.astype(HALF)    # round to nearest; |w| > 65504 would be inf
            g16[...] = 0
            p.grad = g16

    def master(self, scale=1.0):
        """Swap the float32 masters back; p.grad = float32(half grad) / scale. -> finite?
        scale=None: after a forward only (evaluation): the float32 grads are left as they were.

        The check reads one number: the sum of every unscaled gradient. A sum is inf or NaN
        when one of its terms is (inf + -inf is NaN) and cannot overflow float32 from finite
        terms here (each is at most 65504 / scale, and there are far fewer than 10^30 of
        them), so one host transfer per step replaces one per parameter.
        """
        if not self.in_half:
            raise RuntimeError("MixedPrecision.master() without half() before it")
        masters, self._masters = self._masters, None
        if scale is None:
            for p, (data, grad) in zip(self.params, masters):
                p.data, p.grad = data, grad
            return True
        inv = 1.0 / scale                   # exact: scale is a power of two
        total = None
        for p, (data, grad) in zip(self.params, masters):
            g16 = p.grad
            p.data, p.grad = data, grad
            grad[...] = g16                 # float16 -> float32, exact
            grad *= inv
            s = grad.sum()
            total = s if total is None else total + s
        return total is None or math.isfinite(float(total))


PRECISIONS = ("fp32", "fp16")


def check_precision(precision):
    """The precision name, checked: "fp32" or "fp16"; ValueError naming the choices."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r} "
                         "(fp16: float16 mixed precision with float32 master weights and "
                         "dynamic loss scaling; bf16/fp8 are not implemented)")
    return precision
