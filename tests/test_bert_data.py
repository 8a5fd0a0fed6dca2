"""BERT data: masking statistics, next-sentence pairs, NER label alignment, QA spans, data sets.

None of these needs the MiniLM checkpoint: the tokenizers are built from small vocabularies.
"""
import numpy as np
import pytest

from minilm.data.bert_data import (IGNORE_INDEX, DataCollatorForLanguageModeling, best_span,
                                   build_wordpiece_vocab, create_nsp_examples,
                                   encode_classification, mask_tokens,
                                   offset_mapping, pack_pair, pad_batch, prepare_qa_features,
                                   split_sentences, tokenize_and_align_labels, word_predictions)
from minilm.data.datasets import (BUILDERS, NER_LABELS, SENTIMENT_LABELS, SPLITS, load_dataset,
                                  read_jsonl, dataset_path)
from minilm.tokenizers import BertTokenizer

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PAD, UNK, CLS, SEP, MASK = range(5)


# ---------------------------------------------------------------------------------------------
# Masked LM
# ---------------------------------------------------------------------------------------------

def _mlm_batch(rng, B=400, T=128, V=1000):
    """[CLS] real tokens [SEP] then padding, with random lengths."""
    ids = np.zeros((B, T), dtype=np.int64)
    mask = np.zeros((B, T), dtype=np.int64)
    for b in range(B):
        n = int(rng.integers(10, T + 1))
        ids[b, 0], ids[b, n - 1] = CLS, SEP
        ids[b, 1:n - 1] = rng.integers(5, V, n - 2)
        mask[b, :n] = 1
    return ids, mask


def test_mask_tokens_statistics_15_percent_then_80_10_10():
    rng = np.random.default_rng(0)
    ids, attn = _mlm_batch(rng)
    original = ids.copy()
    masked, labels = mask_tokens(ids, np.random.default_rng(1), mask_token_id=MASK, vocab_size=1000,
                                 special_ids=range(5), attention_mask=attn)
    np.testing.assert_array_equal(ids, original)                  # input untouched
    real = (attn == 1) & (ids >= 5)
    chosen = labels != IGNORE_INDEX
    # only real tokens are chosen; specials and padding never
    assert not chosen[~real].any()
    np.testing.assert_array_equal(masked[~real], ids[~real])
    # labels: the original id where chosen, -100 elsewhere
    np.testing.assert_array_equal(labels[chosen], ids[chosen])
    assert (labels[~chosen] == IGNORE_INDEX).all()
    # 15% of the real tokens (about 26k of them here: std of the rate ~0.2%)
    rate = chosen.sum() / real.sum()
    assert abs(rate - 0.15) < 0.01, rate
    # of the chosen: 80% [MASK], 10% random, 10% unchanged (a random draw can hit the same
    # token with probability 1/995, well inside the tolerance)
    n = chosen.sum()
    to_mask = (masked == MASK) & chosen
    unchanged = (masked == ids) & chosen
    randomised = chosen & ~to_mask & ~unchanged
    assert abs(to_mask.sum() / n - 0.8) < 0.015
    assert abs(unchanged.sum() / n - 0.1) < 0.015
    assert abs(randomised.sum() / n - 0.1) < 0.015
    # not chosen: unchanged
    np.testing.assert_array_equal(masked[~chosen], ids[~chosen])


def test_mask_tokens_is_reproducible_with_a_seed_and_varies_without():
    ids, attn = _mlm_batch(np.random.default_rng(0), B=8, T=32)
    kw = dict(mask_token_id=MASK, vocab_size=1000, special_ids=range(5), attention_mask=attn)
    a = mask_tokens(ids, np.random.default_rng(7), **kw)
    b = mask_tokens(ids, np.random.default_rng(7), **kw)
    c = mask_tokens(ids, np.random.default_rng(8), **kw)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_mask_tokens_rejects_bad_input():
    with pytest.raises(ValueError, match="2-D integer"):
        mask_tokens(np.zeros(5, dtype=np.int64), np.random.default_rng(0), mask_token_id=4, vocab_size=9)
    with pytest.raises(ValueError, match="2-D integer"):
        mask_tokens(np.zeros((2, 5)), np.random.default_rng(0), mask_token_id=4, vocab_size=9)
    with pytest.raises(ValueError, match="mlm_probability"):
        mask_tokens(np.zeros((2, 5), dtype=np.int64), np.random.default_rng(0), mask_token_id=4,
                    vocab_size=9, mlm_probability=1.5)


