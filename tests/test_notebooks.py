"""Every notebook runs top to bottom in a fresh kernel, and its solutions score full marks.

One kernel run per notebook does both: execution stops at the first error (nbclient's
CellExecutionError names the cell), and the executed notebook's MINILM-GRADE lines are then
scored with `minilm.course.scores`. The glob picks up notebooks added later automatically.
"""
import glob
import os
import time

import pytest

from minilm import course

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK_DIR = os.path.join(ROOT, "notebooks")
NOTEBOOKS = sorted(glob.glob(os.path.join(NOTEBOOK_DIR, "*.ipynb")))


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_notebook_runs_and_solutions_score_full_marks(path, tmp_path):
    """Runs in a temporary folder, so the figures it saves leave the checkout untouched."""
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    t0 = time.perf_counter()
    executed = course.execute_notebook(path, timeout=300, allow_errors=False, cwd=str(tmp_path))
    seconds = time.perf_counter() - t0
    result = course.scores(executed)
    print(f"\n{os.path.basename(path)}: {seconds:.0f} s\n{course.format_scores(result)}")
    assert result, f"{os.path.basename(path)} has no graded exercises (no check(...) cells)"
    missing = {ex: (e, p) for ex, (e, p) in result.items() if e != p}
    assert not missing, f"solutions below full marks in {os.path.basename(path)}: {missing}"
