"""Evaluation metrics: classification, NER, extractive QA, language modelling, MT / summarisation.

Everything here is plain Python + NumPy, written for reading rather than speed. Each metric
follows a named reference implementation exactly, so that numbers computed here can be put
next to numbers in papers:

==========================  ==========================================================
function                    agrees with
==========================  ==========================================================
precision_recall_f1 & co.   ``sklearn.metrics.precision_recall_fscore_support``
confusion_matrix            ``sklearn.metrics.confusion_matrix``
bio_spans / entity_f1       ``seqeval`` default mode (= the CoNLL ``conlleval`` script)
exact_match / qa_f1         the official SQuAD v1.1 ``evaluate-v1.1.py``
perplexity_from_logits      ``exp(torch.nn.functional.cross_entropy(...))``
corpus_bleu / sentence_bleu ``sacrebleu.corpus_bleu`` / ``sacrebleu.sentence_bleu``
rouge_n / rouge_l           Google's ``rouge-score`` package (no stemming)
==========================  ==========================================================

Where a reference library departs from the textbook definition, the docstring says so.
Only NumPy is needed; ``plot_confusion_matrix`` imports matplotlib when it is called.
"""
import math
import re
import string
from collections import Counter

import numpy as np

__all__ = [
    # classification
    "accuracy", "precision_recall_f1", "precision", "recall", "f1_score",
    "confusion_matrix", "plot_confusion_matrix",
    # sequence labelling (NER)
    "bio_spans", "entity_f1",
    # extractive QA
    "normalize_answer", "exact_match", "qa_f1", "squad_scores",
    # language modelling
    "perplexity", "mean_nll_from_logits", "perplexity_from_logits",
    # translation / summarisation
    "tokenize_13a", "corpus_bleu", "sentence_bleu",
    "rouge_tokenize", "rouge_n", "rouge_l", "rouge_scores",
]


# ---------------------------------------------------------------------------------------------
# Input checking shared by the classification metrics
# ---------------------------------------------------------------------------------------------

def _is_cupy(a):
    return type(a).__module__.split(".")[0] == "cupy"


def _to_host(a):
    """NumPy version of a NumPy or CuPy array (or of anything np.asarray accepts)."""
    if _is_cupy(a):
        return a.get()
    return np.asarray(a)


def _as_label_list(y, name):
    """A 1-D sequence of labels as a Python list (NumPy scalars become Python scalars)."""
    if isinstance(y, str):
        raise TypeError(f"{name} must be a sequence of labels, not a single string {y!r}")
    if isinstance(y, np.ndarray) or _is_cupy(y):
        arr = _to_host(y)
        if arr.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got an array of shape {arr.shape}")
        return arr.tolist()
    labels = list(y)            # a plain list keeps mixed or string labels exactly as given
    for lab in labels:
        if isinstance(lab, (list, tuple, np.ndarray)):
            raise ValueError(f"{name} must be 1-D (one label per example), "
                             f"found the element {lab!r}")
    return [lab.item() if isinstance(lab, np.generic) else lab for lab in labels]


def _check_pair(y_true, y_pred):
    """Validate a (y_true, y_pred) pair and return them as two lists of equal, non-zero length."""
    y_true = _as_label_list(y_true, "y_true")
    y_pred = _as_label_list(y_pred, "y_pred")
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true and y_pred have different lengths: "
                         f"{len(y_true)} vs {len(y_pred)}")
    if len(y_true) == 0:
        raise ValueError("y_true and y_pred are empty: a metric over zero examples is undefined")
    return y_true, y_pred


def _divide(num, den, zero_division):
    """num / den elementwise (float64), with ``zero_division`` wherever den == 0."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, float(zero_division), dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


# ---------------------------------------------------------------------------------------------
# Classification
# ---------------------------------------------------------------------------------------------

def accuracy(y_true, y_pred):
    """Fraction of examples whose predicted label equals the true label.

        accuracy = (1/N) * sum_i [y_true_i == y_pred_i]

    Example: y_true = [0, 1, 1, 0], y_pred = [0, 1, 0, 0] -> 3 of 4 agree -> 0.75.

    Raises ValueError if the two inputs differ in length or are empty.
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    return sum(t == p for t, p in zip(y_true, y_pred)) / len(y_true)


