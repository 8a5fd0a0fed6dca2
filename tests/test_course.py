"""minilm.course: student builds, check and forbid, and a grader that cannot be gamed.

Kernel tests grade a tiny solution notebook and variations of it (a kernel starts in a
couple of seconds): every attack from the issue (forged lines, a rebound or patched check,
forbidden calls under other names, finite differences in a backward exercise) and every
honest mistake (merged cells, comments, timeouts, a dead kernel, a corrupt file) is
compared with the score an honest grader gives. tests/test_notebooks.py grades the real
notebooks.
"""
import csv
import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import minilm
import minilm.layers
import minilm.ops
from minilm import course
from minilm.course import checks as checks_module

nbformat = pytest.importorskip("nbformat")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def code(source, cid):
    cell = nbformat.v4.new_code_cell(source)
    cell["id"] = cid
    return cell


SETUP = "import numpy as np\nimport minilm\nfrom minilm.course import check, substitute"
EX1 = ("def double(x):\n"
       "    \"\"\"Twice x.\"\"\"\n"
       "    # BEGIN SOLUTION\n"
       "    return 2 * x\n"
       "    # END SOLUTION")
CHECK1 = ("with check(\"ex1\", points=2):\n"
          "    assert double(3) == 6, f\"double(3) = {double(3)}, expected 6\"\n"
          "    ### BEGIN HIDDEN TESTS\n"
          "    assert double(-2.5) == -5.0, \"hidden: negative floats\"\n"
          "    ### END HIDDEN TESTS\n"
          "with check(\"ex1\", points=1):\n"
          "    assert np.array_equal(double(np.arange(3)), [0, 2, 4]), \"arrays\"")
EX2 = ("def quad(x):\n"
       "    # BEGIN SOLUTION\n"
       "    return double(double(x))\n"
       "    # END SOLUTION")
CHECK2 = ("with check(\"ex2\", points=3), substitute(globals(), double=lambda x: 2 * x):\n"
          "    assert quad(3) == 12, \"quad(3) should be 12\"")
EX3 = ("def linear_backward_mine(dout, x, W):\n"
       "    # BEGIN SOLUTION\n"
       "    return dout @ W.T, x.T @ dout\n"
       "    # END SOLUTION")
CHECK3 = ("x3, W3, d3 = np.random.default_rng(0).standard_normal((3, 4, 4))\n"
          "with check(\"ex3\", points=2, forbid=[minilm.ops.linear_backward, minilm.numerical_grad]):\n"
          "    dx, dW = linear_backward_mine(d3, x3, W3)\n"
          "    assert np.allclose(dx, d3 @ W3.T) and np.allclose(dW, x3.T @ d3), \"wrong gradients\"")
HONEST = {"ex1": (3, 3), "ex2": (3, 3), "ex3": (2, 2)}
ZERO = {"ex1": (0, 3), "ex2": (0, 3), "ex3": (0, 2)}


def tiny_solution_notebook():
    cells = [nbformat.v4.new_markdown_cell("# Tiny\n\nA notebook for the tests."), code(SETUP, "setup"),
             code(EX1, "sol1"), code(CHECK1, "chk1"),
             nbformat.v4.new_markdown_cell("## Exercise 2"), code(EX2, "sol2"), code(CHECK2, "chk2"),
             nbformat.v4.new_markdown_cell("## Exercise 3"), code(EX3, "sol3"), code(CHECK3, "chk3"),
             nbformat.v4.new_markdown_cell("## The end")]
    for i, cell in enumerate(cells):
        cell.setdefault("id", f"md{i}")
        if cell["cell_type"] == "markdown":
            cell["id"] = f"md{i}"
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def cell_by_id(nb, cid):
    return next(c for c in nb.cells if c.get("id") == cid)


@pytest.fixture
def reference(tmp_path):
    path = tmp_path / "reference.ipynb"
    nbformat.write(tiny_solution_notebook(), str(path))
    return str(path)


def grade(nb, reference, tmp_path, name="submission", timeout=60):
    path = tmp_path / f"{name}.ipynb"
    nbformat.write(nb, str(path))
    return course.grade(str(path), reference=reference, timeout=timeout)


def student():
    return course.student_notebook(tiny_solution_notebook())


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


