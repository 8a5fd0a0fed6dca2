"""Tokenizers: text <-> integer ids.

* :class:`CharTokenizer` -- one id per character (tiny models on one text).
* :class:`BPETokenizer` -- byte-level BPE as in GPT-2: train your own, or load
  GPT-2's ``vocab.json`` + ``merges.txt``.
* :class:`BertTokenizer` -- BERT's WordPiece (basic tokenisation + greedy
  longest-match-first), identical to Hugging Face's slow ``BertTokenizer``.

Pure Python; NumPy is used only for ``return_tensors="np"``.
"""

from .bert import BatchEncoding, BertTokenizer
from .bpe import GPT2_SPLIT_PATTERN, BPETokenizer, bytes_to_unicode, gpt2_split_regex
from .char import CharTokenizer

__all__ = [
    "BPETokenizer",
    "BatchEncoding",
    "BertTokenizer",
    "CharTokenizer",
    "GPT2_SPLIT_PATTERN",
    "bytes_to_unicode",
    "gpt2_split_regex",
]
