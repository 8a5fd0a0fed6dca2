"""Data-parallel training over MPI or NCCL: communicators, gradient buckets, a model wrapper.

    comm = get_comm()                        # MPI under mpiexec (mpi4py), else one process;
                                             # get_comm("nccl"): NCCL on GPUs (CuPy)
    model = DataParallel(GPT(config), comm)  # rank 0's weights broadcast; same config checked
    opt = AdamW(...)                         # or ZeroAdamW(..., comm=comm): sharded state
    Trainer(model, opt, ..., comm=comm, progress=comm.rank == 0).fit()

Every rank draws the same global batch (same seed, same Generator) and computes on its own
rows, so N processes follow the run one process makes: the loss is a mean over target
tokens (labels != -100), and each rank's gradient of its own mean is weighted by

    w_r = (target tokens on rank r) / (target tokens on all ranks)

before the sum over ranks, which gives the gradient of the global mean exactly, however
the padding and the -100 labels fall. `grad_accum=K` splits each rank's rows into K
micro-batches with the same weighting (the weights use the global count). A loss that is a
sum of means over different things (BertForPreTraining: masked-LM tokens + next-sentence
pairs) is weighted term by term, each by its own global count (LOSS_TERMS). Dropout masks
are drawn for the whole global batch and each rank keeps its rows, so dropout too is the
one-process run's, whatever the number of processes or micro-batches.

mpi4py is optional (`pip install minilm[dist]`): it is imported only when the process was
started by mpiexec with more than one rank. MPIComm communicates host (NumPy) buffers; a
CuPy run under MPIComm copies through the host. NCCLComm (cupy.cuda.nccl, the unique id
broadcast over MPI, as llm.c) reduces device arrays on the GPUs, on its own CUDA stream.
"""
import hashlib
import json
import os
import sys
import time

import numpy as np

from ..backend import get_xp, to_numpy


# ----------------------------------------------------------------------------------------
# Communicators: one process, and MPI
# ----------------------------------------------------------------------------------------


def _say_then_abort(comm, message):
    """Print `message` and abort every rank. The message goes straight to file descriptor 2,
    and mpiexec is given a moment to forward it: an abort right after a write can lose it."""
    sys.stderr.flush()
    os.write(2, message.encode())
    time.sleep(1.0)
    comm.Abort(1)

class SingleProcess:
    """The communicator of a run without MPI: rank 0 of 1, every collective the identity."""

    rank, world_size = 0, 1

    def broadcast(self, buf, root=0):
        return buf

    def allreduce(self, buf):
        """Sum over ranks, in place on a flat float array; returns it."""
        return buf

    def iallreduce(self, buf):
        return _Done()

    def reduce_scatter(self, buf):
        """buf: flat, length world_size * S; returns this rank's S-slice of the sum."""
        return buf.copy()

    def allgather(self, shard):
        """shard: flat, length S on every rank; returns the (world_size * S,) concatenation."""
        return shard.copy()

    def allreduce_scalar(self, x):
        return float(x)

    def broadcast_object(self, obj, root=0):
        """A picklable Python object from rank `root` to every rank."""
        return obj

    def barrier(self):
        pass

    def check_same(self, obj, what):
        pass

    def abort(self, code=1):
        pass


class _Done:
    def wait(self):
        pass

    def test(self):
        return True


