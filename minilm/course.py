"""Graded exercises in notebooks: build the student versions, grade what comes back.

The notebooks in `notebooks/` are the *solution* notebooks. They follow otter-grader's
convention for solutions, and grade themselves with `check` cells:

    def naive_attention(q, k, v):
        # BEGIN SOLUTION
        scores = q @ k.T / math.sqrt(q.shape[-1])
        ...
        # END SOLUTION

    k_best = 0.1  # SOLUTION

    with check("ex1", points=2):            # a check cell: an exception inside means 0 points
        assert np.allclose(naive_attention(q, k, v), reference)

Three commands:

    python -m minilm.course build [--out student] [NOTEBOOK ...]    student versions
    python -m minilm.course grade NOTEBOOK [--timeout S] [--reference SOLUTION] [--json]
    python -m minilm.course execute [--inplace | --out DIR] NOTEBOOK ...   "Restart & Run All"

`build` replaces every solution region by a placeholder that keeps the indentation: inside
a function (an indented region) `raise NotImplementedError("Exercise ex1: your code here")`;
at the top level of a cell `name = ...  # YOUR CODE HERE` for each name the region assigns;
a `x = expr  # SOLUTION` line becomes `x = ...  # YOUR CODE HERE`. Outputs and execution
counts are cleared. The check cells are kept, visible: they are the grading checks, and
students see exactly what is tested and get feedback as they work (otter's "public
tests"). Since a student could edit them, `grade --reference SOLUTION.ipynb` puts the
instructor's check cells back in before running.

`grade` runs the notebook top to bottom in a fresh kernel (nbclient), going on past errors,
and reads the `MINILM-GRADE {...}` lines that `check` prints. The points an exercise is
worth are read from the notebook's source (every `check("id", points=N)` call), so an
exercise whose check never ran (an earlier cell crashed, the kernel timed out) scores 0
out of N rather than vanishing. Several checks may share one id: their points add up.

In Python: `grade_notebook(path) -> {"ex1": (earned, possible), ...}`, `build_student(...)`,
`execute_notebook(...)`, `scores(executed_nb)`.
"""
import argparse
import ast
import copy
import glob
import json
import os
import re
import sys
import traceback

GRADE_PREFIX = "MINILM-GRADE "

# otter-grader's markers: a whole line `# BEGIN SOLUTION` / `# END SOLUTION`, and
# `# SOLUTION` at the end of a single line.
BEGIN_SOLUTION = re.compile(r"^(?P<indent>\s*)#\s*BEGIN SOLUTION\b.*$")
END_SOLUTION = re.compile(r"^\s*#\s*END SOLUTION\b.*$")
SOLUTION_LINE = re.compile(r"^(?P<lhs>\s*[^#\n]+?)\s*=\s*(?P<rhs>[^#\n]+?)\s*#\s*SOLUTION\s*$")
CHECK_CALL = re.compile(r"""\bcheck\(\s*(?P<q>['"])(?P<ex>[^'"]+)(?P=q)\s*"""
                        r"""(?:,\s*(?:points\s*=\s*)?(?P<points>\d+(?:\.\d*)?))?""")
PLACEHOLDER = "YOUR CODE HERE"


# ------------------------------------------------------------------------------------------
# In the notebook: check cells
# ------------------------------------------------------------------------------------------

class check:
    """Grade the code in a `with` block: it passes if it raises nothing.

        with check("ex1", points=2):
            assert out.shape == (2, 5), f"expected (2, 5), got {out.shape}"

    On exit it prints a line for people (passed, or the exception) and one for `grade`:
    `MINILM-GRADE {"exercise": "ex1", "points": 2, "earned": 2}`. The exception is
    swallowed, so a failed check never stops the notebook: the next exercises still run.
    `passed` and `earned` are available afterwards (`with check(...) as c: ...; c.passed`).
    """

    def __init__(self, exercise, points=1):
        if not isinstance(exercise, str) or not exercise:
            raise ValueError(f"the exercise id must be a non-empty string, got {exercise!r}")
        if not points > 0:
            raise ValueError(f"points must be > 0, got {points}")
        self.exercise = exercise
        self.points = points
        self.passed = None
        self.earned = 0

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and not issubclass(exc_type, Exception):
            return False                    # KeyboardInterrupt, SystemExit: let them through
        self.passed = exc_type is None
        self.earned = self.points if self.passed else 0
        if self.passed:
            print(f"[{self.exercise}] passed: {_fmt(self.earned)}/{_fmt(self.points)} points")
        else:
            where = traceback.extract_tb(tb)[0] if tb is not None else None   # the check's own line
            line = f" (line {where.lineno}: {where.line})" if where is not None and where.line else ""
            message = str(exc) or exc_type.__name__
            print(f"[{self.exercise}] FAILED: {exc_type.__name__}: {message}{line}\n"
                  f"[{self.exercise}] 0/{_fmt(self.points)} points")
        record = {"exercise": self.exercise, "points": self.points, "earned": self.earned}
        print(GRADE_PREFIX + json.dumps(record), flush=True)
        return True                         # swallow the exception: the notebook goes on