def confusion_matrix(y_true, y_pred, labels=None):
    """Count matrix C with C[i, j] = number of examples with true label i predicted as label j.

    Rows are true labels, columns predicted labels, both in the order of ``labels``
    (default: the sorted union of the labels seen in y_true and y_pred). As in scikit-learn,
    examples whose true or predicted label is not in ``labels`` are left out.

    Example: y_true = [1, 0, 1, 1], y_pred = [1, 0, 0, 1], labels [0, 1]:

                 pred 0  pred 1
        true 0 [[   1,      0  ],     one 0 predicted 0
        true 1  [   1,      2  ]]     one 1 missed, two 1s found

    Returns an int64 array of shape (K, K).
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    labels = _resolve_labels(y_true, y_pred, labels)
    index = {lab: k for k, lab in enumerate(labels)}
    cm = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        if t in index and p in index:
            cm[index[t], index[p]] += 1
    return cm


def _resolve_labels(y_true, y_pred, labels):
    if labels is None:
        return sorted(set(y_true) | set(y_pred))
    labels = _as_label_list(labels, "labels")
    if len(labels) == 0:
        raise ValueError("labels is empty; pass None to use every label in y_true and y_pred")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels contains duplicates: {labels}")
    return labels


_AVERAGES = ("binary", "macro", "micro", "weighted", None)


def precision_recall_f1(y_true, y_pred, average="binary", pos_label=1, labels=None,
                        zero_division=0.0):
    """Precision, recall and F1 (scikit-learn's ``precision_recall_fscore_support`` semantics).

    For one class c, counting over the examples:

        TP = #(true == c and pred == c)     FP = #(true != c and pred == c)
        FN = #(true == c and pred != c)

        precision = TP / (TP + FP)          recall = TP / (TP + FN)
        F1 = 2 * P * R / (P + R)  =  2 TP / (2 TP + FP + FN)

    F1 is computed from the counts (the second form), as scikit-learn does: when precision
    is undefined because nothing was predicted as c but c does occur, F1 is 0 whatever
    ``zero_division`` says. A ratio whose denominator is 0 is set to ``zero_division``
    (0.0, 1.0 or nan).

    average:
      "binary"   -- the scores of class ``pos_label`` only; the data may hold at most two
                    distinct labels (otherwise ValueError: pick "macro" or "micro").
      "macro"    -- compute the scores per class, then take their unweighted mean. Note that
                    macro-F1 is the mean of the per-class F1s, *not* the harmonic mean of
                    macro-P and macro-R (some papers use the latter; the two differ).
      "micro"    -- sum TP, FP, FN over the classes first. With every class included,
                    micro P = micro R = micro F1 = accuracy.
      "weighted" -- per-class scores averaged with weights = support (# true examples).
      None       -- per-class arrays, in the order of ``labels``.

    labels: the classes to report/average over (default: sorted union of y_true and y_pred);
    ignored for average="binary". With zero_division=nan the averages skip the nan entries.

    Example (binary, pos_label=1): y_true = [1, 1, 0, 0, 1], y_pred = [1, 0, 1, 0, 1]
        TP = 2 (positions 0, 4), FP = 1 (position 2), FN = 1 (position 1)
        precision = 2/3, recall = 2/3, F1 = 4 / (4 + 1 + 1) = 2/3

    Returns (precision, recall, f1): floats, or float64 arrays when average is None.
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    if average not in _AVERAGES:
        raise ValueError(f"average must be one of {_AVERAGES}, got {average!r}")
    zd = float(zero_division)
    if not (zd in (0.0, 1.0) or math.isnan(zd)):
        raise ValueError(f"zero_division must be 0.0, 1.0 or nan, got {zero_division!r}")

    if average == "binary":
        present = sorted(set(y_true) | set(y_pred), key=repr)
        if len(present) > 2:
            raise ValueError(f"average='binary' needs at most two distinct labels, but the data "
                             f"has {len(present)}: {present}; use average='macro', 'micro', "
                             f"'weighted' or None")
        if pos_label not in present and len(present) == 2:
            raise ValueError(f"pos_label={pos_label!r} is not one of the labels {present}")
        labels = [pos_label]
    else:
        labels = _resolve_labels(y_true, y_pred, labels)

    # Per-class counts: tp, number predicted as the class, number truly of the class.
    tp = np.array([sum(t == c and p == c for t, p in zip(y_true, y_pred)) for c in labels])
    n_pred = np.array([sum(p == c for p in y_pred) for c in labels])
    n_true = np.array([sum(t == c for t in y_true) for c in labels])

    if average == "micro":
        tp, n_pred, n_true = (c.sum(keepdims=True) for c in (tp, n_pred, n_true))

    prec = _divide(tp, n_pred, zd)
    rec = _divide(tp, n_true, zd)
    f1 = _divide(2 * tp, n_true + n_pred, zd)

    if average is None:
        return prec, rec, f1
    if average in ("binary", "micro"):
        return float(prec[0]), float(rec[0]), float(f1[0])
    weights = n_true.astype(np.float64) if average == "weighted" else None
    return tuple(_nan_average(v, weights) for v in (prec, rec, f1))


def _nan_average(values, weights=None):
    """Mean of ``values`` ignoring nans (weighted when ``weights`` is given and not all zero)."""
    keep = ~np.isnan(values)
    if not keep.any():
        return float("nan")
    values = values[keep]
    if weights is not None:
        weights = weights[keep]
        if weights.sum() > 0:
            return float(np.sum(values * weights) / np.sum(weights))
    return float(np.mean(values))


def precision(y_true, y_pred, average="binary", pos_label=1, labels=None, zero_division=0.0):
    """Precision TP / (TP + FP); see ``precision_recall_f1`` for the arguments.

    Example: y_true = [1, 0, 0], y_pred = [1, 1, 0] -> TP = 1, FP = 1 -> 0.5.
    """
    return precision_recall_f1(y_true, y_pred, average, pos_label, labels, zero_division)[0]


def recall(y_true, y_pred, average="binary", pos_label=1, labels=None, zero_division=0.0):
    """Recall TP / (TP + FN); see ``precision_recall_f1`` for the arguments.

    Example: y_true = [1, 1, 0], y_pred = [1, 0, 0] -> TP = 1, FN = 1 -> 0.5.
    """
    return precision_recall_f1(y_true, y_pred, average, pos_label, labels, zero_division)[1]


def f1_score(y_true, y_pred, average="binary", pos_label=1, labels=None, zero_division=0.0):
    """F1 = 2 TP / (2 TP + FP + FN); see ``precision_recall_f1`` for the arguments.

    Example: y_true = [1, 1, 0], y_pred = [1, 0, 1] -> TP = 1, FP = 1, FN = 1 -> 2/4 = 0.5.
    """
    return precision_recall_f1(y_true, y_pred, average, pos_label, labels, zero_division)[2]


def plot_confusion_matrix(cm, labels=None, ax=None, normalize=False, cmap="Blues", title=None):
    """Draw a confusion matrix as an annotated heat map and return the matplotlib Axes.

    cm: (K, K) counts, rows = true label, columns = predicted label (``confusion_matrix``).
    labels: K tick labels (default 0..K-1). ax: an Axes to draw on (default: a new figure).
    normalize: divide each row by its sum, so cell (i, j) reads "fraction of the true class i
    predicted as j" and the diagonal is the per-class recall; all-zero rows stay 0.

    Example: cm = [[1, 0], [1, 2]] with normalize=True shows [[1.00, 0.00], [0.33, 0.67]].

    matplotlib is imported here, not at module import, so the rest of minilm does not need it.
    """
    cm = np.asarray(cm, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"cm must be a square 2-D matrix, got shape {cm.shape}")
    k = cm.shape[0]
    if labels is None:
        labels = [str(i) for i in range(k)]
    labels = [str(lab) for lab in labels]
    if len(labels) != k:
        raise ValueError(f"got {len(labels)} labels for a {k}x{k} confusion matrix")
    if normalize:
        row_sums = cm.sum(axis=1, keepdims=True)
        cm = _divide(cm, row_sums, 0.0)

    if ax is None:
        import matplotlib.pyplot as plt
        _, ax = plt.subplots(figsize=(1.0 + 0.6 * k, 0.8 + 0.6 * k))

    image = ax.imshow(cm, interpolation="nearest", cmap=cmap,
                      vmin=0.0, vmax=1.0 if normalize else max(cm.max(), 1.0))
    ax.figure.colorbar(image, ax=ax)
    ax.set_xticks(range(k))
    ax.set_xticklabels(labels, rotation=45, ha="right")
    ax.set_yticks(range(k))
    ax.set_yticklabels(labels)
    ax.set_xlabel("Predicted label")
    ax.set_ylabel("True label")
    if title is not None:
        ax.set_title(title)

    threshold = (1.0 if normalize else cm.max()) / 2.0
    for i in range(k):
        for j in range(k):
            text = f"{cm[i, j]:.2f}" if normalize else f"{int(round(cm[i, j]))}"
            ax.text(j, i, text, ha="center", va="center",
                    color="white" if cm[i, j] > threshold else "black")
    return ax


# ---------------------------------------------------------------------------------------------
# Sequence labelling: entity-level scores over BIO tags
# ---------------------------------------------------------------------------------------------

def _split_tag(tag, position):
    """'B-PER' -> ('B', 'PER'); 'O' -> ('O', None). Entity types may themselves contain '-'."""
    if tag == "O":
        return "O", None
    if not isinstance(tag, str) or len(tag) < 3 or tag[1] != "-" or tag[0] not in "BI":
        raise ValueError(f"tag {tag!r} at position {position} is not a BIO tag "
                         f"('O', 'B-<type>' or 'I-<type>')")
    return tag[0], tag[2:]


def bio_spans(tags):
    """The entities in a BIO-tagged sequence, as a set of (type, start, end) with end exclusive.

    Chunking follows the CoNLL ``conlleval`` script (and seqeval's default mode):
      * ``B-X`` always starts a new entity of type X;
      * ``I-X`` continues the current entity if that entity has type X, and otherwise *starts*
        a new one (so ``O I-PER`` and ``B-LOC I-PER`` are read leniently, not rejected);
      * ``O`` ends any open entity.

    Example: ['B-PER', 'I-PER', 'O', 'I-LOC', 'I-ORG']
        -> {('PER', 0, 2), ('LOC', 3, 4), ('ORG', 4, 5)}

    ``end`` is exclusive, so ``tags[start:end]`` are the entity's tags (seqeval's
    ``get_entities`` reports an inclusive end instead: ('PER', 0, 1) for the same entity).
    """
    tags = list(tags)
    spans = set()
    current_type, start = None, None
    for i, tag in enumerate(tags):
        prefix, typ = _split_tag(tag, i)
        continues = prefix == "I" and typ == current_type
        if current_type is not None and not continues:      # close the open entity
            spans.add((current_type, start, i))
            current_type = None
        if prefix != "O" and not continues:                  # open a new one
            current_type, start = typ, i
    if current_type is not None:
        spans.add((current_type, start, len(tags)))
    return spans


def entity_f1(true_tag_seqs, pred_tag_seqs):
    """Entity-level precision, recall and F1, micro-averaged over all entities of all sentences.

    An entity counts as correct only if its type, start and end all match exactly:

        precision = #correct / #predicted entities     recall = #correct / #true entities
        F1 = 2 P R / (P + R)                            (0.0 when a denominator is 0)

    This is seqeval's default mode (``seqeval.metrics.f1_score`` etc.), i.e. the CoNLL-2000
    ``conlleval`` numbers; spans come from ``bio_spans``.

    Example: true [['B-PER', 'I-PER', 'O', 'B-LOC']], pred [['B-PER', 'I-PER', 'O', 'B-ORG']]
        true {PER 0-2, LOC 3-4}, predicted {PER 0-2, ORG 3-4}: 1 correct
        -> precision 1/2, recall 1/2, f1 1/2

    Returns dict(precision=..., recall=..., f1=...). Raises ValueError when the number of
    sentences, or the length of a sentence, differs between truth and prediction.
    """
    true_tag_seqs, pred_tag_seqs = list(true_tag_seqs), list(pred_tag_seqs)
    if len(true_tag_seqs) != len(pred_tag_seqs):
        raise ValueError(f"got {len(true_tag_seqs)} true sentences "
                         f"but {len(pred_tag_seqs)} predicted")
    if len(true_tag_seqs) == 0:
        raise ValueError("no sentences given")
    n_true = n_pred = n_correct = 0
    for k, (t, p) in enumerate(zip(true_tag_seqs, pred_tag_seqs)):
        if isinstance(t, str) or isinstance(p, str):
            raise TypeError("entity_f1 takes a list of tag sequences "
                            "(one list of tags per sentence)")
        if len(t) != len(p):
            raise ValueError(f"sentence {k}: {len(t)} true tags but {len(p)} predicted tags")
        true_spans, pred_spans = bio_spans(t), bio_spans(p)
        n_true += len(true_spans)
        n_pred += len(pred_spans)
        n_correct += len(true_spans & pred_spans)
    prec = n_correct / n_pred if n_pred else 0.0
    rec = n_correct / n_true if n_true else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0
    return {"precision": prec, "recall": rec, "f1": f1}


# ---------------------------------------------------------------------------------------------
# Extractive QA: the official SQuAD v1.1 evaluation
# ---------------------------------------------------------------------------------------------

_PUNCTUATION = set(string.punctuation)


def normalize_answer(s):
    """SQuAD answer normalisation: lowercase, drop ASCII punctuation, drop the articles
    a / an / the (whole words), collapse whitespace -- in that order, as in evaluate-v1.1.py.

    Example: "The  Eiffel-Tower!" -> "eiffeltower" (the hyphen is punctuation and is removed,
    not replaced by a space), "A cat, an owl" -> "cat owl".
    """
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact_match(pred, truth):
    """1.0 if the normalised strings are identical, else 0.0.

    Example: exact_match("the Beatles.", "Beatles") -> 1.0.
    """
    return float(normalize_answer(pred) == normalize_answer(truth))


def qa_f1(pred, truth):
    """Token-level F1 between the normalised answers (bag of tokens, counts clipped).

        common = |tokens(pred) ∩ tokens(truth)|  (multiset intersection)
        P = common / len(pred tokens), R = common / len(truth tokens), F1 = 2PR / (P + R)

    Example: pred "the big red car", truth "a red car" -> tokens [big, red, car] vs [red, car]:
    common 2, P = 2/3, R = 1, F1 = 0.8.

    As in SQuAD v1.1, F1 is 0 whenever nothing is in common -- including when both answers
    normalise to empty (the v2.0 script scores that case 1; v1.1 has no unanswerable questions).
    """
    pred_tokens = normalize_answer(pred).split()
    truth_tokens = normalize_answer(truth).split()
    common = Counter(pred_tokens) & Counter(truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    p = num_same / len(pred_tokens)
    r = num_same / len(truth_tokens)
    return 2 * p * r / (p + r)


def squad_scores(preds, truths_list):
    """SQuAD v1.1 corpus scores: for each question take the best EM and the best F1 over its
    gold answers (separately), then average over questions and report percentages.

    preds: one predicted answer string per question.
    truths_list: per question, a list of acceptable gold answers (a bare string means one).

    Example: preds ["Denver Broncos", "1990"], truths [["Denver Broncos", "Broncos"], ["1991"]]
        q1: EM 1, F1 1; q2: EM 0, F1 0 -> {"exact_match": 50.0, "f1": 50.0}

    Returns dict(exact_match=..., f1=...) on the 0-100 scale.
    """
    preds, truths_list = list(preds), list(truths_list)
    if len(preds) != len(truths_list):
        raise ValueError(f"got {len(preds)} predictions "
                         f"but {len(truths_list)} sets of gold answers")
    if len(preds) == 0:
        raise ValueError("no predictions given")
    em_total = f1_total = 0.0
    for k, (pred, truths) in enumerate(zip(preds, truths_list)):
        if isinstance(truths, str):
            truths = [truths]
        truths = list(truths)
        if not truths:
            raise ValueError(f"question {k} has no gold answers")
        em_total += max(exact_match(pred, t) for t in truths)
        f1_total += max(qa_f1(pred, t) for t in truths)
    return {"exact_match": 100.0 * em_total / len(preds), "f1": 100.0 * f1_total / len(preds)}


# ---------------------------------------------------------------------------------------------
# Language modelling: perplexity
# ---------------------------------------------------------------------------------------------

def perplexity(mean_nll):
    """Perplexity = exp(mean negative log-likelihood per token), with the NLL in nats.

    It is the size of a uniform distribution that would be as surprised as the model: a model
    that puts probability 1/4 on every correct token has mean NLL ln 4 and perplexity 4.
    (With the NLL in bits use 2 ** bits instead; the perplexity is the same number.)

    Example: perplexity(math.log(4)) -> 4.0; perplexity(0.0) -> 1.0 (a perfect model).
    Returns inf when exp overflows (mean_nll > ~709).
    """
    mean_nll = float(mean_nll)
    if math.isnan(mean_nll):
        raise ValueError("mean_nll is nan")
    if mean_nll < 0:
        raise ValueError(f"mean_nll must be >= 0, got {mean_nll} (a negative log-likelihood of "
                         f"discrete tokens cannot be negative: did you pass the log-likelihood?)")
    try:
        return math.exp(mean_nll)
    except OverflowError:
        return float("inf")


def mean_nll_from_logits(logits, targets, ignore_index=-100):
    """Mean cross-entropy (nats) of integer ``targets`` under softmax(``logits``).

    logits: (..., V) unnormalised scores; targets: (...) ints in [0, V), or ``ignore_index``
    for positions to skip (padding). For one position with target t:

        nll = -log softmax(z)_t = logsumexp(z) - z_t,
        logsumexp(z) = m + log(sum_j exp(z_j - m)),  m = max_j z_j

    Subtracting the max makes every exponent <= 0, so nothing overflows, and we never form
    softmax(z) and take its log (which gives log(0) = -inf for very unlikely tokens).
    The work is done in float64.

    Example: logits [[0, 0, 0, 0]], targets [2] -> logsumexp = log 4, nll = log 4 ~ 1.386.
    """
    logits = _to_host(logits)
    targets = _to_host(targets)
    if logits.ndim < 1 or logits.shape[-1] == 0:
        raise ValueError(f"logits must have a non-empty last (vocabulary) axis, "
                         f"got shape {logits.shape}")
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits shape {logits.shape} does not match targets shape "
                         f"{targets.shape}: "
                         f"expected logits of shape targets.shape + (vocab,)")
    if not np.issubdtype(targets.dtype, np.integer):
        raise TypeError(f"targets must be integers, got dtype {targets.dtype}")
    vocab = logits.shape[-1]
    keep = targets != ignore_index
    z = logits[keep].astype(np.float64)          # (N, V), N = number of scored positions
    t = targets[keep].astype(np.int64)           # (N,)
    if t.size == 0:
        raise ValueError("every target equals ignore_index: no tokens to score")
    if t.min() < 0 or t.max() >= vocab:
        raise ValueError(f"targets must lie in [0, {vocab}) "
                         f"(or equal ignore_index={ignore_index}); "
                         f"got values from {t.min()} to {t.max()}")
    m = z.max(axis=-1)
    logsumexp = m + np.log(np.sum(np.exp(z - m[:, None]), axis=-1))
    nll = logsumexp - z[np.arange(t.size), t]
    return float(nll.mean())


def perplexity_from_logits(logits, targets, ignore_index=-100):
    """exp(mean cross-entropy) over the positions whose target is not ``ignore_index``.

    Same conventions as ``mean_nll_from_logits`` (and as
    ``torch.nn.functional.cross_entropy(..., ignore_index=-100)``, mean reduction).

    Example: uniform logits over a vocabulary of 4 -> perplexity 4.0 for any targets.
    """
    return perplexity(mean_nll_from_logits(logits, targets, ignore_index))


# ---------------------------------------------------------------------------------------------
# BLEU (Papineni et al., 2002), with sacrebleu's conventions available
# ---------------------------------------------------------------------------------------------

_13A_RULES = [
    # (sacrebleu.tokenizers.tokenizer_re.TokenizerRegexp, i.e. mteval-v13a.pl)
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),  # split off most symbols
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),  # period/comma unless preceded by a digit
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),  # period/comma unless followed by a digit
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),       # dash after a digit
]


