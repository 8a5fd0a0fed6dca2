"""Grading: run a submission in a fresh kernel with the instructor's checks, score it, explain it.

    report = grade("submissions/alice.ipynb", reference="notebooks/03a-attention.ipynb")
    report.scores          # {"ex1": (2, 2), "ex2": (0, 1), ...}
    print(report.feedback())

How a submission is run (one kernel, cells one at a time, `timeout` seconds each):
1. the harness's `begin()` (minilm/course/harness.py), before any submission code;
2. the submission's code cells in order, except unchanged copies of the reference's check
   cells (they would only run twice);
3. each check cell of the reference, placed by cell id, not by text: right after the
   submission's cell with the same id if it has one (a copy the student edited, merged with
   a solution, or commented), else just before the submission's copy of the next reference
   cell that it still has, else at the end. The harness runs it; its signed result line is
   the only thing read from the kernel.

Failures cost only their exercise: a cell that raises is recorded and the run goes on; a cell
past the timeout is interrupted (and if the kernel does not answer, restarted); a dead
kernel is restarted and the notebook's state rebuilt by re-running the earlier cells, without
the one that killed it. Without a reference the notebook is graded against its own check
cells: fine for a student's self-check, never for marks.
"""
import csv
import dataclasses
import hashlib
import json
import os
import re
import secrets

from .build import check_sites, hidden_lines, is_check_cell, strip_hidden_tests
from .harness import verify

MAX_RESTARTS = 3
PROBE_TIMEOUT = 20            # seconds an interrupted kernel gets to answer before a restart

# Names a submission has no honest reason to write, each a way to reach the grader's machinery.
SUSPICIOUS = [r"get_ipython", r"\bsettrace\b", r"\bsetprofile\b", r"addaudithook", r"_getframe", r"\bf_back\b",
              r"\bf_locals\b", r"\bf_globals\b", r"\bgc\.get_(objects|referrers|referents)", r"\bctypes\b",
              r"minilm\.course\.(harness|grader|checks)", r"MINILM-RESULT", r"__code__", r"\bbuiltins\b",
              r"sys\.modules", r"sys\.std(out|err)\s*=", r"transformers_(post|cleanup)", r"ast_transformers",
              r"events\.register", r"os\._exit", r"\bsignal\.", r"\b_recorder\b", r"__exit__\s*="]


class GradingError(Exception):
    """A notebook that cannot be graded at all (unreadable file, bad reference)."""


@dataclasses.dataclass
class Exercise:
    """One exercise's score and why."""
    earned: float = 0
    possible: float = 0
    messages: list = dataclasses.field(default_factory=list)      # shown to the student
    hidden: list = dataclasses.field(default_factory=list)        # hidden tests' failures: instructors only


@dataclasses.dataclass
class Report:
    """The result of grading one notebook."""
    path: str
    exercises: dict                                     # {exercise: Exercise}, in the reference's order
    errors: list = dataclasses.field(default_factory=list)     # "cell 7: NameError: ..."
    notes: list = dataclasses.field(default_factory=list)      # timeouts, restarts, self-graded
    flags: list = dataclasses.field(default_factory=list)      # integrity: tampering, suspicious code

    @property
    def student(self):
        return os.path.splitext(os.path.basename(self.path))[0]

    @property
    def scores(self):
        return {ex: (_num(e.earned), _num(e.possible)) for ex, e in self.exercises.items()}

    @property
    def total(self):
        return (_num(sum(e.earned for e in self.exercises.values())),
                _num(sum(e.possible for e in self.exercises.values())))

    def feedback(self, show_hidden=False):
        """A readable report: the score of each exercise and, for each failure, why."""
        earned, possible = self.total
        lines = [f"{os.path.basename(self.path)}: {_fmt(earned)} / {_fmt(possible)} points", ""]
        for ex, e in self.exercises.items():
            status = "passed" if e.earned == e.possible else "FAILED" if e.earned == 0 else "partial"
            lines.append(f"{ex}: {_fmt(e.earned)} / {_fmt(e.possible)}  {status}")
            for m in e.messages:
                lines += ["    " + ln for ln in m.rstrip().splitlines()]
            if e.hidden:
                lines += ["    " + ln for ln in (e.hidden if show_hidden else
                                                 ["a hidden test failed (its details are not shown)"])]
        if self.errors:
            lines += ["", "Cells that raised an error:"] + ["    " + e for e in self.errors]
        if self.notes:
            lines += ["", "Notes:"] + ["    " + n for n in self.notes]
        if self.flags and show_hidden:
            lines += ["", "Integrity flags (for the instructor):"] + ["    " + f for f in self.flags]
        return "\n".join(lines) + "\n"


