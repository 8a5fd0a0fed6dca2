"""python -m minilm.course: build handouts, grade submissions, make a Gradescope autograder."""
import argparse
import glob
import json
import os
import sys

from . import build_student, execute_notebook
from .gradescope import build_autograder
from .grader import (GradingError, grade, gradescope_results, notebooks_in, read_notebook, write_csv,
                     write_feedback)

EPILOG = """examples:
  python -m minilm.course build --out handout notebooks/03a-attention.ipynb
  python -m minilm.course grade --reference notebooks/03a-attention.ipynb alice.ipynb
  python -m minilm.course grade --reference notebooks/03a-attention.ipynb submissions/ \\
      --csv gradebook.csv --feedback feedback/
  python -m minilm.course grade --reference notebooks/03a-attention.ipynb sub.ipynb --gradescope results.json
  python -m minilm.course autograder --reference notebooks/03a-attention.ipynb --out 03a.zip

Grading runs the submission in a fresh kernel with the reference's check cells (hidden tests
included); only their signed results count. It runs student code: use a container or a
throwaway account (see the README's threat model)."""


def _parser():
    parser = argparse.ArgumentParser(prog="python -m minilm.course", epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="Build student handouts, grade notebooks, make a Gradescope autograder.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("build", help="write student handouts (solutions and hidden tests removed, outputs cleared)")
    p.add_argument("notebooks", nargs="*", help="solution notebooks (default: notebooks/*.ipynb)")
    p.add_argument("--out", default="student", help="output folder (default: student/)")
    p = sub.add_parser("grade", help="grade submissions with the reference's checks",
                       description="Grade notebooks (or every *.ipynb in a folder) in fresh kernels.")
    p.add_argument("targets", nargs="+", metavar="SUBMISSION", help="a notebook or a folder of notebooks")
    p.add_argument("--reference", default=None, help="the solution notebook: only its checks and points count "
                   "(without it a notebook is graded by its own checks: a self-check, not marks)")
    p.add_argument("--timeout", type=float, default=300, help="seconds per cell (default 300)")
    p.add_argument("--json", action="store_true", help='print {"ex1": {"earned": e, "possible": p}, ...}')
    p.add_argument("--csv", metavar="FILE", help="write a gradebook: student, one column per exercise, total")
    p.add_argument("--gradescope", metavar="FILE", help="write Gradescope's results.json (one submission)")
    p.add_argument("--feedback", metavar="DIR", help="write DIR/<student>.txt (and .instructor.txt) for each")
    p = sub.add_parser("autograder", help="write a Gradescope autograder zip (setup.sh + run_autograder)")
    p.add_argument("--reference", required=True, help="the solution notebook (hidden tests included)")
    p.add_argument("--out", default="autograder.zip")
    p.add_argument("--timeout", type=float, default=300, help="seconds per cell when grading (default 300)")
    p = sub.add_parser("execute", help="run notebooks top to bottom and save them with outputs")
    p.add_argument("notebooks", nargs="+")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--inplace", action="store_true", help="overwrite each notebook")
    group.add_argument("--out", help="write the executed notebooks to this folder")
    p.add_argument("--timeout", type=float, default=300, help="seconds per cell (default 300)")
    p.add_argument("--allow-errors", action="store_true")
    return parser


def _grade(args, parser):
    paths = [p for t in args.targets for p in notebooks_in(t)]
    if args.gradescope and len(paths) != 1:
        if not paths or args.reference is None:
            _write_json(args.gradescope, {"score": 0, "output": "No notebook (.ipynb) was found in the submission.",
                                          "tests": []})
            print("error: no notebook to grade", file=sys.stderr)
            return 1
        name = os.path.basename(args.reference)
        paths = [next((p for p in paths if os.path.basename(p) == name), paths[0])]
    if not paths:
        parser.error("no notebooks found in " + ", ".join(args.targets))
    try:
        if args.reference is not None:
            read_notebook(args.reference)
    except GradingError as exc:
        print(f"error: the reference: {exc}", file=sys.stderr)
        return 2
    reports, status = [], 0
    for path in paths:
        try:
            report = grade(path, reference=args.reference, timeout=args.timeout)
        except GradingError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
            continue
        reports.append(report)
        if args.json:
            print(json.dumps({ex: {"earned": e, "possible": p} for ex, (e, p) in report.scores.items()}))
        else:
            print(report.feedback(show_hidden=False))
        for note in report.notes if args.json else []:
            print(f"note: {note}", file=sys.stderr)
        if report.flags:
            print(f"integrity flags for {path}:\n" + "\n".join("  " + f for f in report.flags), file=sys.stderr)
        if args.feedback:
            write_feedback(report, args.feedback)
    if args.csv:
        write_csv(reports, args.csv)
        print(f"wrote {args.csv} ({len(reports)} notebooks)", file=sys.stderr)
    if args.gradescope and reports:
        _write_json(args.gradescope, gradescope_results(reports[0]))
    return status


def _write_json(path, data):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f, indent=1)


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "build":
        paths = args.notebooks or sorted(glob.glob(os.path.join("notebooks", "*.ipynb")))
        if not paths:
            parser.error("no notebooks given and none found in notebooks/")
        for target in build_student(paths, args.out):
            print(f"wrote {target}")
        return 0
    if args.command == "grade":
        return _grade(args, parser)
    if args.command == "autograder":
        print(f"wrote {build_autograder(args.reference, args.out, args.timeout)}")
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
