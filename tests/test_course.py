"""minilm.course: student versions, check cells, grading, the command line.

Most tests use a tiny synthetic notebook (a kernel starts in a couple of seconds); one test
builds and grades the student version of a real notebook, and grades its solution.
"""
import json
import os
import subprocess
import sys

import pytest

from minilm import course

nbformat = pytest.importorskip("nbformat")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL_NOTEBOOK = os.path.join(ROOT, "notebooks", "03a-attention.ipynb")


def tiny_solution_notebook():
    """A solution notebook with a function exercise, a top-level exercise, a one-line
    `# SOLUTION` and two checks sharing an id (their points add up)."""
    cells = [
        nbformat.v4.new_markdown_cell("# Tiny\n\nA notebook for the tests."),
        nbformat.v4.new_code_cell("import numpy as np\nfrom minilm.course import check\nsetup_ok = True"),
        nbformat.v4.new_code_cell(
            "def double(x):\n"
            "    \"\"\"Twice x.\"\"\"\n"
            "    # BEGIN SOLUTION\n"
            "    y = 2 * x\n"
            "    return y\n"
            "    # END SOLUTION"),
        nbformat.v4.new_code_cell(
            "with check(\"ex1\", points=2):\n"
            "    assert double(3) == 6\n"
            "with check(\"ex1\", points=1):\n"
            "    assert np.array_equal(double(np.arange(3)), [0, 2, 4])"),
        nbformat.v4.new_code_cell(
            "# BEGIN SOLUTION\n"
            "total = sum(range(5))\n"
            "mean, count = total / 5, 5\n"
            "# END SOLUTION\n"
            "k = 0.5  # SOLUTION"),
        nbformat.v4.new_code_cell(
            "with check('ex2', points=3):\n"
            "    assert total == 10 and mean == 2.0 and count == 5 and k == 0.5"),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


@pytest.fixture
def tiny_path(tmp_path):
    path = tmp_path / "tiny.ipynb"
    nbformat.write(tiny_solution_notebook(), str(path))
    return str(path)


# ------------------------------------------------------------------------------------------
# Building student versions (no kernel)
# ------------------------------------------------------------------------------------------

def test_function_region_becomes_raise_with_indentation():
    src = "def f(x):\n    # BEGIN SOLUTION\n    return x\n    # END SOLUTION\n"
    out = course.strip_solutions(src, "ex7")
    assert out == 'def f(x):\n    raise NotImplementedError("Exercise ex7: your code here")\n'
    compile(out, "<student>", "exec")


def test_top_level_region_becomes_assignments_to_ellipsis():
    src = "# BEGIN SOLUTION\na = 1\nb, c = 2, 3\na += 1\nprint(a)\n# END SOLUTION\nd = a"
    out = course.strip_solutions(src)
    assert out == "a = ...  # YOUR CODE HERE\nb = ...  # YOUR CODE HERE\nc = ...  # YOUR CODE HERE\nd = a"


def test_top_level_region_without_assignments_becomes_ellipsis():
    assert course.strip_solutions("# BEGIN SOLUTION\nprint(1)\n# END SOLUTION") == "...  # YOUR CODE HERE"


def test_single_solution_line():
    assert course.strip_solutions("    k = 0.1  # SOLUTION") == "    k = ...  # YOUR CODE HERE"
    assert course.strip_solutions("x = f(y) # SOLUTION\nz = 1") == "x = ...  # YOUR CODE HERE\nz = 1"


def test_code_without_markers_is_unchanged():
    src = "x = 1  # a comment about SOLUTIONS\n# nothing to strip\n"
    assert course.strip_solutions(src) == src


@pytest.mark.parametrize("src", ["# BEGIN SOLUTION\nx = 1",
                                 "x = 1\n# END SOLUTION",
                                 "# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION"])
def test_unbalanced_markers_raise(src):
    with pytest.raises(ValueError, match="SOLUTION"):
        course.strip_solutions(src)


def test_student_notebook_strips_solutions_and_outputs():
    nb = tiny_solution_notebook()
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="hello\n")]
    nb.cells[1].execution_count = 3
    student = course.student_notebook(nb)
    code = "\n".join(c.source for c in student.cells if c.cell_type == "code")
    assert "2 * x" not in code and "sum(range(5))" not in code and "0.5  # SOLUTION" not in code
    assert 'raise NotImplementedError("Exercise ex1: your code here")' in code
    assert "total = ...  # YOUR CODE HERE" in code and "k = ...  # YOUR CODE HERE" in code
    assert all(c.outputs == [] and c.execution_count is None for c in student.cells if c.cell_type == "code")
    assert 'with check("ex1", points=2)' in code, "check cells are kept in the student version"
    assert "2 * x" in nb.cells[2].source, "the solution notebook itself is not modified"