def _num(x):
    return int(x) if float(x).is_integer() else x


def _fmt(x):
    return f"{x:g}" if isinstance(x, float) else str(x)


# ------------------------------------------------------------------------------------------
# Reading notebooks and planning the run
# ------------------------------------------------------------------------------------------

def read_notebook(path):
    """The notebook at `path`, or GradingError with one line saying what is wrong with it."""
    import nbformat
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        json.loads(text)
        nb = nbformat.reads(text, as_version=4)
    except FileNotFoundError:
        raise GradingError(f"{path}: no such file") from None
    except json.JSONDecodeError as exc:
        raise GradingError(f"{path} is not a readable notebook: invalid JSON at line {exc.lineno}, "
                           f"column {exc.colno} ({exc.msg})") from None
    except Exception as exc:                              # nbformat's own errors, bad encodings
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GradingError(f"{path} is not a readable notebook: {first}") from None
    if not isinstance(nb.get("cells"), list):
        raise GradingError(f"{path} is not a readable notebook: it has no list of cells")
    for cell in nb.cells:
        if cell.get("cell_type") == "code" and not isinstance(cell.get("source"), str):
            raise GradingError(f"{path} is not a readable notebook: a code cell has no source text")
    return nb


@dataclasses.dataclass
class Step:
    kind: str                   # "cell" (the submission's) or "check" (the reference's)
    source: str
    label: str                  # "cell 7" or "check cell 12 (ex1)"
    sites: list = dataclasses.field(default_factory=list)
    hidden: set = dataclasses.field(default_factory=set)
    key: str = ""


def _public_copy(ref_cell):
    try:
        return strip_hidden_tests(ref_cell.source)
    except ValueError:
        return ref_cell.source


def plan(submission, reference):
    """The steps of a grading run: the submission's cells with the reference's checks placed
    among them (see the module docstring)."""
    ref_cells = reference.cells
    sub_cells = submission.cells
    sub_pos = {c.get("id"): i for i, c in enumerate(sub_cells) if c.get("id")}
    checks = [r for r, c in enumerate(ref_cells) if is_check_cell(c)]
    before, after, end = {}, {}, []
    for r in checks:
        cid = ref_cells[r].get("id")
        if cid in sub_pos:
            after.setdefault(sub_pos[cid], []).append(r)
            continue
        successor = next((sub_pos[c.get("id")] for c in ref_cells[r + 1:] if c.get("id") in sub_pos), None)
        (before.setdefault(successor, []) if successor is not None else end).append(r)

    def check_step(r):
        cell = ref_cells[r]
        sites = check_sites(cell.source)
        ids = ", ".join(dict.fromkeys(ex for _, ex, _ in sites))
        return Step("check", cell.source, f"check cell {r + 1} ({ids})", sites, hidden_lines(cell.source),
                    secrets.token_hex(16))

    reference_checks = {ref_cells[r].get("id"): ref_cells[r] for r in checks}
    steps = []
    for i, cell in enumerate(sub_cells):
        steps += [check_step(r) for r in before.get(i, [])]
        if cell.cell_type == "code" and cell.source.strip():
            ref_cell = reference_checks.get(cell.get("id"))
            unchanged = ref_cell is not None and cell.source in (ref_cell.source, _public_copy(ref_cell))
            if not unchanged:                           # an untouched copy of a check would only run twice
                steps.append(Step("cell", cell.source, f"cell {i + 1}"))
        steps += [check_step(r) for r in after.get(i, [])]
    steps += [check_step(r) for r in end]
    return steps


