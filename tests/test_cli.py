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
