"""Data parallel over MPI and NCCL (minilm.dist, ZeroAdamW): N processes equal one process.

The tests launch `mpiexec -n N python tests/test_dist.py worker ...` subprocesses (each
under a timeout) and compare what rank 0 saved: float64 runs of a small GPT on batches
with padding and -100 labels, 5 rows per global batch (uneven over 2 and 3 ranks), with
plain data parallel, ZeRO-1 and gradient accumulation, losses, gradient norms, evaluation
losses and weights to 1e-10; with dropout (the global batch's masks, whatever rank or
micro-batch computes an example); BertForPreTraining, whose masked-LM loss is per token and
next-sentence loss per pair; a checkpoint taken under 2 processes resumed under 1 and 3.
They skip without mpi4py or mpiexec (`pip install mpich mpi4py`).

The NCCL tests (NCCLComm through CuPy) skip without CuPy and a GPU: collectives on device
arrays with 1 rank and with 2 ranks sharing GPU 0, and a float32 training run on the GPU
under NCCL equal to the CPU run under MPI. NCCL 2.5 and later refuse two ranks on one GPU;
the 2-rank tests then skip and say so. tests/gpu_nccl_check.py runs them all on a GPU box.
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.abspath(__file__)
# mode: (gradient accumulation, ZeRO-1, rows per global batch); "few_rows": fewer rows than
# ranks x micro-batches under 3 processes, so some ranks and micro-batches get none
# "overlap": buckets of 1 KiB all-reduced during the backward of the last micro-batch
MODES = {"dp": (1, False, 5), "zero": (1, True, 5), "accum": (2, False, 5),
         "zero_accum": (3, True, 5), "few_rows": (2, True, 2), "overlap": (2, False, 5),
         "overlap_few": (2, False, 2), "bert_mlm": (2, True, 5),    # BERT: labels not shifted
         # dropout 0.1 everywhere: the masks must follow the example, not the rank
         "dropout": (1, False, 5), "dropout_accum": (2, False, 5), "dropout_few": (2, True, 2),
         # BertForPreTraining: masked LM per token + next sentence per pair
         "bert_pre": (2, False, 5), "bert_pre_drop": (1, True, 5),
         # the model trained without DataParallel, in one process: what the others must equal
         "dropout_bare": (1, False, 5), "bert_pre_bare": (1, False, 5),
         "bert_pre_drop_bare": (1, False, 5)}
DROPOUT = {"dropout": 0.1, "dropout_accum": 0.1, "dropout_few": 0.1, "bert_pre_drop": 0.1,
           "dropout_bare": 0.1, "bert_pre_drop_bare": 0.1}
WRAPPED = [m for m in MODES if not m.endswith("_bare")]
STEPS = 4
RESUMED = ("dp", "zero", "dropout_accum")       # checkpointed under 2, resumed under 1 and 3


# ----------------------------------------------------------------------------------------
# The worker: one run of every mode, rank 0 saves what it saw
# ----------------------------------------------------------------------------------------

def _batches(vocab=11, B=5, T=8):
    def get_batch(rng):
        ids = rng.integers(1, vocab, size=(B, T))                   # (B, T)
        lengths = rng.integers(3, T + 1, size=B)                    # right padding
        mask = (np.arange(T)[None, :] < lengths[:, None]).astype(np.int64)
        labels = np.where(mask == 1, ids, -100)
        labels[rng.random((B, T)) < 0.2] = -100                     # and some ignored targets
        ids = np.where(mask == 1, ids, 0)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}
    return get_batch


def _bert_pretraining_batches(vocab=11, B=5, T=8):
    """Pairs with padding, ~30% masked-LM targets (the rest -100) and next-sentence labels:
    the ranks' shares of MLM tokens and of pairs differ, so one weight cannot serve both."""
    def get_batch(rng):
        ids = rng.integers(1, vocab, size=(B, T))                   # (B, T)
        lengths = rng.integers(3, T + 1, size=B)
        mask = (np.arange(T)[None, :] < lengths[:, None]).astype(np.int64)
        types = (np.arange(T)[None, :] >= lengths[:, None] // 2).astype(np.int64) * mask
        labels = np.where((mask == 1) & (rng.random((B, T)) < 0.3), ids, -100)
        return {"input_ids": np.where(mask == 1, ids, 0), "attention_mask": mask,
                "token_type_ids": types, "labels": labels,
                "next_sentence_label": rng.integers(0, 2, size=B)}
    return get_batch


def _run(comm, mode, out_dir=None, resume=None, checkpoint_dir=None, dtype="float64", same_seed=False):
    from minilm.dist import DataParallel
    from minilm.models import GPT, GPTConfig
    from minilm.optim import AdamW, ZeroAdamW, param_groups_with_decay
    from minilm.train import Trainer
    accum, zero, rows = MODES[mode]
    p = DROPOUT.get(mode, 0.0)
    seed = 0 if same_seed else comm.rank    # rank 0's init wins (its dropout stream too, on NumPy)
    get_batch = _batches(B=rows)
    if mode.startswith("bert"):
        from minilm.models.bert import BertConfig, BertForMaskedLM, BertForPreTraining
        cfg = BertConfig(vocab_size=11, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16, max_position_embeddings=8, hidden_dropout_prob=p,
                         attention_probs_dropout_prob=p, seed=seed)
        if mode.startswith("bert_pre"):
            model = BertForPreTraining(cfg, dtype=dtype)
            get_batch = _bert_pretraining_batches(B=rows)
        else:
            model = BertForMaskedLM(cfg, dtype=dtype)
    else:
        cfg = GPTConfig(vocab_size=11, n_positions=8, n_embd=8, n_layer=2, n_head=2, seed=seed,
                        resid_pdrop=p, embd_pdrop=p, attn_pdrop=p)
        model = GPT(cfg, dtype=dtype)
    overlap = mode.startswith("overlap")
    dp = model if mode.endswith("_bare") else DataParallel(
        model, comm, grad_accum=accum, reduce=not zero, config=mode[:2], overlap=overlap,
        bucket_bytes=1024 if overlap else 4 << 20)
    groups = param_groups_with_decay(model.named_parameters(), 0.1)
    opt = ZeroAdamW(groups, lr=1e-2, comm=comm) if zero else AdamW(groups, lr=1e-2)
    trainer = Trainer(dp, opt, get_batch, get_batch, max_steps=STEPS,
                      lr_schedule=lambda s: 1e-2 * (1 - s / 10), grad_clip=0.5, eval_every=2,
                      eval_steps=2, progress=False, seed=3, comm=comm,
                      checkpoint_dir=checkpoint_dir, checkpoint_every=2 if checkpoint_dir else None)
    history = trainer.fit(resume_from=resume)
    if comm.rank == 0 and out_dir is not None:
        from minilm import to_numpy
        rec = {f"w.{n}": to_numpy(w.data) for n, w in model.named_parameters()}
        for key in ("loss", "grad_norm", "eval_loss"):
            rec[key] = np.array([h.get(key, np.nan) for h in history])
        np.savez(os.path.join(out_dir, f"{mode}.npz"), **rec)


GPU_MODES = ("dp", "zero", "overlap", "bert_pre", "dropout")   # float32 on the GPU


def nccl_worker(what, out_dir, mpi_comm=None):
    """On a GPU (MINILM_BACKEND=cupy): with one GPU every rank is on device 0. "nccl_ops": NCCLComm's
    collectives on device arrays, each rank's results saved as JSON; "nccl_train" and
    "mpi_train": float32 runs of GPU_MODES under NCCLComm or MPIComm (one process: no
    communicator). NCCL's refusal to start (two ranks on one GPU) is saved in refused.txt.
    mpi_comm: the MPI group (default COMM_WORLD; COMM_SELF: this rank alone)."""
    import json
    from mpi4py import MPI
    from minilm.dist import MPIComm, NCCLComm, SingleProcess, launched_by_mpi
    rank = (mpi_comm or MPI.COMM_WORLD).Get_rank()
    try:
        if what == "mpi_train":
            comm = MPIComm(timeout=60, comm=mpi_comm) if launched_by_mpi() else SingleProcess()
        elif what == "nccl_train" and not launched_by_mpi():
            comm = SingleProcess()
        else:
            comm = NCCLComm(timeout=60, comm=mpi_comm)   # one GPU: every rank on device 0; more: one each
    except RuntimeError as e:
        if "NCCL could not start" not in str(e):
            raise
        if rank == 0:
            with open(os.path.join(out_dir, "refused.txt"), "w") as f:
                f.write(str(e))
        return
    if what.endswith("_train"):
        for mode in GPU_MODES:
            _run(comm, mode, out_dir, dtype="float32", same_seed=True)   # CuPy: no state to share
        return
    import cupy as cp
    N, r, res = comm.world_size, comm.rank, {}
    for dt in ("float32", "float64"):
        x = cp.arange(6, dtype=dt) * (r + 1)
        comm.allreduce(x)
        res[f"allreduce_{dt}"] = x.get().tolist()
        y = cp.arange(6, dtype=dt) * (r + 1)
        req = comm.iallreduce(y)
        req.wait()
        res[f"iallreduce_{dt}"] = y.get().tolist()
        z = cp.arange(3 * N, dtype=dt) * (r + 1)
        res[f"reduce_scatter_{dt}"] = comm.reduce_scatter(z).get().tolist()
        res[f"allgather_{dt}"] = comm.allgather(cp.full(3, r, dtype=dt)).get().tolist()
        b = cp.arange(4, dtype=dt) if r == 0 else cp.zeros(4, dtype=dt)
        comm.broadcast(b)
        res[f"broadcast_{dt}"] = b.get().tolist()
    res["allreduce_scalar"] = comm.allreduce_scalar(r + 1)          # host: over MPI
    host = np.full(2, r + 1.0)
    comm.allreduce(host)
    res["allreduce_host"] = host.tolist()
    res["object"] = comm.broadcast_object({"from": r}, root=N - 1)
    with open(os.path.join(out_dir, f"nccl_ops_{r}.json"), "w") as f:
        json.dump(res, f)


def worker(argv):
    from minilm.dist import get_comm
    if argv[0] in ("nccl_ops", "nccl_train", "mpi_train"):
        return nccl_worker(argv[0], argv[1])
    comm = get_comm(timeout=3 if argv[0] == "hang" else 60)
    what, out_dir = argv[0], argv[1]
    if what == "train":
        for mode in MODES if comm.world_size == 1 else WRAPPED:
            ckpt = os.path.join(out_dir, f"ckpt_{mode}") if mode in RESUMED else None
            _run(comm, mode, out_dir, checkpoint_dir=ckpt)
    elif what == "resume":                                    # argv[2]: the folder to resume
        for mode in RESUMED:
            _run(comm, mode, out_dir, resume=os.path.join(argv[2], f"ckpt_{mode}", "step_000002"))
    elif what == "mismatch":                                  # rank 1 a different config
        from minilm.dist import DataParallel
        from minilm.models import GPT, GPTConfig
        cfg = GPTConfig(vocab_size=11, n_positions=8, n_embd=8 if comm.rank == 0 else 16,
                        n_layer=1, n_head=2)
        DataParallel(GPT(cfg), comm)
    elif what == "die":                                       # rank 1 dies before a collective
        if comm.rank == 1:
            os._exit(3)
        comm.allreduce_scalar(1.0)
    elif what == "hang":                                      # rank 1 never arrives
        if comm.rank == 1:
            import time
            time.sleep(100)
        comm.allreduce_scalar(1.0)


# ----------------------------------------------------------------------------------------
# The tests
# ----------------------------------------------------------------------------------------

def _mpiexec():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return None
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return here if os.path.exists(here) else shutil.which("mpiexec")


MPIEXEC = _mpiexec()
needs_mpi = pytest.mark.skipif(MPIEXEC is None, reason="needs mpi4py and mpiexec "
                               "(pip install mpich mpi4py, or minilm[dist])")


def _launch(n, *args, timeout=240, backend=None):
    cmd = [sys.executable, HERE, "worker", *args]
    if n > 1:
        cmd = [MPIEXEC, "-n", str(n)] + cmd
    path = [os.path.dirname(os.path.dirname(HERE)), os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in path if p),   # keep /tmp/site & co
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if backend is not None:
        env["MINILM_BACKEND"] = backend
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """train under 1, 2 and 3 processes; resume the 2-process checkpoints under 1 and 3. On
    the NumPy backend, or on the strict backend when the suite runs under it: there the
    models draw dropout from backend.CounterRNG, as on CuPy, so CI checks dropout with
    micro-batches, empty ranks and resumes on that generator (the GPU tests below run CuPy)."""
    out = {}
    for key, n, args in (("1", 1, ["train"]), ("2", 2, ["train"]), ("3", 3, ["train"]),
                         ("2->1", 1, ["resume"]), ("2->3", 3, ["resume"])):
        d = str(tmp_path_factory.mktemp(f"dist{n}"))
        if args[0] == "resume":
            args = ["resume", d, out["2"]]
        else:
            args = [args[0], d]
        backend = "strict" if os.environ.get("MINILM_BACKEND", "").strip().lower() == "strict" else "numpy"
        r = _launch(n, *args, backend=backend)    # the CuPy runs: test_nccl_training_equals_the_cpu_run
        assert r.returncode == 0, f"{key}: rc {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        out[key] = d
    return out


def _load(d, mode):
    with np.load(os.path.join(d, f"{mode}.npz")) as f:
        return {k: f[k] for k in f.files}


def _assert_same(a, b, what):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-10, err_msg=f"{what}: {k}")