def test_single_solution_line_and_unmarked_code():
    assert course.strip_solutions("    k = 0.1  # SOLUTION") == "    k = ...  # YOUR CODE HERE"
    src = "x = 1  # a comment about SOLUTIONS\n# nothing to strip\n"
    assert course.strip_solutions(src) == src


@pytest.mark.parametrize("src", ["# BEGIN SOLUTION\nx = 1", "x = 1\n# END SOLUTION",
                                 "# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION"])
def test_unbalanced_solution_markers_raise(src):
    with pytest.raises(ValueError, match="SOLUTION"):
        course.strip_solutions(src)


def test_hidden_tests_are_removed_and_the_block_stays_valid():
    out = course.strip_hidden_tests(CHECK1)
    assert "hidden: negative floats" not in out and "HIDDEN" not in out
    assert "    pass  # hidden tests run when the notebook is graded" in out
    compile(out, "<student>", "exec")
    only_hidden = "with check('e', 1):\n    ### BEGIN HIDDEN TESTS\n    assert False\n    ### END HIDDEN TESTS"
    compile(course.strip_hidden_tests(only_hidden), "<student>", "exec")
    for bad in ("### BEGIN HIDDEN TESTS\nx", "x\n### END HIDDEN TESTS"):
        with pytest.raises(ValueError, match="HIDDEN"):
            course.strip_hidden_tests(bad)


def test_student_notebook_strips_solutions_hidden_tests_and_outputs_and_keeps_ids():
    nb = tiny_solution_notebook()
    cell_by_id(nb, "setup").outputs = [nbformat.v4.new_output("stream", name="stdout", text="hello\n")]
    s = course.student_notebook(nb)
    text = "\n".join(c.source for c in s.cells if c.cell_type == "code")
    assert "2 * x\n" not in text and "x.T @ dout" not in text and "negative floats" not in text
    assert 'raise NotImplementedError("Exercise ex1: your code here")' in text
    assert all(c.outputs == [] and c.execution_count is None for c in s.cells if c.cell_type == "code")
    assert [c["id"] for c in s.cells] == [c["id"] for c in nb.cells], "cell ids place the checks when grading"
    assert "negative floats" in cell_by_id(nb, "chk1").source, "the solution notebook itself is unchanged"


QUESTION = ("**Q1.** Why does the causal mask use -inf and not 0?\n"
            "\n"
            "<!-- BEGIN SOLUTION -->\n"
            "Because exp(0) = 1: a 0 score still gets weight.\n"
            "\n"
            "With -inf the weight is exactly 0.\n"
            "<!-- END SOLUTION -->\n"
            "\n"
            "(Two or three sentences.)")


def test_model_answer_in_markdown_becomes_your_answer_here():
    out = course.build.strip_model_answers(QUESTION)
    assert out == ("**Q1.** Why does the causal mask use -inf and not 0?\n\n*Your answer here.*\n\n"
                   "(Two or three sentences.)")
    two = "Q1\n<!-- BEGIN SOLUTION -->\na\n<!-- END SOLUTION -->\nQ2\n  <!--BEGIN SOLUTION-->  \nb\n<!-- END SOLUTION -->"
    assert course.build.strip_model_answers(two) == "Q1\n*Your answer here.*\nQ2\n*Your answer here.*"
    plain = "Text that mentions <!-- BEGIN SOLUTION --> inside a line is not a marker.\n# BEGIN SOLUTION"
    assert course.build.strip_model_answers(plain) == plain, "only whole-line HTML-comment markers count"


@pytest.mark.parametrize("src", ["Q\n<!-- BEGIN SOLUTION -->\nanswer", "Q\nanswer\n<!-- END SOLUTION -->",
                                 "<!-- BEGIN SOLUTION -->\n<!-- BEGIN SOLUTION -->\n<!-- END SOLUTION -->"])
def test_unbalanced_model_answer_markers_raise(src):
    with pytest.raises(ValueError, match="<!-- (BEGIN|END) SOLUTION -->"):
        course.build.strip_model_answers(src)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(src)])
    nb.cells[0]["id"] = "q1"
    with pytest.raises(ValueError, match="markdown cell 0 \\(id 'q1'\\)"):
        course.student_notebook(nb)


