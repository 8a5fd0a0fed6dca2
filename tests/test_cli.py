"""The command line: demo writes a complete run folder; sample reads it; offline is explained."""
import json
import os
import subprocess
import sys
import urllib.error

import pytest

from minilm.__main__ import main
from minilm.data import corpus

ROOT = os.path.join(os.path.dirname(__file__), "..")


def test_demo_writes_a_run_folder_and_sample_reads_it(tmp_path, capsys):
    out = tmp_path / "run"
    main(["demo", "--max-iters", "4", "--eval-every", "2", "--eval-iters", "1", "--n-layer", "1",
          "--n-embd", "16", "--n-head", "2", "--block-size", "16", "--out", str(out), "--no-progress"])
    for name in ("config.json", "model.safetensors", "tokenizer.json", "loss.png", "samples.txt", "history.json"):
        assert (out / name).exists(), name
    assert json.load(open(out / "config.json"))["model_type"] == "gpt2"
    main(["sample", "--run", str(out), "--prompt", "def ", "--max-new-tokens", "30", "--seed", "1"])
    printed = capsys.readouterr().out
    assert "def " in printed


def test_help_lists_the_commands():
    r = subprocess.run([sys.executable, "-m", "minilm", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0
    for cmd in ("demo", "train", "sample", "bench", "seq2seq"):
        assert cmd in r.stdout


def test_tinyshakespeare_offline_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("MINILM_CACHE", str(tmp_path))

    def offline(*a, **k):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(corpus.urllib.request, "urlopen", offline)
    with pytest.raises(RuntimeError, match="offline"):
        corpus.load_tinyshakespeare()


def test_tinyshakespeare_checksum_is_enforced(tmp_path):
    bad = tmp_path / "tiny.txt"
    bad.write_text("not shakespeare")
    with pytest.raises(RuntimeError, match="SHA-256"):
        corpus.load_tinyshakespeare(str(bad))


def test_pydoc_corpus_is_bundled():
    text = corpus.load_pydoc_corpus()
    assert len(text) > 100_000 and "def" in text


def test_train_arch_llama_writes_a_run_folder_and_sample_reads_it(tmp_path, capsys):
    """--arch llama: the same run (Trainer, AdamW, schedule, checkpoints, samples) with a
    char-level LlamaForCausalLM; GQA by default; resumable; `sample` reads the folder."""
    out = tmp_path / "llama"
    args = ["train", "--arch", "llama", "--max-iters", "4", "--eval-every", "2", "--eval-iters", "1",
            "--n-layer", "2", "--n-embd", "16", "--n-head", "4", "--block-size", "16", "--batch-size", "4",
            "--out", str(out), "--no-progress", "--checkpoint-every", "2"]
    main(args)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "loss.png", "samples.txt", "history.json"):
        assert (out / name).exists(), name
    cfg = json.load(open(out / "config.json"))
    assert cfg["model_type"] == "llama" and cfg["architectures"] == ["LlamaForCausalLM"]
    assert (cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]) == (4, 2, 4)
    assert cfg["tie_word_embeddings"] and cfg["max_position_embeddings"] == 16
    assert cfg["rope_theta"] == 10000.0 and cfg["intermediate_size"] > 0
    history = json.load(open(out / "history.json"))
    assert [h["step"] for h in history if "eval_loss" in h] and all(
        h["loss"] == h["loss"] for h in history if "loss" in h)            # finite, logged
    capsys.readouterr()
    main(["sample", "--run", str(out), "--prompt", "def ", "--max-new-tokens", "30", "--seed", "1"])
    assert "def " in capsys.readouterr().out
    # past the 16-token context: no cache, the context cropped, as for GPT
    main(["sample", "--run", str(out), "--prompt", "def ", "--max-new-tokens", "20", "--greedy"])
    assert len(capsys.readouterr().out.split("----------")[0].strip("\n")) >= 20


def test_llama_default_width_matches_gpt2_parameter_count():
    """The default SwiGLU width puts Llama within one F-step (3 C L parameters) of GPT-2."""
    from minilm.__main__ import llama_intermediate_size
    from minilm.evaluation.costs import count_parameters
    from minilm.models import GPTConfig, LlamaConfig
    V, P, C, L, H, H_kv = 80, 64, 128, 4, 4, 2
    F = llama_intermediate_size(V, P, C, L, H, H_kv)
    gpt = count_parameters(GPTConfig(vocab_size=V, n_positions=P, n_embd=C, n_layer=L, n_head=H))
    llama = count_parameters(LlamaConfig(vocab_size=V, hidden_size=C, intermediate_size=F, num_hidden_layers=L,
                                         num_attention_heads=H, num_key_value_heads=H_kv, tie_word_embeddings=True))
    assert abs(llama - gpt) <= 3 * C * L / 2
    assert 3 * C < F < 3 * C + 16          # 10 C - 2 H_kv D = 9 C over 3, plus what wpe and biases add