def tokenize_13a(line):
    """sacrebleu's default '13a' tokenizer (the WMT ``mteval-v13a.pl`` rules), returning a list.

    Example: 'He said "hi", then left.' -> ['He', 'said', '"', 'hi', '"', ',', 'then', 'left', '.']
    Numbers keep their inner period/comma: '3.5 million, 1,000' -> ['3.5', 'million', ',', '1,000'].
    No lowercasing.
    """
    line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = (line.replace("&quot;", '"').replace("&amp;", "&")
                .replace("&lt;", "<").replace("&gt;", ">"))
    line = f" {line} "
    for pattern, replacement in _13A_RULES:
        line = pattern.sub(replacement, line)
    return line.split()


def _ngrams(tokens, max_n):
    """Counter of all 1..max_n-grams (as tuples) of a token list."""
    counts = Counter()
    for n in range(1, max_n + 1):
        for i in range(len(tokens) - n + 1):
            counts[tuple(tokens[i:i + n])] += 1
    return counts


def _closest_ref_len(hyp_len, ref_lens):
    """The reference length closest to the hypothesis length; ties go to the shorter one."""
    return min(ref_lens, key=lambda r: (abs(r - hyp_len), r))


def _is_token_list(x):
    return isinstance(x, (list, tuple)) and all(isinstance(tok, str) for tok in x)


