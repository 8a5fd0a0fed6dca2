"""The benchmark room: `python -m minilm bench {step,memory,kvcache,converge,dist,all}`.

    suite.py      the benchmarks themselves and their command line (see its docstring and BENCHMARKS.md)
    torch_ref.py  the PyTorch eager reference, run as a script in its own process under a Python with torch

`from minilm import bench; bench.train_step(...)` reaches the suite's functions, as before the move.
"""
from . import suite
from .suite import main


def __getattr__(name):
    return getattr(suite, name)