def test_build_student_hides_model_answers_and_the_solution_keeps_them(tmp_path):
    nb = tiny_solution_notebook()
    question = nbformat.v4.new_markdown_cell(QUESTION)
    question["id"] = "q1"
    nb.cells.append(question)
    path = tmp_path / "with_question.ipynb"
    nbformat.write(nb, str(path))
    (handout,) = course.build_student([str(path)], str(tmp_path / "student"))
    built = cell_by_id(nbformat.read(handout, as_version=4), "q1")
    assert built.cell_type == "markdown"
    assert "*Your answer here.*" in built.source and "exp(0) = 1" not in built.source
    assert "SOLUTION" not in built.source and "-inf the weight" not in built.source
    assert built.source.startswith("**Q1.** Why does the causal mask") and built.source.endswith("sentences.)")
    assert cell_by_id(nbformat.read(str(path), as_version=4), "q1").source == QUESTION, "solution unchanged"
    other = [c.source for c in nbformat.read(handout, as_version=4).cells if c.cell_type == "markdown"][:-1]
    assert other == [c.source for c in nb.cells if c.cell_type == "markdown"][:-1], "other markdown kept"


def test_check_sites_come_from_the_syntax_tree_not_from_text():
    src = ("# check(\"ex9\", points=5) in a comment does not count\n"
           "s = 'check(\"ex8\", points=4)'\n"
           "with check('a-1', 2.5), substitute(globals(), f=len):\n    pass\n"
           "for i in range(3):\n    with check(\"b\"):\n        pass\n")
    assert course.check_sites(src) == [(3, "a-1", 2.5), (6, "b", 1)]
    assert course.possible_points(tiny_solution_notebook()) == {"ex1": 3, "ex2": 3, "ex3": 2}
    with pytest.raises(ValueError, match="points"):
        course.check_sites("with check('e', points=n):\n    pass")


# ------------------------------------------------------------------------------------------
# check, forbid and substitute in this process
# ------------------------------------------------------------------------------------------

def submission_code(source, **names):
    """Functions compiled as a notebook cell of the submission would be (its own file name)."""
    ns = dict(names)
    exec(compile(source, "/tmp/ipykernel_0/student_cell.py", "exec"), ns)
    return ns


def test_check_records_a_pass_and_a_failure(capsys):
    with course.check("ex1", points=2) as c:
        assert 1 + 1 == 2
    assert c.passed and c.earned == 2
    with course.check("ex2", points=3) as c:
        assert 1 + 1 == 3, "arithmetic"
    out = capsys.readouterr().out
    assert not c.passed and c.earned == 0 and "AssertionError: arithmetic" in c.message
    assert "[ex2] FAILED: AssertionError: arithmetic" in out and "MINILM-" not in out


def test_check_lets_keyboard_interrupt_through_and_rejects_bad_arguments():
    with pytest.raises(KeyboardInterrupt):
        with course.check("ex3"):
            raise KeyboardInterrupt
    for args in (("", 1), ("ex1", 0), ("ex1", True), ("ex1", "2")):
        with pytest.raises(ValueError):
            course.check(*args)
    with pytest.raises(TypeError, match="class"):
        course.check("ex1", forbid=[minilm.layers.Linear])


def test_forbid_catches_a_call_under_any_name_and_through_a_helper():
    from minilm.ops import linear_backward as lb
    ns = submission_code("def direct(d, c):\n    return lb(d, c)\n"
                         "def helper(d, c):\n    return direct(d, c)\n", lb=lb)
    x, W, b = np.random.default_rng(0).standard_normal((3, 3, 3))
    _, cache = minilm.ops.linear_forward(x, W, b[0])
    for fn in (ns["direct"], ns["helper"]):
        with course.check("ex", forbid=[minilm.ops.linear_backward]) as c:
            fn(x, cache)
        assert not c.passed and "linear_backward" in c.message and "forbids" in c.message


def test_forbid_allows_the_check_itself_and_minilm_internals():
    f = submission_code("def f(x):\n    return 2 * x\n")["f"]
    x = np.random.default_rng(0).standard_normal(4)
    with course.check("ex", forbid=[minilm.numerical_grad]) as c:
        g = minilm.numerical_grad(f, x, np.ones(4))                     # the check's own call
        r = minilm.gradcheck((lambda a: (f(a), None), lambda d, cache: 2 * d), x)   # gradcheck's internal one
        assert np.allclose(g, 2) and r.ok
    assert c.passed, c.message