def test_possible_points_add_up_per_exercise():
    assert course.possible_points(tiny_solution_notebook()) == {"ex1": 3, "ex2": 3}
    assert course.check_calls('with check("a-1", 2.5):\n    pass\ncheck("b")') == [("a-1", 2.5), ("b", 1)]


# ------------------------------------------------------------------------------------------
# check() in this process
# ------------------------------------------------------------------------------------------

def grade_lines(text):
    return [json.loads(line[len(course.GRADE_PREFIX):]) for line in text.splitlines()
            if line.startswith(course.GRADE_PREFIX)]


def test_check_records_a_pass(capsys):
    with course.check("ex1", points=2) as c:
        assert 1 + 1 == 2
    assert c.passed and c.earned == 2
    assert grade_lines(capsys.readouterr().out) == [{"exercise": "ex1", "points": 2, "earned": 2}]


def test_check_swallows_a_failure_and_scores_zero(capsys):
    with course.check("ex2", points=3) as c:
        raise NotImplementedError("Exercise ex2: your code here")
    out = capsys.readouterr().out
    assert not c.passed and c.earned == 0
    assert "FAILED: NotImplementedError: Exercise ex2: your code here" in out
    assert grade_lines(out) == [{"exercise": "ex2", "points": 3, "earned": 0}]


def test_check_lets_keyboard_interrupt_through():
    with pytest.raises(KeyboardInterrupt):
        with course.check("ex3"):
            raise KeyboardInterrupt


def test_check_rejects_bad_arguments():
    with pytest.raises(ValueError):
        course.check("", 1)
    with pytest.raises(ValueError):
        course.check("ex1", points=0)


def test_scores_cap_earned_points_and_ignore_bad_lines():
    nb = tiny_solution_notebook()
    fake = "\n".join([course.GRADE_PREFIX + json.dumps({"exercise": "ex1", "points": 2, "earned": 2}),
                      course.GRADE_PREFIX + json.dumps({"exercise": "ex1", "points": 2, "earned": 5}),
                      course.GRADE_PREFIX + "not json",
                      course.GRADE_PREFIX + json.dumps({"exercise": "nobody-checks-me", "earned": 9})])
    nb.cells[3].outputs = [nbformat.v4.new_output("stream", name="stdout", text=fake + "\n")]
    assert course.scores(nb) == {"ex1": (3, 3), "ex2": (0, 3)}


# ------------------------------------------------------------------------------------------
# Grading in a fresh kernel
# ------------------------------------------------------------------------------------------

def test_solution_scores_full_marks_and_student_version_zero(tiny_path, tmp_path):
    pytest.importorskip("nbclient")
    assert course.grade_notebook(tiny_path, timeout=60) == {"ex1": (3, 3), "ex2": (3, 3)}
    (student_path,) = course.build_student([tiny_path], str(tmp_path / "student"))
    assert course.grade_notebook(student_path, timeout=60) == {"ex1": (0, 3), "ex2": (0, 3)}


def test_partial_solution_gets_partial_credit(tmp_path):
    pytest.importorskip("nbclient")
    nb = course.student_notebook(tiny_solution_notebook())
    nb.cells[2].source = "def double(x):\n    return x + x if np.isscalar(x) else None"
    path = tmp_path / "partial.ipynb"
    nbformat.write(nb, str(path))
    assert course.grade_notebook(str(path), timeout=60) == {"ex1": (2, 3), "ex2": (0, 3)}


