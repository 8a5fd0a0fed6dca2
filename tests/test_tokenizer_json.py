"""BPETokenizer.from_tokenizer_json: ids equal to the `tokenizers` library's
(fixtures: tests/fixtures/make_tokenizer_json_fixtures.py)."""
import json
import os

import pytest

from minilm.tokenizers import BPETokenizer
from minilm.tokenizers.bpe import unicode_regex_to_re

HERE = os.path.join(os.path.dirname(__file__), "fixtures", "bpe_tokenizer_json")
REF = json.load(open(os.path.join(HERE, "ids.json"), encoding="utf-8"))


@pytest.mark.parametrize("name", ["gpt2", "llama3", "qwen2"])
def test_ids_equal_the_tokenizers_library(name):
    tok = BPETokenizer.from_tokenizer_json(os.path.join(HERE, f"{name}.json"))
    for text, ids in zip(REF["texts"], REF["ids"][name]):
        assert tok.encode(text) == ids, text
        if name != "gpt2":                                   # gpt2.json adds a prefix space
            assert tok.decode(ids) == (text if name == "llama3" else __import__("unicodedata").normalize("NFC", text))


def test_special_tokens_and_pattern_translation():
    tok = BPETokenizer.from_tokenizer_json(os.path.join(HERE, "llama3.json"))
    assert tok.special_tokens["<|begin_of_text|>"] == 0
    assert tok.encode("<|end_of_text|>") == [1]
    assert "\\p" not in unicode_regex_to_re(r"[^\r\n\p{L}\p{N}]?\p{L}+|\s+(?!\S)")


def test_unsupported_tokenizer_json_is_a_clear_error(tmp_path):
    d = json.load(open(os.path.join(HERE, "llama3.json"), encoding="utf-8"))
    d["model"]["byte_fallback"] = True
    (tmp_path / "t.json").write_text(json.dumps(d), encoding="utf-8")
    with pytest.raises(ValueError, match="byte_fallback"):
        BPETokenizer.from_tokenizer_json(tmp_path / "t.json")
    d["model"] = {"type": "WordPiece", "vocab": {}}
    (tmp_path / "t.json").write_text(json.dumps(d), encoding="utf-8")
    with pytest.raises(ValueError, match="byte-level BPE only"):
        BPETokenizer.from_tokenizer_json(tmp_path / "t.json")
    with pytest.raises(ValueError, match="not supported"):
        unicode_regex_to_re(r"\p{Lu}+")