def test_forbid_catches_finite_differences_a_swallowed_error_and_a_pasted_copy():
    import inspect
    import textwrap
    ns = submission_code(
        "def backward_fd(dout, x):\n"
        "    return minilm.numerical_grad(lambda a: a ** 2, x, dout)\n"
        "def swallowed(dout, x):\n"
        "    try:\n        return backward_fd(dout, x)\n    except Exception:\n        return 2 * x * dout\n",
        minilm=minilm)
    pasted = submission_code(textwrap.dedent(inspect.getsource(minilm.numerical_grad))
                             + "\ndef backward_pasted(dout, x):\n    return numerical_grad(lambda a: a ** 2, x, dout)\n",
                             get_xp=minilm.get_xp)["backward_pasted"]
    x = np.random.default_rng(1).standard_normal(5)
    for fn in (ns["backward_fd"], ns["swallowed"], pasted):
        with course.check("ex", forbid=[minilm.numerical_grad]) as c:
            assert np.allclose(fn(np.ones(5), x), 2 * x)
        assert not c.passed and "numerical_grad" in c.message, c.message


def test_forbid_catches_builtins_and_a_submission_that_removes_the_profiler():
    ns = submission_code("import sys\ndef sneaky(v):\n    sys.setprofile(None)\n    return sorted(v)\n"
                         "def plain(v):\n    return sorted(v)\n")
    for fn in (ns["plain"], ns["sneaky"]):
        with course.check("ex", forbid=[sorted]) as c:
            fn([3, 1, 2])
        assert not c.passed, fn.__name__
    assert sys.getprofile() is None, "the profiler is removed after the check"


def test_substitute_rebinds_names_for_the_block_only():
    ns = submission_code("def double(x):\n    return 0\ndef quad(x):\n    return double(double(x))\n")
    with course.substitute(ns, double=lambda x: 2 * x, brand_new=1):
        assert ns["quad"](3) == 12 and ns["brand_new"] == 1
    assert ns["quad"](3) == 0 and "brand_new" not in ns
    with pytest.raises(TypeError, match="globals"):
        course.substitute(None, a=1).__enter__()


# ------------------------------------------------------------------------------------------
# Grading in a fresh kernel: honest work
# ------------------------------------------------------------------------------------------

def test_solution_full_marks_student_version_zero(reference, tmp_path):
    pytest.importorskip("nbclient")
    assert course.grade(reference, reference=reference, timeout=60).scores == HONEST
    assert grade(student(), reference, tmp_path).scores == ZERO


def test_partial_credit_and_independence(reference, tmp_path):
    """ex1 half right: ex1 gets the points of the check it passes; ex2 calls double() but its
    check substitutes the reference, so ex1's mistake costs ex2 nothing."""
    pytest.importorskip("nbclient")
    nb = tiny_solution_notebook()
    cell_by_id(nb, "sol1").source = "def double(x):\n    return 2 * x if np.isscalar(x) and x > 0 else x"
    report = grade(nb, reference, tmp_path)
    assert report.scores == {"ex1": (0, 3), "ex2": (3, 3), "ex3": (2, 2)}
    cell_by_id(nb, "sol1").source = "def double(x):\n    return 2 * x if np.isscalar(x) else None"
    assert grade(nb, reference, tmp_path).scores["ex1"] == (2, 3)


def test_hidden_tests_run_at_grading_and_their_details_stay_hidden(reference, tmp_path):
    pytest.importorskip("nbclient")
    nb = student()
    cell_by_id(nb, "sol1").source = "def double(x):\n    return 2 * abs(x)"      # passes the visible checks
    report = grade(nb, reference, tmp_path)
    assert report.scores["ex1"] == (1, 3)
    assert "negative floats" not in report.feedback() and "hidden test failed" in report.feedback()
    assert "negative floats" in report.feedback(show_hidden=True)
    results = course.gradescope_results(report)
    assert "negative floats" not in json.dumps(results)