def _prepare_bleu_inputs(hypotheses, references, sacrebleu_compatible):
    """Tokenise and regularise to: list of hyp token lists, list of lists of ref token lists."""
    if isinstance(hypotheses, str):
        raise TypeError("hypotheses must be a list of sentences; "
                        "for one sentence use sentence_bleu")
    hypotheses, references = list(hypotheses), list(references)
    if len(hypotheses) != len(references):
        raise ValueError(f"got {len(hypotheses)} hypotheses but {len(references)} references "
                         f"(pass one reference, or one list of references, per hypothesis)")
    if len(hypotheses) == 0:
        raise ValueError("no hypotheses given: BLEU of an empty corpus is undefined")

    if all(isinstance(h, str) for h in hypotheses):
        pretokenised = False
        tokenize = tokenize_13a if sacrebleu_compatible else str.split
    elif all(_is_token_list(h) for h in hypotheses):
        pretokenised = True
    else:
        raise TypeError("hypotheses must be all strings or all lists of token strings")

    hyp_toks, ref_toks = [], []
    for k, (hyp, refs) in enumerate(zip(hypotheses, references)):
        if pretokenised:
            # one reference = a list of tokens; several = a list of such lists
            refs = [refs] if _is_token_list(refs) else list(refs)
            if not all(_is_token_list(r) for r in refs):
                raise TypeError(f"reference {k}: with tokenised hypotheses, give a token list or "
                                f"a list of token lists")
            hyp_toks.append(list(hyp))
            ref_toks.append([list(r) for r in refs])
        else:
            refs = [refs] if isinstance(refs, str) else list(refs)
            if not all(isinstance(r, str) for r in refs):
                raise TypeError(f"reference {k}: give a string or a list of strings")
            hyp_toks.append(tokenize(hyp.rstrip()))
            ref_toks.append([tokenize(r.rstrip()) for r in refs])
        if not refs:
            raise ValueError(f"hypothesis {k} has no references")
    return hyp_toks, ref_toks