def _tiny_tokenizer(words):
    return BertTokenizer(SPECIALS + sorted(set(words)))


def test_collator_pads_then_masks_and_keeps_nsp_labels():
    tok = _tiny_tokenizer(["a", "b", "c"])
    examples = [{"input_ids": [CLS, 5, 6, SEP, 7, SEP], "token_type_ids": [0, 0, 0, 0, 1, 1],
                 "next_sentence_label": 1},
                {"input_ids": [CLS, 5, SEP, 6, SEP], "token_type_ids": [0, 0, 0, 1, 1],
                 "next_sentence_label": 0}]
    batch = DataCollatorForLanguageModeling(tok, mlm_probability=1.0, seed=0)(examples)
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels", "next_sentence_label"}
    np.testing.assert_array_equal(batch["attention_mask"], [[1] * 6, [1] * 5 + [0]])
    np.testing.assert_array_equal(batch["token_type_ids"], [[0, 0, 0, 0, 1, 1], [0, 0, 0, 1, 1, 0]])
    np.testing.assert_array_equal(batch["next_sentence_label"], [1, 0])
    # probability 1: every real non-special token is a target, nothing else
    np.testing.assert_array_equal(batch["labels"], [[-100, 5, 6, -100, 7, -100],
                                                    [-100, 5, -100, 6, -100, -100]])
    assert batch["input_ids"][1, 5] == PAD
    assert batch["input_ids"].dtype == np.int64


# ---------------------------------------------------------------------------------------------
# Next-sentence prediction
# ---------------------------------------------------------------------------------------------

def test_pack_pair_known_answer_and_truncation():
    assert pack_pair([7, 8, 9], [4], CLS, SEP, max_length=6) == ([CLS, 7, 8, SEP, 4, SEP], [0, 0, 0, 0, 1, 1])
    ids, tt = pack_pair([7, 8], [10, 11, 12, 13], CLS, SEP, max_length=7)   # the longer one loses
    assert ids == [CLS, 7, 8, SEP, 10, 11, SEP] and tt == [0, 0, 0, 0, 1, 1, 1]
    assert pack_pair([], [], CLS, SEP, max_length=3) == ([CLS, SEP, SEP], [0, 0, 1])
    with pytest.raises(ValueError, match="max_length=2 is smaller than the 3 tokens"):
        pack_pair([7], [8], CLS, SEP, max_length=2)


def _synthetic_documents(n_docs=100, n_sents=40):
    """Sentence s of document d is "dDsS w w": its first word names it."""
    docs = [[f"d{d}s{s} w w" for s in range(n_sents)] for d in range(n_docs)]
    words = [f"d{d}s{s}" for d in range(n_docs) for s in range(n_sents)] + ["w"]
    return docs, _tiny_tokenizer(words)


def test_nsp_pairs_are_balanced_true_next_or_other_document():
    docs, tok = _synthetic_documents()
    examples = create_nsp_examples(docs, tok, max_length=16, rng=np.random.default_rng(0))
    labels = np.array([e["next_sentence_label"] for e in examples])
    assert len(examples) > 800                                 # std of the mean < 0.018
    assert abs(labels.mean() - 0.5) < 0.05                     # 50% random, 50% true next
    for e in examples:
        ids, tt = e["input_ids"], e["token_type_ids"]
        assert len(ids) == len(tt) <= 16
        assert ids[0] == CLS and ids[-1] == SEP and ids.count(SEP) == 2
        first_sep = ids.index(SEP)
        assert tt == [0] * (first_sep + 1) + [1] * (len(ids) - first_sep - 1)
        a = [t for t in tok.convert_ids_to_tokens(ids[1:first_sep]) if t != "w"]
        b = [t for t in tok.convert_ids_to_tokens(ids[first_sep + 1:-1]) if t != "w"]
        (da, sa), (db, sb) = (map(int, a[-1][1:].split("s")), map(int, b[0][1:].split("s")))
        if e["next_sentence_label"] == 0:                      # 0: B is what follows A
            assert (db, sb) == (da, sa + 1)
        else:                                                  # 1: B comes from another document
            assert db != da