@needs_mpi
@pytest.mark.parametrize("mode", WRAPPED)
@pytest.mark.parametrize("n", ["2", "3"])
def test_n_processes_equal_one(runs, mode, n):
    one = _load(runs["1"], mode)
    assert np.isfinite(one["loss"]).all() and np.isfinite(one["eval_loss"][[1, 3]]).all()
    _assert_same(_load(runs[n], mode), one, f"{n} processes, {mode}")


@needs_mpi
def test_modes_agree_with_plain_adamw(runs):
    """ZeRO-1 is AdamW sharded; accumulation is the same global batch in pieces."""
    dp = _load(runs["1"], "dp")
    for mode in ("zero", "accum", "zero_accum", "overlap"):
        _assert_same(_load(runs["1"], mode), dp, mode)


@needs_mpi
def test_data_parallel_equals_the_bare_model(runs):
    """DataParallel in one process, with micro-batches or ZeRO-1, is the unwrapped model's
    run: dropout masks (drawn for the global batch, rows kept) and BertForPreTraining's two
    losses (each term normalised by its own count) included; so, by the tests above, is
    every number of processes."""
    for mode, bare in (("dropout", "dropout_bare"), ("dropout_accum", "dropout_bare"),
                       ("bert_pre", "bert_pre_bare"), ("bert_pre_drop", "bert_pre_drop_bare")):
        _assert_same(_load(runs["1"], mode), _load(runs["1"], bare), f"{mode} vs {bare}")
    # the dropout runs do drop: they differ from the run without dropout
    assert np.abs(_load(runs["1"], "dropout")["loss"] - _load(runs["1"], "dp")["loss"]).max() > 1e-3


