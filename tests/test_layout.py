"""The house: minilm/ in floors, each importing only the floors below it, and the first
edition's flat import paths still working (README, "Layout"; minilm/_moved.py)."""
import ast
import importlib
import os
import subprocess
import sys

import pytest

import minilm
from minilm import _moved

PKG = os.path.dirname(os.path.abspath(minilm.__file__))
ROOT = os.path.dirname(PKG)

# The floor of each top-level entry of minilm/: an import may only reach the same or a lower
# floor. data/ and tokenizers/ are inputs that sit beside the ops.
FLOORS = {
    "backend": 0, "strict": 0, "io": 0, "viz": 0, "_moved": 0,
    "ops": 1, "data": 1, "tokenizers": 1,
    "layers": 2,
    "models": 3, "pretrained": 3,
    "training": 4, "inference": 4, "evaluation": 4,
    "applications": 5,
    "bench": 6, "course": 6,
    "__main__": 7, "__init__": 7,
}
# Upward imports made inside a function, on purpose: a model's generate() is a convenience
# that calls the decoding floor; the benchmark suite reuses the command line's train run.
LAZY_UPWARD_OK = {
    ("models/gpt.py", "inference.generate"),
    ("models/llama.py", "inference.generate"),
    ("models/encoder_decoder.py", "inference.beam_search"),
    ("bench/suite.py", "__main__"),
}


def _python_files():
    for folder, _, files in os.walk(PKG):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                yield os.path.relpath(path, PKG).replace(os.sep, "/"), path


def _relative_imports(path, rel):
    """(target as 'top.sub', at module level?) for each import of minilm code in the file:
    relative ones, and absolute `import minilm.x` / `from minilm.x import` (old paths
    mapped to where the module lives now)."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    module_level = set(id(n) for n in tree.body)
    package = rel.split("/")[:-1]
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - (node.level - 1)]
            names = [base + (node.module.split(".") if node.module else [])]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("minilm."):
            names = [_moved.new_name(node.module).split(".")[1:]]
        elif isinstance(node, ast.Import):
            names = [_moved.new_name(a.name).split(".")[1:] for a in node.names
                     if a.name.startswith("minilm.")]
        for target in names:
            if target:
                yield ".".join(target), id(node) in module_level


def test_every_top_level_entry_has_a_floor():
    entries = {e[:-3] if e.endswith(".py") else e for e in os.listdir(PKG)
               if not e.startswith(".") and e != "__pycache__"}
    assert entries - set(FLOORS) == set(), (
        f"new top-level entries {sorted(entries - set(FLOORS))}: give them a floor here and in "
        "the README's layout (or put them on an existing floor)")


def test_imports_only_go_down_the_floors():
    wrong = []
    for rel, path in _python_files():
        top = rel.split("/")[0].removesuffix(".py")
        for target, module_level in _relative_imports(path, rel):
            t = target.split(".")[0]
            if t == top or FLOORS[t] <= FLOORS[top]:
                continue
            if module_level or (rel, target) not in LAZY_UPWARD_OK:
                wrong.append(f"{rel} imports {target} (floor {FLOORS[t]} above {FLOORS[top]})")
    assert wrong == [], "\n".join(wrong)


def test_the_floor_check_sees_an_upward_import(tmp_path):
    bad = tmp_path / "layers" / "x.py"
    bad.parent.mkdir()
    bad.write_text("from ..training.trainer import Trainer\n")
    bad.write_text("from ..training.trainer import Trainer\n"
                   "def f():\n    import minilm.train\n    from minilm.optim import AdamW\n")
    found = list(_relative_imports(str(bad), "layers/x.py"))
    assert found == [("training.trainer", True), ("training.trainer", False), ("training.optim", False)]
    assert FLOORS["training"] > FLOORS["layers"]


@pytest.mark.parametrize("old", sorted(_moved.MOVED))
def test_first_edition_import_paths_are_the_moved_modules(old):
    if old == "minilm.bench_torch":
        pytest.importorskip("torch")        # the PyTorch reference imports torch at the top
    module = importlib.import_module(old)
    assert module is importlib.import_module(_moved.MOVED[old])
    assert module.__name__ == module.__spec__.name == _moved.MOVED[old]


def test_submodules_and_from_imports_through_an_old_path():
    import minilm.applications.compress
    import minilm.compress.quantize  # noqa: F401  (the submodule, through the old path)
    real = sys.modules["minilm.applications.compress.quantize"]
    assert sys.modules["minilm.compress.quantize"] is real
    # the package still exports the function `quantize`, not the submodule of that name
    assert minilm.applications.compress.quantize is real.quantize
    from minilm.compress import quantize
    assert quantize is real.quantize
    from minilm.train import Trainer
    from minilm.training.trainer import Trainer as T2
    assert Trainer is T2
    assert _moved.new_name("minilm.compress.lora") == "minilm.applications.compress.lora"
    assert _moved.new_name("minilm.models.gpt") == "minilm.models.gpt"
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("minilm.train.nonexistent")


def test_old_modules_are_attributes_of_the_package():
    r = subprocess.run([sys.executable, "-c", "import minilm; print(minilm.check.numerical_grad.__name__, "
                        "minilm.losses.__name__); minilm.nothing_here"], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert r.stdout.split() == ["numerical_grad", "minilm.ops.losses"], r.stderr[-2000:]
    assert "has no attribute 'nothing_here'" in r.stderr


@pytest.mark.parametrize("module", ["minilm.compress", "minilm.course", "minilm"])
def test_python_dash_m_entry_points_still_run(module):
    r = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "usage" in r.stdout.lower()