def test_merged_cells_and_comments_are_graded_like_the_honest_notebook(reference, tmp_path):
    pytest.importorskip("nbclient")
    nb = tiny_solution_notebook()
    # Shift-M: the solution cell and its check cell merged, under either cell's id
    sol1, chk1 = cell_by_id(nb, "sol1"), cell_by_id(nb, "chk1")
    sol1.source = sol1.source + "\n" + chk1.source
    nb.cells.remove(chk1)
    sol2, chk2 = cell_by_id(nb, "sol2"), cell_by_id(nb, "chk2")
    chk2.source = sol2.source + "\n\n" + chk2.source
    nb.cells.remove(sol2)
    # a comment that mentions a check, in a solution cell
    sol3 = cell_by_id(nb, "sol3")
    sol3.source = "# this is what check(\"ex3\", points=2) tests\n" + sol3.source
    assert grade(nb, reference, tmp_path).scores == HONEST


def test_edited_deleted_and_moved_checks_do_not_matter(reference, tmp_path):
    pytest.importorskip("nbclient")
    nb = tiny_solution_notebook()
    cell_by_id(nb, "chk1").source = "with check('ex1', points=30):\n    pass"        # an easier check
    nb.cells.remove(cell_by_id(nb, "chk3"))                                         # a deleted check
    nb.cells.append(code("with check('ex99', points=100):\n    pass", "new"))       # a check of its own
    assert grade(nb, reference, tmp_path).scores == HONEST
    s = student()
    cell_by_id(s, "chk1").source = "with check('ex1', points=3):\n    pass"
    assert grade(s, reference, tmp_path).scores == ZERO


def test_a_timeout_costs_only_its_exercise(reference, tmp_path):
    pytest.importorskip("nbclient")
    nb = tiny_solution_notebook()
    cell_by_id(nb, "sol2").source = EX2.replace("return double(double(x))",
                                                "import time\n    time.sleep(60)\n    return double(double(x))")
    report = grade(nb, reference, tmp_path, timeout=3)
    assert report.scores == {"ex1": (3, 3), "ex2": (0, 3), "ex3": (2, 2)}
    assert any("timeout" in n for n in report.notes)


def test_a_cell_that_ignores_interrupts_gets_a_restart(reference, tmp_path):
    pytest.importorskip("nbclient")
    nb = tiny_solution_notebook()
    nb.cells.insert(nb.cells.index(cell_by_id(nb, "sol3")),
                    code("import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(600)", "stuck"))
    report = grade(nb, reference, tmp_path, timeout=3)
    assert report.scores == HONEST, report.feedback()
    assert any("restarted" in n for n in report.notes)


def test_a_dead_kernel_costs_only_its_exercise(reference, tmp_path):
    pytest.importorskip("nbclient")
    nb = tiny_solution_notebook()
    cell_by_id(nb, "sol2").source = "import os\nos._exit(1)"
    report = grade(nb, reference, tmp_path)
    assert report.scores == {"ex1": (3, 3), "ex2": (0, 3), "ex3": (2, 2)}
    assert any("killed the kernel" in n for n in report.notes)


def test_a_corrupt_notebook_gets_one_clear_line(reference, tmp_path):
    pytest.importorskip("nbclient")
    bad = tmp_path / "bob.ipynb"
    bad.write_text('{"cells": [ {"cell_type": "code", ')
    report = course.grade(str(bad), reference=reference)
    assert report.scores == ZERO and "not a readable notebook" in report.notes[0]
    with pytest.raises(course.GradingError, match="not a readable notebook: invalid JSON"):
        course.grade(str(bad))
    run = run_cli("grade", "--reference", reference, str(bad), "--json")
    assert run.returncode == 0 and "Traceback" not in run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1])["ex1"] == {"earned": 0, "possible": 3}


# ------------------------------------------------------------------------------------------
# Grading: attacks
# ------------------------------------------------------------------------------------------

FORGE = ("print('MINILM-GRADE {\"exercise\": \"ex1\", \"points\": 3, \"earned\": 3}')\n"
         "print('MINILM-RESULT 00 {\"records\": [{\"line\": 1, \"exercise\": \"ex1\", \"passed\": true}]}')")