def test_nsp_needs_two_documents_and_room():
    docs, tok = _synthetic_documents(n_docs=2, n_sents=3)
    with pytest.raises(ValueError, match="at least 2 non-empty documents"):
        create_nsp_examples(docs[:1], tok, 16, np.random.default_rng(0))
    with pytest.raises(ValueError, match="max_length=4 is smaller"):
        create_nsp_examples(docs, tok, 4, np.random.default_rng(0))


def test_split_sentences():
    text = "One thing. Two?\n\nThree   words here!  \"Quoted.\" e.g. not split"
    assert split_sentences(text) == ["One thing.", "Two?", "Three words here!", '"Quoted." e.g. not split']


def test_build_wordpiece_vocab_covers_the_corpus_without_unknowns():
    texts = ["The parser parses parsed tokens.", "Tokens are parsed by the parser!"] * 3
    vocab = build_wordpiece_vocab(texts, vocab_size=80)
    assert vocab[:5] == SPECIALS
    assert len(vocab) <= 80 and len(set(vocab)) == len(vocab)
    assert vocab == build_wordpiece_vocab(texts, vocab_size=80)            # deterministic
    tok = BertTokenizer(vocab)
    pieces = tok.tokenize("Spared, unseen token parses!")    # "u", "," were never seen
    assert pieces.count("[UNK]") == 2 and "the" in vocab and "parser" in vocab
    assert tok.tokenize("Spared token parses!")[0] != "[UNK]"   # new word, known characters
    with pytest.raises(ValueError, match="too small"):
        build_wordpiece_vocab(texts, vocab_size=10)


# ---------------------------------------------------------------------------------------------
# Classification batches
# ---------------------------------------------------------------------------------------------

def test_encode_classification_pads_truncates_and_checks():
    tok = BertTokenizer(ROT)
    batch = encode_classification(tok, ["visit rotterdam now", "now"], [1, 0], max_length=5)
    np.testing.assert_array_equal(batch["input_ids"], [[CLS, 5, 6, 7, SEP], [CLS, 9, SEP, PAD, PAD]])
    np.testing.assert_array_equal(batch["attention_mask"], [[1] * 5, [1, 1, 1, 0, 0]])
    np.testing.assert_array_equal(batch["labels"], [1, 0])
    with pytest.raises(ValueError, match="max_length=1 is smaller than the 2 tokens"):
        encode_classification(tok, ["now"], max_length=1)
    with pytest.raises(ValueError, match="2 texts but labels of shape"):
        encode_classification(tok, ["now", "now"], [1])
    with pytest.raises(TypeError, match="list of strings"):
        encode_classification(tok, "now")


# ---------------------------------------------------------------------------------------------
# NER: labels on the first piece of each word
# ---------------------------------------------------------------------------------------------

ROT = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "visit", "rot", "##ter", "##dam", "now", "."]


def test_ner_label_alignment_known_answer():
    tok = BertTokenizer(ROT)
    enc = tokenize_and_align_labels(tok, ["Visit", "Rotterdam", "now", "."], [0, 3, 0, 0])
    assert tok.convert_ids_to_tokens(enc["input_ids"]) == ["[CLS]", "visit", "rot", "##ter", "##dam",
                                                           "now", ".", "[SEP]"]
    assert enc["labels"] == [-100, 0, 3, -100, -100, 0, 0, -100]
    assert enc["word_ids"] == [None, 0, 1, 1, 1, 2, 3, None]
    assert enc["token_type_ids"] == [0] * 8
    # back to words: the first piece's prediction (position 2 for Rotterdam)
    pieces = [9, 0, 3, 7, 7, 0, 0, 9]
    assert word_predictions(pieces, enc["word_ids"], 4) == [0, 3, 0, 0]


