"""Faults and bad inputs thrown at minilm's checkpoints and inputs; prints BENCHMARKS.md's
"Reliability" table.

    python tests/reliability_table.py            (about a minute on one core)

tests/test_reliability.py imports the same machinery and asserts on it.

A crash is simulated at every file-system step of a save: the k-th call to os.rename,
os.replace, os.remove, os.unlink, os.rmdir, os.mkdir, os.makedirs, os.link, os.fsync,
shutil.rmtree, shutil.copy2, open(..., "w"/"wb") or safetensors' save_file raises, and so
does every later call (the process is dead: not even cleanup code runs), for k = 1, 2, ...
until a save gets through. After each crash the checkpoint is loaded the way a user would
(`from_pretrained`, `latest_checkpoint` + `resume`) and classified: the old checkpoint,
whole; the new one, whole; or lost / mixed (a failure). A second mode raises OSError at the
k-th call only (an I/O error the code sees and handles). Real `kill -9`s of a process that
keeps saving, and a full disk (RLIMIT_FSIZE) in a subprocess, complete the picture.
"""
import builtins
import collections
import contextlib
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import warnings

import numpy as np

import minilm.io
from minilm.models import (BertConfig, BertForSequenceClassification, GPT, GPTConfig,
                           Seq2SeqTransformer, TransformerConfig)
from minilm.optim import AdamW
from minilm.tokenizers import BertTokenizer, BPETokenizer, CharTokenizer
from minilm.train import Trainer, latest_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------------------
# Fault injection
# ------------------------------------------------------------------------------------------

class Crash(BaseException):
    """The process died here (a BaseException, so no `except Exception` cleanup runs)."""


def _patch_targets():
    import safetensors.numpy
    return ([(os, name) for name in ("rename", "replace", "remove", "unlink", "rmdir", "mkdir",
                                      "makedirs", "link", "fsync")]
            + [(shutil, "rmtree"), (shutil, "copy2"), (safetensors.numpy, "save_file")])


class Faults:
    """Count file-system calls; at call number `at` raise Crash (crash=True: and at every
    later call) or OSError (crash=False: that call only). at=None: count only."""

    def __init__(self, at=None, crash=True):
        self.at, self.crash, self.calls = at, crash, 0

    def _hit(self, what):
        self.calls += 1
        if self.at is None:
            return
        if self.calls == self.at:
            if self.crash:
                raise Crash(f"crash at call {self.calls}: {what}")
            raise OSError(5, f"injected I/O error at call {self.calls}: {what}")
        if self.crash and self.calls > self.at:
            raise Crash(f"dead process called {what}")

    @contextlib.contextmanager
    def active(self):
        saved = []
        for module, name in _patch_targets():
            original = getattr(module, name)

            def wrapper(*args, _original=original, _name=name, **kwargs):
                self._hit(_name)
                return _original(*args, **kwargs)
            saved.append((module, name, original))
            setattr(module, name, wrapper)
        real_open = builtins.open

        def open_(file, mode="r", *args, **kwargs):
            if any(c in mode for c in "wax+"):
                self._hit("open")
            return real_open(file, mode, *args, **kwargs)
        builtins.open = open_
        try:
            yield self
        finally:
            builtins.open = real_open
            for module, name, original in saved:
                setattr(module, name, original)


# ------------------------------------------------------------------------------------------
# What is saved, and how a result is classified
# ------------------------------------------------------------------------------------------

def _gpt(seed):
    return GPT(GPTConfig(vocab_size=24, n_positions=8, n_embd=8, n_layer=1, n_head=2,
                         bos_token_id=None, eos_token_id=None, seed=seed))


def _bert(seed):
    return BertForSequenceClassification(BertConfig(
        vocab_size=24, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=16, max_position_embeddings=8, seed=seed))


def _seq2seq(seed):
    return Seq2SeqTransformer(TransformerConfig(
        src_vocab_size=24, tgt_vocab_size=24, d_model=8, nhead=2, num_encoder_layers=1,
        num_decoder_layers=1, dim_feedforward=16, max_position_embeddings=8, seed=seed))