@needs_mpi
@pytest.mark.parametrize("key", ["2->1", "2->3"])
@pytest.mark.parametrize("mode", RESUMED)
def test_checkpoint_resumes_under_other_world_sizes(runs, key, mode):
    _assert_same(_load(runs[key], mode), _load(runs["1"], mode), f"resume {key} {mode}")


@needs_mpi
def test_config_mismatch_is_refused(tmp_path):
    r = _launch(2, "mismatch", str(tmp_path), timeout=120)
    assert r.returncode != 0
    assert "differs between ranks" in r.stderr


@needs_mpi
def test_a_dead_rank_stops_the_others(tmp_path):
    r = _launch(2, "die", str(tmp_path), timeout=120)     # TimeoutExpired would fail the test
    assert r.returncode != 0


@needs_mpi
def test_train_command_under_mpiexec(tmp_path):
    """`mpiexec -n 2 python -m minilm train --zero 1 --grad-accum 2` and `-n 3 ... --overlap`
    follow the 1-process run."""
    text = tmp_path / "corpus.txt"
    text.write_text("the quick brown fox jumps over the lazy dog.\n" * 40)
    args = ["--data-file", str(text), "--n-layer", "1", "--n-embd", "16", "--n-head", "2",
            "--block-size", "16", "--batch-size", "5", "--max-iters", "3", "--eval-every", "3",
            "--eval-iters", "1", "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg")
    hist = {}
    for n, extra in ((1, []), (2, ["--zero", "1", "--grad-accum", "2"]), (3, ["--overlap"])):
        cmd = [sys.executable, "-m", "minilm", "train", *args, *extra, "--out", str(tmp_path / str(n))]
        r = subprocess.run(([MPIEXEC, "-n", str(n)] if n > 1 else []) + cmd, capture_output=True,
                           text=True, timeout=240, env=env)
        assert r.returncode == 0, r.stderr[-3000:]
        with open(tmp_path / str(n) / "history.json") as f:
            hist[n] = [h["loss"] for h in json.load(f)]
    np.testing.assert_allclose(hist[2], hist[1], rtol=1e-5)      # float32
    np.testing.assert_allclose(hist[3], hist[1], rtol=1e-5)