def possible_points(nb):
    """{exercise: points} from the check sites of a notebook, in order of appearance."""
    points = {}
    for cell in nb.cells:
        if cell.cell_type == "code":
            for _, exercise, p in check_sites(cell.source):
                points[exercise] = points.get(exercise, 0) + p
    return points


def scan_source(submission, reference):
    """Integrity flags: names the submission writes more often than the reference does that
    reach for the grader's machinery (frames, hooks, builtins, the harness). Advisory: the
    instructor reads the flagged notebook."""
    def code(nb):
        return "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    mine, theirs = code(submission), code(reference)
    flags = []
    for pattern in SUSPICIOUS:
        n, m = len(re.findall(pattern, mine)), len(re.findall(pattern, theirs))
        if n > m:
            flags.append(f"the submission uses {pattern.replace(chr(92) + 'b', '')!r} ({n} times, the reference {m})")
    return flags


# ------------------------------------------------------------------------------------------
# Running
# ------------------------------------------------------------------------------------------

def kernel_env():
    """The environment of the grading kernel: this one, with this minilm importable (the
    folder above the package goes first on PYTHONPATH) and figures shown inline."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.pop("MPLBACKEND", None)            # e.g. Agg in CI: the kernel's inline backend instead
    return env


def _source_of(step):
    if step.kind == "cell":
        return step.source
    return ("import minilm.course.harness as _minilm_harness\n"
            f"_minilm_harness.run({step.key!r}, {step.label!r}, {step.source!r}, globals())\n"
            "del _minilm_harness")


PREAMBLE = "import minilm.course.harness as _minilm_harness\n_minilm_harness.begin()\ndel _minilm_harness"


class _Kernel:
    """One kernel session that runs cells one at a time and survives timeouts where it can."""

    def __init__(self, timeout, cwd, kernel_name):
        import nbformat
        from nbclient import NotebookClient
        self.nb = nbformat.v4.new_notebook()
        self.nb.metadata["kernelspec"] = {"name": kernel_name, "display_name": kernel_name, "language": "python"}
        self.client = NotebookClient(self.nb, timeout=timeout, kernel_name=kernel_name, allow_errors=True,
                                     coalesce_streams=True, resources={"metadata": {"path": cwd}})
        self._context = None

    def __enter__(self):
        self._context = self.client.setup_kernel(env=kernel_env())
        self._context.__enter__()
        return self

    def __exit__(self, *exc):
        try:
            self._context.__exit__(None, None, None)
        except Exception:
            pass
        return False

    def run(self, source):
        """Run one cell: ("ok" | "timeout" | "dead", outputs)."""
        import nbformat
        from nbclient.exceptions import CellTimeoutError, DeadKernelError
        cell = nbformat.v4.new_code_cell(source)
        self.nb.cells.append(cell)
        try:
            self.client.execute_cell(cell, len(self.nb.cells) - 1)
            return "ok", cell.outputs
        except CellTimeoutError:
            outputs = list(cell.outputs)
            return ("timeout" if self._recover() else "dead"), outputs
        except DeadKernelError:
            return "dead", list(cell.outputs)
        except Exception:                                   # the kernel went away some other way
            return "dead", list(cell.outputs)

    def _recover(self):
        """Interrupt a cell past its timeout; True when the kernel answers again."""
        import nbformat
        from nbclient.util import run_sync
        try:
            run_sync(self.client.km.interrupt_kernel)()
        except Exception:
            return False
        saved = self.client.timeout
        self.client.timeout = PROBE_TIMEOUT
        probe = nbformat.v4.new_code_cell("pass")
        self.nb.cells.append(probe)
        try:
            self.client.execute_cell(probe, len(self.nb.cells) - 1)
            return True
        except Exception:
            return False
        finally:
            self.client.timeout = saved


def _errors(outputs):
    return [f"{o.get('ename')}: {o.get('evalue')}" for o in outputs if o.get("output_type") == "error"]


def _stdout(outputs):
    return "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")


def run_steps(steps, timeout=300, cwd=None, kernel_name="python3"):
    """Execute the steps; returns ([(status, outputs) per step], notes). Status is "ok" (the
    cell ran, perhaps raising), "timeout" (interrupted, the kernel went on), "dead" (the
    kernel died or stopped answering: restarted, the earlier cells run again), "not run"."""
    cwd = cwd or os.getcwd()
    results = [("not run", [])] * len(steps)
    notes = []
    start, restarts = 0, 0
    while start < len(steps):
        with _Kernel(timeout, cwd, kernel_name) as kernel:
            status, outputs = kernel.run(PREAMBLE)
            if status != "ok" or _errors(outputs):
                raise GradingError("the grading harness could not start in the kernel: "
                                   + "; ".join(_errors(outputs) or [status]))
            for i in range(start):                          # after a restart: rebuild the state
                if steps[i].kind == "cell" and results[i][0] in ("ok", "timeout"):
                    if kernel.run(_source_of(steps[i]))[0] == "dead":
                        notes.append(f"the notebook's state could not be rebuilt after a restart "
                                     f"({steps[i].label} failed again): the rest is not graded")
                        return results, notes
            for i in range(start, len(steps)):
                status, outputs = kernel.run(_source_of(steps[i]))
                results[i] = (status, outputs)
                start = i + 1
                if status == "timeout":
                    notes.append(f"{steps[i].label} ran past the {timeout:g} s timeout and was interrupted")
                elif status == "dead":
                    notes.append(f"{steps[i].label} killed the kernel (or ran past the timeout and the "
                                 "kernel stopped answering): it was restarted and the cells before it run again")
                    break
        if results[start - 1][0] == "dead" and start < len(steps):
            restarts += 1
            if restarts > MAX_RESTARTS:
                notes.append(f"the kernel was restarted {MAX_RESTARTS} times: the rest is not graded")
                break
    return results, notes


# ------------------------------------------------------------------------------------------
# Scoring
# ------------------------------------------------------------------------------------------

def _score_check(step, status, outputs, exercises, flags):
    """Add one check step's results to `exercises`."""
    results = [r for r in (verify(line, step.key) for line in _stdout(outputs).splitlines()) if r is not None]
    expected_sha = hashlib.sha256(step.source.encode()).hexdigest()
    result, why = None, None
    if len(results) > 1:
        flags.append(f"{step.label}: {len(results)} signed results instead of one; none counted")
        why = "the check reported more than once (see the instructor)"
    elif results and results[0].get("source_sha256") != expected_sha:
        flags.append(f"{step.label}: the check that ran is not the reference's")
        why = "the check that ran is not the reference's"
    elif results:
        result = results[0]
        flags += [f"{step.label}: {t}" for t in result.get("tampering", [])]
    elif status == "timeout":
        why = "the check ran past the time limit"
    elif status == "dead":
        why = "the kernel died while the check ran"
    elif status == "not run":
        why = "the check did not run (see the notes)"
    else:
        why = "the check did not report a result"
    for line, exercise, points in step.sites:
        ex = exercises[exercise]
        records = [r for r in (result or {}).get("records", []) if r["line"] == line and r["exercise"] == exercise]
        if records and all(r["passed"] for r in records):
            ex.earned += points
            continue
        if result is not None and not records:
            reason = f"the check did not run: {result['error']}" if result.get("error") else "the check did not run"
            ex.messages.append(f"[check at line {line}] {reason}")
            continue
        if result is None:
            ex.messages.append(f"[check at line {line}] {why}")
            continue
        for r in records:
            if r["passed"]:
                continue
            if r.get("fail_line") in step.hidden:
                ex.hidden.append(f"[check at line {line}] {r['message']}")
            else:
                text = f"[check at line {line}] {r['message']}"
                if r.get("output", "").strip():
                    text += "\n  output:\n" + "\n".join("    " + ln for ln in r["output"].rstrip().splitlines()[-40:])
                ex.messages.append(text)
            break