def _tokenizer(seed):
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{seed}_{i}" for i in range(8)]
    path = os.path.join(tempfile.mkdtemp(), "vocab.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(words) + "\n")
    return BertTokenizer(path)


class ModelKind:
    """Save with save_pretrained, load with from_pretrained; old = seed 0, new = seed 1."""

    def __init__(self, name, make):
        self.name, self.make = name, make
        self.versions = {tag: make(seed) for tag, seed in (("old", 0), ("new", 1))}
        self.cls = type(self.versions["old"])

    def save(self, tag, folder):
        self.versions[tag].save_pretrained(folder)

    def classify(self, folder):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = self.cls.from_pretrained(folder)
        except Exception as e:      # noqa: BLE001 - any failure to load is the finding
            return f"lost ({type(e).__name__})"
        got = model.state_dict()
        for tag, ref in self.versions.items():
            want = ref.state_dict()
            if (model.config.seed == ref.config.seed and got.keys() == want.keys()
                    and all(np.array_equal(got[k], want[k]) for k in want)):
                return tag
        return "mixed"


class TokenizerKind(ModelKind):
    def classify(self, folder):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tok = BertTokenizer.from_pretrained(folder)
        except Exception as e:      # noqa: BLE001
            return f"lost ({type(e).__name__})"
        for tag, ref in self.versions.items():
            if tok.vocab == ref.vocab:
                return tag
        return "mixed"


def _bpe(seed):
    tok = BPETokenizer()
    tok.train(("abc abd " if seed == 0 else "xyz xyw ") * 30, vocab_size=262)
    return tok


class BPEKind(ModelKind):
    """BPETokenizer.save into a folder (vocab.json, merges.txt, minilm_bpe.json), or with
    prefix=True into prefix-vocab.json, ... (each file replaced on its own)."""

    def __init__(self, name, prefix=False):
        super().__init__(name, _bpe)
        self.prefix = prefix

    def save(self, tag, folder):
        self.versions[tag].save(folder if self.prefix else os.path.join(folder, ""))

    def classify(self, folder):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tok = BPETokenizer.load(folder if self.prefix else os.path.join(folder, ""))
        except FileNotFoundError as e:
            return f"lost ({type(e).__name__})"
        except ValueError as e:
            return f"refused ({str(e)[:60]})" if "different saves" in str(e) else f"lost ({e})"
        for tag, ref in self.versions.items():
            if tok.vocab == ref.vocab and tok.merges == ref.merges:
                return tag
        return "mixed"


class CharKind(ModelKind):
    """CharTokenizer.save: one JSON file, replaced whole."""

    def __init__(self, name):
        super().__init__(name, lambda seed: CharTokenizer("abc" if seed == 0 else "xyzw"))

    def save(self, tag, folder):
        self.versions[tag].save(folder)

    def classify(self, folder):
        try:
            tok = CharTokenizer.load(folder)
        except Exception as e:      # noqa: BLE001
            return f"lost ({type(e).__name__})"
        for tag, ref in self.versions.items():
            if tok.chars == ref.chars:
                return tag
        return "mixed"


class TrainerKind:
    """Trainer checkpoints with keep_all_checkpoints=False: old = step 1, new = step 2;
    found with latest_checkpoint and restored with resume."""
    name = "Trainer checkpoint (last/)"

    def __init__(self):
        rng = np.random.default_rng(0)
        self.batch = {"input_ids": rng.integers(0, 24, (2, 8))}
        self.batch["labels"] = self.batch["input_ids"]
        self.trainer = self._trainer()
        self.weights = {}
        for step in (1, 2):
            self.trainer.train_step(self.batch)
            self.trainer.step = step
            self.weights[step] = self.trainer.model.state_dict()

    def _trainer(self, checkpoint_dir=None):
        model = _gpt(0)
        return Trainer(model, AdamW(model.parameters(), lr=1e-2),
                       lambda rng: self.batch, max_steps=10, checkpoint_dir=checkpoint_dir,
                       keep_all_checkpoints=False, progress=False)

    def save(self, tag, folder):
        step = {"old": 1, "new": 2}[tag]
        self.trainer.step = step
        self.trainer.model.load_state_dict(self.weights[step])
        self.trainer.checkpoint_dir = folder
        self.trainer.save_checkpoint()

    def classify(self, folder):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                path = latest_checkpoint(folder)
            if path is None:
                return "lost (no checkpoint)"
            fresh = self._trainer().resume(path)
        except Exception as e:      # noqa: BLE001
            return f"lost ({type(e).__name__})"
        got, want = fresh.model.state_dict(), self.weights.get(fresh.step)
        if want is not None and all(np.array_equal(got[k], want[k]) for k in want):
            return {1: "old", 2: "new"}[fresh.step]
        return "mixed"


class NaiveKind(ModelKind):
    """For comparison, what save_pretrained did before: config.json, then the weights,
    written over the old files in place."""

    def save(self, tag, folder):
        model = self.versions[tag]
        os.makedirs(folder, exist_ok=True)
        minilm.io.write_config(folder, model.config.to_dict())
        minilm.io.save_safetensors(os.path.join(folder, "model.safetensors"), model.state_dict())


class OldTrainerKind(TrainerKind):
    """For comparison, what Trainer.save_checkpoint did before with keep_all_checkpoints=False:
    write last.tmp/, remove last/, rename last.tmp/ to last/."""
    name = "before: Trainer checkpoint (write last.tmp, remove last, rename)"

    def save(self, tag, folder):
        step = {"old": 1, "new": 2}[tag]
        t = self.trainer
        t.step = step
        t.model.load_state_dict(self.weights[step])
        path = os.path.join(folder, "last")
        tmp = path + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        t.checkpoint_dir = folder
        t.save_checkpoint(os.path.join(tmp, "x"))            # the four files, into tmp/x ...
        for name in os.listdir(os.path.join(tmp, "x")):
            os.rename(os.path.join(tmp, "x", name), os.path.join(tmp, name))
        os.rmdir(os.path.join(tmp, "x"))
        if os.path.exists(path):
            shutil.rmtree(path)
        os.replace(tmp, path)


def before_kinds():
    return [NaiveKind("before: save_pretrained (config.json, then weights, in place)", _gpt),
            OldTrainerKind()]


def all_kinds():
    return [ModelKind("GPT.save_pretrained", _gpt),
            ModelKind("BertForSequenceClassification.save_pretrained", _bert),
            ModelKind("Seq2SeqTransformer.save_pretrained", _seq2seq),
            TokenizerKind("BertTokenizer.save_pretrained", _tokenizer),
            BPEKind("BPETokenizer.save (a folder)"),
            BPEKind("BPETokenizer.save (a prefix: three files)", prefix=True),
            CharKind("CharTokenizer.save (one file)"),
            TrainerKind()]


def leftovers(folder):
    """Names beside or inside the checkpoint folder that a clean save should have removed."""
    folder = os.path.abspath(folder)
    names = os.listdir(os.path.dirname(folder)) + (os.listdir(folder) if os.path.isdir(folder) else [])
    return sorted(n for n in names if n.endswith((".tmp", ".old")))


def count_calls(kind):
    """File-system calls of one fault-free save of `new` over `old`."""
    root = tempfile.mkdtemp(prefix="minilm-fault-")
    try:
        target = os.path.join(root, "ckpt")
        kind.save("old", target)
        faults = Faults()
        with faults.active():
            kind.save("new", target)
        return faults.calls
    finally:
        shutil.rmtree(root, ignore_errors=True)


def fault_campaign(kind, crash=True):
    """Save `old`, then save `new` with a fault at call k, for every k of a clean save's
    calls. Returns (list of (k, outcome, what the save raised), number of calls). After
    each fault a clean save of `new` must work and leave no temporary folder behind; if
    not, the outcome says so (and is not "old" or "new")."""
    calls = count_calls(kind)
    results = []
    for k in range(1, calls + 1):
        root = tempfile.mkdtemp(prefix="minilm-fault-")
        try:
            target = os.path.join(root, "ckpt")
            kind.save("old", target)
            raised = None
            try:
                with Faults(at=k, crash=crash).active():
                    kind.save("new", target)
            except (Crash, OSError) as e:
                raised = type(e).__name__
            outcome = kind.classify(target)
            kind.save("new", target)                         # recovery: the next save works
            after = kind.classify(target)
            if after != "new" or leftovers(target):
                outcome += f"; then a clean save gave {after}, leftovers {leftovers(target)}"
            results.append((k, outcome, raised))
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return results, calls


# ------------------------------------------------------------------------------------------
# Real processes: kill -9, full disk
# ------------------------------------------------------------------------------------------

CHILD_PRELUDE = textwrap.dedent("""
    import os, resource, signal, sys
    sys.path.insert(0, {tests!r})
    import reliability_table as rt
    kinds = {{k.name: k for k in rt.all_kinds()}}
""")


def _child(code, tests_dir=None):
    tests_dir = tests_dir or os.path.dirname(os.path.abspath(__file__))
    return [sys.executable, "-c", CHILD_PRELUDE.format(tests=tests_dir) + textwrap.dedent(code)]


def kill_trials(n=4, seed=0, root=None):
    """Start a process that saves a GPT folder and a Trainer `last/` checkpoint in turn,
    old, new, old, ..., forever; kill -9 it at a random moment; classify both. Returns a
    list of (delay_s, model outcome, trainer outcome)."""
    rng = random.Random(seed)
    out = []
    kinds = {k.name: k for k in all_kinds()}
    model_kind, trainer_kind = kinds["GPT.save_pretrained"], kinds["Trainer checkpoint (last/)"]
    for _ in range(n):
        base = tempfile.mkdtemp(prefix="minilm-kill-", dir=root)
        code = f"""
            m, t = kinds["GPT.save_pretrained"], kinds["Trainer checkpoint (last/)"]
            m.save("old", {base!r} + "/model"); t.save("old", {base!r} + "/run")
            print("ready", flush=True)
            i = 0
            while True:
                tag = ("new", "old")[i % 2]
                m.save(tag, {base!r} + "/model"); t.save(tag, {base!r} + "/run")
                i += 1
        """
        proc = subprocess.Popen(_child(code), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        watchdog = threading.Timer(60, proc.kill)           # a child that never starts
        watchdog.start()
        try:
            line = proc.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"child failed to start: {line!r} {proc.stderr.read()[-2000:]}")
            delay = rng.uniform(0.05, 0.6)
            time.sleep(delay)
        finally:
            watchdog.cancel()
            proc.kill()                                       # SIGKILL: no cleanup at all
            proc.wait()
        out.append((round(delay, 3), model_kind.classify(base + "/model"),
                    trainer_kind.classify(base + "/run")))
        shutil.rmtree(base, ignore_errors=True)
    return out


def full_disk_trial(kind_name, root=None):
    """Save `old`, then in the same process cap the file size (RLIMIT_FSIZE) below the
    weights file, ignore SIGXFSZ, and save `new`. Returns (error the save raised,
    outcome of loading the folder afterwards)."""
    base = tempfile.mkdtemp(prefix="minilm-disk-", dir=root)
    target = os.path.join(base, "ckpt")
    code = f"""
        kind = kinds[{kind_name!r}]
        kind.save("old", {target!r})
        size = max(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk({target!r}) for f in fs)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)       # write() fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        try:
            kind.save("new", {target!r})
            print("saved")
        except Exception as e:
            print("raised", type(e).__name__, str(e)[:400].replace(chr(10), " "))
    """
    proc = subprocess.run(_child(code), capture_output=True, text=True, timeout=60)
    said = (proc.stdout.strip() or proc.stderr.strip()[-300:])
    kind = {k.name: k for k in all_kinds()}[kind_name]
    outcome = kind.classify(target)
    shutil.rmtree(base, ignore_errors=True)
    return said, outcome


# ------------------------------------------------------------------------------------------
# Bad inputs
# ------------------------------------------------------------------------------------------

def _flip_byte(folder, tensor=None):
    """Flip one byte of `tensor`'s data (default: the first tensor) in folder's
    model.safetensors; returns the tensor's name."""
    path = os.path.join(folder, "model.safetensors")
    header = minilm.io.read_safetensors_header(path)
    names = [k for k in header if k != "__metadata__"]
    name = tensor or names[0]
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
    offset = 8 + n + header[name]["data_offsets"][0] + 1
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x10]))
    return name


