"""Authoring graded notebooks: solution regions, hidden tests, check sites, student builds.

The notebooks in `notebooks/` are the *solution* notebooks. They follow otter-grader's
convention for solutions and nbgrader's for hidden tests:

    def naive_attention(q, k, v):
        # BEGIN SOLUTION
        scores = q @ k.T / math.sqrt(q.shape[-1])
        ...
        # END SOLUTION

    k_best = 0.1  # SOLUTION

    with check("ex1", points=2, forbid=[attention_forward]):     # a check cell
        assert np.allclose(naive_attention(q, k, v), reference)
        ### BEGIN HIDDEN TESTS
        assert ...                                               # only when grading
        ### END HIDDEN TESTS

`build` replaces every solution region by a placeholder that keeps the indentation: inside
a function (an indented region) `raise NotImplementedError("Exercise ex1: your code here")`;
at the top level of a cell `name = ...  # YOUR CODE HERE` for each name the region assigns;
a `x = expr  # SOLUTION` line becomes `x = ...  # YOUR CODE HERE`. Hidden tests are removed
(a `pass` keeps the block valid). Outputs and execution counts are cleared. The rest of each
check cell stays, visible: students see what is tested and get feedback as they work.

Written (conceptual) questions get model answers in markdown cells, between two lines of their own:

    **Q1.** Why does the causal mask use -inf rather than 0?

    <!-- BEGIN SOLUTION -->
    Because softmax(0) is not 0: ...
    <!-- END SOLUTION -->

The solution notebook (the instructor's) shows the answer; `build` replaces each region,
markers included, by the line `*Your answer here.*` and keeps the rest of the cell. A marker
without its partner (or a nested one) raises ValueError, as for code.

A *check cell* is a code cell with a `with check("id", points=N, ...)` statement; its
*sites* are those statements, found in the syntax tree (comments and strings that mention
check(...) are not sites).
"""
import ast
import copy
import os
import re

# otter-grader's markers: a whole line `# BEGIN SOLUTION` / `# END SOLUTION`, and
# `# SOLUTION` at the end of a single line.
BEGIN_SOLUTION = re.compile(r"^(?P<indent>\s*)#\s*BEGIN SOLUTION\b.*$")
END_SOLUTION = re.compile(r"^\s*#\s*END SOLUTION\b.*$")
SOLUTION_LINE = re.compile(r"^(?P<lhs>\s*[^#\n]+?)\s*=\s*(?P<rhs>[^#\n]+?)\s*#\s*SOLUTION\s*$")
# nbgrader's markers for tests that students do not see.
BEGIN_HIDDEN = re.compile(r"^(?P<indent>\s*)###\s*BEGIN HIDDEN TESTS\s*$")
END_HIDDEN = re.compile(r"^\s*###\s*END HIDDEN TESTS\s*$")
PLACEHOLDER = "YOUR CODE HERE"
# Model answers to written questions, in markdown cells (HTML comments: invisible when rendered).
BEGIN_ANSWER = re.compile(r"^\s*<!--\s*BEGIN SOLUTION\s*-->\s*$")
END_ANSWER = re.compile(r"^\s*<!--\s*END SOLUTION\s*-->\s*$")
ANSWER_PLACEHOLDER = "*Your answer here.*"


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


def _replace_regions(source, begin, end, names, replace, other=lambda line: [line]):
    """Scan a cell's lines for `begin` ... `end` marker regions (regexes; `names` are the two
    markers as written, for messages); each region, markers included, becomes
    `replace(begin_match, lines inside)`; every other line becomes `other(line)`. Raises
    ValueError for a missing, nested or stray marker."""
    lines = source.split("\n")
    out, i = [], 0
    while i < len(lines):
        opened = begin.match(lines[i])
        if opened:
            j = i + 1
            while j < len(lines) and not end.match(lines[j]):
                if begin.match(lines[j]):
                    raise ValueError(f"nested '{names[0]}' at line {j + 1}:\n{source}")
                j += 1
            if j == len(lines):
                raise ValueError(f"'{names[0]}' at line {i + 1} has no '{names[1]}':\n{source}")
            out += replace(opened, lines[i + 1:j])
            i = j + 1
            continue
        if end.match(lines[i]):
            raise ValueError(f"'{names[1]}' at line {i + 1} without a '{names[0]}':\n{source}")
        out += other(lines[i])
        i += 1
    return "\n".join(out)


