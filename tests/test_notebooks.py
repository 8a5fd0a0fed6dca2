"""Every notebook runs top to bottom in a fresh kernel; its solutions score full marks and its
student handout scores 0.

Each run is a grading run (minilm.course.grade): the notebook's cells in order and its check
cells through the grading harness. Both run in a temporary folder, so the figures a notebook
saves leave the checkout untouched. The glob picks up notebooks added later automatically.
"""
import glob
import os
import time

import pytest

from minilm import course

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK_DIR = os.path.join(ROOT, "notebooks")
NOTEBOOKS = sorted(glob.glob(os.path.join(NOTEBOOK_DIR, "*.ipynb")))
IDS = [os.path.basename(p) for p in NOTEBOOKS]


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs_and_solutions_score_full_marks(path, tmp_path):
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    t0 = time.perf_counter()
    report = course.grade(path, reference=path, timeout=300, cwd=str(tmp_path))
    print(f"\n{os.path.basename(path)}: {time.perf_counter() - t0:.0f} s\n{report.feedback(show_hidden=True)}")
    assert report.exercises, f"{os.path.basename(path)} has no graded exercises"
    assert not report.errors, f"cells raised errors in {os.path.basename(path)}: {report.errors}"
    missing = {ex: (e, p) for ex, (e, p) in report.scores.items() if e != p}
    assert not missing, f"solutions below full marks in {os.path.basename(path)}: {missing}\n{report.feedback(True)}"
    assert not report.flags, report.flags


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_student_handout_scores_zero(path, tmp_path):
    pytest.importorskip("nbclient")
    (handout,) = course.build_student([path], str(tmp_path / "student"))
    report = course.grade(handout, reference=path, timeout=300, cwd=str(tmp_path))
    earned = {ex: e for ex, (e, _) in report.scores.items() if e}
    assert not earned, f"the handout of {os.path.basename(path)} earns points with nothing solved: {earned}"
