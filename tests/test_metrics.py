"""Tests for minilm.metrics.

Two kinds of evidence:
  * reference fixtures (tests/fixtures/metrics/metric_fixtures.json), written by
    make_metric_fixtures.py from sacrebleu, rouge-score, scikit-learn, seqeval and torch;
  * small examples worked out by hand in the comments below.
"""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from minilm import metrics as M

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "metrics", "metric_fixtures.json")
with open(FIXTURES, encoding="utf-8") as _f:
    FX = json.load(_f)

BLEU_TOL = 1e-6     # absolute, on the 0-100 scale
TOL = 1e-9


def _ids(cases):
    return [c["name"] for c in cases]


# =============================================================================================
# Classification
# =============================================================================================

def test_confusion_matrix_2x2_by_hand():
    # y_true = 1 0 1 1 0 1
    # y_pred = 1 0 0 1 1 1
    # true 0 (positions 1, 4): predicted 0, 1        -> row [1, 1]
    # true 1 (positions 0, 2, 3, 5): predicted 1,0,1,1 -> row [1, 3]
    # So TN = 1, FP = 1, FN = 1, TP = 3.
    y_true = [1, 0, 1, 1, 0, 1]
    y_pred = [1, 0, 0, 1, 1, 1]
    cm = M.confusion_matrix(y_true, y_pred)
    assert cm.tolist() == [[1, 1], [1, 3]]
    assert cm.dtype == np.int64
    # accuracy = (TN + TP) / N = 4/6
    assert M.accuracy(y_true, y_pred) == pytest.approx(4 / 6, abs=TOL)
    # precision = TP/(TP+FP) = 3/4, recall = TP/(TP+FN) = 3/4, F1 = 2*3/(2*3+1+1) = 3/4
    p, r, f = M.precision_recall_f1(y_true, y_pred)
    assert (p, r, f) == pytest.approx((0.75, 0.75, 0.75), abs=TOL)
    # with class 0 as the positive class: TP=1, FP=1 (true 1 predicted 0), FN=1 -> 1/2 each
    assert M.precision_recall_f1(y_true, y_pred, pos_label=0) == pytest.approx((0.5, 0.5, 0.5))
    # explicit label order reverses the matrix; an unknown label gets an empty row/column
    assert M.confusion_matrix(y_true, y_pred, labels=[1, 0]).tolist() == [[3, 1], [1, 1]]
    assert M.confusion_matrix(y_true, y_pred, labels=[0, 1, 2]).tolist() == [[1, 1, 0], [1, 3, 0], [0, 0, 0]]
    # labels not listed are dropped, as in sklearn: only the (1,1) pairs remain
    assert M.confusion_matrix(y_true, y_pred, labels=[1]).tolist() == [[3]]


def test_multiclass_by_hand():
    # y_true = 0 1 2 0 1 2, y_pred = 0 2 1 0 0 1
    # class 0: TP 2, predicted 3 times, true 2 times -> P 2/3, R 1,   F1 = 4/(4+1) = 0.8
    # class 1: TP 0, predicted 2, true 2              -> P 0,   R 0,   F1 0
    # class 2: TP 0, predicted 1, true 2              -> P 0,   R 0,   F1 0
    y_true = [0, 1, 2, 0, 1, 2]
    y_pred = [0, 2, 1, 0, 0, 1]
    p, r, f = M.precision_recall_f1(y_true, y_pred, average=None)
    np.testing.assert_allclose(p, [2 / 3, 0, 0], atol=TOL)
    np.testing.assert_allclose(r, [1, 0, 0], atol=TOL)
    np.testing.assert_allclose(f, [0.8, 0, 0], atol=TOL)
    # macro: plain means -> P 2/9, R 1/3, F1 0.8/3
    assert M.precision_recall_f1(y_true, y_pred, average="macro") == pytest.approx((2 / 9, 1 / 3, 0.8 / 3))
    # micro: TP 2 of 6 predictions and 6 true labels -> 1/3 each = accuracy
    micro = M.precision_recall_f1(y_true, y_pred, average="micro")
    assert micro == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert micro[0] == pytest.approx(M.accuracy(y_true, y_pred))
    # weighted by support (2, 2, 2) = macro here
    assert M.precision_recall_f1(y_true, y_pred, average="weighted") == pytest.approx((2 / 9, 1 / 3, 0.8 / 3))
    # the conveniences
    assert M.precision(y_true, y_pred, average="macro") == pytest.approx(2 / 9)
    assert M.recall(y_true, y_pred, average="macro") == pytest.approx(1 / 3)
    assert M.f1_score(y_true, y_pred, average="macro") == pytest.approx(0.8 / 3)