def _bleu_statistics(hyp_toks, ref_toks, max_n):
    """Corpus sufficient statistics: clipped matches and totals per order, hyp and ref lengths."""
    matches, totals = [0] * max_n, [0] * max_n
    hyp_len = ref_len = 0
    for hyp, refs in zip(hyp_toks, ref_toks):
        # A hypothesis n-gram may be credited at most as often as it occurs in any one reference.
        max_ref_counts = Counter()
        for ref in refs:
            for gram, count in _ngrams(ref, max_n).items():
                max_ref_counts[gram] = max(max_ref_counts[gram], count)
        for gram, count in _ngrams(hyp, max_n).items():
            n = len(gram)
            totals[n - 1] += count
            matches[n - 1] += min(count, max_ref_counts[gram])
        hyp_len += len(hyp)
        ref_len += _closest_ref_len(len(hyp), [len(r) for r in refs])
    return matches, totals, hyp_len, ref_len


_SMOOTHERS = ("none", "exp", "floor", "add-k")
_SMOOTH_DEFAULTS = {"none": None, "exp": None, "floor": 0.1, "add-k": 1}


def _bleu_from_statistics(matches, totals, hyp_len, ref_len, max_n, smooth, smooth_value,
                          effective_order):
    """BLEU (0-100) and its parts from the corpus statistics, following sacrebleu.compute_bleu."""
    matches, totals = list(matches), list(totals)
    if hyp_len < ref_len:
        bp = math.exp(1.0 - ref_len / hyp_len) if hyp_len > 0 else 0.0
    else:
        bp = 1.0
    precisions = [0.0] * max_n                 # as fractions in [0, 1]
    details = {"precisions": precisions, "bp": bp, "hyp_len": hyp_len, "ref_len": ref_len,
               "matches": matches, "totals": totals}
    if not any(matches):                       # nothing matched at all: BLEU is 0, no smoothing
        return 0.0, details

    order = max_n                              # how many orders enter the geometric mean
    exp_denominator = 1.0                      # the 'exp' smoother's running 2^k
    for n in range(1, max_n + 1):
        if smooth == "add-k" and n > 1:
            matches[n - 1] += smooth_value
            totals[n - 1] += smooth_value
        if totals[n - 1] == 0:                 # hypotheses too short to have any n-grams
            break
        if effective_order:
            order = n
        if matches[n - 1] == 0:
            if smooth == "exp":                # 1/2, 1/4, 1/8... of a match for each empty order
                exp_denominator *= 2
                precisions[n - 1] = 1.0 / (exp_denominator * totals[n - 1])
            elif smooth == "floor":
                precisions[n - 1] = smooth_value / totals[n - 1]
        else:
            precisions[n - 1] = matches[n - 1] / totals[n - 1]

    used = precisions[:order]
    if min(used) == 0.0:                       # log 0: the geometric mean is 0
        return 0.0, details
    score = 100.0 * bp * math.exp(sum(math.log(p) for p in used) / order)
    return score, details


