"""Shared pieces for the trustworthy-model chapter (interpret, privacy, federated, bias):
a word-level tokenizer built from a handful of texts, the sentiment set as arrays, a tiny
BERT classifier, and a plain train / evaluate loop.

    tok, train, test = sentiment_arrays()               # dicts of NumPy arrays
    model = tiny_bert_classifier(tok.vocab_size)        # BertForSequenceClassification, ~60k params
    train_classifier(model, train, epochs=8)
    accuracy_of(model, test)                            # about 0.8 on the sentiment test split

Why a word-level vocabulary instead of MiniLM's 30522 WordPieces: DP-SGD keeps a per-example
gradient for every parameter, and an embedding table's is dense, (B, V, C). With V = 30522 that
is hundreds of MB per batch; with the ~1000 words of the sentiment set it is a few MB.
A *batch* everywhere in these modules is a dict of NumPy arrays, `input_ids`,
`attention_mask` (1 = real token) and `labels`, which any minilm classifier takes as
`model(**batch)`.
"""
import collections

import numpy as np

from ...backend import asarray, host_rng, resolve_dtype, to_numpy
from ...layers import Linear, Module
from ...ops.losses import cross_entropy_backward, cross_entropy_forward
from ...models.output import ModelOutput
from ...ops import tanh_backward, tanh_forward

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def word_tokenizer(texts, min_count=1, extra_words=()):
    """A BertTokenizer whose vocabulary is the 5 special tokens plus every lower-cased word
    (BERT's basic tokenisation: punctuation split off) seen at least `min_count` times in
    `texts`, most frequent first. Unseen words become [UNK]."""
    from ...tokenizers import BertTokenizer
    from ...tokenizers.bert import BasicTokenizer
    basic = BasicTokenizer(do_lower_case=True)
    counts = collections.Counter(w for t in texts for w in basic.tokenize(t))
    words = [w for w, c in sorted(counts.items(), key=lambda wc: (-wc[1], wc[0])) if c >= min_count]
    vocab = list(SPECIAL_TOKENS)
    for w in list(words) + [w.lower() for w in extra_words]:
        if w not in vocab:
            vocab.append(w)
    return BertTokenizer(vocab)


def encode(tok, texts, max_length=48):
    """{"input_ids", "attention_mask"} int64 arrays (N, T), padded to the longest text."""
    enc = tok(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="np")
    return {"input_ids": np.asarray(enc["input_ids"], dtype=np.int64),
            "attention_mask": np.asarray(enc["attention_mask"], dtype=np.int64)}


def sentiment_arrays(tok=None, max_length=48):
    """(tokenizer, train, test) for minilm's bundled sentiment set; train / test are dicts with
    input_ids (N, T), attention_mask (N, T), labels (N,) (0 negative, 1 positive) and texts."""
    from ...data.datasets import load_dataset
    train_rows, test_rows = load_dataset("sentiment", "train"), load_dataset("sentiment", "test")
    if tok is None:
        tok = word_tokenizer([r["text"] for r in train_rows])
    out = []
    for rows in (train_rows, test_rows):
        d = encode(tok, [r["text"] for r in rows], max_length)
        d["labels"] = np.asarray([r["label"] for r in rows], dtype=np.int64)
        d["texts"] = [r["text"] for r in rows]
        out.append(d)
    return tok, out[0], out[1]


def tiny_bert_classifier(vocab_size, hidden_size=64, num_layers=1, num_heads=2, intermediate_size=128,
                         max_positions=64, num_labels=2, dropout=0.1, init_std=0.02, dtype="float32", seed=0):
    """A small BertForSequenceClassification (about 90k parameters at the defaults)."""
    from ...models import BertConfig, BertForSequenceClassification
    cfg = BertConfig(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
                     num_attention_heads=num_heads, intermediate_size=intermediate_size,
                     max_position_embeddings=max_positions, num_labels=num_labels,
                     hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                     layer_norm_eps=1e-12, initializer_range=init_std, seed=seed)
    return BertForSequenceClassification(cfg, dtype=dtype)


def take(data, idx):
    """The rows `idx` of a batch dict (arrays only), trimmed to the longest real sequence."""
    out = {k: v[idx] for k, v in data.items() if isinstance(v, np.ndarray)}
    if "attention_mask" in out and out["attention_mask"].size:
        T = int(out["attention_mask"].sum(axis=1).max())
        out["input_ids"], out["attention_mask"] = out["input_ids"][:, :T], out["attention_mask"][:, :T]
    return out


MODEL_INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids", "features", "labels")


def model_inputs(batch):
    """The keyword arguments a minilm classifier takes (drops texts and other fields)."""
    return {k: batch[k] for k in MODEL_INPUT_KEYS if k in batch}