def test_macro_f1_differs_from_harmonic_mean_of_macro_p_r():
    # class a: TP 1, pred 1, true 3 -> P 1, R 1/3, F1 0.5
    # class b: TP 1, pred 3, true 1 -> P 1/3, R 1, F1 0.5
    # macro P = macro R = 2/3, their harmonic mean 2/3, but macro-F1 = 0.5 (sklearn's definition)
    y_true = ["a", "a", "a", "b"]
    y_pred = ["a", "b", "b", "b"]
    p, r, f = M.precision_recall_f1(y_true, y_pred, average="macro")
    assert (p, r, f) == pytest.approx((2 / 3, 2 / 3, 0.5))


def test_zero_division():
    # Nothing predicted positive: precision = 0/0 -> zero_division; recall = 0/3 = 0; F1 = 0/(3+0) = 0
    y_true, y_pred = [1, 0, 1, 1], [0, 0, 0, 0]
    assert M.precision_recall_f1(y_true, y_pred) == (0.0, 0.0, 0.0)
    assert M.precision_recall_f1(y_true, y_pred, zero_division=1.0) == (1.0, 0.0, 0.0)
    # No positives at all, none predicted: P, R and F1 are all 0/0
    assert M.precision_recall_f1([0, 0], [0, 0], zero_division=1.0) == (1.0, 1.0, 1.0)
    assert M.precision_recall_f1([0, 0], [0, 0]) == (0.0, 0.0, 0.0)
    # zero_division=nan: nan entries are skipped by the averages
    # class 0: P 2/3, R 1, F1 0.8; class 1: P nan (never predicted), R 0, F1 0
    p, r, f = M.precision_recall_f1([0, 0, 1], [0, 0, 0], average=None, zero_division=float("nan"))
    assert math.isnan(p[1]) and p[0] == pytest.approx(2 / 3)
    assert M.precision_recall_f1([0, 0, 1], [0, 0, 0], average="macro",
                                 zero_division=float("nan")) == pytest.approx((2 / 3, 0.5, 0.4))


def test_classification_accepts_numpy_and_strings():
    t = np.array([1, 0, 1, 1, 0, 1])
    p = np.array([1, 0, 0, 1, 1, 1])
    assert M.confusion_matrix(t, p).tolist() == [[1, 1], [1, 3]]
    assert M.f1_score(t, p) == pytest.approx(0.75)
    s_true = ["spam", "ham", "spam"]
    s_pred = ["spam", "spam", "ham"]
    # spam: TP 1, pred 2, true 2 -> 1/2 each
    assert M.precision_recall_f1(s_true, s_pred, pos_label="spam") == pytest.approx((0.5, 0.5, 0.5))
    assert M.confusion_matrix(s_true, s_pred).tolist() == [[0, 1], [1, 1]]   # rows ham, spam


