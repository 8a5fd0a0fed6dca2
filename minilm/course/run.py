"""Running a notebook top to bottom ("Restart & Run All"), and a score table for people."""
import copy
import os

from .grader import kernel_env


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
        cwd = cwd if cwd is not None else os.path.dirname(os.path.abspath(path))
    else:
        nb = copy.deepcopy(nb_or_path)
        cwd = cwd if cwd is not None else os.getcwd()
    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel_name, allow_errors=allow_errors,
                            coalesce_streams=True,      # one output per stream, progress bars collapsed
                            resources={"metadata": {"path": cwd}})
    client.execute(env=kernel_env())
    return nb


def format_scores(result):
    """A small table from {exercise: (earned, possible)}: one line per exercise, then the total."""
    def fmt(x):
        return f"{x:g}" if isinstance(x, float) else str(x)
    width = max([len(ex) for ex in result] + [8])
    lines = [f"{'exercise':<{width}}  {'earned':>6} / possible"]
    for ex, (earned, possible) in result.items():
        lines.append(f"{ex:<{width}}  {fmt(earned):>6} / {fmt(possible)}")
    total_e = sum(e for e, _ in result.values())
    total_p = sum(p for _, p in result.values())
    lines.append(f"{'total':<{width}}  {fmt(total_e):>6} / {fmt(total_p)}")
    return "\n".join(lines)