@needs_mpi
def test_nccl_without_cupy_backend_is_refused(tmp_path):
    """--comm nccl on the NumPy backend: every rank stops with a message naming the fix."""
    text = tmp_path / "corpus.txt"
    text.write_text("the quick brown fox jumps over the lazy dog.\n" * 20)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MINILM_BACKEND="numpy")
    r = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "minilm", "train", "--data-file",
                        str(text), "--max-iters", "1", "--comm", "nccl", "--no-progress",
                        "--out", str(tmp_path / "run")], capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode != 0 and "MINILM_BACKEND=cupy" in r.stderr


def test_get_comm_kind_is_checked():
    from minilm.dist import SingleProcess, get_comm
    with pytest.raises(ValueError, match="'auto', 'mpi' or 'nccl'"):
        get_comm(kind="gloo")
    assert isinstance(get_comm(kind="nccl"), SingleProcess)     # one process: no communication


@needs_mpi
def test_a_hung_rank_times_out(tmp_path):
    import time
    t0 = time.perf_counter()
    r = _launch(2, "hang", str(tmp_path), timeout=90)
    assert r.returncode != 0 and time.perf_counter() - t0 < 60
    assert "waited more than 3 s" in r.stderr


# ----------------------------------------------------------------------------------------
# NCCL on a GPU (skipped without CuPy and a GPU)
# ----------------------------------------------------------------------------------------