def _raw_safetensors(path, header, data=b""):
    import json
    blob = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(len(blob).to_bytes(8, "little") + blob + data)


def bad_inputs():
    """(what, callable) pairs: each must raise a clear error (or give a correct result)."""
    gpt = _gpt(0).eval()                            # eval: no dropout, so forwards compare
    ids = np.array([[1, 2, 3, 4]])
    s2s = _seq2seq(0)
    tmp = tempfile.mkdtemp(prefix="minilm-bad-")

    def flipped():
        folder = os.path.join(tmp, "flip")
        gpt.save_pretrained(folder)
        _flip_byte(folder, "transformer.h.0.attn.c_attn.weight")
        GPT.from_pretrained(folder)

    def header(entry):
        def run():
            path = os.path.join(tmp, "bad.safetensors")
            _raw_safetensors(path, {"w": entry}, b"\0" * 16)
            minilm.io.load_safetensors(path)
        return run

    def resume_wrong_model():
        run = os.path.join(tmp, "run")
        t = Trainer(gpt, AdamW(gpt.parameters()), lambda r: None, max_steps=1, progress=False)
        t.save_checkpoint(run)
        other = GPT(GPTConfig(vocab_size=24, n_positions=8, n_embd=16, n_layer=1, n_head=2,
                              bos_token_id=None, eos_token_id=None))
        before = other.state_dict()
        trainer = Trainer(other, AdamW(other.parameters()), lambda r: None, max_steps=1, progress=False)
        try:
            trainer.resume(run)
        except Exception as e:      # noqa: BLE001
            same = all(np.array_equal(v, other.state_dict()[k]) for k, v in before.items())
            return (f"{type(e).__name__}: {e}; " + ("model, optimiser and step unchanged" if same
                    and not trainer.optimizer.state and trainer.step == 0 else "HALF-LOADED"))
        return "no error"

    def corrupt_newest_state():
        run = os.path.join(tmp, "run2")
        t = Trainer(gpt, AdamW(gpt.parameters()), lambda r: None, max_steps=2, progress=False,
                    checkpoint_dir=run)
        t.save_checkpoint()
        t.step = 1
        newest = t.save_checkpoint()
        with open(os.path.join(newest, "trainer_state.json"), "w") as f:
            f.write("{ truncated")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = latest_checkpoint(run)
        return f"falls back to {os.path.basename(found)}"

    def fp16_layernorm():
        from minilm.ops import layernorm_forward
        x = (np.random.default_rng(0).standard_normal((2, 64)) * 1000).astype(np.float16)
        out, _ = layernorm_forward(x, np.ones(64, np.float32), np.zeros(64, np.float32))
        x64 = x.astype(np.float64)
        ref = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + 1e-5)
        return f"correct (max error {np.abs(out - ref).max():.1e}, float16 output)"

    def forward_generate_backward():
        grads = []
        for generate in (False, True):
            m = _gpt(0)                                 # train mode: dropout on, same seed
            m(ids, labels=ids)
            if generate:
                m.generate(ids, 2)
            m.backward()
            grads.append([p.grad for p in m.parameters()])
        same = all(np.array_equal(a, b) for a, b in zip(*grads))
        return "works: " + ("the same gradients as" if same else "DIFFERENT gradients from") + \
            " forward -> backward"

    return [
        ('config "n_embd": "8"', lambda: GPTConfig(n_embd="8")),
        ("config n_embd=10, n_head=4", lambda: GPTConfig(n_embd=10, n_head=4)),
        ("config layer_norm_epsilon=0", lambda: GPTConfig(layer_norm_epsilon=0)),
        ('config activation_function="gelu2"', lambda: GPTConfig(activation_function="gelu2")),
        ("config hidden_dropout_prob=1.0 (BERT)", lambda: BertConfig(hidden_dropout_prob=1.0)),
        ('config d_model="8" (encoder-decoder)', lambda: TransformerConfig(d_model="8")),
        ('GPT("hello")', lambda: GPT("hello")),
        ("GPT additive mask [[0, 0, -10000, -10000]]",
         lambda: gpt(ids, attention_mask=[[0, 0, -10000, -10000]])),
        ("GPT mask [[1, 2, 1, 1]]", lambda: gpt(ids, attention_mask=[[1, 2, 1, 1]])),
        ("encoder-decoder mask [[1, -1, 1, 1]]", lambda: s2s(ids, attention_mask=[[1, -1, 1, 1]],
                                                             labels=ids)),
        ("GPT float mask [[1., 1., 0., 0.]]",
         lambda: "accepted, same logits as the int mask" if np.array_equal(
             gpt(ids, attention_mask=[[1., 1., 0., 0.]]).logits,
             gpt(ids, attention_mask=[[1, 1, 0, 0]]).logits) else "DIFFERENT logits"),
        ("generate(max_new_tokens=2.5)", lambda: gpt.generate(ids, 2.5)),
        ("generate(max_new_tokens=None)", lambda: gpt.generate(ids, None)),
        ("generate(temperature=nan)", lambda: gpt.generate(ids, 2, do_sample=True, temperature=float("nan"))),
        ("generate(top_p=0)", lambda: gpt.generate(ids, 2, do_sample=True, top_p=0)),
        ("layernorm of float16 x ~ 1000", fp16_layernorm),
        ("layernorm of int64 x", lambda: __import__("minilm").ops.layernorm_forward(
            np.ones((2, 4), np.int64), np.ones(4), np.zeros(4))),
        ("a flipped byte in model.safetensors", flipped),
        ("header entry without dtype", header({"shape": [4], "data_offsets": [0, 16]})),
        ("header data_offsets [0, 8] for 4 x F32", header({"dtype": "F32", "shape": [4], "data_offsets": [0, 8]})),
        ("Trainer.resume of another model's checkpoint", resume_wrong_model),
        ("newest trainer_state.json truncated", corrupt_newest_state),
        ("forward -> generate -> backward", forward_generate_backward),
    ]