@pytest.mark.parametrize("attack", [
    pytest.param(FORGE, id="forged-lines"),
    pytest.param("from contextlib import nullcontext\ncheck = lambda *a, **k: nullcontext()", id="rebound-check"),
    pytest.param("import minilm.course\nminilm.course.check.__exit__ = lambda self, *exc: True", id="patched-exit"),
    pytest.param("import minilm.course.checks as c\nc.check.__exit__ = lambda self, *exc: True\n"
                 "c.describe_failure = lambda *a: ''", id="patched-module"),
    pytest.param("np.array_equal = lambda *a, **k: True\nimport builtins\n"
                 "builtins.AssertionError = type('Nope', (BaseException,), {})", id="patched-numpy-and-builtins"),
    pytest.param("import sys, io\nsys.stdout = io.StringIO()", id="swallowed-stdout"),
    pytest.param("get_ipython().events.register('post_run_cell', lambda r: print("
                 "'MINILM-RESULT x {}'))", id="ipython-hook"),
])
def test_attacks_before_the_checks_change_nothing(attack, reference, tmp_path):
    """A student notebook (nothing solved) with the attack in a cell before the checks
    scores what an honest grader gives it: 0."""
    pytest.importorskip("nbclient")
    nb = student()
    nb.cells.insert(2, code(attack, "attack"))
    report = grade(nb, reference, tmp_path)
    assert report.scores == ZERO, report.feedback(show_hidden=True)
    solved = tiny_solution_notebook()
    solved.cells.insert(2, code(attack, "attack"))
    assert grade(solved, reference, tmp_path, "solved").scores == HONEST, "and honest work still counts"


def test_tampering_is_undone_and_flagged(reference, tmp_path):
    pytest.importorskip("nbclient")
    nb = student()
    nb.cells.insert(2, code("import minilm.course\nminilm.course.check.__exit__ = lambda self, *e: True\n"
                            "np.allclose = lambda *a, **k: True", "attack"))
    report = grade(nb, reference, tmp_path)
    flags = "\n".join(report.flags)
    assert "check.__exit__ was patched" in flags and "numpy.allclose was rebound" in flags
    assert "__exit__" in flags.split("\n")[0] or any("__exit__" in f for f in report.flags)
    clean = course.grade(reference, reference=reference, timeout=60)
    assert clean.flags == [], clean.flags


@pytest.mark.parametrize("solution", [
    pytest.param("    return minilm.ops.linear_backward(dout, (x, W))", id="reference-call"),
    pytest.param("    return lb(dout, (x, W))", id="renamed-import"),
    pytest.param("    ng = minilm.numerical_grad\n"
                 "    dx = ng(lambda a: a @ W, x, dout)\n    dW = ng(lambda w: x @ w, W, dout)\n"
                 "    return dx, dW", id="finite-differences"),
])
def test_forbidden_shortcuts_score_zero_for_their_exercise(solution, reference, tmp_path):
    pytest.importorskip("nbclient")
    nb = tiny_solution_notebook()
    cell_by_id(nb, "setup").source += "\nfrom minilm.ops import linear_backward as lb"
    cell_by_id(nb, "sol3").source = "def linear_backward_mine(dout, x, W):\n" + solution
    report = grade(nb, reference, tmp_path)
    assert report.scores == {"ex1": (3, 3), "ex2": (3, 3), "ex3": (0, 2)}, report.feedback()
    assert "forbids" in report.feedback()


# ------------------------------------------------------------------------------------------
# Gradebooks, Gradescope, the command line
# ------------------------------------------------------------------------------------------

def run_cli(*args, cwd=None, timeout=300):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "minilm.course", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=cwd)