def _fmt(x):
    return f"{x:g}" if isinstance(x, float) else str(x)


# ------------------------------------------------------------------------------------------
# Building student versions
# ------------------------------------------------------------------------------------------

def _assigned_names(code):
    """Names bound by the top-level assignments of `code`, in order, without repeats."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    names = []

    def add(target):
        if isinstance(target, ast.Name):
            if target.id not in names:
                names.append(target.id)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for t in target.elts:
                add(t)

    for node in tree.body:
        if isinstance(node, ast.Assign):
            for t in node.targets:
                add(t)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            add(node.target)
    return names


def _placeholder(region, indent, exercise):
    """The lines that replace one solution region."""
    label = f"Exercise {exercise}" if exercise else "Exercise"
    if indent:                                              # inside a def / loop / with
        return [f'{indent}raise NotImplementedError("{label}: your code here")']
    names = _assigned_names("\n".join(region))
    if names:
        return [f"{name} = ...  # {PLACEHOLDER}" for name in names]
    return [f"...  # {PLACEHOLDER}"]


def strip_solutions(source, exercise=None):
    """Replace every solution region of one cell's source by its placeholder.

    `exercise` names the exercise in the NotImplementedError message. Raises ValueError for a
    `# BEGIN SOLUTION` without its `# END SOLUTION` (or nested or stray markers).
    """
    lines = source.split("\n")
    out, i = [], 0
    while i < len(lines):
        line = lines[i]
        begin = BEGIN_SOLUTION.match(line)
        if begin:
            j = i + 1
            while j < len(lines) and not END_SOLUTION.match(lines[j]):
                if BEGIN_SOLUTION.match(lines[j]):
                    raise ValueError(f"nested '# BEGIN SOLUTION' at line {j + 1}:\n{source}")
                j += 1
            if j == len(lines):
                raise ValueError(f"'# BEGIN SOLUTION' at line {i + 1} has no '# END SOLUTION':\n{source}")
            indent = begin.group("indent")
            region = [ln[len(indent):] if ln.startswith(indent) else ln.lstrip() for ln in lines[i + 1:j]]
            out += _placeholder(region, indent, exercise)
            i = j + 1
            continue
        if END_SOLUTION.match(line):
            raise ValueError(f"'# END SOLUTION' at line {i + 1} without a '# BEGIN SOLUTION':\n{source}")
        single = SOLUTION_LINE.match(line)
        if single:
            out.append(f"{single.group('lhs')} = ...  # {PLACEHOLDER}")
        else:
            out.append(line)
        i += 1
    return "\n".join(out)


def _has_solution(source):
    return any(BEGIN_SOLUTION.match(ln) or SOLUTION_LINE.match(ln) for ln in source.split("\n"))


def check_calls(source):
    """[(exercise, points)] for every `check("id", points=N)` call written in `source`."""
    return [(m.group("ex"), _number(m.group("points") or "1")) for m in CHECK_CALL.finditer(source)]


def _number(text):
    value = float(text)
    return int(value) if value.is_integer() else value


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def _next_exercise(cells, start):
    """The id of the first check(...) in cells[start:], or None."""
    for cell in cells[start:]:
        calls = check_calls(cell.source)
        if calls:
            return calls[0][0]
    return None


def student_notebook(nb):
    """A copy of the solution notebook `nb` with solutions replaced and outputs cleared.

    The exercise named in each placeholder is the first `check(...)` at or after the cell.
    """
    nb = copy.deepcopy(nb)
    cells = _code_cells(nb)
    for i, cell in enumerate(cells):
        if _has_solution(cell.source):
            cell.source = strip_solutions(cell.source, _next_exercise(cells, i))
        cell.outputs = []
        cell.execution_count = None
        cell.metadata.pop("execution", None)
    nb.metadata.setdefault("minilm", {})["student_version"] = True
    return nb


def build_student(paths, out_dir="student"):
    """Write the student version of each notebook in `paths` to `out_dir`; returns the paths."""
    import nbformat
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        target = os.path.join(out_dir, os.path.basename(path))
        if os.path.abspath(target) == os.path.abspath(path):
            raise ValueError(f"refusing to overwrite the solution notebook {path}: choose another --out")
        nbformat.write(student_notebook(nb), target)
        written.append(target)
    return written


# ------------------------------------------------------------------------------------------
# Running and grading
# ------------------------------------------------------------------------------------------

def _kernel_env():
    """The environment of the grading kernel: this one, with this minilm importable (the
    folder above the package goes first on PYTHONPATH) and figures shown inline."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.pop("MPLBACKEND", None)            # e.g. Agg in CI: the kernel's inline backend instead
    return env