def test_ner_truncation_and_errors():
    tok = BertTokenizer(ROT)
    enc = tokenize_and_align_labels(tok, ["Visit", "Rotterdam", "now"], [0, 3, 0], max_length=4)
    assert tok.convert_ids_to_tokens(enc["input_ids"]) == ["[CLS]", "visit", "rot", "[SEP]"]
    assert enc["labels"] == [-100, 0, 3, -100]
    assert word_predictions([0, 0, 3, 0], enc["word_ids"], 3, default=0) == [0, 3, 0]   # "now" cut: default
    with pytest.raises(ValueError, match="max_length=1 is smaller than the 2 tokens"):
        tokenize_and_align_labels(tok, ["now"], [0], max_length=1)
    with pytest.raises(ValueError, match="2 words but 1 labels"):
        tokenize_and_align_labels(tok, ["visit", "now"], [0])
    with pytest.raises(TypeError, match="list of words"):
        tokenize_and_align_labels(tok, "visit now", [0, 0])


def test_padded_ner_batch_pads_labels_with_ignore_index():
    tok = BertTokenizer(ROT)
    feats = [tokenize_and_align_labels(tok, ["Rotterdam"], [3]), tokenize_and_align_labels(tok, ["now"], [0])]
    batch = pad_batch(feats, tok.pad_token_id)
    np.testing.assert_array_equal(batch["labels"], [[-100, 3, -100, -100, -100], [-100, 0, -100, -100, -100]])
    assert "word_ids" not in batch


# ---------------------------------------------------------------------------------------------
# QA: character span -> token positions
# ---------------------------------------------------------------------------------------------

QA_VOCAB = SPECIALS + ["ada", "love", "##lace", "was", "born", "in", "london", "1815", ".", "where",
                       "?", "she", "lived", "zur", "##ich", ","]


def test_offset_mapping_matches_tokenize_and_points_into_the_text():
    tok = BertTokenizer(QA_VOCAB)
    text = "Ada Lovelace was born in Zürich, London."
    tokens, offsets = offset_mapping(tok, text)
    assert tokens == tok.tokenize(text)
    assert [text[s:e] for s, e in offsets] == ["Ada", "Love", "lace", "was", "born", "in", "Zürich"[:3],
                                                "ich", ",", "London", "."]
    assert offset_mapping(tok, "  ") == ([], [])
    unk_tokens, unk_offsets = offset_mapping(tok, "Ada Qwerty.")
    assert unk_tokens == ["ada", "[UNK]", "."] and unk_offsets[1] == (4, 10)


def test_qa_answer_span_to_token_positions_known_answer():
    tok = BertTokenizer(QA_VOCAB)
    context = "Ada Lovelace was born in London in 1815."
    f = prepare_qa_features(tok, "Where was Ada born?", context, "London", context.index("London"),
                            max_length=32)
    tokens = tok.convert_ids_to_tokens(f["input_ids"])
    assert tokens[:7] == ["[CLS]", "where", "was", "ada", "born", "?", "[SEP]"]
    assert f["token_type_ids"] == [0] * 7 + [1] * (len(tokens) - 7)
    s, e = f["start_positions"], f["end_positions"]
    assert (s, e) == (13, 13) and tokens[s] == "london"
    assert tok.decode(f["input_ids"][s:e + 1]) == "london"
    assert context[f["offsets"][s][0]:f["offsets"][e][1]] == "London"
    # a multi-piece answer
    f = prepare_qa_features(tok, "Who?", context, "Ada Lovelace", 0, max_length=32)
    s, e = f["start_positions"], f["end_positions"]
    assert tok.decode(f["input_ids"][s:e + 1]) == "ada lovelace"