def _gpu_reason():
    """Why the NCCL tests cannot run here (None: they can)."""
    if MPIEXEC is None:
        return "needs mpi4py and mpiexec (pip install mpich mpi4py)"
    try:
        import cupy
        from cupy.cuda import nccl
        if not getattr(nccl, "available", True):
            return "this CuPy has no NCCL (cupy.cuda.nccl)"
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "no GPU"
    except Exception as e:                                   # no CuPy, no driver
        return f"needs CuPy with NCCL and a GPU ({type(e).__name__}: {e})"
    return None


GPU_REASON = _gpu_reason()
needs_gpu = pytest.mark.skipif(GPU_REASON is not None, reason=str(GPU_REASON))


def _nccl_run(tmp_path, n, what):
    d = tmp_path / f"{what}{n}"
    d.mkdir()
    r = _launch(n, what, str(d), timeout=300, backend="cupy")
    assert r.returncode == 0, f"{what} on {n}: rc {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    if (d / "refused.txt").exists():
        pytest.skip("NCCL refused to start: " + (d / "refused.txt").read_text())
    return d


@needs_gpu
@pytest.mark.parametrize("n", [1, 2])
def test_nccl_collectives(tmp_path, n):
    """NCCLComm on device arrays: sums, shards, gathers and broadcasts equal their closed
    forms (rank r contributes (r + 1) * arange, or r); host values go over MPI. n=2 puts both
    ranks on GPU 0, which NCCL >= 2.5 refuses (the test then skips and says so)."""
    d = _nccl_run(tmp_path, n, "nccl_ops")
    tri = n * (n + 1) / 2                                   # sum over ranks of (r + 1)
    for r in range(n):
        res = json.loads((d / f"nccl_ops_{r}.json").read_text())
        for dt in ("float32", "float64"):
            assert res[f"allreduce_{dt}"] == (np.arange(6) * tri).tolist()
            assert res[f"iallreduce_{dt}"] == (np.arange(6) * tri).tolist()
            assert res[f"reduce_scatter_{dt}"] == (np.arange(3 * n) * tri)[3 * r:3 * r + 3].tolist()
            assert res[f"allgather_{dt}"] == np.repeat(np.arange(n), 3).tolist()
            assert res[f"broadcast_{dt}"] == [0.0, 1.0, 2.0, 3.0]
        assert res["allreduce_scalar"] == tri and res["allreduce_host"] == [tri, tri]
        assert res["object"] == {"from": n - 1}


