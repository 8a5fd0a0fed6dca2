"""The import paths of minilm's first edition, kept working after the move into floors.

minilm 0.1 kept 26 modules flat in minilm/. They now live on the floor they belong to
(ops, training, inference, evaluation, applications, bench); the old names, which
../shared/API.md, the notebooks and people's code use, still import, and give the very
same module object (so `minilm.train.Trainer is minilm.training.trainer.Trainer`, and
patching one patches the other):

    from minilm.train import Trainer          # is minilm.training.trainer
    python -m minilm.compress distill-bert    # runs minilm/applications/compress/__main__.py

A finder at the front of sys.meta_path maps an old name (and anything under it) to its new
one; nothing is imported until asked for.
"""
import importlib
import importlib.abc
import importlib.util
import sys

MOVED = {
    "minilm.losses": "minilm.ops.losses",
    "minilm.check": "minilm.ops.check",
    "minilm.train": "minilm.training.trainer",
    "minilm.optim": "minilm.training.optim",
    "minilm.dist": "minilm.training.dist",
    "minilm.generate": "minilm.inference.generate",
    "minilm.beam_search": "minilm.inference.beam_search",
    "minilm.metrics": "minilm.evaluation.metrics",
    "minilm.costs": "minilm.evaluation.costs",
    "minilm.finetune": "minilm.applications.finetune",
    "minilm.seq2seq_tasks": "minilm.applications.seq2seq_tasks",
    "minilm.compress": "minilm.applications.compress",
    "minilm.multimodal": "minilm.applications.multimodal",
    "minilm.interpret": "minilm.applications.trust.interpret",
    "minilm.privacy": "minilm.applications.trust.privacy",
    "minilm.federated": "minilm.applications.trust.federated",
    "minilm.bias": "minilm.applications.trust.bias",
    "minilm.trust_common": "minilm.applications.trust.common",
    "minilm.trust_cli": "minilm.applications.trust.cli",
    "minilm.bench_torch": "minilm.bench.torch_ref",
}


def new_name(name):
    """The current name of module `name` (itself when it did not move)."""
    for old, new in MOVED.items():
        if name == old or name.startswith(old + "."):
            return new + name[len(old):]
    return name


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self):
        self._real_specs = {}

    def find_spec(self, name, path=None, target=None):
        new = new_name(name)
        if new == name:
            return None
        real = importlib.util.find_spec(new)
        if real is None:
            return None
        if name.endswith(".__main__"):
            # `python -m minilm.compress`: runpy wants code to run, not a module object.
            return importlib.util.spec_from_file_location(name, real.origin)
        return importlib.util.spec_from_loader(name, self,
                                               is_package=real.submodule_search_locations is not None)

    def create_module(self, spec):
        new = new_name(spec.name)
        module = importlib.import_module(new)                   # the one module object
        self._real_specs[spec.name] = module.__spec__
        # The submodules it has imported already get their old names too, so that importing
        # one later finds it in sys.modules: a fresh load would set it as an attribute of the
        # package, over a same-named function the package exports (compress.quantize).
        for name, sub in list(sys.modules.items()):
            if name.startswith(new + "."):
                sys.modules.setdefault(spec.name + name[len(new):], sub)
        return module

    def exec_module(self, module):
        # Already executed under its new name. The import system has just pointed the
        # module's __spec__ at the alias: give it back its own.
        module.__spec__ = self._real_specs.pop(module.__spec__.name)


def install():
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())