def test_classification_bad_input():
    with pytest.raises(ValueError, match="different lengths: 3 vs 2"):
        M.accuracy([1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="different lengths"):
        M.precision_recall_f1([1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="different lengths"):
        M.confusion_matrix([1], [1, 0])
    with pytest.raises(ValueError, match="empty"):
        M.accuracy([], [])
    with pytest.raises(ValueError, match="empty"):
        M.f1_score([], [])
    with pytest.raises(ValueError, match="empty"):
        M.confusion_matrix(np.array([]), np.array([]))
    with pytest.raises(ValueError, match="1-D"):
        M.accuracy(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="average='binary'"):
        M.f1_score([0, 1, 2], [0, 1, 2])                       # three classes, binary average
    with pytest.raises(ValueError, match="pos_label"):
        M.f1_score(["a", "b"], ["a", "b"])                     # pos_label=1 is not a label
    with pytest.raises(ValueError, match="average must be"):
        M.f1_score([0, 1], [0, 1], average="samples")
    with pytest.raises(ValueError, match="zero_division"):
        M.f1_score([0, 1], [0, 1], zero_division=0.5)
    with pytest.raises(ValueError, match="duplicates"):
        M.confusion_matrix([0, 1], [0, 1], labels=[0, 0])
    with pytest.raises(TypeError):
        M.accuracy("abc", "abd")


@pytest.mark.parametrize("case", FX["classification"], ids=_ids(FX["classification"]))
def test_classification_matches_sklearn(case):
    t, p = case["y_true"], case["y_pred"]
    assert M.accuracy(t, p) == pytest.approx(case["accuracy"], abs=TOL)
    assert M.confusion_matrix(t, p, labels=case["labels"]).tolist() == case["confusion_matrix"]
    for key, expected in case["prf"].items():
        avg, zd = key.split("|")
        avg = None if avg == "None" else avg
        got = M.precision_recall_f1(t, p, average=avg, pos_label=case["pos_label"],
                                    labels=case["labels"], zero_division=float(zd[3:]))
        for g, e in zip(got, expected):
            np.testing.assert_allclose(np.asarray(g, dtype=float), np.asarray(e, dtype=float),
                                       atol=TOL, rtol=0, err_msg=key)


def test_plot_confusion_matrix():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = M.confusion_matrix([1, 0, 1, 1], [1, 0, 0, 1])        # [[1, 0], [1, 2]]
    ax = M.plot_confusion_matrix(cm, labels=["neg", "pos"])
    assert isinstance(ax, matplotlib.axes.Axes)
    assert [t.get_text() for t in ax.texts] == ["1", "0", "1", "2"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["neg", "pos"]
    assert ax.get_xlabel() == "Predicted label" and ax.get_ylabel() == "True label"
    # normalised by row: [[1, 0], [1/3, 2/3]]; a row of zeros stays zeros
    fig, ax2 = plt.subplots()
    out = M.plot_confusion_matrix(np.array([[1, 0, 0], [1, 2, 0], [0, 0, 0]]), ax=ax2, normalize=True)
    assert out is ax2
    assert [t.get_text() for t in ax2.texts] == ["1.00", "0.00", "0.00", "0.33", "0.67", "0.00",
                                                 "0.00", "0.00", "0.00"]
    with pytest.raises(ValueError, match="square"):
        M.plot_confusion_matrix(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="labels"):
        M.plot_confusion_matrix(np.zeros((2, 2)), labels=["a"])
    plt.close("all")


def test_importing_metrics_does_not_import_matplotlib():
    code = "import sys, minilm.metrics; print('matplotlib' in sys.modules)"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True)
    assert out.stdout.strip() == "False"


# =============================================================================================
# NER
# =============================================================================================

def test_bio_spans_by_hand():
    # B-PER I-PER -> PER [0, 2); O; I-LOC after O starts LOC [3, 4); I-ORG after LOC starts ORG [4, 5)
    tags = ["B-PER", "I-PER", "O", "I-LOC", "I-ORG"]
    assert M.bio_spans(tags) == {("PER", 0, 2), ("LOC", 3, 4), ("ORG", 4, 5)}
    # B- right after B- of the same type: two entities
    assert M.bio_spans(["B-PER", "B-PER", "I-PER"]) == {("PER", 0, 1), ("PER", 1, 3)}
    # entity running to the end; types with hyphens
    assert M.bio_spans(["O", "B-GPE-CITY", "I-GPE-CITY"]) == {("GPE-CITY", 1, 3)}
    assert M.bio_spans([]) == set()
    assert M.bio_spans(["O", "O"]) == set()
    with pytest.raises(ValueError, match="not a BIO tag"):
        M.bio_spans(["B-PER", "X-PER"])
    with pytest.raises(ValueError, match="position 0"):
        M.bio_spans(["PER"])


def test_entity_f1_by_hand():
    # true: PER [0,2), LOC [3,4)          pred: PER [0,2), ORG [3,4)   -> 1 correct of 2 and 2
    true = [["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"]]
    assert M.entity_f1(true, pred) == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5})
    # Boundaries must match exactly: predicting PER [0,1) for PER [0,2) is simply wrong.
    # sentence 2 adds true LOC [0,1) predicted correctly -> correct 1, predicted 2, true 2
    true = [["B-PER", "I-PER"], ["B-LOC"]]
    pred = [["B-PER", "O"], ["B-LOC"]]
    assert M.entity_f1(true, pred) == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5})
    # nothing predicted, nothing true: all zero (zero division -> 0, as seqeval)
    assert M.entity_f1([["O"]], [["O"]]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    # entities do not run across sentence boundaries
    assert M.entity_f1([["B-PER"], ["I-PER"]], [["B-PER"], ["I-PER"]])["f1"] == 1.0


def test_entity_f1_bad_input():
    with pytest.raises(ValueError, match="2 true sentences but 1 predicted"):
        M.entity_f1([["O"], ["O"]], [["O"]])
    with pytest.raises(ValueError, match="sentence 0: 2 true tags but 1 predicted"):
        M.entity_f1([["O", "O"]], [["O"]])
    with pytest.raises(ValueError, match="no sentences"):
        M.entity_f1([], [])
    with pytest.raises(TypeError):
        M.entity_f1(["B-PER", "O"], ["B-PER", "O"])          # forgot the sentence level


@pytest.mark.parametrize("case", FX["seqeval"], ids=_ids(FX["seqeval"]))
def test_entity_f1_matches_seqeval(case):
    got = M.entity_f1(case["y_true"], case["y_pred"])
    for key in ("precision", "recall", "f1"):
        assert got[key] == pytest.approx(case[key], abs=TOL)
    # seqeval's get_entities reports inclusive ends; ours are exclusive
    for seqs, ents in ((case["y_true"], case["entities_true"]), (case["y_pred"], case["entities_pred"])):
        for tags, expected in zip(seqs, ents):
            assert sorted([t, s, e - 1] for t, s, e in M.bio_spans(tags)) == expected


# =============================================================================================
# QA (SQuAD v1.1)
# =============================================================================================

def test_normalize_answer():
    assert M.normalize_answer("The  Eiffel-Tower!") == "eiffeltower"   # hyphen removed, not spaced
    assert M.normalize_answer("A cat, an owl") == "cat owl"
    assert M.normalize_answer("  Theatre\tthe\nend ") == "theatre end"   # 'the' only as a word
    assert M.normalize_answer("the") == ""
    assert M.normalize_answer("“Quoted”") == "“quoted”"                  # only ASCII punctuation


def test_exact_match_and_f1_by_hand():
    assert M.exact_match("the Beatles.", "Beatles") == 1.0
    assert M.exact_match("Beatles", "The Rolling Stones") == 0.0
    # pred tokens [big, red, car], truth tokens [red, car]: common 2 -> P 2/3, R 1, F1 0.8
    assert M.qa_f1("the big red car", "a red car") == pytest.approx(0.8, abs=TOL)
    # repeated tokens are clipped: [paris, paris] vs [paris]: common 1 -> P 1/2, R 1, F1 2/3
    assert M.qa_f1("Paris Paris", "Paris") == pytest.approx(2 / 3, abs=TOL)
    assert M.qa_f1("London", "Paris") == 0.0
    # v1.1 quirk: two answers that normalise to "" are an exact match but score F1 0
    assert M.exact_match("the", "a") == 1.0
    assert M.qa_f1("the", "a") == 0.0
    assert M.qa_f1("", "Paris") == 0.0


def test_squad_scores_by_hand():
    preds = ["Denver Broncos", "1990", "the big red car"]
    truths = [["Denver Broncos", "Broncos"], ["1991"], ["a red car", "red car!", "car"]]
    # q1: EM 1, F1 1; q2: EM 0, F1 0; q3: EM 0, best F1 = 0.8 (vs "red car"; vs "car": 0.5)
    out = M.squad_scores(preds, truths)
    assert out["exact_match"] == pytest.approx(100 / 3, abs=TOL)
    assert out["f1"] == pytest.approx(100 * 1.8 / 3, abs=TOL)
    # best EM and best F1 may come from different gold answers
    out = M.squad_scores(["red car"], [["the red car", "red"]])
    assert out == pytest.approx({"exact_match": 100.0, "f1": 100.0})
    assert M.squad_scores(["x"], ["x"]) == {"exact_match": 100.0, "f1": 100.0}   # bare string gold
    with pytest.raises(ValueError, match="2 predictions but 1"):
        M.squad_scores(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="no predictions"):
        M.squad_scores([], [])
    with pytest.raises(ValueError, match="no gold answers"):
        M.squad_scores(["a"], [[]])


# =============================================================================================
# Perplexity
# =============================================================================================

def test_perplexity_by_hand():
    assert M.perplexity(0.0) == 1.0
    assert M.perplexity(math.log(4)) == pytest.approx(4.0)
    assert M.perplexity(1000.0) == float("inf")
    with pytest.raises(ValueError, match="log-likelihood"):
        M.perplexity(-0.5)
    with pytest.raises(ValueError, match="nan"):
        M.perplexity(float("nan"))


def test_perplexity_from_logits_by_hand():
    # logits log([1, 2, 3, 4]) -> softmax [0.1, 0.2, 0.3, 0.4]
    # targets 3 and 0: nll ln(1/0.4) = ln 2.5 and ln(1/0.1) = ln 10; mean = ln(sqrt(25)) = ln 5
    z = np.log(np.array([[1.0, 2, 3, 4], [1, 2, 3, 4]]))
    assert M.mean_nll_from_logits(z, np.array([3, 0])) == pytest.approx(math.log(5), abs=TOL)
    assert M.perplexity_from_logits(z, np.array([3, 0])) == pytest.approx(5.0, abs=1e-9)
    # shifting all logits of a position by a constant changes nothing
    assert M.perplexity_from_logits(z + 123.0, np.array([3, 0])) == pytest.approx(5.0, abs=1e-9)
    # uniform over 7 -> perplexity 7 whatever the targets; batch (2, 3) with one ignored position
    z = np.zeros((2, 3, 7), dtype=np.float32)
    t = np.array([[0, 6, -100], [3, 3, 1]])
    assert M.perplexity_from_logits(z, t) == pytest.approx(7.0, abs=1e-9)
    # ignore_index really drops positions: the ignored row would otherwise cost ln(1/0.1)
    z = np.log(np.array([[1.0, 2, 3, 4], [1, 2, 3, 4]]))
    assert M.mean_nll_from_logits(z, np.array([3, -100])) == pytest.approx(math.log(2.5))
    assert M.mean_nll_from_logits(z, np.array([3, 7]), ignore_index=7) == pytest.approx(math.log(2.5))


def test_perplexity_from_logits_is_stable():
    # logsumexp([1000, 0, -1000]) = 1000 + log(1 + e^-1000 + e^-2000) = 1000 (in float64)
    # log(softmax) would give log(0) = -inf for the last entry and exp(1000) overflows.
    z = np.array([[1000.0, 0.0, -1000.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):   # (underflow to 0 is fine)
        assert M.mean_nll_from_logits(z, np.array([0])) == 0.0
        assert M.mean_nll_from_logits(z, np.array([2])) == pytest.approx(2000.0)
    assert M.perplexity_from_logits(z, np.array([2])) == float("inf")
    # float16 logits near their range limit are fine too (the work is done in float64)
    z16 = np.array([[60000.0, -60000.0]], dtype=np.float16)
    assert M.mean_nll_from_logits(z16, np.array([1])) == pytest.approx(120000.0, rel=1e-3)


def test_perplexity_from_logits_bad_input():
    z = np.zeros((2, 4))
    with pytest.raises(ValueError, match="does not match targets shape"):
        M.perplexity_from_logits(z, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="ignore_index"):
        M.perplexity_from_logits(z, np.array([-100, -100]))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        M.perplexity_from_logits(z, np.array([0, 4]))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        M.perplexity_from_logits(z, np.array([0, -1]))
    with pytest.raises(TypeError, match="integers"):
        M.perplexity_from_logits(z, np.array([0.0, 1.0]))


@pytest.mark.parametrize("case", FX["perplexity"], ids=_ids(FX["perplexity"]))
def test_perplexity_matches_torch_cross_entropy(case):
    logits, targets = np.array(case["logits"]), np.array(case["targets"])
    assert M.mean_nll_from_logits(logits, targets) == pytest.approx(case["mean_nll"], rel=1e-12, abs=TOL)
    if case["perplexity"] is not None:
        assert M.perplexity_from_logits(logits, targets) == pytest.approx(case["perplexity"], rel=1e-9)


# =============================================================================================
# BLEU
# =============================================================================================

def test_bleu_brevity_penalty_by_hand():
    # hyp "the cat sat on the" (c = 5) vs ref "the cat sat on the mat" (r = 6):
    # every 1..4-gram of the hypothesis is in the reference -> p1 = p2 = p3 = p4 = 1
    # BP = exp(1 - r/c) = exp(1 - 6/5) = exp(-0.2) = 0.8187307531
    score, d = M.corpus_bleu(["the cat sat on the"], ["the cat sat on the mat"], return_details=True)
    assert score == pytest.approx(100 * math.exp(-0.2), abs=BLEU_TOL)
    assert d["bp"] == pytest.approx(math.exp(-0.2))
    assert (d["hyp_len"], d["ref_len"]) == (5, 6)
    assert d["matches"] == [5, 4, 3, 2] and d["totals"] == [5, 4, 3, 2]


def test_bleu_precisions_by_hand():
    # hyp "the cat sat on a mat" vs ref "the cat sat on the mat"
    #   1-grams: the cat sat on a mat       -> 5 of 6 in the ref ('a' is not)
    #   2-grams: the cat, cat sat, sat on, on a, a mat  -> 3 of 5
    #   3-grams: the cat sat, cat sat on, sat on a, on a mat -> 2 of 4
    #   4-grams: the cat sat on, cat sat on a, sat on a mat  -> 1 of 3
    #   c = r = 6 -> BP = 1
    #   BLEU = 100 * (5/6 * 3/5 * 2/4 * 1/3) ** (1/4) = 100 * (1/12) ** 0.25 = 53.7284965911771
    expected = 100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25
    for compat in (True, False):
        score, d = M.corpus_bleu(["the cat sat on a mat"], ["the cat sat on the mat"],
                                 sacrebleu_compatible=compat, return_details=True)
        assert score == pytest.approx(expected, abs=BLEU_TOL)
        assert d["precisions"] == pytest.approx([5 / 6, 3 / 5, 2 / 4, 1 / 3])


def test_bleu_corpus_pools_counts_by_hand():
    # S1: "the cat sat on the" vs "the cat sat on the mat": matches 5/5 4/4 3/3 2/2, c 5, r 6
    # S2: "a dog ran" vs "a dog ran":                       matches 3/3 2/2 1/1 0/0, c 3, r 3
    # pooled: p_n = 8/8, 6/6, 4/4, 2/2 = 1; c = 8, r = 9 -> BP = exp(1 - 9/8) = exp(-1/8)
    # (S2 alone has no 4-grams and would score 0 without effective order)
    hyps = ["the cat sat on the", "a dog ran"]
    refs = ["the cat sat on the mat", "a dog ran"]
    assert M.corpus_bleu(hyps, refs) == pytest.approx(100 * math.exp(-1 / 8), abs=BLEU_TOL)
    assert M.corpus_bleu(["a dog ran"], ["a dog ran"]) == 0.0
    assert M.corpus_bleu(["a dog ran"], ["a dog ran"], effective_order=True) == pytest.approx(100.0)


def test_bleu_clipping_and_multiple_references_by_hand():
    # Papineni's example: 7 x 'the'; 'the' occurs at most twice in one reference -> p1 = 2/7
    _, d = M.corpus_bleu(["the the the the the the the"],
                         [["the cat is on the mat", "there is a cat on the mat"]], return_details=True)
    assert d["precisions"][0] == pytest.approx(2 / 7)
    # Closest reference length, ties to the shorter: c = 5, refs 4 and 6 -> r = 4 -> BP = 1.
    # Hyp "a b c d e": against "a b c d" 4-gram 'a b c d' matches, 4-gram 'b c d e' is in ref 2:
    # every n-gram is in some reference -> all p_n = 1 -> 100
    assert M.corpus_bleu(["a b c d e"], [["a b c d", "a b c d e f"]]) == pytest.approx(100.0)
    # refs of lengths 3 and 6 for c = 5: |5-6| < |5-3| -> r = 6 -> BP = exp(1 - 6/5)
    _, d = M.corpus_bleu(["a b c d e"], [["a b c", "a b c d e f"]], return_details=True)
    assert d["ref_len"] == 6 and d["bp"] == pytest.approx(math.exp(-0.2))


def test_bleu_smoothing_by_hand():
    # hyp "one two three xx four five six yy" (8 tokens) vs "one two three four five six" (6)
    #   p1 = 6/8, p2 = 4/7 (one two, two three, four five, five six), p3 = 2/6, p4 = 0/5
    #   textbook: p4 = 0 -> BLEU 0.  sacrebleu 'exp': the first empty order gets 1/(2 * 5)
    #   BP = 1 (8 > 6)
    hyp, ref = ["one two three xx four five six yy"], ["one two three four five six"]
    assert M.corpus_bleu(hyp, ref, sacrebleu_compatible=False) == 0.0
    assert M.corpus_bleu(hyp, ref, smooth="none") == 0.0
    expected = 100 * (6 / 8 * 4 / 7 * 2 / 6 * 1 / 10) ** 0.25
    assert M.corpus_bleu(hyp, ref) == pytest.approx(expected, abs=BLEU_TOL)
    # floor: 0.1 / 5 for the empty order
    assert M.corpus_bleu(hyp, ref, smooth="floor") == pytest.approx(
        100 * (6 / 8 * 4 / 7 * 2 / 6 * 0.1 / 5) ** 0.25, abs=BLEU_TOL)
    # add-k (k = 1) for n >= 2: (4+1)/(7+1), (2+1)/(6+1), (0+1)/(5+1)
    assert M.corpus_bleu(hyp, ref, smooth="add-k") == pytest.approx(
        100 * (6 / 8 * 5 / 8 * 3 / 7 * 1 / 6) ** 0.25, abs=BLEU_TOL)


def test_sentence_bleu_effective_order_by_hand():
    # "cat the" vs "the cat": p1 = 2/2; p2 = 0/1 -> 'exp' smoothing 1/(2*1); no 3-, 4-grams,
    # so the effective order is 2: BLEU = 100 * sqrt(1 * 1/2) = 70.71...
    # (sacrebleu's effective order drops orders with no hypothesis n-grams, not orders with no
    # matches: the unmatched bigram order is smoothed and kept.)
    assert M.sentence_bleu("cat the", "the cat") == pytest.approx(100 * math.sqrt(0.5), abs=BLEU_TOL)
    assert M.sentence_bleu("cat the", "the cat", effective_order=False) == 0.0
    assert M.sentence_bleu("the cat sat on the mat", ["the cat sat on the mat"]) == pytest.approx(100.0)
    assert M.sentence_bleu(["a", "b"], ["a", "b"]) == pytest.approx(100.0)    # pre-tokenised


def test_bleu_edge_cases():
    # empty hypothesis: c = 0 -> BP 0 and no matches -> 0
    assert M.corpus_bleu([""], ["the cat"]) == 0.0
    assert M.sentence_bleu("", "the cat") == 0.0
    assert M.sentence_bleu("", "") == 0.0
    # no overlap at all -> 0 (even with smoothing)
    assert M.corpus_bleu(["dogs bark"], ["the cat sat"]) == 0.0
    assert M.corpus_bleu(["dogs bark"], ["the cat sat"], smooth="add-k") == 0.0
    # 13a splits punctuation, whitespace mode does not: "mat." vs "mat ."
    assert M.sentence_bleu("the cat sat on the mat.", "the cat sat on the mat .") == pytest.approx(100.0)
    assert M.sentence_bleu("the cat sat on the mat.", "the cat sat on the mat .",
                           sacrebleu_compatible=False) < 100.0
    # pre-tokenised input equals whitespace tokenisation of the joined strings
    hyps = ["the cat sat on a mat", "a dog ran"]
    refs = [["the cat sat on the mat", "a cat sat on a mat"], ["the dog ran"]]
    tok_h = [h.split() for h in hyps]
    tok_r = [[r.split() for r in rs] for rs in refs]
    assert M.corpus_bleu(tok_h, tok_r) == pytest.approx(
        M.corpus_bleu(hyps, refs, sacrebleu_compatible=False, smooth="exp"), abs=1e-12)
    # a single tokenised reference per hypothesis may be given without the extra list
    assert M.corpus_bleu(tok_h, [r[0] for r in tok_r]) == pytest.approx(
        M.corpus_bleu(tok_h, [[r[0]] for r in tok_r]), abs=1e-12)


def test_bleu_bad_input():
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        M.corpus_bleu(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no hypotheses"):
        M.corpus_bleu([], [])
    with pytest.raises(ValueError, match="no references"):
        M.corpus_bleu(["a"], [[]])
    with pytest.raises(TypeError, match="sentence_bleu"):
        M.corpus_bleu("a b", ["a b"])
    with pytest.raises(TypeError, match="all strings or all lists"):
        M.corpus_bleu(["a b", ["a", "b"]], ["a b", "a b"])
    with pytest.raises(ValueError, match="smooth"):
        M.corpus_bleu(["a"], ["a"], smooth="laplace")
    with pytest.raises(ValueError, match="max_n"):
        M.corpus_bleu(["a"], ["a"], max_n=0)


def test_tokenize_13a():
    assert M.tokenize_13a('He said "hi", then left.') == ["He", "said", '"', "hi", '"', ",", "then", "left", "."]
    assert M.tokenize_13a("3.5 million, 1,000") == ["3.5", "million", ",", "1,000"]
    assert M.tokenize_13a("1990-2000 e-mail") == ["1990", "-", "2000", "e-mail"]
    assert M.tokenize_13a("Tom &amp; Jerry") == ["Tom", "&", "Jerry"]


@pytest.mark.parametrize("case", FX["bleu"], ids=_ids(FX["bleu"]))
def test_bleu_matches_sacrebleu(case):
    h, r = case["hypotheses"], case["references"]
    assert M.corpus_bleu(h, r) == pytest.approx(case["sacrebleu_corpus"], abs=BLEU_TOL)
    # textbook mode == sacrebleu with tokenize='none', smooth_method='none'
    assert M.corpus_bleu(h, r, sacrebleu_compatible=False) == pytest.approx(
        case["sacrebleu_corpus_tok_none_smooth_none"], abs=BLEU_TOL)
    for smooth, key in (("none", "smooth_none"), ("floor", "smooth_floor"), ("add-k", "smooth_add_k")):
        assert M.corpus_bleu(h, r, smooth=smooth) == pytest.approx(
            case["sacrebleu_corpus_" + key], abs=BLEU_TOL), smooth
    assert M.corpus_bleu(h, r, effective_order=True) == pytest.approx(
        case["sacrebleu_corpus_effective_order"], abs=BLEU_TOL)
    _, d = M.corpus_bleu(h, r, return_details=True)
    ref = case["sacrebleu_corpus_details"]
    assert (d["hyp_len"], d["ref_len"]) == (ref["sys_len"], ref["ref_len"])
    assert d["bp"] == pytest.approx(ref["bp"], abs=1e-12)
    if case["sacrebleu_corpus"] > 0:      # sacrebleu reports no precisions when nothing matches
        assert [100 * p for p in d["precisions"]] == pytest.approx(ref["precisions"], abs=1e-9)
    for hyp, refs, expected in zip(h, r, case["sacrebleu_sentence"]):
        assert M.sentence_bleu(hyp, refs) == pytest.approx(expected, abs=BLEU_TOL)


# =============================================================================================
# ROUGE
# =============================================================================================

def test_rouge_by_hand():
    # hyp "the cat was found under the bed" (7), ref "the cat was under the bed" (6)
    # ROUGE-1 overlap: the x2, cat, was, under, bed = 6 -> P 6/7, R 1, F1 12/13
    r1 = M.rouge_n("the cat was found under the bed", "the cat was under the bed", 1)
    assert r1 == pytest.approx({"precision": 6 / 7, "recall": 1.0, "f1": 12 / 13})
    # ROUGE-2: hyp bigrams the-cat cat-was was-found found-under under-the the-bed (6)
    #          ref bigrams the-cat cat-was was-under under-the the-bed (5); overlap 4
    #          P 4/6, R 4/5, F1 = 2 * (2/3)(4/5) / (2/3 + 4/5) = 8/11
    r2 = M.rouge_n("the cat was found under the bed", "the cat was under the bed", 2)
    assert r2 == pytest.approx({"precision": 4 / 6, "recall": 4 / 5, "f1": 8 / 11})
    # ROUGE-L, Lin's example: LCS(police kill the gunman, police killed the gunman) = 3 -> 3/4
    assert M.rouge_l("police kill the gunman", "police killed the gunman") == pytest.approx(
        {"precision": 0.75, "recall": 0.75, "f1": 0.75})
    # ... and "the gunman kill police": LCS = "the gunman" = 2 -> 1/2 (ROUGE-2 can't tell these apart)
    assert M.rouge_l("the gunman kill police", "police killed the gunman")["f1"] == pytest.approx(0.5)
    # case and punctuation are ignored by the tokenizer
    assert M.rouge_l("The Cat!", "the cat")["f1"] == pytest.approx(1.0)


def test_rouge_edge_cases():
    zero = {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert M.rouge_n("", "the cat", 1) == zero
    assert M.rouge_n("the cat", "", 1) == zero
    assert M.rouge_l("", "") == zero
    assert M.rouge_n("dogs bark", "the cat", 1) == zero            # no overlap
    assert M.rouge_n("cat", "the cat", 2) == zero                  # hyp has no bigrams
    assert M.rouge_tokenize("Le café, 2 hats!") == ["le", "caf", "2", "hats"]   # non-ASCII splits
    assert M.rouge_n(["The", "cat"], ["The", "cat"], 1)["f1"] == 1.0            # token lists as is
    with pytest.raises(ValueError, match="n must be"):
        M.rouge_n("a", "a", 0)


def test_rouge_scores_by_hand():
    # pair 1: hyps "the cat sat", ref "the cat sat down": R1 F1 6/7, R2 (P 1, R 2/3) 0.8, RL 6/7
    # pair 2: identical: 1, 1, 1
    out = M.rouge_scores(["the cat sat", "a b c"], ["the cat sat down", "a b c"])
    assert out == pytest.approx({"rouge1": (6 / 7 + 1) / 2, "rouge2": (0.8 + 1) / 2, "rougeL": (6 / 7 + 1) / 2})
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        M.rouge_scores(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no hypotheses"):
        M.rouge_scores([], [])
    with pytest.raises(TypeError):
        M.rouge_scores("a b", "a b")


@pytest.mark.parametrize("case", FX["rouge"], ids=_ids(FX["rouge"]))
def test_rouge_matches_rouge_score(case):
    got = {"rouge1": M.rouge_n(case["hyp"], case["ref"], 1),
           "rouge2": M.rouge_n(case["hyp"], case["ref"], 2),
           "rougeL": M.rouge_l(case["hyp"], case["ref"])}
    for kind in ("rouge1", "rouge2", "rougeL"):
        for key in ("precision", "recall", "f1"):
            assert got[kind][key] == pytest.approx(case[kind][key], abs=TOL), (kind, key)


def test_rouge_scores_matches_fixture_average():
    cases = FX["rouge"]
    out = M.rouge_scores([c["hyp"] for c in cases], [c["ref"] for c in cases])
    for kind in ("rouge1", "rouge2", "rougeL"):
        assert out[kind] == pytest.approx(sum(c[kind]["f1"] for c in cases) / len(cases), abs=TOL)