def corpus_bleu(hypotheses, references, max_n=4, smooth=None, smooth_value=None,
                sacrebleu_compatible=True, effective_order=False, return_details=False):
    """Corpus-level BLEU on the 0-100 scale (Papineni et al., 2002).

    For each order n = 1..N, pool clipped n-gram matches over the whole corpus:

        p_n = sum_sentences sum_g min(count_hyp(g), max_ref count_ref(g))
              / sum_sentences (number of n-grams in the hypothesis)

        BP  = 1 if c > r else exp(1 - r / c)     c = total hypothesis length,
                                                 r = sum of the per-sentence reference length
                                                     closest to the hypothesis length
                                                     (ties -> the shorter reference)
        BLEU = 100 * BP * exp( (1/N) * sum_n log p_n )

    Worked example (one sentence, N = 4, whitespace tokens):
        hyp "the cat sat on a mat", ref "the cat sat on the mat"
        p1 = 5/6 (every word but 'a' is in the reference)
        p2 = 3/5 (the cat, cat sat, sat on), p3 = 2/4, p4 = 1/3, BP = 1 (6 vs 6)
        BLEU = 100 * (5/6 * 3/5 * 2/4 * 1/3) ** (1/4) = 53.728...

    hypotheses: list of strings, or list of token lists (then used as is, in both modes).
    references: one entry per hypothesis: a string, or a list of strings (several references);
        with token-list hypotheses, a token list or a list of token lists. (sacrebleu takes
        reference *streams* instead: ``sacrebleu.corpus_bleu(hyps, [refs])`` here is
        ``corpus_bleu(hyps, refs)``; for several streams pass ``list(zip(*streams))``.)
    smooth: None (the mode's default), "none", "exp", "floor" or "add-k" (sacrebleu's
        methods; smooth_value defaults to 0.1 for floor and 1 for add-k). They only matter
        when some order has zero matches.
    sacrebleu_compatible (default True): strings are tokenised with the '13a' tokenizer and
        smooth defaults to "exp", so the score equals ``sacrebleu.corpus_bleu(hyps, [refs]).score``
        at sacrebleu's defaults. False: whitespace tokenisation and smooth defaults to "none",
        the textbook BLEU (any order with zero matches -> BLEU 0).
    effective_order: average only over the orders for which the hypotheses have any n-grams
        at all (sacrebleu's ``use_effective_order``; note that despite the name, an order with
        n-grams but zero *matches* still counts and is smoothed, not skipped).

    Conventions shared with sacrebleu in both modes: if no n-gram of any order matches the
    score is 0.0 (no smoothing applies); an empty hypothesis scores 0.0.

    Returns the score, or (score, details) with return_details=True, details holding the
    precisions (fractions), bp, hyp_len, ref_len, matches, totals.
    """
    if max_n < 1:
        raise ValueError(f"max_n must be >= 1, got {max_n}")
    if smooth is None:
        smooth = "exp" if sacrebleu_compatible else "none"
    if smooth not in _SMOOTHERS:
        raise ValueError(f"smooth must be one of {_SMOOTHERS} or None, got {smooth!r}")
    if smooth_value is None:
        smooth_value = _SMOOTH_DEFAULTS[smooth]
    hyp_toks, ref_toks = _prepare_bleu_inputs(hypotheses, references, sacrebleu_compatible)
    stats = _bleu_statistics(hyp_toks, ref_toks, max_n)
    score, details = _bleu_from_statistics(*stats, max_n, smooth, smooth_value, effective_order)
    return (score, details) if return_details else score


