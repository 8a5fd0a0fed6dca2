"""Graded exercises in notebooks: write them, hand them out, grade them so the grade counts.

    python -m minilm.course build [--out student] [NOTEBOOK ...]          student handouts
    python -m minilm.course grade --reference SOLUTION.ipynb SUBMISSION.ipynb [--json]
    python -m minilm.course grade --reference SOLUTION.ipynb DIR --csv gradebook.csv
    python -m minilm.course autograder --reference SOLUTION.ipynb --out autograder.zip
    python -m minilm.course execute [--inplace | --out DIR] NOTEBOOK ...   "Restart & Run All"

The pieces, one module each:
- checks.py   `check(id, points, forbid=[...])` and `substitute(globals(), name=...)`: what a
              check cell uses (and what a student sees while working).
- build.py    solution regions and hidden tests, check sites, student builds.
- harness.py  the grader's side inside the kernel: runs the instructor's checks, signed.
- grader.py   runs a submission with the reference's checks, scores it, writes feedback,
              CSV gradebooks and Gradescope results.
- gradescope.py  the one-command Gradescope autograder (setup.sh + run_autograder).
"""
from .build import (check_calls, check_sites, is_check_cell, strip_hidden_tests, strip_solutions,
                    student_notebook, build_student)
from .checks import ForbiddenCall, check, substitute
from .grader import (GradingError, Report, grade, grade_notebook, gradescope_results, possible_points,
                     write_csv, write_feedback)
from .run import execute_notebook, format_scores

__all__ = ["check", "substitute", "ForbiddenCall", "strip_solutions", "strip_hidden_tests", "student_notebook",
           "build_student", "check_calls", "check_sites", "is_check_cell", "possible_points", "grade",
           "grade_notebook", "Report", "GradingError", "write_csv", "write_feedback", "gradescope_results",
           "execute_notebook", "format_scores"]
