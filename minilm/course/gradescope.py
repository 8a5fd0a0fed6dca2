"""A Gradescope autograder in one command:

    python -m minilm.course autograder --reference notebooks/03a-attention.ipynb --out 03a-autograder.zip

The zip holds what Gradescope asks for at its top level, `setup.sh` (run once when the
image is built) and `run_autograder` (run for each submission), plus the reference notebook
(hidden tests included: Gradescope never shows the autograder's files to students), a copy
of minilm's package and its runtime requirements. `run_autograder` grades the notebook
found in /autograder/submission with `python -m minilm.course grade --reference ...
--gradescope /autograder/results/results.json`. Set AUTOGRADER_ROOT (and AUTOGRADER_PYTHON)
to run it outside Gradescope on a folder laid out the same way, as the tests do.
"""
import os
import stat
import zipfile

REQUIREMENTS = ["numpy>=1.24", "matplotlib>=3.7", "tqdm>=4.64", "safetensors>=0.4", "nbclient>=0.9",
                "nbformat>=5.9", "ipykernel>=6.25"]

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image.
set -euo pipefail
if ! command -v python3 >/dev/null; then
  apt-get update && apt-get install -y python3 python3-venv python3-pip
fi
python3 -m venv /autograder/venv
/autograder/venv/bin/pip install --quiet --upgrade pip
/autograder/venv/bin/pip install --quiet -r /autograder/source/requirements.txt
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for each submission: grade the notebook in submission/ against the
# reference and write results/results.json (one test per exercise).
set -uo pipefail
ROOT="${{AUTOGRADER_ROOT:-/autograder}}"
PYTHON="${{AUTOGRADER_PYTHON:-$ROOT/venv/bin/python}}"
mkdir -p "$ROOT/results"
cd "$ROOT/submission"
PYTHONPATH="$ROOT/source${{PYTHONPATH:+:$PYTHONPATH}}" MPLBACKEND=Agg "$PYTHON" -m minilm.course grade \\
  --reference "$ROOT/source/{reference}" --timeout {timeout} \\
  --gradescope "$ROOT/results/results.json" --feedback "$ROOT/results/feedback" \\
  "$ROOT/submission"
"""


def build_autograder(reference, out="autograder.zip", timeout=300):
    """Write the autograder zip for the solution notebook `reference`; returns its path."""
    from .build import is_check_cell
    from .grader import read_notebook
    nb = read_notebook(reference)
    if not any(is_check_cell(c) for c in nb.cells):
        raise ValueError(f"{reference} has no check cells: nothing to grade")
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))     # minilm/
    name = os.path.basename(reference)

    def executable(zf, arcname, text):
        info = zipfile.ZipInfo(arcname)
        info.external_attr = (stat.S_IFREG | 0o755) << 16
        zf.writestr(info, text)

    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        executable(zf, "setup.sh", SETUP_SH)
        executable(zf, "run_autograder", RUN_AUTOGRADER.format(reference=name, timeout=f"{timeout:g}"))
        zf.writestr("requirements.txt", "\n".join(REQUIREMENTS) + "\n")
        zf.write(reference, name)
        for folder, dirs, files in os.walk(package):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for f in sorted(files):
                if f.endswith((".pyc", ".pyo")):
                    continue
                path = os.path.join(folder, f)
                zf.write(path, os.path.join("minilm", os.path.relpath(path, package)))
    return out
