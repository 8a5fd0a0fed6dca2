"""The benchmark room: `python -m minilm bench {step,memory,kvcache,converge,dist,precision,arch,gpu,all}`.

    suite.py      the benchmarks themselves and their command line (see its docstring and BENCHMARKS.md)
    gpu.py        the GPU benchmarks (CuPy, and PyTorch on the same GPU when it is there)
    torch_ref.py  the PyTorch eager reference, run as a script in its own process under a Python with torch

`from minilm import bench; bench.train_step(...)` reaches the suite's functions, as before the move.
"""
from . import suite
from .suite import main


def __getattr__(name):
    return getattr(suite, name)
