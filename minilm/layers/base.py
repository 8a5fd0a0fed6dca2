"""Parameter and Module: the only two base classes in minilm.

A Module's forward keeps what its backward needs on ``self.cache``; its backward consumes
the cache, *adds* parameter gradients into ``Parameter.grad`` with ``+=`` and returns the
gradient w.r.t. its inputs. Parameters and children are listed by hand in each class
(``named_children`` / ``own_parameters``), so a reader can grep for them.
"""
import contextlib

from ..backend import full, get_xp, host_rng, random_normal, to_numpy


class Parameter:
    """A trainable array and its gradient (same shape, dtype and backend)."""

    def __init__(self, data, name=""):
        self.data = data
        self.grad = get_xp(data).zeros_like(data)
        self.name = name

    @property
    def shape(self):
        return self.data.shape

    @property
    def size(self):
        return self.data.size

    def __repr__(self):
        return f"Parameter({self.name!r}, shape={tuple(self.data.shape)}, dtype={self.data.dtype})"


class Module:
    """Base class of every layer and model.

    Subclasses override ``own_parameters()`` -> [(name, Parameter)] and
    ``named_children()`` -> [(name, Module)], and write ``forward`` / ``backward``.
    """
    training = True
    _forward_state = ()                 # attributes besides *cache that backward reads (preserve_caches)

    def own_parameters(self):
        return []

    def named_children(self):
        """(name, Module) for every sub-module, parameter-free ones (Dropout) included, so
        that train()/eval() reach them."""
        return []

    def named_parameters(self, prefix=""):
        """(dotted name, Parameter) pairs, own first, then each child's. Shared (tied)
        parameters are listed once, under their first name."""
        seen, out = set(), []
        for name, p in self._walk(prefix):
            if id(p) not in seen:
                seen.add(id(p))
                out.append((name, p))
        return out

    def _walk(self, prefix):
        for name, p in self.own_parameters():
            yield prefix + name, p
        for cname, child in self.named_children():
            yield from child._walk(prefix + cname + ".")

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def modules(self):
        yield self
        for _, child in self.named_children():
            yield from child.modules()

    def named_modules(self, prefix=""):
        """(dotted name, Module) for this module ("" or `prefix`) and everything below it."""
        yield prefix.rstrip("."), self
        for name, child in self.named_children():
            yield from child.named_modules(prefix + name + ".")

    @contextlib.contextmanager
    def preserve_caches(self):
        """Leave a pending forward's caches as they were after the block: forwards run inside
        it (generation, a probe) keep and clear caches of their own, and without this a
        `forward -> generate -> backward` would find nothing to backpropagate (in PyTorch,
        generate does not touch the autograd graph either). Saved: every attribute whose name
        ends in "cache" (`cache`, a model's `_loss_cache`) and those a class names in
        `_forward_state` (what else its forward leaves for its backward)."""
        def kept(m, k):
            return k.endswith("cache") or k in type(m)._forward_state
        saved = [(m, {k: v for k, v in vars(m).items() if kept(m, k)}) for m in self.modules()]
        try:
            yield self
        finally:
            for m, state in saved:
                for k in [k for k in vars(m) if kept(m, k) and k not in state]:
                    delattr(m, k)
                vars(m).update(state)

    def num_parameters(self):
        return sum(int(p.size) for p in self.parameters())

    def zero_grad(self):
        for p in self.parameters():
            p.grad[...] = 0
            if getattr(p, "grad_sample", None) is not None:
                p.grad_sample = 0

    # -- backward hooks: how DP-SGD sees each layer's per-example gradients ---------------
    calls_backward_hooks = False        # True in the layers whose backward runs the hooks
    backward_hooks = ()                 # an instance gets its own tuple on first register

    def register_backward_hook(self, hook):
        """Call `hook(self, dout, cache)` at the start of this layer's every backward, with
        its upstream gradient and the cache of its forward (as PyTorch's
        register_full_backward_hook, through which Opacus computes per-example gradients).
        Linear, Embedding and LayerNorm run hooks; with their `per_example_param_grads`,
        a hook gets each example's own parameter gradients (minilm/applications/trust/privacy.py).
        Returns a handle whose `remove()` takes the hook off."""
        if not self.calls_backward_hooks:
            raise TypeError(f"{type(self).__name__}.backward runs no hooks; register on its "
                            "Linear, Embedding and LayerNorm layers (see Module.modules())")
        self.backward_hooks = self.backward_hooks + (hook,)
        return HookHandle(self, hook)

    def run_backward_hooks(self, dout, cache):
        for hook in self.backward_hooks:
            hook(self, dout, cache)

    def per_example_grads(self, enabled=True):
        """Per-example gradients made visible, for teaching (DP-SGD itself uses
        register_backward_hook and the ops' *_per_example_grads, see
        minilm/applications/trust/privacy.py): every Linear, Embedding and LayerNorm below gets
        a backward hook that *adds* each example's gradient into `p.grad_sample` (shape
        (B, *p.shape)), like .grad; `zero_grad` clears it. Only the parameters of a module
        switched on carry a `grad_sample` attribute; `per_example_grads(False)` takes the hooks
        and the attribute off again."""
        for m in self.modules():
            if not hasattr(m, "per_example_param_grads"):
                continue
            handle = m.__dict__.pop("_grad_sample_hook", None)
            if handle is not None:
                handle.remove()
            if enabled:
                m._grad_sample_hook = m.register_backward_hook(_accumulate_grad_sample)
            for _, p in m.own_parameters():
                if enabled:
                    p.grad_sample = 0                       # 0: on, allocated on first use
                else:
                    p.__dict__.pop("grad_sample", None)
        return self

    def train(self, mode=True):
        for m in self.modules():
            m.training = mode
        return self

    def eval(self):
        return self.train(False)

    def state_dict(self):
        """{name: NumPy array} with every parameter, as host copies."""
        return {name: to_numpy(p.data).copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays into the parameters (cast to each parameter's dtype, moved to its backend).

        Returns (missing_keys, unexpected_keys). With strict=True either one raises KeyError;
        a shape mismatch, a non-numeric array, or NaN/inf in a floating-point one raises
        ValueError naming the tensor. All or nothing: everything is checked and converted
        before the first parameter changes, so a failed load leaves the model as it was.
        """
        params = dict(self.named_parameters())
        missing = [k for k in params if k not in state_dict]
        unexpected = [k for k in state_dict if k not in params]
        if strict and (missing or unexpected):
            raise KeyError(f"state_dict does not match {type(self).__name__}: "
                           f"missing keys {missing}, unexpected keys {unexpected}")
        staged = []
        for name, p in params.items():
            if name not in state_dict:
                continue
            value = state_dict[name]
            if not hasattr(value, "shape") or not hasattr(value, "dtype"):
                raise TypeError(f"state_dict[{name!r}] must be an array, got {type(value).__name__}")
            if tuple(value.shape) != tuple(p.data.shape):
                raise ValueError(f"shape mismatch for {name!r}: checkpoint has {tuple(value.shape)}, "
                                 f"model expects {tuple(p.data.shape)}")
            kind, want = value.dtype.kind, p.data.dtype.kind
            if kind not in ("f" if want == "f" else "iu") and not (want == "f" and kind in "iu"):
                raise ValueError(f"dtype mismatch for {name!r}: checkpoint has {value.dtype}, "
                                 f"model expects {p.data.dtype}")
            xp = get_xp(p.data)
            new = xp.asarray(value).astype(p.data.dtype, copy=False)
            if want == "f" and not bool(xp.isfinite(new).all()):
                raise ValueError(f"{name!r} holds NaN or inf (a corrupt or diverged checkpoint); "
                                 "nothing was loaded")
            staged.append((p, new))
        for p, new in staged:                       # nothing has failed: copy them all
            p.data[...] = new
        return missing, unexpected

    # -- the cache: what forward keeps for backward ---------------------------------------
    @property
    def cache(self):
        return self.__dict__.get("_cache")

    @cache.setter
    def cache(self, value):
        self._cache = value
        self._spent_cache = None        # the previous step's arrays can go now (see _check_cache)

    def _check_cache(self):
        """Hand the cache to backward, exactly once.

        The spent cache stays referenced until the next forward stores a new one. Its arrays
        are then freed one layer at a time while the next forward allocates the same shapes,
        so the memory is reused in place. Freeing every activation at the end of backward
        instead lets the C allocator hand the memory back to the OS, and the next forward
        takes it again page by page (measured: thousands of page faults, a third of a small
        model's step; BENCHMARKS.md). Peak memory grows a little: 2.5% on the wide benchmark model.
        """
        cache = self.__dict__.get("_cache")
        if cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward "
                               "(or twice after one forward): run forward first")
        self._cache, self._spent_cache = None, cache
        return cache


class HookHandle:
    """What register_backward_hook returns: `remove()` takes the hook off its module."""

    def __init__(self, module, hook):
        self.module, self.hook = module, hook

    def remove(self):
        hooks = self.module.backward_hooks
        if self.hook in hooks:
            i = hooks.index(self.hook)
            self.module.backward_hooks = hooks[:i] + hooks[i + 1:]


def _accumulate_grad_sample(layer, dout, cache):
    """The hook of Module.per_example_grads: p.grad_sample += each example's gradient."""
    for p, g in layer.per_example_param_grads(dout, cache):
        p.grad_sample = g if isinstance(p.grad_sample, int) else p.grad_sample + g


def new_param(shape, dtype, rng, std=None, fill=None, name=""):
    """A Parameter on the active backend: N(0, std^2) drawn from the host Generator `rng`
    (so a seed gives the same model on every backend), or the constant `fill`."""
    if fill is None and rng is None:
        rng = host_rng(0)                     # a layer built on its own: reproducible default
    data = full(shape, fill, dtype) if fill is not None else random_normal(rng, shape, std, dtype)
    return Parameter(data, name=name)