def test_qa_answer_truncated_away_points_at_cls():
    tok = BertTokenizer(QA_VOCAB)
    context = "Ada Lovelace was born in London in 1815."
    f = prepare_qa_features(tok, "Where?", context, "1815", context.index("1815"), max_length=10)
    assert len(f["input_ids"]) == 10 and f["input_ids"][-1] == SEP
    assert (f["start_positions"], f["end_positions"]) == (0, 0)


def test_qa_errors():
    tok = BertTokenizer(QA_VOCAB)
    context = "Ada Lovelace was born in London in 1815."
    with pytest.raises(ValueError, match="not found in the context"):
        prepare_qa_features(tok, "Where?", context, "Paris")
    with pytest.raises(ValueError, match="not found in the context at character 3"):
        prepare_qa_features(tok, "Where?", context, "London", answer_start=3)
    with pytest.raises(ValueError, match="max_length=5 is smaller than the 8 tokens"):
        prepare_qa_features(tok, "Where was Ada?", context, "London", max_length=5)


def test_every_bundled_qa_answer_maps_back_to_its_text():
    rows = load_dataset("qa", "train") + load_dataset("qa", "test")
    tok = BertTokenizer(build_wordpiece_vocab([r["context"] + " " + r["question"] for r in rows], 3000))
    for r in rows:
        answer, start = r["answers"]["text"][0], r["answers"]["answer_start"][0]
        f = prepare_qa_features(tok, r["question"], r["context"], answer, start, max_length=192)
        s, e = f["start_positions"], f["end_positions"]
        assert 0 < s <= e
        assert r["context"][f["offsets"][s][0]:f["offsets"][e][1]] == answer


def test_best_span_known_answer():
    start = np.array([9.0, 0.0, 2.0, 0.5, 1.0, 0.0])
    end = np.array([9.0, 0.0, 0.0, 3.0, 0.5, 4.0])
    allowed = np.array([False, True, True, True, True, True])
    assert best_span(start, end, allowed) == (2, 5)                # [CLS] excluded
    assert best_span(start, end, allowed, max_answer_length=2) == (2, 3)
    with pytest.raises(ValueError, match="no allowed position"):
        best_span(start, end, np.zeros(6, dtype=bool))


# ---------------------------------------------------------------------------------------------
# The bundled data sets
# ---------------------------------------------------------------------------------------------

def test_datasets_load_with_expected_sizes_and_fields():
    sizes = {("sentiment", "train"): 420, ("sentiment", "test"): 140, ("ner", "train"): 280,
             ("ner", "test"): 80, ("qa", "train"): 240, ("qa", "test"): 60}
    for (name, split), n in sizes.items():
        rows = load_dataset(name, split)
        assert len(rows) == n
        for r in rows:
            if name == "sentiment":
                assert r["label"] in range(len(SENTIMENT_LABELS)) and r["text"].strip()
            elif name == "ner":
                assert len(r["tokens"]) == len(r["tags"]) and set(r["tags"]) <= set(NER_LABELS)
            else:
                a = r["answers"]
                assert r["context"][a["answer_start"][0]:][:len(a["text"][0])] == a["text"][0]
    labels = [r["label"] for r in load_dataset("sentiment", "train")]
    assert 0.4 < np.mean(labels) < 0.6                              # balanced


def test_dataset_splits_are_disjoint():
    def keys(name, split):
        rows = load_dataset(name, split)
        if name == "sentiment":
            return {r["text"] for r in rows}
        if name == "ner":
            return {" ".join(r["tokens"]) for r in rows}
        return {r["context"] for r in rows}                         # QA: split by passage
    for name in ("sentiment", "ner", "qa"):
        assert not keys(name, "train") & keys(name, "test"), name
        assert len(keys(name, "train")) > 0


def test_shipped_files_are_what_the_generator_writes():
    for name, build in BUILDERS.items():
        for split, rows in zip(SPLITS, build()):
            assert read_jsonl(dataset_path(name, split)) == rows, (name, split)


def test_unknown_dataset_or_split():
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("imdb")
    with pytest.raises(ValueError, match="unknown split"):
        load_dataset("ner", "validation")