def sentence_bleu(hypothesis, references, max_n=4, smooth=None, smooth_value=None,
                  sacrebleu_compatible=True, effective_order=True, return_details=False):
    """BLEU (0-100) of one hypothesis against one reference (string) or several (list).

    ``corpus_bleu`` on a one-sentence corpus, but with ``effective_order=True`` by default as in
    ``sacrebleu.sentence_bleu``: a 2-word hypothesis has no 3- or 4-grams, so only p1 and p2
    are averaged instead of the score collapsing to 0.

    Example: sentence_bleu("cat the", "the cat") -> p1 = 2/2, p2 = 0/1 smoothed ('exp') to
    1/(2*1) = 1/2, effective order 2 -> 100 * sqrt(1 * 1/2) = 70.71...
    Sentence-level BLEU is noisy: report corpus BLEU for systems.
    """
    if isinstance(hypothesis, str):
        hyps = [hypothesis]
    elif _is_token_list(hypothesis):
        hyps = [list(hypothesis)]
    else:
        raise TypeError("hypothesis must be a string or a list of token strings")
    return corpus_bleu(hyps, [references], max_n=max_n, smooth=smooth, smooth_value=smooth_value,
                       sacrebleu_compatible=sacrebleu_compatible, effective_order=effective_order,
                       return_details=return_details)