@needs_gpu
def test_nccl_training_equals_the_cpu_run(tmp_path):
    """float32 runs on the GPU: 2 ranks under NCCL (both on GPU 0) and 2 ranks under MPI
    (device arrays through the host) equal the one-process GPU run and the one-process CPU
    run to float32 tolerance (the sums are taken in another order). Dropout masks come from
    minilm's CounterRNG on the GPU (NumPy's PCG64 on the CPU), so the dropout run is compared
    on the GPU only."""
    ref_cpu = tmp_path / "cpu"
    ref_cpu.mkdir()
    r = _launch(1, "mpi_train", str(ref_cpu), timeout=300, backend="numpy")
    assert r.returncode == 0, r.stderr[-3000:]
    gpu1 = _nccl_run(tmp_path, 1, "mpi_train")
    mpi2 = _nccl_run(tmp_path, 2, "mpi_train")
    for d, what in ((gpu1, "1 process on the GPU"), (mpi2, "MPIComm, 2 ranks on the GPU")):
        _assert_close_f32(d, ref_cpu, gpu1, what)
    nccl2 = _nccl_run(tmp_path, 2, "nccl_train")             # skips if NCCL refuses
    _assert_close_f32(nccl2, ref_cpu, gpu1, "NCCLComm, 2 ranks on GPU 0")


def _assert_close_f32(d, ref_cpu, ref_gpu, what):
    for mode in GPU_MODES:
        ref = _load(ref_gpu if mode == "dropout" else ref_cpu, mode)
        got = _load(d, mode)
        for k in ref:
            np.testing.assert_allclose(got[k], ref[k], rtol=2e-4, atol=2e-3 if k.startswith("w.") else 1e-5,
                                       err_msg=f"{what}: {mode} {k}")


