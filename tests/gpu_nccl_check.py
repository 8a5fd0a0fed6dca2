"""The GPU checks of minilm.dist in one short run (about a minute on one GPU). Two ways:

    mpiexec -n 2 python tests/gpu_nccl_check.py    # the ranks check NCCLComm themselves
    python tests/gpu_nccl_check.py                 # runs pytest -k nccl and the command line

Under mpiexec (what .ci/gpu does) every rank opens NCCLComm on its GPU (with one GPU: both
on device 0), checks all-reduce (blocking and not), reduce-scatter, all-gather and broadcast
on float32 and float64 device arrays against their closed forms, then trains the float32
runs of tests/test_dist.py's GPU_MODES under NCCLComm and under MPIComm (device arrays
through the host); rank 0 trains them alone on the GPU and compares (float32 tolerance).
If NCCL refuses to start (two ranks on one GPU, see below), that is reported as a skip and
the MPIComm runs are still checked. Rank 0 prints a table; the exit status is 1 on a failure.

Without mpiexec it prints what it found (CuPy, NCCL's version, GPUs, mpiexec), then runs

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
    env = dict(os.environ, MINILM_BACKEND="cupy", MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH", "")) if p))
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


def under_mpiexec():
    """Every rank: the NCCL collectives, then the training runs; rank 0 compares and prints."""
    os.environ.setdefault("MINILM_BACKEND", "cupy")
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    sys.path.insert(0, ROOT)
    from mpi4py import MPI
    world = MPI.COMM_WORLD
    rank, n = world.Get_rank(), world.Get_size()
    if rank == 0:
        print("\n".join(environment()), flush=True)
    try:
        import numpy as np
        import test_dist as T
        from minilm.dist import SingleProcess
        out = world.bcast(tempfile.mkdtemp() if rank == 0 else None, root=0)
        dirs = {k: os.path.join(out, k) for k in ("ops", "nccl", "mpi", "ref")}
        if rank == 0:
            for d in dirs.values():
                os.makedirs(d)
        world.Barrier()
        t0 = time.perf_counter()
        T.nccl_worker("nccl_ops", dirs["ops"])
        world.Barrier()
        T.nccl_worker("nccl_train", dirs["nccl"])
        world.Barrier()
        T.nccl_worker("mpi_train", dirs["mpi"])
        refused = os.path.exists(os.path.join(dirs["ops"], "refused.txt"))
        if rank == 0:                                       # the one-process GPU reference
            for mode in T.GPU_MODES:
                T._run(SingleProcess(), mode, dirs["ref"], dtype="float32", same_seed=True)
            if refused:                                     # NCCL's calls with a group of one
                for k in ("ops1", "nccl1"):
                    dirs[k] = os.path.join(out, k)
                    os.makedirs(dirs[k])
                T.nccl_worker("nccl_ops", dirs["ops1"], mpi_comm=MPI.COMM_SELF)
                T.nccl_worker("nccl_train", dirs["nccl1"], mpi_comm=MPI.COMM_SELF)
        world.Barrier()
    except BaseException:
        import traceback
        traceback.print_exc()
        sys.stdout.flush()
        world.Abort(1)
    if rank != 0:
        return
    rows = []

    def check(name, fn):
        try:
            fn()
            rows.append((name, "PASSED", ""))
        except Exception as e:                              # AssertionError with the numbers
            rows.append((name, "FAILED", f"{type(e).__name__}: {e}"))

    def ops(n=n, d=dirs["ops"]):
        tri = n * (n + 1) / 2
        for r in range(n):
            with open(os.path.join(d, f"nccl_ops_{r}.json")) as f:
                res = json.load(f)
            for dt in ("float32", "float64"):
                assert res[f"allreduce_{dt}"] == (np.arange(6) * tri).tolist(), res
                assert res[f"iallreduce_{dt}"] == (np.arange(6) * tri).tolist(), res
                assert res[f"reduce_scatter_{dt}"] == (np.arange(3 * n) * tri)[3 * r:3 * r + 3].tolist(), res
                assert res[f"allgather_{dt}"] == np.repeat(np.arange(n), 3).tolist(), res
                assert res[f"broadcast_{dt}"] == [0.0, 1.0, 2.0, 3.0], res
            assert res["allreduce_scalar"] == tri and res["allreduce_host"] == [tri, tri], res
            assert res["object"] == {"from": n - 1}, res

    one = [("NCCLComm collectives, 1 rank (MPI.COMM_SELF)", dirs["ops1"],
            lambda: ops(1, dirs["ops1"])),
           ("NCCLComm training = 1 process (float32), 1 rank", dirs["nccl1"],
            lambda: T._assert_close_f32(dirs["nccl1"], dirs["ref"], dirs["ref"], "NCCL, 1 rank"))] \
        if "ops1" in dirs else []
    for name, d, fn in one + [(f"NCCLComm collectives, {n} ranks", dirs["ops"], ops),
                        (f"NCCLComm training = 1 process (float32), {n} ranks", dirs["nccl"],
                         lambda: T._assert_close_f32(dirs["nccl"], dirs["ref"], dirs["ref"], "NCCL")),
                        (f"MPIComm on CuPy arrays training = 1 process (float32), {n} ranks", dirs["mpi"],
                         lambda: T._assert_close_f32(dirs["mpi"], dirs["ref"], dirs["ref"], "MPI"))]:
        refused = os.path.join(d, "refused.txt")
        if os.path.exists(refused):
            with open(refused) as f:
                rows.append((name, "SKIPPED", "NCCL refused to start: " + f.read()))
        else:
            check(name, fn)
    print("\n" + "-" * 100)
    for test, outcome, reason in rows:
        print(f"{outcome:8s} {test}" + (f"\n         {reason[:600]}" if reason else ""))
    failed = sum(o == "FAILED" for _, o, _ in rows)
    print(f"{sum(o == 'PASSED' for _, o, _ in rows)} passed, {failed} failed, "
          f"{sum(o == 'SKIPPED' for _, o, _ in rows)} skipped ({time.perf_counter() - t0:.0f} s)", flush=True)
    if failed:
        world.Abort(1)


def main():
    sys.path.insert(0, ROOT)
    from minilm.dist import launched_by_mpi
    if launched_by_mpi():
        return under_mpiexec()
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