def grade(path, reference=None, timeout=300, cwd=None, kernel_name="python3"):
    """Grade one notebook; returns a Report. `reference`: the instructor's solution notebook
    (its checks and points count); without it the notebook's own checks are used."""
    ref = read_notebook(reference) if reference is not None else None
    try:
        sub = read_notebook(path)
    except GradingError as exc:
        if ref is None:
            raise
        report = Report(path, {ex: Exercise(0, p) for ex, p in possible_points(ref).items()})
        report.notes.append(str(exc))
        return report
    ref = ref if ref is not None else sub
    possible = possible_points(ref)
    if not possible:
        raise GradingError(f"{reference or path} has no check cells (`with check(\"id\", points=N):`)")
    report = Report(path, {ex: Exercise(0, p) for ex, p in possible.items()})
    if reference is None:
        report.notes.append("graded against its own check cells: use --reference for marks that count")
    report.flags += scan_source(sub, ref)
    steps = plan(sub, ref)
    cwd = cwd if cwd is not None else os.path.dirname(os.path.abspath(path))
    results, notes = run_steps(steps, timeout=timeout, cwd=cwd, kernel_name=kernel_name)
    report.notes += notes
    for step, (status, outputs) in zip(steps, results):
        if step.kind == "check":
            _score_check(step, status, outputs, report.exercises, report.flags)
        else:
            report.errors += [f"{step.label}: {e}" for e in _errors(outputs)]
    return report