def test_ring_allreduce_model():
    from minilm.bench import ring_allreduce_seconds
    assert ring_allreduce_seconds(1e9, 1, 1e9, 1e-6) == 0.0
    assert ring_allreduce_seconds(1e9, 2, 1e9, 1e-6) == pytest.approx(2e-6 + 1.0)
    assert ring_allreduce_seconds(1e9, 512, 1e9, 0.0) == pytest.approx(2 * 511 / 512)


def test_zero_adamw_in_one_process_is_adamw():
    """Without MPI, ZeroAdamW (one shard: everything) makes AdamW's updates, clipping
    included, and its state dict loads into AdamW and back."""
    from minilm.layers.base import Parameter
    from minilm.optim import AdamW, ZeroAdamW, clip_grad_norm_
    rng = np.random.default_rng(0)
    shapes = [(3, 4), (4,), (5,)]
    def make():
        init = np.random.default_rng(1)
        return [Parameter(init.standard_normal(s)) for s in shapes]
    a, b = make(), make()
    groups = lambda ps: [{"params": ps[:1], "weight_decay": 0.1}, {"params": ps[1:], "weight_decay": 0.0}]
    opt_a, opt_b = AdamW(groups(a), lr=0.1), ZeroAdamW(groups(b), lr=0.1)
    for _ in range(3):
        for pa, pb in zip(a, b):
            pa.grad = rng.standard_normal(pa.data.shape)
            pb.grad = pa.grad.copy()
        assert opt_b.clip_grad_norm_(0.5) == pytest.approx(clip_grad_norm_(a, 0.5), rel=1e-12)
        opt_a.step()
        opt_b.step()
    for pa, pb in zip(a, b):
        np.testing.assert_allclose(pb.data, pa.data, rtol=0, atol=1e-14)
    sd = opt_b.state_dict()
    assert sd["optimizer"] == "AdamW"
    opt_c = AdamW(groups(a), lr=0.1)
    opt_c.load_state_dict(sd)
    for i, s_ in opt_a.state.items():
        np.testing.assert_allclose(opt_c.state[i]["exp_avg_sq"], s_["exp_avg_sq"], atol=1e-15)
    opt_b.load_state_dict(opt_a.state_dict())
    assert opt_b._t == 3


def test_dropout_with_micro_batches_needs_the_generator_state():
    """Where the dropout Generator has no state to replay (CuPy's bit_generator.state is a
    method), dropout with micro-batches stops with a message; without dropout it runs."""
    from minilm.dist import DataParallel
    from minilm.models import GPT, GPTConfig
    batch = _batches(B=4)(np.random.default_rng(0))
    for p in (0.1, 0.0):
        model = GPT(GPTConfig(vocab_size=11, n_positions=8, n_embd=8, n_layer=1, n_head=2,
                              resid_pdrop=p, embd_pdrop=p, attn_pdrop=p), dtype="float64")
        model.rng_state = lambda: (lambda: 0)               # as CuPy's: a callable, no state
        dp = DataParallel(model, grad_accum=2)
        if p:
            with pytest.raises(RuntimeError, match="grad_accum > 1.*CuPy"):
                dp(**batch)
        else:
            assert np.isfinite(dp(**batch).loss)


def test_single_process_communicator_is_identity():
    from minilm.dist import SingleProcess, allreduce_buckets, split_rows
    comm = SingleProcess()
    x = np.arange(10.0)
    assert allreduce_buckets(comm, x.copy(), bucket_bytes=16).tolist() == x.tolist()
    assert comm.reduce_scatter(x).tolist() == x.tolist() and comm.rank == 0
    assert split_rows(5, 3) == [(0, 1), (1, 3), (3, 5)]
    assert split_rows(2, 3) == [(0, 0), (0, 1), (1, 2)]      # more ranks than rows: one empty


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "worker":
    worker(sys.argv[2:])