def execute_notebook(nb_or_path, timeout=300, allow_errors=False, cwd=None, kernel_name="python3"):
    """Run a notebook top to bottom in a fresh kernel and return it with its outputs.

    nb_or_path: a path or a NotebookNode; cwd: the kernel's working folder (default: the
    notebook's own folder, or the current one for a NotebookNode). With allow_errors=False the
    first failing cell raises nbclient's CellExecutionError; with True the run goes on and
    the errors are left in the outputs. `timeout` is per cell, in seconds.
    """
    import nbformat
    from nbclient import NotebookClient
    if isinstance(nb_or_path, (str, os.PathLike)):
        path = os.fspath(nb_or_path)
        nb = nbformat.read(path, as_version=4)
        cwd = cwd if cwd is not None else (os.path.dirname(os.path.abspath(path)))
    else:
        nb = copy.deepcopy(nb_or_path)
        cwd = cwd if cwd is not None else os.getcwd()
    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel_name, allow_errors=allow_errors,
                            coalesce_streams=True,      # one output per stream, progress bars collapsed
                            resources={"metadata": {"path": cwd}})
    client.execute(env=_kernel_env())
    return nb


def possible_points(nb):
    """{exercise: points} from the check calls in the notebook's code, in order of appearance."""
    points = {}
    for cell in _code_cells(nb):
        for exercise, p in check_calls(cell.source):
            points[exercise] = points.get(exercise, 0) + p
    return points


def earned_points(nb):
    """{exercise: points earned} from the MINILM-GRADE lines in an executed notebook's outputs."""
    earned = {}
    for cell in _code_cells(nb):
        for output in cell.get("outputs", []):
            if output.get("output_type") != "stream" or output.get("name") != "stdout":
                continue
            for line in output.get("text", "").splitlines():
                if not line.startswith(GRADE_PREFIX):
                    continue
                try:
                    record = json.loads(line[len(GRADE_PREFIX):])
                    exercise, value = str(record["exercise"]), float(record["earned"])
                except (ValueError, KeyError, TypeError):
                    continue                    # a malformed line earns nothing
                earned[exercise] = _number(str(earned.get(exercise, 0) + value))
    return earned


def scores(executed_nb, reference_nb=None):
    """{exercise: (earned, possible)} for an executed notebook. Possible points come from the
    reference notebook's checks when given (else from the notebook's own); earned points are
    capped at the possible ones, and exercises that nobody checks are ignored."""
    possible = possible_points(reference_nb if reference_nb is not None else executed_nb)
    earned = earned_points(executed_nb)
    return {ex: (min(earned.get(ex, 0), p), p) for ex, p in possible.items()}