def predict_logits(model, data, batch_size=256):
    """(N, K) NumPy logits in eval mode (the model's train/eval mode is restored after)."""
    was = model.training
    model.eval()
    try:
        n = len(data["labels"]) if "labels" in data else len(data["input_ids"])
        parts = []
        for i in range(0, n, batch_size):
            b = take(data, np.arange(i, min(n, i + batch_size)))
            b.pop("labels", None)
            parts.append(to_numpy(model(**model_inputs(b)).logits))
        for m in model.modules():                      # inference only: drop the caches
            if hasattr(m, "cache"):
                m.cache = None
        return np.concatenate(parts, axis=0)
    finally:
        model.train(was)


def accuracy_of(model, data, batch_size=256):
    """Fraction of rows whose argmax logit equals the label."""
    return float((predict_logits(model, data, batch_size).argmax(-1) == data["labels"]).mean())


def train_classifier(model, data, epochs=8, batch_size=32, lr=3e-3, weight_decay=0.01, seed=0,
                     params=None, eval_data=None, log=None):
    """Plain (non-private) mini-batch AdamW on shuffled batches; returns a history list of
    {"epoch", "loss", "test_acc"} dicts. `params`: the trainable subset (default: all).
    The loop is minilm.train.Trainer's."""
    from ...training.optim import AdamW
    from ...training.trainer import Trainer
    params = model.parameters() if params is None else list(params)
    opt = AdamW(params, lr=lr, weight_decay=weight_decay)
    rng = np.random.default_rng(seed)
    n = len(data["labels"])
    per_epoch = -(-n // batch_size)                     # ceil(n / batch_size)
    history, losses = [], []

    def shuffled_batches():                             # a new order every epoch
        for _ in range(epochs):
            order = rng.permutation(n)
            for i in range(0, n, batch_size):
                yield model_inputs(take(data, order[i:i + batch_size]))

    def end_of_step(trainer):
        losses.append(trainer.last_output.loss)
        if trainer.step % per_epoch == 0:
            row = {"epoch": trainer.step // per_epoch, "loss": float(np.mean(losses))}
            losses.clear()
            if eval_data is not None:
                row["test_acc"] = accuracy_of(model, eval_data)
            history.append(row)
            if log:
                log(row)

    Trainer(model, opt, shuffled_batches(), max_steps=epochs * per_epoch, progress=False,
            after_step=end_of_step).fit()
    model.eval()
    return history


class FeatureClassifier(Module):
    """A small MLP on fixed feature vectors (e.g. frozen MiniLM sentence embeddings):

        logits = tanh(x W_1 + b_1) W_2 + b_2                 (B, K)
        out = model(features=x, labels=y); model.backward()
    Built from minilm Linear layers, so it has per-example gradients for DP-SGD.
    hidden=0 makes it logistic regression (one Linear)."""

    def __init__(self, n_in, n_hidden=64, num_labels=2, dtype="float32", seed=0):
        rng = host_rng(seed)
        self.dtype = resolve_dtype(dtype)
        self.fc = Linear(n_in, n_hidden, dtype=dtype, rng=rng, std=n_in ** -0.5) if n_hidden else None
        width = n_hidden or n_in
        self.out = Linear(width, num_labels, dtype=dtype, rng=rng, std=width ** -0.5)
        self.cache = None
        self._loss_cache = None

    def named_children(self):
        return ([("fc", self.fc)] if self.fc is not None else []) + [("out", self.out)]

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, features, labels=None):
        x = asarray(features).astype(self.dtype, copy=False)          # (B, n_in)
        if self.fc is not None:
            x, self.cache = tanh_forward(self.fc.forward(x))           # (B, hidden)
        logits = self.out.forward(x)                                   # (B, K)
        loss = None
        if labels is not None:
            loss, self._loss_cache = cross_entropy_forward(logits, asarray(labels))
        return ModelOutput(loss=loss, logits=logits)

    def backward(self, dlogits=None):
        if dlogits is None:
            if self._loss_cache is None:
                raise RuntimeError("backward() needs a loss: call the model with labels first")
            dlogits = cross_entropy_backward(1.0, self._loss_cache)
        self._loss_cache = None
        dx = self.out.backward(dlogits)                                # undo: logits = h W_2 + b_2
        if self.fc is not None:
            self.fc.backward(tanh_backward(dx, self._check_cache()))  # undo: h = tanh(x W_1 + b_1)
        return None


def minilm_sentence_features(texts, batch_size=64, cache_path=None):
    """Frozen all-MiniLM-L6-v2 sentence embeddings (N, 384) float32 NumPy, optionally cached in
    an .npy file (raises ModuleNotFoundError naming the pip package when it is not installed)."""
    import os
    if cache_path and os.path.exists(cache_path):
        E = np.load(cache_path)
        if len(E) == len(texts):
            return E
    from ...pretrained import load_minilm, sentence_embeddings
    model, tok = load_minilm()
    parts = []
    for i in range(0, len(texts), batch_size):
        enc = tok(list(texts[i:i + batch_size]), padding=True, truncation=True, max_length=128,
                  return_tensors="np")
        parts.append(to_numpy(sentence_embeddings(model, enc)).astype(np.float32))
    E = np.concatenate(parts)
    if cache_path:
        os.makedirs(os.path.dirname(os.path.abspath(cache_path)), exist_ok=True)
        np.save(cache_path, E)
    return E