def test_batch_grading_csv_feedback_and_gradescope(reference, tmp_path):
    pytest.importorskip("nbclient")
    subs = tmp_path / "subs"
    subs.mkdir()
    nbformat.write(tiny_solution_notebook(), str(subs / "alice.ipynb"))
    nbformat.write(student(), str(subs / "bob.ipynb"))
    (subs / "carol.ipynb").write_text("not json")
    run = run_cli("grade", "--reference", reference, str(subs), "--csv", str(tmp_path / "gb.csv"),
                  "--feedback", str(tmp_path / "fb"), "--timeout", "60")
    assert run.returncode == 0, run.stderr
    with open(tmp_path / "gb.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["student"] for r in rows] == ["alice", "bob", "carol"]
    assert rows[0] == {"student": "alice", "ex1": "3", "ex2": "3", "ex3": "2", "total": "8"}
    assert rows[1]["total"] == "0" and rows[2]["total"] == "0"
    bob = (tmp_path / "fb" / "bob.txt").read_text()
    assert "ex1: 0 / 3" in bob and "NotImplementedError: Exercise ex1: your code here" in bob
    run = run_cli("grade", "--reference", reference, str(subs / "alice.ipynb"), "--gradescope",
                  str(tmp_path / "results.json"))
    assert run.returncode == 0, run.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["score"] == 8
    assert [(t["name"], t["score"], t["max_score"]) for t in results["tests"]] == [
        ("ex1", 3, 3), ("ex2", 3, 3), ("ex3", 2, 2)]


def test_gradescope_autograder_runs_on_a_gradescope_layout(reference, tmp_path):
    pytest.importorskip("nbclient")
    zip_path = tmp_path / "autograder.zip"
    run = run_cli("autograder", "--reference", reference, "--out", str(zip_path), "--timeout", "60")
    assert run.returncode == 0, run.stderr
    root = tmp_path / "autograder"
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
        assert {"setup.sh", "run_autograder", "requirements.txt", "reference.ipynb",
                "minilm/course/grader.py"} <= set(names)
        zf.extractall(root / "source")
    # Gradescope copies run_autograder to /autograder and the submission to /autograder/submission
    shutil.copy(root / "source" / "run_autograder", root / "run_autograder")
    os.chmod(root / "run_autograder", 0o755)
    (root / "submission").mkdir()
    nb = student()
    cell_by_id(nb, "sol1").source = EX1.replace("# BEGIN SOLUTION\n    return 2 * x\n    # END SOLUTION", "return x + x")
    nbformat.write(nb, str(root / "submission" / "homework.ipynb"))
    env = dict(os.environ, AUTOGRADER_ROOT=str(root), AUTOGRADER_PYTHON=sys.executable)
    env.pop("PYTHONPATH", None)                                   # minilm comes from the zip
    done = subprocess.run(["bash", str(root / "run_autograder")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    results = json.loads((root / "results" / "results.json").read_text())
    assert results["score"] == 3
    assert {t["name"]: t["score"] for t in results["tests"]} == {"ex1": 3, "ex2": 0, "ex3": 0}


def test_cli_build_and_help(reference, tmp_path):
    run = run_cli("build", "--out", str(tmp_path / "handout"), reference)
    assert run.returncode == 0, run.stderr
    built = nbformat.read(str(tmp_path / "handout" / "reference.ipynb"), as_version=4)
    assert "negative floats" not in json.dumps(built)
    help_text = run_cli("--help").stdout + run_cli("grade", "--help").stdout
    for word in ("build", "grade", "autograder", "execute", "--reference", "--csv", "--gradescope", "--feedback"):
        assert word in help_text


def test_build_refuses_to_overwrite_the_solutions(reference):
    with pytest.raises(ValueError, match="overwrite"):
        course.build_student([reference], os.path.dirname(reference))


def test_every_notebook_has_a_valid_student_version():
    """Without a kernel: each student cell still compiles, and every exercise keeps its checks."""
    import glob
    for path in sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb"))):
        solution = nbformat.read(path, as_version=4)
        s = course.student_notebook(solution)
        for cell in s.cells:
            if cell.cell_type == "code":
                compile(course.build.python_source(cell.source), f"{os.path.basename(path)} (student)", "exec")
        assert course.possible_points(s) == course.possible_points(solution), path
        assert len(course.possible_points(solution)) >= 3, f"{path}: fewer than 3 graded exercises"


def test_no_handout_shows_a_model_answer():
    """The written questions' model answers stay in the solution notebooks only."""
    import glob
    for path in sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb"))):
        solution = nbformat.read(path, as_version=4)
        s = course.student_notebook(solution)
        for before, after in zip(solution.cells, s.cells):
            if before.cell_type != "markdown":
                continue
            assert "<!-- BEGIN SOLUTION -->" not in after.source and "<!-- END SOLUTION -->" not in after.source, path
            answers = before.source.count("<!-- BEGIN SOLUTION -->")
            assert after.source.count("*Your answer here.*") - before.source.count("*Your answer here.*") == answers, \
                f"{os.path.basename(path)}, cell {before.get('id')}: every model answer becomes one '*Your answer here.*'"


def test_the_recorder_is_off_outside_grading():
    assert checks_module._recorder is None