def with_reference_checks(nb, reference_nb):
    """A copy of `nb` whose check cells are the reference notebook's.

    A code cell of `nb` that calls check(...) is replaced by the reference cell that checks
    the same exercises; reference check cells that `nb` lacks are appended at the end, so a
    deleted check still runs (after everything else).
    """
    import nbformat
    nb = copy.deepcopy(nb)
    ref_cells = {}
    for cell in _code_cells(reference_nb):
        ids = tuple(ex for ex, _ in check_calls(cell.source))
        if ids:
            ref_cells[ids] = cell
    used = set()
    for cell in _code_cells(nb):
        ids = tuple(ex for ex, _ in check_calls(cell.source))
        if not ids:
            continue
        match = ref_cells.get(ids) or next((c for key, c in ref_cells.items() if set(key) & set(ids)), None)
        if match is None:
            cell.source = "# (a check cell that the reference notebook does not have was removed)"
            continue
        cell.source = match.source
        used.add(id(match))
    for cell in ref_cells.values():
        if id(cell) not in used:
            nb.cells.append(nbformat.v4.new_code_cell(cell.source))
    return nb


def grade_notebook(path, timeout=300, reference=None, cwd=None, kernel_name="python3"):
    """Run `path` in a fresh kernel (past errors) and return {exercise: (earned, possible)}.

    reference: the instructor's solution notebook (path); when given, its check cells replace
    the submission's (see `with_reference_checks`) and its checks define the possible points.
    """
    import nbformat
    nb = nbformat.read(path, as_version=4)
    ref = nbformat.read(reference, as_version=4) if reference is not None else None
    if ref is not None:
        nb = with_reference_checks(nb, ref)
    cwd = cwd if cwd is not None else os.path.dirname(os.path.abspath(path))
    executed = execute_notebook(nb, timeout=timeout, allow_errors=True, cwd=cwd, kernel_name=kernel_name)
    return scores(executed, ref)


def format_scores(result):
    """A small table: one line per exercise, then the total."""
    width = max([len(ex) for ex in result] + [8])
    lines = [f"{'exercise':<{width}}  {'earned':>6} / possible"]
    for ex, (earned, possible) in result.items():
        lines.append(f"{ex:<{width}}  {_fmt(earned):>6} / {_fmt(possible)}")
    total_e = sum(e for e, _ in result.values())
    total_p = sum(p for _, p in result.values())
    lines.append(f"{'total':<{width}}  {_fmt(total_e):>6} / {_fmt(total_p)}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minilm.course",
                                     description="Build student notebooks and grade them.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("build", help="write student versions (solutions replaced, outputs cleared)")
    p.add_argument("notebooks", nargs="*", help="solution notebooks (default: notebooks/*.ipynb)")
    p.add_argument("--out", default="student", help="output folder (default: student/)")
    p = sub.add_parser("grade", help="run a notebook in a fresh kernel and score its exercises")
    p.add_argument("notebook")
    p.add_argument("--timeout", type=float, default=300, help="seconds per cell (default 300)")
    p.add_argument("--reference", default=None,
                   help="the solution notebook: its check cells replace the submission's")
    p.add_argument("--json", action="store_true", help="print the scores as JSON")
    p = sub.add_parser("execute", help="run notebooks top to bottom and save them with outputs")
    p.add_argument("notebooks", nargs="+")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--inplace", action="store_true", help="overwrite each notebook")
    group.add_argument("--out", help="write the executed notebooks to this folder")
    p.add_argument("--timeout", type=float, default=300, help="seconds per cell (default 300)")
    p.add_argument("--allow-errors", action="store_true")
    args = parser.parse_args(argv)

    if args.command == "build":
        paths = args.notebooks or sorted(glob.glob(os.path.join("notebooks", "*.ipynb")))
        if not paths:
            parser.error("no notebooks given and none found in notebooks/")
        for target in build_student(paths, args.out):
            print(f"wrote {target}")
        return 0
    if args.command == "grade":
        result = grade_notebook(args.notebook, timeout=args.timeout, reference=args.reference)
        if args.json:
            print(json.dumps({ex: {"earned": e, "possible": p} for ex, (e, p) in result.items()}))
        else:
            print(f"{args.notebook}:")
            print(format_scores(result))
        return 0
    import nbformat
    for path in args.notebooks:
        nb = execute_notebook(path, timeout=args.timeout, allow_errors=args.allow_errors)
        target = path if args.inplace else os.path.join(args.out, os.path.basename(path))
        if not args.inplace:
            os.makedirs(args.out, exist_ok=True)
        nbformat.write(nb, target)
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