# ---------------------------------------------------------------------------------------------
# ROUGE (Lin, 2004), as computed by Google's rouge-score package
# ---------------------------------------------------------------------------------------------

def rouge_tokenize(text):
    """rouge-score's default tokenizer: lowercase, every run of characters outside [a-z0-9]
    becomes a space, split. Non-ASCII letters are therefore *separators*: 'café' -> ['caf'].

    Example: "The cat's 2 hats!" -> ['the', 'cat', 's', '2', 'hats'].
    """
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()


def _rouge_tokens(x, name):
    if isinstance(x, str):
        return rouge_tokenize(x)
    if _is_token_list(x):
        return list(x)                          # already tokenised: used as is
    raise TypeError(f"{name} must be a string or a list of token strings")


def _prf(overlap, n_hyp, n_ref):
    p = overlap / n_hyp if n_hyp else 0.0
    r = overlap / n_ref if n_ref else 0.0
    f = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return {"precision": p, "recall": r, "f1": f}


def rouge_n(hyp, ref, n=1):
    """ROUGE-N: clipped n-gram overlap between a hypothesis and a reference.

        overlap = sum_g min(count_hyp(g), count_ref(g))
        precision = overlap / #hyp n-grams, recall = overlap / #ref n-grams, F1 = 2PR/(P+R)

    (0 where a denominator is 0.) ROUGE as defined by Lin is the recall; summarisation papers
    now usually report the F1, which is what ``rouge_scores`` averages.

    Example (n=1): hyp "the cat was found under the bed", ref "the cat was under the bed"
        overlap: the x2, cat, was, under, bed = 6; P = 6/7, R = 6/6, F1 = 12/13 = 0.923...

    Strings go through ``rouge_tokenize``; token lists are used as given.
    Returns dict(precision, recall, f1).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    h = _rouge_tokens(hyp, "hyp")
    r = _rouge_tokens(ref, "ref")
    h_counts = Counter(tuple(h[i:i + n]) for i in range(len(h) - n + 1))
    r_counts = Counter(tuple(r[i:i + n]) for i in range(len(r) - n + 1))
    overlap = sum((h_counts & r_counts).values())
    return _prf(overlap, sum(h_counts.values()), sum(r_counts.values()))


def _lcs_length(a, b):
    """Length of the longest common subsequence, by the O(len(a) * len(b)) dynamic programme."""
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            if a[i - 1] == b[j - 1]:
                table[i][j] = table[i - 1][j - 1] + 1
            else:
                table[i][j] = max(table[i - 1][j], table[i][j - 1])
    return table[-1][-1]


def rouge_l(hyp, ref):
    """ROUGE-L: longest common subsequence (in order, gaps allowed) of hypothesis and reference.

        precision = LCS / len(hyp), recall = LCS / len(ref), F1 = 2PR / (P + R)

    F1 uses beta = 1, as rouge-score does; Lin's paper writes a general F_beta (with beta
    chosen large, i.e. nearly recall), so ROUGE-L numbers depend on this choice.

    Example: hyp "police kill the gunman", ref "police killed the gunman"
        LCS = police, the, gunman = 3; P = 3/4, R = 3/4, F1 = 0.75.

    Returns dict(precision, recall, f1); all 0 if either side has no tokens.
    """
    h = _rouge_tokens(hyp, "hyp")
    r = _rouge_tokens(ref, "ref")
    if not h or not r:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    return _prf(_lcs_length(h, r), len(h), len(r))


def rouge_scores(hyps, refs):
    """Mean ROUGE-1, ROUGE-2 and ROUGE-L F1 over hypothesis/reference pairs (0-1 scale).

    Example: hyps ["the cat sat"], refs ["the cat sat down"]
        R1: P 3/3, R 3/4 -> 6/7; R2: P 2/2, R 2/3 -> 0.8; RL: LCS 3 -> 6/7.

    Returns dict(rouge1=..., rouge2=..., rougeL=...).
    """
    if isinstance(hyps, str) or isinstance(refs, str):
        raise TypeError("rouge_scores takes lists of hypotheses and references; "
                        "for one pair use rouge_n / rouge_l")
    hyps, refs = list(hyps), list(refs)
    if len(hyps) != len(refs):
        raise ValueError(f"got {len(hyps)} hypotheses but {len(refs)} references")
    if len(hyps) == 0:
        raise ValueError("no hypotheses given")
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for h, r in zip(hyps, refs):
        totals["rouge1"] += rouge_n(h, r, 1)["f1"]
        totals["rouge2"] += rouge_n(h, r, 2)["f1"]
        totals["rougeL"] += rouge_l(h, r)["f1"]
    return {k: v / len(hyps) for k, v in totals.items()}