class MPIComm:
    """mpi4py's COMM_WORLD on host buffers (device arrays are copied through the host).

    timeout: seconds a collective may wait for the other ranks before this rank aborts the
    job with a message (a rank that died or hangs); MPI itself would wait for ever.
    comm: the mpi4py communicator (default COMM_WORLD; COMM_SELF gives a group of one).
    """

    def __init__(self, timeout=600.0, comm=None):
        from mpi4py import MPI                  # optional dependency: minilm[dist]
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank = self.comm.Get_rank()
        self.world_size = self.comm.Get_size()
        self.timeout = timeout
        self.comm_seconds = 0.0                 # time spent inside collectives (waits included)

    def _wait(self, req, what):
        """Poll a request until done; abort everyone if it takes longer than timeout."""
        t0 = time.perf_counter()
        while not req.Test():
            if time.perf_counter() - t0 > self.timeout:
                _say_then_abort(self.comm, f"minilm.dist rank {self.rank}: {what} waited more than "
                                f"{self.timeout:.0f} s for the other ranks (one died or hangs); "
                                "aborting the job\n")
            if time.perf_counter() - t0 > 2e-3:        # spin 2 ms, then yield the core
                time.sleep(1e-4)
        self.comm_seconds += time.perf_counter() - t0

    def broadcast(self, buf, root=0):
        host = np.ascontiguousarray(to_numpy(buf))
        self._wait(self.comm.Ibcast(host, root=root), "broadcast")
        if host is not buf:
            buf[...] = get_xp(buf).asarray(host)
        return buf

    def allreduce(self, buf):
        self.iallreduce(buf).wait()
        return buf

    def iallreduce(self, buf):
        """Start a sum over ranks of flat `buf` in place; returns a request with wait()."""
        host = np.ascontiguousarray(to_numpy(buf))
        req = self.comm.Iallreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
        return _Request(self, req, host, buf)

    def reduce_scatter(self, buf):
        host = np.ascontiguousarray(to_numpy(buf))
        shard = np.empty(host.size // self.world_size, dtype=host.dtype)
        self._wait(self.comm.Ireduce_scatter_block(host, shard, op=self.MPI.SUM), "reduce_scatter")
        return get_xp(buf).asarray(shard)

    def allgather(self, shard):
        host = np.ascontiguousarray(to_numpy(shard))
        full = np.empty(host.size * self.world_size, dtype=host.dtype)
        self._wait(self.comm.Iallgather(host, full), "allgather")
        return get_xp(shard).asarray(full)

    def allreduce_scalar(self, x):
        buf = np.array([float(x)])
        self.allreduce(buf)
        return float(buf[0])

    def broadcast_object(self, obj, root=0):
        """A picklable Python object from rank `root` to every rank (its length, then its
        bytes, each a broadcast under the timeout)."""
        import pickle
        data = np.frombuffer(pickle.dumps(obj), dtype=np.uint8) if self.rank == root else None
        n = np.array([0 if data is None else data.size], dtype=np.int64)
        self.broadcast(n, root)
        buf = data.copy() if data is not None else np.empty(int(n[0]), dtype=np.uint8)
        self.broadcast(buf, root)
        return pickle.loads(buf.tobytes())

    def barrier(self):
        self._wait(self.comm.Ibarrier(), "barrier")

    def check_same(self, obj, what):
        """Raise on every rank if `obj` (JSON-able) differs between ranks (compares a hash)."""
        digest = hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()
        digests = self.comm.allgather(digest)
        if len(set(digests)) != 1:
            bad = [r for r, d in enumerate(digests) if d != digests[0]]
            raise ValueError(f"the {what} differs between ranks: ranks {bad} do not match rank 0 "
                             "(launch every rank with the same arguments)")

    def abort(self, code=1):
        self.comm.Abort(code)


class _Request:
    def __init__(self, comm, req, host, buf):
        self.comm, self.req, self.host, self.buf = comm, req, host, buf

    def test(self):
        """Let MPI progress the reduction (it moves only inside MPI calls); True when done."""
        return self.req.Test()

    def wait(self):
        self.comm._wait(self.req, "allreduce")
        if self.host is not self.buf:                       # device array: copy back
            self.buf[...] = get_xp(self.buf).asarray(self.host)


class NCCLComm(MPIComm):
    """NCCL on GPUs through CuPy (`cupy.cuda.nccl`), as llm.c: device arrays are reduced on
    the GPUs, never copied through the host. MPI (the parent class) still starts the job,
    carries NCCL's unique id from rank 0 to the others, and does everything on the host:
    scalars (losses, token counts, the clipping norm's partial sums), the config check,
    barriers and Python objects.

        rank 0: uid = nccl.get_unique_id();  MPI bcast(uid)  ->  every rank:
        NcclCommunicator(world_size, uid, rank) on its device

    device: the GPU this rank drives (default: the rank's index among the ranks on its
    node, modulo the GPUs it sees: one rank per GPU). NCCL 2.5 and later refuse two ranks
    on one GPU ("Duplicate GPU detected"); ranks that share a GPU use MPIComm (--comm mpi).

    Collectives run on the communicator's own CUDA stream. Before one starts, that stream
    waits for the work already queued on the current (compute) stream, so it reads finished
    gradients; meanwhile the compute stream runs on (the backward of the next layers, with
    overlap=True). `wait()` makes the compute stream wait for the collective, so what is
    queued after it reads the result, and holds the host until it is done, polling under
    `timeout` seconds: a rank that died leaves the others' NCCL kernels waiting for ever, and
    this is where they notice and abort the job with a message. Blocking collectives
    (broadcast, reduce_scatter, allgather, allreduce) are a start and a wait. Host (NumPy)
    arrays passed in go over MPI, as in MPIComm.
    """

    def __init__(self, timeout=600.0, device=None, comm=None):
        super().__init__(timeout, comm)
        import cupy                                         # optional: CuPy with NCCL
        from cupy.cuda import nccl
        if not getattr(nccl, "available", True):
            raise ImportError("NCCLComm: this CuPy was built without NCCL (cupy.cuda.nccl)")
        self.cupy, self.nccl = cupy, nccl
        if device is None:
            local = self.comm.Split_type(self.MPI.COMM_TYPE_SHARED)    # the ranks on this node
            device = local.Get_rank() % cupy.cuda.runtime.getDeviceCount()
            local.Free()
        self.device = int(device)
        cupy.cuda.Device(self.device).use()
        uid = nccl.get_unique_id() if self.rank == 0 else None        # bytes (tuple in CuPy < 14)
        uid = self.comm.bcast(uid, root=0)
        try:
            self.nccl_comm = nccl.NcclCommunicator(self.world_size, uid, self.rank)
        except Exception as e:                              # nccl.NcclError: invalid usage, ...
            raise RuntimeError(
                f"NCCL could not start rank {self.rank} of {self.world_size} on GPU {self.device}: "
                f"{e}. NCCL 2.5 and later refuse two ranks on one GPU ('Duplicate GPU detected'); "
                "give each rank its own GPU, or use --comm mpi (MPIComm) to share one") from None
        self.stream = cupy.cuda.Stream(non_blocking=True)            # the communication stream
        self._types = {"float16": nccl.NCCL_FLOAT16, "float32": nccl.NCCL_FLOAT32,
                       "float64": nccl.NCCL_FLOAT64, "int32": nccl.NCCL_INT32,
                       "int64": nccl.NCCL_INT64}

    def _on_device(self, buf):
        return isinstance(buf, self.cupy.ndarray)

    def _check(self, buf, what):
        if not buf.flags.c_contiguous:
            raise ValueError(f"NCCLComm.{what}: NCCL needs a contiguous array (a flat buffer)")
        if str(buf.dtype) not in self._types:
            raise TypeError(f"NCCLComm.{what}: no NCCL type for {buf.dtype} "
                            f"(one of {', '.join(self._types)})")
        return self._types[str(buf.dtype)]

    def _start(self):
        """The communication stream waits for what the compute stream has queued so far."""
        ready = self.cupy.cuda.get_current_stream().record()
        self.stream.wait_event(ready)

    def _finish(self, what):
        """A request for the collective just queued on the communication stream."""
        return _NCCLRequest(self, self.stream.record(), what)

    def _wait_event(self, event, what):
        """The compute stream waits for `event`; the host polls it under the timeout."""
        self.cupy.cuda.get_current_stream().wait_event(event)
        t0 = time.perf_counter()
        while not event.done:
            if time.perf_counter() - t0 > self.timeout:
                _say_then_abort(self.comm, f"minilm.dist rank {self.rank}: NCCL {what} waited more "
                                f"than {self.timeout:.0f} s for the other ranks (one died or hangs); "
                                "aborting the job\n")
            time.sleep(1e-4)
        self.nccl_comm.check_async_error()
        self.comm_seconds += time.perf_counter() - t0

    def broadcast(self, buf, root=0):
        if not self._on_device(buf):
            return super().broadcast(buf, root)
        dtype = self._check(buf, "broadcast")
        self._start()
        self.nccl_comm.broadcast(buf.data.ptr, buf.data.ptr, buf.size, dtype, root, self.stream.ptr)
        self._finish("broadcast").wait()
        return buf

    def iallreduce(self, buf):
        """Start a sum over ranks of flat device `buf` in place; returns a request with wait()."""
        if not self._on_device(buf):
            return super().iallreduce(buf)
        dtype = self._check(buf, "allreduce")
        self._start()
        self.nccl_comm.allReduce(buf.data.ptr, buf.data.ptr, buf.size, dtype, self.nccl.NCCL_SUM,
                                 self.stream.ptr)
        req = self._finish("allreduce")
        req.buf = buf                                       # alive until the collective is done
        return req

    def reduce_scatter(self, buf):
        if not self._on_device(buf):
            return super().reduce_scatter(buf)
        dtype = self._check(buf, "reduce_scatter")
        if buf.size % self.world_size:
            raise ValueError(f"reduce_scatter: {buf.size} elements do not split into "
                             f"{self.world_size} equal shards")
        shard = self.cupy.empty(buf.size // self.world_size, dtype=buf.dtype)
        self._start()
        self.nccl_comm.reduceScatter(buf.data.ptr, shard.data.ptr, shard.size, dtype,
                                     self.nccl.NCCL_SUM, self.stream.ptr)
        self._finish("reduce_scatter").wait()
        return shard

    def allgather(self, shard):
        if not self._on_device(shard):
            return super().allgather(shard)
        dtype = self._check(shard, "allgather")
        full = self.cupy.empty(shard.size * self.world_size, dtype=shard.dtype)
        self._start()
        self.nccl_comm.allGather(shard.data.ptr, full.data.ptr, shard.size, dtype, self.stream.ptr)
        self._finish("allgather").wait()
        return full

    def abort(self, code=1):
        self.nccl_comm.abort()
        super().abort(code)


class _NCCLRequest:
    def __init__(self, comm, event, what):
        self.comm, self.event, self.what, self.buf = comm, event, what, None

    def test(self):
        return self.event.done

    def wait(self):
        self.comm._wait_event(self.event, self.what)
        self.buf = None


def launched_by_mpi():
    """True when this process was started by mpiexec/mpirun with more than one rank."""
    for key in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "PMIX_SIZE"):
        if os.environ.get(key, "1") not in ("", "1"):
            return True
    return False


def get_comm(timeout=600.0, kind="auto", device=None):
    """The communicator for this process: SingleProcess without mpiexec (or with one rank),
    else MPIComm (kind="mpi") or NCCLComm (kind="nccl", GPUs through CuPy).

    kind="auto" takes NCCL when the active backend is CuPy, cupy.cuda.nccl is there and
    this node has a GPU for each of its ranks; otherwise MPI (ranks sharing a GPU, NumPy
    and strict runs). Under mpiexec without mpi4py, raises ImportError saying what to install
    (N copies of the same run would otherwise train side by side without knowing it).
    """
    if kind not in ("auto", "mpi", "nccl"):
        raise ValueError(f"communicator kind must be 'auto', 'mpi' or 'nccl', got {kind!r}")
    if not launched_by_mpi():                     # one process: nothing to communicate
        return SingleProcess()
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        raise ImportError("this process was started by mpiexec with several ranks, but mpi4py is "
                          "not installed: pip install mpi4py (or minilm[dist])") from None
    if kind == "auto":
        kind = "nccl" if _nccl_fits() else "mpi"
    elif kind == "nccl":
        from ..backend import get_backend
        if get_backend() != "cupy":
            raise ValueError(f"--comm nccl reduces CuPy arrays on GPUs, but the backend is "
                             f"{get_backend()!r}: set MINILM_BACKEND=cupy (or use --comm mpi)")
    comm = NCCLComm(timeout, device) if kind == "nccl" else MPIComm(timeout)
    if comm.world_size > 1:
        _abort_on_exception(comm)
    return comm


def _nccl_fits():
    """kind="auto": the CuPy backend, NCCL in CuPy, and a GPU for every rank on its node, on
    every rank (a collective: all ranks take the same decision)."""
    from mpi4py import MPI
    from ..backend import get_backend
    ok, gpus = get_backend() == "cupy", 0
    if ok:
        try:
            import cupy
            from cupy.cuda import nccl
            ok = getattr(nccl, "available", True)
            gpus = cupy.cuda.runtime.getDeviceCount()
        except Exception:                                   # no CuPy, no NCCL, no driver
            ok = False
    local = MPI.COMM_WORLD.Split_type(MPI.COMM_TYPE_SHARED)     # the ranks on this node
    ok = ok and local.Get_size() <= gpus
    local.Free()
    return bool(MPI.COMM_WORLD.allreduce(int(ok), op=MPI.MIN))


def _abort_on_exception(comm):
    """An uncaught exception on one rank aborts the job, so the others do not hang."""
    hook = sys.excepthook

    def excepthook(kind, value, tb):
        hook(kind, value, tb)
        _say_then_abort(comm.comm, f"minilm.dist: rank {comm.rank} failed; aborting all ranks\n")
    sys.excepthook = excepthook


# ----------------------------------------------------------------------------------------
# Flat gradient buffers
# ----------------------------------------------------------------------------------------

def flatten_grads(params, out):
    """Copy every p.grad into the flat `out` (in order); a missing grad counts as 0."""
    i = 0
    for p in params:
        n = p.data.size
        out[i:i + n] = 0 if p.grad is None else p.grad.ravel()
        i += n
    return out


def unflatten_grads(flat, params):
    """Write the flat buffer back into every p.grad."""
    i = 0
    for p in params:
        n = p.data.size
        if p.grad is None:
            p.grad = get_xp(p.data).zeros_like(p.data)
        p.grad[...] = flat[i:i + n].reshape(p.data.shape)
        i += n


def bucket_slices(n, itemsize, bucket_bytes):
    """[(start, stop)] splitting a flat buffer of n items into ~bucket_bytes pieces."""
    size = max(1, bucket_bytes // itemsize)
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def allreduce_buckets(comm, flat, bucket_bytes=4 << 20):
    """Sum `flat` over ranks bucket by bucket: every bucket's Iallreduce is started, then
    all are waited on (MPI may progress one while the next is being posted)."""
    reqs = [comm.iallreduce(flat[a:b]) for a, b in bucket_slices(flat.size, flat.itemsize, bucket_bytes)]
    for r in reqs:
        r.wait()
    return flat


# ----------------------------------------------------------------------------------------
# The model wrapper
# ----------------------------------------------------------------------------------------

def split_rows(n, parts):
    """[(start, stop)] for `parts` near-equal contiguous slices of n rows (some may be empty)."""
    bounds = [n * k // parts for k in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def count_targets(batch, shift):
    """Tokens the loss averages over: labels != -100 (labels[:, 1:] for a causal LM)."""
    labels = batch.get("labels")
    if labels is None:
        raise ValueError("DataParallel needs batches with labels (the loss is weighted by the "
                         "number of target tokens)")
    labels = to_numpy(labels)
    if shift:
        labels = labels[:, 1:]
    return int((labels != -100).sum())


# Models whose loss is a sum of means over different things, each normalised by its own
# count: (output, labels key, backward argument) per cross-entropy term. DataParallel
# computes each term from the model's outputs with the library's cross-entropy, weights its
# gradient by (its targets here) / (its targets on all ranks) and passes the gradients to
# model.backward(**{argument: gradient}). A model whose loss is one mean over labels != -100
# needs no entry.
LOSS_TERMS = {
    "BertForPreTraining": (("prediction_logits", "labels", "dprediction_logits"),      # per token
                           ("seq_relationship_logits", "next_sentence_label",           # per pair
                            "dseq_relationship_logits")),
}


def count_labels(batch, key):
    """Targets of one loss term: entries of batch[key] that are not -100 (0 if absent)."""
    labels = batch.get(key)
    return 0 if labels is None else int((to_numpy(labels) != -100).sum())


def _take_rows(batch, a, b):
    return {k: (v[a:b] if hasattr(v, "shape") and getattr(v, "ndim", 0) >= 1 else v)
            for k, v in batch.items()}


class _Output:
    """What DataParallel's call returns: the global mean loss (and nothing per-token)."""

    def __init__(self, loss):
        self.loss = loss

    def __getitem__(self, key):
        return getattr(self, key)


class _RowWindow:
    """The model's dropout Generator seen through a window on the global batch's rows.

    With window = (B, a), random(shape) draws the numbers of the whole global batch,
    shape (B, *shape[1:]), and returns rows [a, a + shape[0]): the mask an example gets
    depends on its place in the global batch only, not on the rank or micro-batch that
    computes it. Without a window it is the Generator itself. Everything else (the
    bit_generator a checkpoint saves) is the Generator's.
    """

    def __init__(self, generator):
        self.generator = generator
        self.window = None
        self.drawn = False                 # a windowed draw happened (DataParallel resets it)

    def random(self, size=None, dtype="float64"):
        if self.window is None:
            return self.generator.random(size, dtype=dtype)
        self.drawn = True
        B, a = self.window
        full = self.generator.random((B,) + tuple(size[1:]), dtype=dtype)   # (B, ...)
        return full[a:a + size[0]]                                         # this micro-batch's rows

    def __getattr__(self, name):
        generator = self.__dict__.get("generator")
        if generator is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(generator, name)


class DataParallel:
    """Wrap `model` for data-parallel training: `out = dp(**batch)`; `dp.backward()`.

    The batch passed in is the *global* batch (the one a single process would use); this
    rank computes on rows split_rows(B, N)[rank], in `grad_accum` micro-batches, each
    running forward and backward at once (its caches do not outlive it). `out.loss` is the
    global mean over target tokens. `backward()` sums the weighted gradients over ranks
    (`reduce=True`, bucketed non-blocking all-reduces) or leaves this rank's weighted sum in
    p.grad for an optimiser that reduces them itself (ZeroAdamW: `reduce=False`).

    overlap=True starts each bucket's all-reduce during the backward of the last micro-batch,
    as soon as the layers that own its parameters are done (see _install_overlap_hooks).

    In eval mode the call is forward only, with the loss reduced the same way. Everything
    else (train/eval, parameters, state_dict, generate, ...) is the model's own.

    Exact (N processes = one, for any grad_accum) when the model's loss is the mean over
    labels != -100, as the LM, masked-LM and token-classification losses are (and sequence
    classification's, whose labels count examples), or a sum of such means listed in
    LOSS_TERMS (or given as loss_terms=...): BertForPreTraining's masked-LM term is weighted
    by tokens and its next-sentence term by pairs, each by its own global count. A batch
    without `labels` (question answering's start/end positions) is refused.

    Dropout: the model's dropout Generator is put behind a _RowWindow (through the model's
    set_dropout_generator door), so each dropout layer draws the global batch's mask and
    keeps this rank's rows: every rank advances its Generator alike, and every example gets
    the mask one process would give it. The price is that every rank draws the random
    numbers of the whole global batch (B T C per dropout layer, B H T T for attention
    dropout) and, with grad_accum > 1, each micro-batch draws them again from the same
    starting state (model.rng_state() / set_rng_state()). A rank without rows takes the
    Generator's state from the last rank. A Lightning-style module (training_step) is not
    wrapped: the Trainer would call its training_step directly.
    """

    def __init__(self, model, comm=None, grad_accum=1, reduce=True, bucket_bytes=4 << 20,
                 shift_labels=None, config=None, overlap=False, loss_terms=None):
        if grad_accum < 1:
            raise ValueError(f"grad_accum must be >= 1, got {grad_accum}")
        self.module = model
        self.comm = comm if comm is not None else SingleProcess()
        self.grad_accum = grad_accum
        self.reduce = reduce
        self.bucket_bytes = bucket_bytes
        if shift_labels is None:                       # causal LMs shift labels inside
            shift_labels = type(model).__name__ in ("GPT", "Llama", "LlamaForCausalLM")
        self.shift_labels = shift_labels
        if loss_terms is None:
            loss_terms = LOSS_TERMS.get(type(model).__name__)
        self.loss_terms = tuple(tuple(t) for t in loss_terms) if loss_terms else None
        if self.loss_terms and shift_labels:
            raise ValueError("loss_terms are weighted by unshifted labels; a causal LM's loss is "
                             "one mean over shifted labels and needs none")
        self.params = list(model.parameters())
        self.comm_seconds = 0.0                        # time in the gradient reduction
        self._pending = False
        self.overlap = overlap and reduce
        self._offsets, n = [], 0
        for p in self.params:
            self._offsets.append(n)
            n += p.data.size
        self._numel = n
        if self.overlap:
            self._install_overlap_hooks()
        self._dropout = None                           # the _RowWindow the dropout layers draw from
        if hasattr(model, "set_dropout_generator") and hasattr(model, "rng_state"):
            try:
                gen = model.dropout_generator()
            except AttributeError:                     # a model without dropout
                gen = None
            if gen is not None:
                self._dropout = gen if isinstance(gen, _RowWindow) else _RowWindow(gen)
                model.set_dropout_generator(self._dropout)
        shapes = [[p.name, list(p.data.shape), str(p.data.dtype)] for p in self.params]
        self.comm.check_same({"config": config, "parameters": shapes, "grad_accum": grad_accum,
                              "reduce": reduce, "loss_terms": self.loss_terms}, "model or run config")
        self.broadcast_parameters()

    def broadcast_parameters(self):
        """Every rank takes rank 0's weights (one flat broadcast) and rank 0's dropout stream."""
        if self.comm.world_size == 1:
            return
        if self._dropout is not None:
            state = self._dropout_state()
            if state is not None:
                self.module.set_rng_state(self.comm.broadcast_object(state, root=0))
        xp = get_xp(self.params[0].data)
        flat = xp.concatenate([p.data.ravel() for p in self.params])
        self.comm.broadcast(flat, root=0)
        i = 0
        for p in self.params:
            p.data[...] = flat[i:i + p.data.size].reshape(p.data.shape)
            i += p.data.size

    def __getattr__(self, name):                       # everything else is the model's
        return getattr(self.__dict__["module"], name)

    # ------------------------------------------------------------------------------------
    # The loss: one mean over target tokens, or a sum of terms each with its own count
    # ------------------------------------------------------------------------------------

    def _counts(self, batch):
        """Targets of each loss term in `batch` (one entry without loss_terms)."""
        if self.loss_terms is None:
            return [count_targets(batch, self.shift_labels)]
        return [count_labels(batch, key) for _, key, _ in self.loss_terms]

    def _term_losses(self, out, batch, weights=None):
        """Each term's mean loss on `batch` (this micro-batch); with `weights`, also the
        backward arguments: each term's d loss / d output times its weight."""
        from ..ops.losses import cross_entropy_backward, cross_entropy_forward
        losses, grads = [], {}
        for (output, key, argument), w in zip(self.loss_terms, weights or [None] * len(self.loss_terms)):
            if batch.get(key) is None:                 # a term the batch does not train
                losses.append(0.0)
                continue
            logits = getattr(out, output)              # (..., K)
            xp = get_xp(logits)
            targets = xp.asarray(to_numpy(batch[key])).reshape(-1)
            loss, cache = cross_entropy_forward(logits.reshape(-1, logits.shape[-1]), targets)
            losses.append(float(loss))
            if weights is not None:
                grads[argument] = cross_entropy_backward(w, cache).reshape(logits.shape)
        return losses, grads

    @staticmethod
    def _global_loss(sums, totals):
        """sum over terms of (sum over ranks of n_r L_r) / (targets on all ranks)."""
        return float(sum(s / t for s, t in zip(sums, totals) if t))

    def _sum_over_ranks(self, values):
        buf = np.array(values, dtype=np.float64)
        self.comm.allreduce(buf)
        return buf.tolist()

    # ------------------------------------------------------------------------------------
    # Dropout: the global batch's masks, this rank's rows
    # ------------------------------------------------------------------------------------

    def _dropout_state(self):
        """The model's dropout Generator state, or None where the backend's Generator does
        not give one (needed only if a dropout layer draws). A CuPy Generator has none (its
        bit_generator.state is a method returning a device pointer); minilm's models draw
        from backend.CounterRNG on CuPy, which has one."""
        try:
            state = self.module.rng_state()
        except (AttributeError, TypeError, NotImplementedError):
            return None
        return None if callable(state) else state

    def _restart_dropout(self, start):
        """Before micro-batch 2, 3, ...: the Generator back where the step began, so each
        micro-batch's rows get the global batch's masks."""
        if start is None:
            raise RuntimeError("dropout with grad_accum > 1 replays the step's dropout stream for "
                               "each micro-batch, through model.rng_state()/set_rng_state(), and "
                               "this model's dropout Generator has no state to save (a CuPy "
                               "Generator has none; minilm's models use backend.CounterRNG, "
                               "which has); use grad_accum=1 or dropout 0")
        self.module.set_rng_state(start)

    def _sync_dropout_state(self, rows):
        """A rank that had no rows drew nothing; it takes the last rank's Generator state
        (the last rank always has rows). Called on every rank alike (all know `rows` and
        whether any rank drew)."""
        if all(b > a for a, b in rows):
            return
        state = self._dropout_state()
        if state is None:
            raise RuntimeError(f"dropout with more ranks than rows ({len(rows)} ranks, "
                               f"{rows[-1][1]} rows): a rank without rows takes the Generator "
                               "state from one with rows, and this model's dropout Generator "
                               "has no state to give (a CuPy Generator has none); use fewer "
                               "ranks or dropout 0")
        self.module.set_rng_state(self.comm.broadcast_object(state, root=self.comm.world_size - 1))

    # ------------------------------------------------------------------------------------
    # The step
    # ------------------------------------------------------------------------------------

    def __call__(self, **batch):
        B = len(batch["input_ids"] if batch.get("input_ids") is not None else batch["labels"])
        N = self.comm.world_size
        rows = split_rows(B, N)
        a, b = rows[self.comm.rank]
        local = _take_rows(batch, a, b)
        totals = self._sum_over_ranks(self._counts(local))     # every term's targets, all ranks
        terms = self.loss_terms is not None
        training = getattr(self.module, "training", True)
        if not training:                               # evaluation: forward only
            sums = [0.0] * len(totals)
            if b > a:
                out = self.module(**local)
                if terms:
                    losses, _ = self._term_losses(out, local)
                    sums = [l * n for l, n in zip(losses, self._counts(local))]
                else:
                    sums = [float(out.loss) * self._counts(local)[0]]
            return _Output(self._global_loss(self._sum_over_ranks(sums), totals))
        # training: forward + backward per micro-batch, weighted by its share of all targets
        xp = get_xp(self.params[0].data)
        acc = xp.zeros(self._numel, dtype=self.params[0].data.dtype)
        scratch = xp.empty_like(acc)
        sums = [0.0] * len(totals)
        micros = [(c, d) for c, d in split_rows(b - a, self.grad_accum) if d > c]  # some empty
        self._acc = acc
        if self.overlap:
            self._start_overlap()
        dropout = self._dropout
        start = self._dropout_state() if dropout is not None and len(micros) > 1 else None
        if dropout is not None:
            dropout.drawn = False
        for k, (c, d) in enumerate(micros):
            micro = _take_rows(local, c, d)
            n = self._counts(micro)
            for p in self.params:
                if p.grad is not None:
                    p.grad[...] = 0
            if k > 0 and dropout is not None and dropout.drawn:   # each micro-batch: the step's masks
                self._restart_dropout(start)
            if dropout is not None:
                dropout.window = (B, a + c)            # rows [a + c, a + d) of the global batch
            try:
                out = self.module(**micro)
            finally:
                if dropout is not None:
                    dropout.window = None
            if terms:                                  # each term weighted in its gradient
                weights = [m / t if t else 0.0 for m, t in zip(n, totals)]
                losses, grads = self._term_losses(out, micro, weights)
                weight = 1.0
            else:
                losses, grads = [float(out.loss)], {}
                weight = n[0] / totals[0] if totals[0] else 0.0
            last = self.overlap and k == len(micros) - 1 and any(totals)
            if last:                                   # buckets leave as backward fills them
                self._weight = weight
            self.module.backward(**grads)
            sums = [s + l * m for s, l, m in zip(sums, losses, n)]
            if last:
                self._finish_backward()
            elif weight:
                acc += flatten_grads(self.params, scratch) * weight
            self._weight = None
        if self.overlap:
            self._launch_ready(everything=True)
        drew = float(dropout is not None and dropout.drawn)
        *sums, drew = self._sum_over_ranks(sums + [drew])     # the losses, and: did anyone draw?
        if drew:
            self._sync_dropout_state(rows)
        self._pending = True
        return _Output(self._global_loss(sums, totals))

    def backward(self):
        """Sum the weighted gradients over ranks into every p.grad (reduce=True), or leave
        this rank's weighted sum there (reduce=False, for ZeroAdamW)."""
        if not self._pending:
            raise RuntimeError("DataParallel.backward() before a training-mode call")
        self._pending = False
        t0 = time.perf_counter()
        if self.overlap:                               # already started during backward
            for r in self._reqs:
                r.wait()
        elif self.reduce:
            allreduce_buckets(self.comm, self._acc, self.bucket_bytes)
        self.comm_seconds += time.perf_counter() - t0
        unflatten_grads(self._acc, self.params)
        self._acc = None

    def forward(self, **batch):
        return self(**batch)

    # ------------------------------------------------------------------------------------
    # Overlap: all-reduce each bucket as soon as the backward has finished its parameters
    # ------------------------------------------------------------------------------------
    # A layer's backward hook runs when its backward starts, so when one fires, the layer
    # whose hook fired before it has finished: its parameters' gradients are complete (a
    # parameter is owned by one layer; GPT's tied wte is finished last, by the embedding).
    # Buckets are launched in one fixed order (last bucket first, each only when every
    # bucket after it has left), so every rank issues the same collectives in the same
    # order, a rank without rows included. Only the last micro-batch overlaps.

    def _install_overlap_hooks(self):
        index = {id(p): i for i, p in enumerate(self.params)}
        self._owned = {}                                # id(layer) -> parameter indices
        for m in self.module.modules():
            own = [index[id(p)] for _, p in m.own_parameters() if id(p) in index]
            if own and getattr(m, "calls_backward_hooks", False):
                self._owned[id(m)] = own
                m.register_backward_hook(self._on_layer_backward)
        self._buckets = bucket_slices(self._numel, self.params[0].data.itemsize, self.bucket_bytes)
        self._bucket_params = []
        for a, b in self._buckets:
            self._bucket_params.append([i for i, off in enumerate(self._offsets)
                                        if off < b and off + self.params[i].data.size > a])
        self._weight = None

    def _start_overlap(self):
        self._done = [False] * len(self.params)
        self._next_bucket = len(self._buckets) - 1
        self._reqs = []
        self._running = None                            # the layer whose backward is running

    def _on_layer_backward(self, layer, dout, cache):
        if self._weight is None:                        # not the overlapped micro-batch
            return
        self._finish_layer()
        self._running = id(layer)
        if any(self._done[i] for i in self._owned[id(layer)]):
            raise RuntimeError("DataParallel(overlap=True): a layer ran its backward twice in "
                               "one step; use overlap=False for this model")
        self._launch_ready()

    def _finish_layer(self):
        """The running layer's backward is over: add its weighted gradients into the flat buffer."""
        if self._running is None:
            return
        for i in self._owned[self._running]:
            p, off = self.params[i], self._offsets[i]
            self._acc[off:off + p.data.size] += p.grad.ravel() * self._weight
            self._done[i] = True
        self._running = None

    def _finish_backward(self):
        """The overlapped backward is over: the last layer, then parameters no hooked layer owns."""
        self._finish_layer()
        for i, off in enumerate(self._offsets):
            if not self._done[i]:
                p = self.params[i]
                self._acc[off:off + p.data.size] += p.grad.ravel() * self._weight
                self._done[i] = True

    def _launch_ready(self, everything=False):
        """Start the all-reduce of every bucket that is complete, in the fixed order."""
        if everything:                                  # after the step's last backward
            self._done = [True] * len(self.params)
        while self._next_bucket >= 0 and all(self._done[i] for i in self._bucket_params[self._next_bucket]):
            a, b = self._buckets[self._next_bucket]
            self._reqs.append(self.comm.iallreduce(self._acc[a:b]))
            self._next_bucket -= 1
        for r in self._reqs:                            # let MPI move the ones in flight
            r.test()
