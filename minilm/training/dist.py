"""Data-parallel training over MPI: a communicator, gradient buckets, a model wrapper.

    comm = get_comm()                        # MPI under mpiexec (mpi4py), else one process
    model = DataParallel(GPT(config), comm)  # rank 0's weights broadcast; same config checked
    opt = AdamW(...)                         # or ZeroAdamW(..., comm=comm): sharded state
    Trainer(model, opt, ..., comm=comm, progress=comm.rank == 0).fit()

Every rank draws the same global batch (same seed, same Generator) and computes on its own
rows, so N processes follow the run one process makes: the loss is a mean over target
tokens (labels != -100), and each rank's gradient of its own mean is weighted by

    w_r = (target tokens on rank r) / (target tokens on all ranks)

before the sum over ranks, which gives the gradient of the global mean exactly, however
the padding and the -100 labels fall. `grad_accum=K` splits each rank's rows into K
micro-batches with the same weighting (the weights use the global count).

mpi4py is optional (`pip install minilm[dist]`): it is imported only when the process was
started by mpiexec with more than one rank. Communication is on host (NumPy) buffers; a
CuPy run would copy through the host (NCCL is not wired in).
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
    """

    def __init__(self, timeout=600.0):
        from mpi4py import MPI                  # optional dependency: minilm[dist]
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD
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


def launched_by_mpi():
    """True when this process was started by mpiexec/mpirun with more than one rank."""
    for key in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "PMIX_SIZE"):
        if os.environ.get(key, "1") not in ("", "1"):
            return True
    return False


def get_comm(timeout=600.0):
    """MPIComm when launched by mpiexec with N > 1 ranks, else SingleProcess.

    Under mpiexec without mpi4py, raises ImportError saying what to install (N copies of
    the same run would otherwise train side by side without knowing it).
    """
    if not launched_by_mpi():
        return SingleProcess()
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        raise ImportError("this process was started by mpiexec with several ranks, but mpi4py is "
                          "not installed: pip install mpi4py (or minilm[dist])") from None
    comm = MPIComm(timeout)
    if comm.world_size > 1:
        _abort_on_exception(comm)
    return comm


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


def _take_rows(batch, a, b):
    return {k: (v[a:b] if hasattr(v, "shape") and getattr(v, "ndim", 0) >= 1 else v)
            for k, v in batch.items()}


class _Output:
    """What DataParallel's call returns: the global mean loss (and nothing per-token)."""

    def __init__(self, loss):
        self.loss = loss

    def __getitem__(self, key):
        return getattr(self, key)


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
    Exact (N processes = one) when the model's loss is the mean over labels != -100, as
    the LM, masked-LM and token-classification losses are; a loss that adds a per-sequence
    term (BertForPreTraining's next-sentence loss) is weighted by tokens, not sequences.
    Dropout draws differ from one process's (each rank has its own rows), so the runs are
    equal only with dropout 0. A Lightning-style module (training_step) is not wrapped:
    the Trainer would call its training_step directly.
    """

    def __init__(self, model, comm=None, grad_accum=1, reduce=True, bucket_bytes=4 << 20,
                 shift_labels=None, config=None, overlap=False):
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
        shapes = [[p.name, list(p.data.shape), str(p.data.dtype)] for p in self.params]
        self.comm.check_same({"config": config, "parameters": shapes,
                              "grad_accum": grad_accum, "reduce": reduce}, "model or run config")
        self.broadcast_parameters()

    def broadcast_parameters(self):
        """Every rank takes rank 0's weights (one flat broadcast)."""
        if self.comm.world_size == 1:
            return
        xp = get_xp(self.params[0].data)
        flat = xp.concatenate([p.data.ravel() for p in self.params])
        self.comm.broadcast(flat, root=0)
        i = 0
        for p in self.params:
            p.data[...] = flat[i:i + p.data.size].reshape(p.data.shape)
            i += p.data.size

    def __getattr__(self, name):                       # everything else is the model's
        return getattr(self.__dict__["module"], name)

    def __call__(self, **batch):
        B = len(batch["input_ids"] if batch.get("input_ids") is not None else batch["labels"])
        N = self.comm.world_size
        a, b = split_rows(B, N)[self.comm.rank]
        local = _take_rows(batch, a, b)
        total = self.comm.allreduce_scalar(count_targets(local, self.shift_labels))  # all ranks'
        training = getattr(self.module, "training", True)
        if not training:                               # evaluation: forward only
            loss_sum = 0.0
            if b > a:
                n = count_targets(local, self.shift_labels)
                loss_sum = float(self.module(**local).loss) * n
            return _Output(self.comm.allreduce_scalar(loss_sum) / total if total else 0.0)
        # training: forward + backward per micro-batch, weighted by its share of all targets
        xp = get_xp(self.params[0].data)
        n_flat = sum(p.data.size for p in self.params)
        acc = xp.zeros(n_flat, dtype=self.params[0].data.dtype)
        scratch = xp.empty_like(acc)
        loss_sum = 0.0
        micros = [(c, d) for c, d in split_rows(b - a, self.grad_accum) if d > c]  # some empty
        self._acc = acc
        if self.overlap:
            self._start_overlap()
        for k, (c, d) in enumerate(micros):
            micro = _take_rows(local, c, d)
            n = count_targets(micro, self.shift_labels)
            for p in self.params:
                if p.grad is not None:
                    p.grad[...] = 0
            out = self.module(**micro)
            last = self.overlap and k == len(micros) - 1 and total > 0
            if last:                                   # buckets leave as backward fills them
                self._weight = n / total
            self.module.backward()
            loss_sum += float(out.loss) * n
            if last:
                self._finish_backward()
            elif total:
                acc += flatten_grads(self.params, scratch) * (n / total)
            self._weight = None
        if self.overlap:
            self._launch_ready(everything=True)
        self._pending = True
        return _Output(self.comm.allreduce_scalar(loss_sum) / total if total else 0.0)

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