def strip_solutions(source, exercise=None):
    """Replace every solution region of one cell's source by its placeholder.

    `exercise` names the exercise in the NotImplementedError message. Raises ValueError for a
    `# BEGIN SOLUTION` without its `# END SOLUTION` (or nested or stray markers).
    """
    def placeholder(opened, inside):
        indent = opened.group("indent")
        region = [ln[len(indent):] if ln.startswith(indent) else ln.lstrip() for ln in inside]
        return _placeholder(region, indent, exercise)

    def single_line(line):
        single = SOLUTION_LINE.match(line)
        return [f"{single.group('lhs')} = ...  # {PLACEHOLDER}"] if single else [line]

    return _replace_regions(source, BEGIN_SOLUTION, END_SOLUTION, ("# BEGIN SOLUTION", "# END SOLUTION"),
                            placeholder, single_line)


def strip_model_answers(source):
    """Replace every `<!-- BEGIN SOLUTION -->` ... `<!-- END SOLUTION -->` region of one
    markdown cell's source (markers included) by the line `*Your answer here.*`.

    Raises ValueError for a marker without its partner, or a nested one.
    """
    return _replace_regions(source, BEGIN_ANSWER, END_ANSWER, ("<!-- BEGIN SOLUTION -->", "<!-- END SOLUTION -->"),
                            lambda opened, inside: [ANSWER_PLACEHOLDER])


def _has_solution(source):
    return any(BEGIN_SOLUTION.match(ln) or SOLUTION_LINE.match(ln) for ln in source.split("\n"))


def python_source(source):
    """The cell's source with IPython's `%magic` and `!shell` lines blanked (line numbers kept)."""
    return "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in source.split("\n"))


def _check_call(node):
    """(exercise, points) when `node` is a literal `check("id", points=N, ...)` call, else None."""
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    if name != "check" or not node.args or not isinstance(node.args[0], ast.Constant) \
            or not isinstance(node.args[0].value, str):
        return None
    points = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "points"), None)
    if points is None:
        return node.args[0].value, 1
    if isinstance(points, ast.Constant) and isinstance(points.value, (int, float)) and not isinstance(points.value, bool):
        return node.args[0].value, points.value
    raise ValueError(f"line {node.lineno}: check({node.args[0].value!r}, ...) must give its points as a number "
                     "written in the call, so that the grader knows them without running anything")


def check_sites(source):
    """[(line, exercise, points)] for every `with check("id", points=N)` in a cell's source,
    read from its syntax tree. A cell that does not parse has no sites."""
    try:
        tree = ast.parse(python_source(source))
    except SyntaxError:
        return []
    sites = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                found = _check_call(item.context_expr)
                if found is not None:
                    sites.append((item.context_expr.lineno,) + found)
    return sorted(sites)


def check_calls(source):
    """[(exercise, points)] for every `with check("id", points=N)` site of `source`."""
    return [(exercise, points) for _, exercise, points in check_sites(source)]


def is_check_cell(cell):
    return cell.cell_type == "code" and bool(check_sites(cell.source))


def strip_hidden_tests(source):
    """Replace each `### BEGIN HIDDEN TESTS` ... `### END HIDDEN TESTS` region by a `pass`
    at the marker's indentation (so a `with` block stays valid)."""
    return _replace_regions(
        source, BEGIN_HIDDEN, END_HIDDEN, ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"),
        lambda opened, inside: [f"{opened.group('indent')}pass  # hidden tests run when the notebook is graded"])


def hidden_lines(source):
    """The line numbers (1-based) inside hidden-test regions, markers included."""
    hidden, inside = set(), False
    for n, line in enumerate(source.split("\n"), start=1):
        if BEGIN_HIDDEN.match(line):
            inside = True
        if inside:
            hidden.add(n)
        if END_HIDDEN.match(line):
            inside = False
    return hidden


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
    """A copy of the solution notebook `nb` with solutions, model answers and hidden tests
    removed and outputs cleared. Cell ids are kept: the grader uses them to put the instructor's checks
    where they belong in a submission.

    The exercise named in each placeholder is the first `check(...)` at or after the cell.
    """
    nb = copy.deepcopy(nb)
    for n, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            try:
                cell.source = strip_model_answers(cell.source)
            except ValueError as e:
                raise ValueError(f"markdown cell {n} (id {cell.get('id')!r}): {e}") from None
    cells = _code_cells(nb)
    for i, cell in enumerate(cells):
        if _has_solution(cell.source):
            cell.source = strip_solutions(cell.source, _next_exercise(cells, i))
        cell.source = strip_hidden_tests(cell.source)
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


