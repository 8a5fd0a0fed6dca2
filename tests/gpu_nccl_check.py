"""The GPU checks of minilm.dist in one short run (about a minute on one GPU).

    python tests/gpu_nccl_check.py            # from the repository root, on a machine with a GPU

It prints what it found (CuPy, NCCL's version, GPUs, mpiexec), then runs

  1. pytest tests/test_dist.py -k nccl: NCCLComm's collectives on device arrays with 1 rank
     and with 2 ranks on GPU 0, and float32 training runs on the GPU (1 process; 2 ranks
     under MPIComm; 2 ranks under NCCLComm) equal to the CPU run to float32 tolerance;
  2. the command line: `mpiexec -n 2 python -m minilm train --comm mpi` and `--comm nccl`
     under MINILM_BACKEND=cupy against the one-process GPU run (losses, rtol 1e-4);

and ends with a table: passed / failed / skipped, with the reason for each skip.

What to expect on one GPU: NCCL 2.5 and later refuse two ranks on one device ("Duplicate
GPU detected"), so the 2-rank NCCL checks report that refusal and skip; everything else
(the NCCL calls themselves with 1 rank, MPI between 2 ranks sharing the GPU) runs. With two
or more GPUs each rank gets its own (NCCLComm's default device is the rank's index on its
node modulo the GPUs it sees) and nothing should skip.

Needs CuPy (with cupy.cuda.nccl), mpi4py and an MPI library with mpiexec. Where the MPI
library is missing (pip's mpi4py has none), bring the wheels this repository's venv uses:
`pip download --no-deps --only-binary=:all: --python-version 3.12 --platform
manylinux_2_28_x86_64 -d .whl mpich==5.0.2 mpi4py==4.1.2`, install them there with
`pip install --no-index --no-deps --target /tmp/site .whl/*.whl`, then
`export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH LD_LIBRARY_PATH=/tmp/site/lib`.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def environment():
    """What is there: one line each."""
    lines = [f"python {sys.version.split()[0]} at {sys.executable}"]
    try:
        import cupy
        from cupy.cuda import nccl
        lines.append(f"cupy {cupy.__version__}; GPUs: {cupy.cuda.runtime.getDeviceCount()}; "
                     f"NCCL {nccl.get_version() if getattr(nccl, 'available', True) else 'missing'}")
    except Exception as e:                                   # no CuPy, no driver, no NCCL
        lines.append(f"cupy: unavailable ({type(e).__name__}: {e})")
    try:
        import mpi4py
        from mpi4py import MPI
        lines.append(f"mpi4py {mpi4py.__version__}; {MPI.Get_library_version().splitlines()[0]}")
    except Exception as e:
        lines.append(f"mpi4py: unavailable ({type(e).__name__}: {e})")
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    lines.append(f"mpiexec: {here if os.path.exists(here) else shutil.which('mpiexec')}")
    return lines


def run_pytest():
    """The NCCL tests of tests/test_dist.py; returns [(test, outcome, reason)]."""
    report = os.path.join(tempfile.mkdtemp(), "report.txt")
    cmd = [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
           os.path.join(ROOT, "tests", "test_dist.py"), "-k", "nccl"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=500, cwd=ROOT)
    with open(report, "w") as f:
        f.write(r.stdout + r.stderr)
    rows = []
    for line in r.stdout.splitlines():
        for word in ("PASSED", "FAILED", "SKIPPED", "ERROR"):
            if line.startswith(word + " "):
                rest = line[len(word) + 1:]
                rows.append((rest.split(" - ")[0], word, rest.split(" - ", 1)[1] if " - " in rest else ""))
    print(r.stdout[-6000:])
    print(f"(pytest: {time.perf_counter() - t0:.0f} s, full log {report})")
    return rows


def run_cli():
    """`python -m minilm train` on the GPU: 1 process, 2 ranks under --comm mpi and nccl."""
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    mpiexec = mpiexec if os.path.exists(mpiexec) else shutil.which("mpiexec")
    if mpiexec is None:
        return [("cli", "SKIPPED", "no mpiexec")]
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return [("cli", "SKIPPED", "no GPU")]
    except Exception as e:
        return [("cli", "SKIPPED", f"no CuPy or no GPU ({type(e).__name__}: {e})")]
    tmp = tempfile.mkdtemp()
    corpus = os.path.join(tmp, "corpus.txt")
    with open(corpus, "w") as f:
        f.write("the quick brown fox jumps over the lazy dog.\n" * 40)
    args = ["--data-file", corpus, "--n-layer", "1", "--n-embd", "32", "--n-head", "2",
            "--block-size", "16", "--batch-size", "6", "--max-iters", "4", "--eval-every", "4",
            "--eval-iters", "1", "--no-progress"]
    env = dict(os.environ, MINILM_BACKEND="cupy", MPLBACKEND="Agg", PYTHONPATH=ROOT)
    losses, rows = {}, []
    for name, n, extra in (("1 process", 1, []), ("--comm mpi", 2, ["--comm", "mpi"]),
                           ("--comm nccl", 2, ["--comm", "nccl"])):
        out = os.path.join(tmp, name.replace(" ", "_").replace("-", ""))
        cmd = [sys.executable, "-m", "minilm", "train", *args, *extra, "--out", out]
        r = subprocess.run(([mpiexec, "-n", str(n)] if n > 1 else []) + cmd, capture_output=True,
                           text=True, timeout=300, env=env, cwd=tmp)
        if r.returncode != 0:
            refused = "Duplicate GPU" in r.stderr or "NCCL could not start" in r.stderr
            rows.append((f"cli {name}", "SKIPPED" if refused else "FAILED", r.stderr.strip().splitlines()[-1]
                         if r.stderr.strip() else f"rc {r.returncode}"))
            continue
        with open(os.path.join(out, "history.json")) as f:
            losses[name] = [h["loss"] for h in json.load(f)]
        if name != "1 process":
            ref = losses.get("1 process")
            ok = ref is not None and all(abs(a - b) <= 1e-4 * abs(b) for a, b in zip(losses[name], ref))
            rows.append((f"cli {name}", "PASSED" if ok else "FAILED",
                         f"losses {losses[name]} vs 1 process {ref}"))
    return rows


def main():
    print("\n".join(environment()))
    rows = run_pytest() + run_cli()
    print("\n" + "-" * 100)
    for test, outcome, reason in rows:
        print(f"{outcome:8s} {test}" + (f"\n         {reason[:300]}" if reason and outcome != "PASSED" else ""))
    failed = sum(o in ("FAILED", "ERROR") for _, o, _ in rows)
    print(f"{sum(o == 'PASSED' for _, o, _ in rows)} passed, {failed} failed, "
          f"{sum(o == 'SKIPPED' for _, o, _ in rows)} skipped")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