def describe(fn):
    try:
        result = fn()
    except Exception as e:          # noqa: BLE001 - reporting what each input gives
        msg = re.sub(r"/\S*/minilm-bad-\w+/", "", str(e).replace("\n", " "))
        return f"{type(e).__name__}: {msg[:260]}{'...' if len(msg) > 260 else ''}"
    return result if isinstance(result, str) else "no error"


# ------------------------------------------------------------------------------------------
# The table
# ------------------------------------------------------------------------------------------

def main():
    t0 = time.perf_counter()
    print("| fault | trials | old checkpoint, whole | new checkpoint, whole | lost or mixed |")
    print("|---|---|---|---|---|")
    totals = collections.Counter()
    for kind in all_kinds():
        for crash in (True, False):
            results, calls = fault_campaign(kind, crash=crash)
            counts = collections.Counter(o if o in ("old", "new") else "bad" for _, o, _ in results)
            totals.update(counts)
            mode = "crash at" if crash else "OSError at"
            print(f"| {kind.name}: {mode} each of its {calls} file-system calls | {len(results)} "
                  f"| {counts['old']} | {counts['new']} | {counts['bad']} |")
            for k, o, _ in results:
                if o not in ("old", "new"):
                    print(f"|   call {k}: {o} | | | | |")
    kills = kill_trials()
    for i, name in ((1, "GPT.save_pretrained"), (2, "Trainer checkpoint (last/)")):
        counts = collections.Counter(r[i] if r[i] in ("old", "new") else "bad" for r in kills)
        totals.update(counts)
        print(f"| {name}: kill -9 at a random moment (0.05-0.6 s) of a save loop | {len(kills)} "
              f"| {counts['old']} | {counts['new']} | {counts['bad']} |")
    for name in ("GPT.save_pretrained", "Trainer checkpoint (last/)"):
        said, outcome = full_disk_trial(name)
        ok = outcome if outcome in ("old", "new") else "bad"
        totals[ok] += 1
        error = said.split()[1] if said.startswith("raised") else said[:40]
        print(f"| {name}: full disk (RLIMIT_FSIZE below the file size); the save raised {error}"
              f"{' (File too large)' if 'File too large' in said else ''} | 1 "
              f"| {int(ok == 'old')} | {int(ok == 'new')} | {int(ok == 'bad')} |")
    print(f"| **all of the above** | {sum(totals.values())} | {totals['old']} | {totals['new']} "
          f"| {totals['bad']} |")
    for kind in before_kinds():
        results, calls = fault_campaign(kind, crash=True)
        counts = collections.Counter(o if o in ("old", "new") else "bad" for _, o, _ in results)
        print(f"| {kind.name}: crash at each of its {calls} calls | {len(results)} | {counts['old']} "
              f"| {counts['new']} | {counts['bad']} |")
    print()
    print("| bad input | what minilm does |")
    print("|---|---|")
    cases = bad_inputs()
    for what, fn in cases:
        print(f"| {what} | {describe(fn).replace('|', '/')} |")
    print(f"\n{len(cases)} bad inputs; {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