def grade_notebook(path, timeout=300, reference=None, cwd=None, kernel_name="python3"):
    """{exercise: (earned, possible)} for one notebook (see `grade`)."""
    return grade(path, reference=reference, timeout=timeout, cwd=cwd, kernel_name=kernel_name).scores


def notebooks_in(target):
    """A notebook path as given, or every *.ipynb directly inside a folder, sorted."""
    if os.path.isdir(target):
        return sorted(os.path.join(target, f) for f in os.listdir(target) if f.endswith(".ipynb"))
    return [target]


# ------------------------------------------------------------------------------------------
# Gradebooks
# ------------------------------------------------------------------------------------------

def write_csv(reports, path):
    """One row per notebook: student, one column per exercise (the reference's order), total."""
    exercises = list(dict.fromkeys(ex for r in reports for ex in r.exercises))
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student"] + exercises + ["total"])
        for r in reports:
            scores = r.scores
            writer.writerow([r.student] + [_fmt(scores[ex][0]) if ex in scores else "" for ex in exercises]
                            + [_fmt(r.total[0])])


def gradescope_results(report):
    """Gradescope's results.json: one test per exercise (score, max_score, output). Hidden
    tests' failures say only that a hidden test failed; the instructor sees them in the
    feedback file."""
    tests = []
    for ex, e in report.exercises.items():
        output = "\n".join(e.messages)
        if e.hidden:
            output += ("\n" if output else "") + "A hidden test failed (its details are not shown)."
        tests.append({"name": ex, "score": _num(e.earned), "max_score": _num(e.possible),
                      "output": output or "passed", "visibility": "visible"})
    general = report.notes + [f"cell error: {e}" for e in report.errors]
    return {"score": _num(report.total[0]), "output": "\n".join(general), "visibility": "visible",
            "stdout_visibility": "hidden", "tests": tests}


def write_feedback(report, folder):
    """`folder/<student>.txt`: the student's feedback (hidden tests' details left out), and
    `folder/<student>.instructor.txt` with them and the integrity flags."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for suffix, show in (("", False), (".instructor", True)):
        p = os.path.join(folder, f"{report.student}{suffix}.txt")
        with open(p, "w") as f:
            f.write(report.feedback(show_hidden=show))
        paths.append(p)
    return paths