def test_reference_restores_edited_and_deleted_checks(tiny_path, tmp_path):
    pytest.importorskip("nbclient")
    nb = course.student_notebook(tiny_solution_notebook())
    # a student who fakes the grade line in ex1's check cell and deletes ex2's check cell
    nb.cells[3].source = ("print('MINILM-GRADE {\"exercise\": \"ex1\", \"points\": 3, \"earned\": 3}')\n"
                          "# check(\"ex1\", points=3)")
    del nb.cells[5]
    path = tmp_path / "cheat.ipynb"
    nbformat.write(nb, str(path))
    assert course.grade_notebook(str(path), timeout=60)["ex1"] == (3, 3), "without a reference the fake counts"
    graded = course.grade_notebook(str(path), timeout=60, reference=tiny_path)
    assert graded == {"ex1": (0, 3), "ex2": (0, 3)}


def test_cli_build_and_grade(tiny_path, tmp_path):
    pytest.importorskip("nbclient")
    out_dir = tmp_path / "handout"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    run = subprocess.run([sys.executable, "-m", "minilm.course", "build", "--out", str(out_dir), tiny_path],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    student_path = out_dir / "tiny.ipynb"
    assert student_path.exists()
    run = subprocess.run([sys.executable, "-m", "minilm.course", "grade", "--timeout", "60", tiny_path],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "total" in run.stdout and "6 / 6" in run.stdout, run.stdout
    run = subprocess.run([sys.executable, "-m", "minilm.course", "grade", "--json", str(student_path)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1]) == {
        "ex1": {"earned": 0, "possible": 3}, "ex2": {"earned": 0, "possible": 3}}


def test_build_refuses_to_overwrite_the_solutions(tiny_path, tmp_path):
    with pytest.raises(ValueError, match="overwrite"):
        course.build_student([tiny_path], os.path.dirname(tiny_path))


# ------------------------------------------------------------------------------------------
# A real notebook
# ------------------------------------------------------------------------------------------

def test_real_notebook_student_version_runs_to_first_exercise_and_scores_zero(tmp_path):
    pytest.importorskip("nbclient")
    (student_path,) = course.build_student([REAL_NOTEBOOK], str(tmp_path))
    student = nbformat.read(student_path, as_version=4)
    solution = nbformat.read(REAL_NOTEBOOK, as_version=4)
    assert course.possible_points(student) == course.possible_points(solution)
    executed = course.execute_notebook(student, timeout=300, allow_errors=True,
                                       cwd=str(tmp_path))        # its figures land there
    code = [c for c in executed.cells if c.cell_type == "code"]
    first = next(i for i, c in enumerate(code) if "your code here" in c.source)
    for cell in code[:first + 1]:                        # the exercise cell itself only defines things
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"error before the first exercise:\n{cell.source}\n{errors[0]['evalue']}"
    result = course.scores(executed, solution)
    assert result and all(earned == 0 for earned, _ in result.values()), result


def test_real_notebook_solution_scores_full_marks(tmp_path):
    pytest.importorskip("nbclient")
    result = course.grade_notebook(REAL_NOTEBOOK, timeout=300, cwd=str(tmp_path))
    assert result and all(earned == possible for earned, possible in result.values()), result


def test_every_notebook_has_a_valid_student_version():
    """Without a kernel: each student cell still compiles, and every exercise keeps its checks."""
    import glob
    for path in sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb"))):
        solution = nbformat.read(path, as_version=4)
        student = course.student_notebook(solution)
        for cell in student.cells:
            if cell.cell_type == "code":
                source = "\n".join(ln for ln in cell.source.splitlines() if not ln.lstrip().startswith(("%", "!")))
                compile(source, f"{os.path.basename(path)} (student)", "exec")
        assert course.possible_points(student) == course.possible_points(solution), path
        assert len(course.possible_points(solution)) >= 3, f"{path}: fewer than 3 graded exercises"
