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

from .backend import get_xp, to_numpy


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
            saved_names, names = list(saved["param_names"]), group["param_names"]
            if len(saved_names) != len(names):
                raise ValueError(f"parameter group {g}: optimizer state has {len(saved_names)} "
                                 f"parameters, this optimizer has {len(names)}")
            for a, b in zip(saved_names, names):
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
        for i, group in_group in ():  # pragma: no cover  (placeholder, replaced below)
            pass
