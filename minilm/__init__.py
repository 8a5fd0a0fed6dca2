"""minilm: large language models written out by hand in NumPy (and CuPy).

Every forward *and* backward pass is explicit code you can read, next to its derivative.
"""
from . import _moved
from .backend import get_backend, get_xp, set_backend, to_numpy
from .ops.check import gradcheck, numerical_grad

_moved.install()        # the first edition's flat import paths (minilm.train, ...) keep working


def __getattr__(name):
    """`minilm.losses`, `minilm.check`, ... as attributes after a bare `import minilm`, as in
    the first edition (imported on first use)."""
    if "minilm." + name in _moved.MOVED:
        import importlib
        return importlib.import_module("minilm." + name)
    raise AttributeError(f"module 'minilm' has no attribute {name!r}")


__version__ = "0.1.0"
__all__ = ["set_backend", "get_backend", "get_xp", "to_numpy", "gradcheck", "numerical_grad"]