@pytest.mark.parametrize("extra, message", [
    (["--arch", "llama", "--dropout", "0.1"], "no dropout"),
    (["--arch", "llama", "--n-head", "4", "--n-kv-head", "3"], r"must be a multiple of num_key_value_heads \(3\)"),
    (["--arch", "llama", "--n-embd", "12", "--n-head", "4"], "head_dim must be even"),
    (["--n-kv-head", "2"], "--n-kv-head is a Llama setting"),
    (["--rope-theta", "500000"], "--rope-theta is a Llama setting"),
    (["--arch", "bert"], "invalid choice"),
])
def test_train_bad_llama_flags_are_clear_errors(tmp_path, extra, message, capsys):
    base = ["train", "--max-iters", "1", "--n-layer", "1", "--n-embd", "16", "--n-head", "2",
            "--block-size", "8", "--out", str(tmp_path / "r"), "--no-progress"]
    with pytest.raises(SystemExit) as e:
        main(base + extra)
    assert e.value.code != 0
    text = str(e.value.code) + capsys.readouterr().err
    assert __import__("re").search(message, text), text


def _mpiexec():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return None
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return here if os.path.exists(here) else __import__("shutil").which("mpiexec")


@pytest.mark.skipif(_mpiexec() is None, reason="needs mpi4py and mpiexec (pip install mpich mpi4py)")
def test_train_arch_llama_under_mpiexec_follows_one_process(tmp_path):
    """Data parallel as for GPT: `mpiexec -n 2 ... --arch llama --overlap` gives the losses of
    one process (float32)."""
    import numpy as np
    text = tmp_path / "corpus.txt"
    text.write_text("the quick brown fox jumps over the lazy dog.\n" * 40)
    args = ["--arch", "llama", "--data-file", str(text), "--n-layer", "1", "--n-embd", "16", "--n-head", "4",
            "--block-size", "16", "--batch-size", "5", "--max-iters", "3", "--eval-every", "3",
            "--eval-iters", "1", "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg")
    hist = {}
    for n, extra in ((1, []), (2, ["--overlap", "--grad-accum", "2"])):
        cmd = [sys.executable, "-m", "minilm", "train", *args, *extra, "--out", str(tmp_path / str(n))]
        r = subprocess.run(([_mpiexec(), "-n", str(n)] if n > 1 else []) + cmd, capture_output=True,
                           text=True, timeout=240, env=env, cwd=ROOT)
        assert r.returncode == 0, r.stderr[-3000:]
        with open(tmp_path / str(n) / "history.json") as f:
            hist[n] = [h["loss"] for h in json.load(f)]
    assert hist[1] and all(np.isfinite(hist[1]))
    np.testing.assert_allclose(hist[2], hist[1], rtol=1e-5)


def test_bench_arch_compares_gpt2_and_llama_at_equal_size(tmp_path, capsys):
    """`python -m minilm bench arch`, tiny: every model trained the same number of steps by
    the train command; parameter counts within 2 % of GPT-2's; the KV cache per token is
    2 L H_kv D x 4 bytes, so it falls with the key/value heads; the table is printed."""
    from minilm.bench.suite import bench_arch
    tiny = dict(n_layer=2, n_head=4, n_embd=32, block_size=16, batch_size=4)
    res = bench_arch(tiny, iters=4, eval_iters=2, rounds=2, steps=2, out=str(tmp_path), progress=False)
    models = res["models"]
    assert [m["label"] for m in models][0] == "GPT-2" and len(models) == 4
    gpt = models[0]
    for m in models:
        assert abs(m["parameters"] - gpt["parameters"]) <= 0.02 * gpt["parameters"], m["label"]
        assert m["val_curve"][-1][0] == 4 and m["step_ms"] > 0
    assert [m["kv_heads"] for m in models] == [4, 4, 2, 1]
    assert [m["kv_bytes_per_token"] for m in models] == [2 * 2 * h * 8 * 4 for h in (4, 4, 2, 1)]
    printed = capsys.readouterr().out
    assert "KV cache B/token" in printed and "Llama, H_kv = 1 (MQA)" in printed
    assert "python -m minilm train --n-layer 2" in models[1]["command"] and "--arch llama" in models[1]["command"]
    from minilm.bench.suite import arch_variants                # the wide config has 6 heads
    assert [f[-1] for _, f in arch_variants(6)[1:]] == ["6", "3", "1"] and len(arch_variants(2)) == 3
