"""BERT's WordPiece tokenizer, rule for rule as Hugging Face's slow ``BertTokenizer``.

Tokenisation happens in three stages::

    "The [MASK] sat, unaffably."
      1. special tokens written in the text are cut out whole
         -> "The ", "[MASK]", " sat, unaffably."
      2. basic tokenisation of the other pieces: clean the text, put spaces
         around CJK ideographs, lower-case and strip accents, split on
         whitespace and punctuation
         -> "the", "[MASK]", "sat", ",", "unaffably", "."
      3. WordPiece: split every word greedily into the longest pieces found in
         the vocabulary, continuation pieces written with a "##" prefix
         -> "the", "[MASK]", "sat", ",", "una", "##ff", "##ably", "."

and the model input adds ``[CLS]`` ... ``[SEP]`` (``[CLS] A [SEP] B [SEP]`` for
a pair, with ``token_type_ids`` 0 for the first segment and 1 for the second).

A tiny example, with the vocabulary of the original BERT tests::

    >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "want", "##want",
    ...          "##ed", "wa", "un", "runn", "##ing", ",", "low", "lowest"]
    >>> tok = BertTokenizer(vocab)
    >>> tok.tokenize("UNwant\\u00e9d,running")
    ['un', '##want', '##ed', ',', 'runn', '##ing']
    >>> tok.encode("unwanted running")
    [2, 9, 6, 7, 10, 11, 3]
    >>> tok.decode([2, 9, 6, 7, 10, 11, 3])
    '[CLS] unwanted running [SEP]'
    >>> tok.decode([2, 9, 6, 7, 10, 11, 3], skip_special_tokens=True)
    'unwanted running'
"""

from __future__ import annotations

import json
import os
import re
import unicodedata

__all__ = ["BertTokenizer", "BatchEncoding", "BasicTokenizer", "WordpieceTokenizer"]


# ------------------------------------------------------- character classes
def _is_whitespace(char: str) -> bool:
    """Space, tab, newline, carriage return, or any Unicode space separator (Zs)."""
    if char in " \t\n\r":
        return True
    return unicodedata.category(char) == "Zs"


def _is_control(char: str) -> bool:
    """Unicode "other" categories (Cc, Cf, Co, Cs, Cn), except tab/newline/CR
    which count as whitespace.  Zero-width spaces (Cf) and the soft hyphen (Cf)
    are control characters here, so they are deleted."""
    if char in "\t\n\r":
        return False
    return unicodedata.category(char).startswith("C")


def _is_punctuation(char: str) -> bool:
    """Unicode punctuation (P*), plus every ASCII character that is not a letter,
    digit or space: ``$ + < = > ^ ` | ~`` are symbols (S*) for Unicode but split
    off like punctuation in BERT.  Non-ASCII symbols ('€', '©', '°') are not."""
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _is_chinese_char(cp: int) -> bool:
    """Code point in one of the CJK Unified Ideographs blocks used by BERT.

    Hangul, Hiragana and Katakana are *not* included: those scripts separate
    words with spaces and are tokenised like any other.
    """
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


def _whitespace_split(text: str) -> list[str]:
    """``" a  b\\n"`` -> ``["a", "b"]`` (Python's ``str.split()``)."""
    return text.split()


# --------------------------------------------------------- basic tokenizer
class BasicTokenizer:
    """Stage 2: cleaning, CJK splitting, lower-casing, accents, punctuation.

    >>> BasicTokenizer().tokenize(" \\tHeLLo!how  \\n Are yoU?  ")
    ['hello', '!', 'how', 'are', 'you', '?']
    >>> BasicTokenizer().tokenize("Héllo 北京")
    ['hello', '北', '京']
    >>> BasicTokenizer(do_lower_case=False).tokenize("Héllo")
    ['Héllo']
    """

    def __init__(self, do_lower_case=True, never_split=None, tokenize_chinese_chars=True,
                 strip_accents=None, do_split_on_punc=True):
        self.do_lower_case = do_lower_case
        self.never_split = set(never_split or ())
        self.tokenize_chinese_chars = tokenize_chinese_chars
        # None: strip accents exactly when lower-casing (original BERT)
        self.strip_accents = strip_accents
        self.do_split_on_punc = do_split_on_punc

    def tokenize(self, text: str, never_split=None) -> list[str]:
        never_split = self.never_split.union(never_split) if never_split else self.never_split
        text = self._clean_text(text)
        if self.tokenize_chinese_chars:
            text = self._tokenize_chinese_chars(text)
        # the same character written with different code points ("e" + U+0301 vs "é")
        text = unicodedata.normalize("NFC", text)
        split_tokens = []
        for token in _whitespace_split(text):
            if token not in never_split:
                if self.do_lower_case:
                    token = token.lower()
                    if self.strip_accents is not False:
                        token = self._strip_accents(token)
                elif self.strip_accents:
                    token = self._strip_accents(token)
            split_tokens.extend(self._split_on_punc(token, never_split))
        return _whitespace_split(" ".join(split_tokens))

    @staticmethod
    def _clean_text(text: str) -> str:
        """Drop U+0000, U+FFFD and control characters; every whitespace becomes " ".

        >>> BasicTokenizer._clean_text("a\\x00b\\u200bc\\td")
        'abc d'
        """
        out = []
        for char in text:
            cp = ord(char)
            if cp == 0 or cp == 0xFFFD or _is_control(char):
                continue
            out.append(" " if _is_whitespace(char) else char)
        return "".join(out)

    @staticmethod
    def _tokenize_chinese_chars(text: str) -> str:
        """``"ab中文"`` -> ``"ab 中  文 "``: every CJK ideograph becomes its own word."""
        out = []
        for char in text:
            if _is_chinese_char(ord(char)):
                out.extend((" ", char, " "))
            else:
                out.append(char)
        return "".join(out)

    @staticmethod
    def _strip_accents(text: str) -> str:
        """``"café"`` -> ``"cafe"``: decompose (NFD) and drop combining marks (Mn)."""
        text = unicodedata.normalize("NFD", text)
        return "".join(c for c in text if unicodedata.category(c) != "Mn")

    def _split_on_punc(self, text: str, never_split=()) -> list[str]:
        """``"hi!!you"`` -> ``["hi", "!", "!", "you"]``: each punctuation character alone."""
        if not self.do_split_on_punc or text in never_split:
            return [text]
        output: list[list[str]] = []
        start_new_word = True
        for char in text:
            if _is_punctuation(char):
                output.append([char])
                start_new_word = True
            else:
                if start_new_word:
                    output.append([])
                start_new_word = False
                output[-1].append(char)
        return ["".join(x) for x in output]


# ----------------------------------------------------- wordpiece tokenizer
class WordpieceTokenizer:
    """Stage 3: greedy longest-match-first split of each word into vocabulary pieces.

    >>> wp = WordpieceTokenizer({"un": 0, "##aff": 1, "##able": 2, "[UNK]": 3}, "[UNK]")
    >>> wp.tokenize("unaffable")
    ['un', '##aff', '##able']
    >>> wp.tokenize("unaffordable")      # "##ord..." has no piece: the whole word is unknown
    ['[UNK]']
    """

    def __init__(self, vocab, unk_token="[UNK]", max_input_chars_per_word=100):
        self.vocab = vocab
        self.unk_token = unk_token
        self.max_input_chars_per_word = max_input_chars_per_word

    def tokenize(self, text: str) -> list[str]:
        output = []
        for word in _whitespace_split(text):
            if len(word) > self.max_input_chars_per_word:
                output.append(self.unk_token)
                continue
            pieces = []
            start = 0
            while start < len(word):
                # longest substring word[start:end] that is in the vocabulary
                end = len(word)
                piece = None
                while start < end:
                    candidate = word[start:end] if start == 0 else "##" + word[start:end]
                    if candidate in self.vocab:
                        piece = candidate
                        break
                    end -= 1
                if piece is None:  # no piece fits: the whole word becomes [UNK]
                    pieces = [self.unk_token]
                    break
                pieces.append(piece)
                start = end
            output.extend(pieces)
        return output


# ----------------------------------------------------------- batch output
class BatchEncoding(dict):
    """The dict returned by ``BertTokenizer.__call__``; keys are also attributes.

    >>> enc = BatchEncoding(input_ids=[2, 5, 3], attention_mask=[1, 1, 1])
    >>> enc.input_ids, enc["attention_mask"]
    ([2, 5, 3], [1, 1, 1])
    """

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"BatchEncoding has no field {name!r} (fields: {list(self)})") from None

    def __dir__(self):
        return list(super().__dir__()) + list(self.keys())


def _load_vocab(vocab_file) -> dict[str, int]:
    """``vocab.txt``: one token per line, the id is the line number (0-based)."""
    vocab: dict[str, int] = {}
    with open(vocab_file, encoding="utf-8") as f:
        for index, line in enumerate(f):
            vocab[line.rstrip("\n")] = index  # like HF: a repeated token keeps its last line
    return vocab


def _token_text(value):
    """Special tokens in tokenizer_config.json may be plain strings or AddedToken dicts."""
    if isinstance(value, dict):
        return value.get("content")
    return value


_CLEANUPS = [(" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
             (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")]


class BertTokenizer:
    """BERT's WordPiece tokenizer (uncased by default).

    Args:
        vocab_file: path of a ``vocab.txt`` (one token per line, id = line
            number), or the vocabulary itself as a list of tokens (id = position)
            or a ``{token: id}`` dict.
        do_lower_case: lower-case the text (and, unless ``strip_accents=False``,
            remove accents).
        do_basic_tokenize: run stage 2 (cleaning/punctuation); if False only
            whitespace splitting + WordPiece.
        never_split: extra tokens that basic tokenisation must keep as they are
            (only when they appear as whole whitespace-separated words).
        unk_token, sep_token, pad_token, cls_token, mask_token: the special
            tokens.  Written in the text they are always kept whole (matched
            case-sensitively, anywhere: ``"a[MASK]b"`` -> ``a [MASK] b``).
        tokenize_chinese_chars: split CJK ideographs into single characters.
        strip_accents: None (follow ``do_lower_case``), True or False.
        model_max_length: the limit used by ``truncation=True`` or
            ``padding="max_length"`` when no ``max_length`` is given (None: no
            limit).
        max_input_chars_per_word: longer words become ``[UNK]`` (100).
    """

    def __init__(self, vocab_file, do_lower_case=True, do_basic_tokenize=True, never_split=None,
                 unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]",
                 mask_token="[MASK]", tokenize_chinese_chars=True, strip_accents=None,
                 model_max_length=None, max_input_chars_per_word=100, do_split_on_punc=True):
        if isinstance(vocab_file, dict):
            vocab = dict(vocab_file)
        elif isinstance(vocab_file, (list, tuple)):
            vocab = {}
            for i, token in enumerate(vocab_file):
                vocab[token] = i
        else:
            path = os.fspath(vocab_file)
            if not os.path.isfile(path):
                raise ValueError(f"no vocabulary file at {path!r} (expected a BERT vocab.txt)")
            vocab = _load_vocab(path)
        self.vocab = vocab
        self.ids_to_tokens = {i: t for t, i in vocab.items()}
        self.do_lower_case = do_lower_case
        self.do_basic_tokenize = do_basic_tokenize
        self.model_max_length = model_max_length

        self.unk_token = unk_token
        self.sep_token = sep_token
        self.pad_token = pad_token
        self.cls_token = cls_token
        self.mask_token = mask_token
        for name in ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token"):
            token = getattr(self, name)
            if token not in vocab:
                raise ValueError(f"{name} {token!r} is not in the vocabulary")
        self.all_special_tokens = list(dict.fromkeys([unk_token, sep_token, pad_token, cls_token, mask_token]))
        self.all_special_ids = [vocab[t] for t in self.all_special_tokens]
        # longest first, so the longest special token wins when two start at the same place
        alternatives = sorted(self.all_special_tokens, key=len, reverse=True)
        self._special_re = re.compile("(" + "|".join(re.escape(t) for t in alternatives) + ")")

        self.basic_tokenizer = BasicTokenizer(
            do_lower_case=do_lower_case,
            never_split=never_split,
            tokenize_chinese_chars=tokenize_chinese_chars,
            strip_accents=strip_accents,
            do_split_on_punc=do_split_on_punc,
        )
        self.wordpiece_tokenizer = WordpieceTokenizer(vocab, unk_token, max_input_chars_per_word)

    # --------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, directory, **kwargs) -> "BertTokenizer":
        """Load ``directory/vocab.txt`` and, if present, the settings in
        ``directory/tokenizer_config.json`` (``do_lower_case``, special tokens,
        ``model_max_length``, ...).  Keyword arguments override both.

        Only local folders: nothing is downloaded.
        """
        from ..io import resolve_folder
        directory = resolve_folder(directory)     # or directory.old, left by an interrupted save
        vocab_file = os.path.join(directory, "vocab.txt")
        if not os.path.isfile(vocab_file):
            raise ValueError(f"{directory!r} has no vocab.txt (expected a BERT tokenizer folder)")
        settings = {}
        config_file = os.path.join(directory, "tokenizer_config.json")
        if os.path.isfile(config_file):
            with open(config_file, encoding="utf-8") as f:
                config = json.load(f)
            for key in ("do_lower_case", "do_basic_tokenize", "never_split", "tokenize_chinese_chars",
                        "strip_accents", "model_max_length", "unk_token", "sep_token", "pad_token",
                        "cls_token", "mask_token"):
                if config.get(key) is not None:
                    settings[key] = _token_text(config[key])
            # HF writes a huge number (1e30) for "no limit"
            if settings.get("model_max_length", 0) > 1e18:
                settings.pop("model_max_length")
        settings.update(kwargs)
        return cls(vocab_file, **settings)

    def save_pretrained(self, directory) -> list[str]:
        """Write ``vocab.txt`` and ``tokenizer_config.json`` so that
        :meth:`from_pretrained` (or Hugging Face's BertTokenizer) can read them back."""
        from ..io import atomic_folder
        directory = os.fspath(directory)
        ids = sorted(self.ids_to_tokens)
        if ids != list(range(len(ids))):
            raise ValueError("vocab.txt needs the ids 0..n-1 without gaps (the id is the line number)")
        with atomic_folder(directory) as tmp:     # crash-safe; other files in the folder are kept
            self._write_files(tmp, ids)
        return [os.path.join(directory, "vocab.txt"), os.path.join(directory, "tokenizer_config.json")]

    def _write_files(self, directory, ids):
        vocab_file = os.path.join(directory, "vocab.txt")
        with open(vocab_file, "w", encoding="utf-8") as f:
            for i in ids:
                f.write(self.ids_to_tokens[i] + "\n")
        config = {
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": self.do_lower_case,
            "do_basic_tokenize": self.do_basic_tokenize,
            "never_split": sorted(self.basic_tokenizer.never_split) or None,
            "tokenize_chinese_chars": self.basic_tokenizer.tokenize_chinese_chars,
            "strip_accents": self.basic_tokenizer.strip_accents,
            "unk_token": self.unk_token, "sep_token": self.sep_token, "pad_token": self.pad_token,
            "cls_token": self.cls_token, "mask_token": self.mask_token,
        }
        if self.model_max_length is not None:
            config["model_max_length"] = self.model_max_length
        config_file = os.path.join(directory, "tokenizer_config.json")
        with open(config_file, "w", encoding="utf-8") as f:
            json.dump(config, f, ensure_ascii=False, indent=1)

    # ------------------------------------------------------ properties
    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return (f"BertTokenizer(vocab_size={self.vocab_size}, do_lower_case={self.do_lower_case}, "
                f"model_max_length={self.model_max_length})")

    @property
    def pad_token_id(self) -> int:
        return self.vocab[self.pad_token]

    @property
    def cls_token_id(self) -> int:
        return self.vocab[self.cls_token]

    @property
    def sep_token_id(self) -> int:
        return self.vocab[self.sep_token]

    @property
    def mask_token_id(self) -> int:
        return self.vocab[self.mask_token]

    @property
    def unk_token_id(self) -> int:
        return self.vocab[self.unk_token]

    # ---------------------------------------------------- tokenisation
    def tokenize(self, text: str) -> list[str]:
        """Text -> WordPiece tokens (no ``[CLS]``/``[SEP]`` added).

        >>> tok = BertTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "!"])
        >>> tok.tokenize("Unaffable!")
        ['un', '##aff', '##able', '!']
        >>> tok.tokenize("un[MASK]able")
        ['un', '[MASK]', '[UNK]']
        """
        if not isinstance(text, str):
            raise TypeError(f"expected a str, got {type(text).__name__}")
        tokens = []
        # 1. special tokens are cut out of the raw text (the capturing group keeps them)
        for i, piece in enumerate(self._special_re.split(text)):
            if i % 2 == 1:
                tokens.append(piece)
            elif piece:
                tokens.extend(self._tokenize_piece(piece))
        return tokens

    def _tokenize_piece(self, text: str) -> list[str]:
        if not self.do_basic_tokenize:
            return self.wordpiece_tokenizer.tokenize(text)
        tokens = []
        for word in self.basic_tokenizer.tokenize(text, never_split=self.all_special_tokens):
            if word in self.basic_tokenizer.never_split:
                tokens.append(word)
            else:
                tokens.extend(self.wordpiece_tokenizer.tokenize(word))
        return tokens

    def convert_tokens_to_ids(self, tokens):
        """Token(s) -> id(s); tokens missing from the vocabulary map to ``unk_token_id``."""
        if isinstance(tokens, str):
            return self.vocab.get(tokens, self.unk_token_id)
        unk = self.unk_token_id
        return [self.vocab.get(t, unk) for t in tokens]

    def convert_ids_to_tokens(self, ids, skip_special_tokens=False):
        """Id(s) -> token(s).  An id outside the vocabulary raises ValueError."""
        if isinstance(ids, (int,)) or (hasattr(ids, "ndim") and ids.ndim == 0):
            return self._id_to_token(int(ids))
        skip = set(self.all_special_ids) if skip_special_tokens else ()
        return [self._id_to_token(int(i)) for i in ids if int(i) not in skip]

    def _id_to_token(self, i: int) -> str:
        token = self.ids_to_tokens.get(i)
        if token is None:
            raise ValueError(f"token id {i} is outside the vocabulary (vocab_size={self.vocab_size})")
        return token

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        """2 for ``[CLS] A [SEP]``, 3 for ``[CLS] A [SEP] B [SEP]``."""
        return 3 if pair else 2

    # ---------------------------------------------------------- encode
    def encode(self, text, text_pair=None, add_special_tokens=True, truncation=None, max_length=None) -> list[int]:
        """Text (and optional second text) -> ids with ``[CLS]``/``[SEP]``.

        >>> tok = BertTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"])
        >>> tok.encode("a b")
        [2, 5, 6, 3]
        >>> tok.encode("a", "b")
        [2, 5, 3, 6, 3]
        >>> tok.encode("a b", add_special_tokens=False)
        [5, 6]
        """
        return self(text, text_pair, add_special_tokens=add_special_tokens, truncation=truncation,
                    max_length=max_length, return_attention_mask=False,
                    return_token_type_ids=False)["input_ids"]

    def __call__(self, text, text_pair=None, add_special_tokens=True, padding=False, truncation=None,
                 max_length=None, return_tensors=None, return_attention_mask=True,
                 return_token_type_ids=True) -> BatchEncoding:
        """Encode a text, a pair, or a batch (list) of texts/pairs for the model.

        Returns a :class:`BatchEncoding` with ``input_ids``, ``token_type_ids``
        (0 for ``[CLS] A [SEP]``, 1 for ``B [SEP]``) and ``attention_mask`` (1 for
        real tokens, 0 for padding): lists for one text, lists of lists for a
        batch, or int64 arrays of shape (batch, length) with ``return_tensors="np"``
        (one text gives a batch of 1).

        ``padding``: False / "do_not_pad"; True / "longest" (to the longest in the
        batch); "max_length" (to ``max_length``, or ``model_max_length``).
        Padding is on the right with ``[PAD]``, token type 0, mask 0.

        ``truncation``: True / "longest_first" removes tokens until the input
        fits ``max_length`` (default ``model_max_length``).  For a pair it
        first shortens the longer text until both are the same length, then
        removes from both alternately, the second text first (so it loses one
        more when the count is odd), exactly as HF's slow tokenizer.  Also
        "only_first", "only_second" (ValueError if that text is too short to
        remove enough), or False / "do_not_truncate".  As in HF, leaving
        ``truncation=None`` with a ``max_length`` and no padding means
        "longest_first".

        >>> tok = BertTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c"])
        >>> enc = tok(["a b c", "a"], padding=True)
        >>> enc.input_ids
        [[2, 5, 6, 7, 3], [2, 5, 3, 0, 0]]
        >>> enc.attention_mask
        [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
        >>> tok("a b", "c").token_type_ids
        [0, 0, 0, 0, 1, 1]
        >>> tok("a b c a b c", max_length=5, truncation=True).input_ids
        [2, 5, 6, 7, 3]
        """
        # ---- what was passed: one text / pair, or a batch
        batched = isinstance(text, (list, tuple))
        if batched:
            texts = list(text)
            if text_pair is None:
                pairs = [None] * len(texts)
            elif isinstance(text_pair, (list, tuple)):
                pairs = list(text_pair)
                if len(pairs) != len(texts):
                    raise ValueError(
                        f"got {len(texts)} texts but {len(pairs)} text_pair entries; they must have the same length"
                    )
            else:
                raise ValueError("text is a list (a batch), so text_pair must be a list of the same length")
        else:
            if isinstance(text_pair, (list, tuple)):
                raise ValueError("text_pair is a list but text is a single string; pass a list of texts for a batch")
            texts, pairs = [text], [text_pair]
        for t in texts + [p for p in pairs if p is not None]:
            if not isinstance(t, str):
                raise TypeError(f"texts must be str, got {type(t).__name__}")
        if return_tensors not in (None, "np"):
            raise ValueError(f"return_tensors must be None or 'np', got {return_tensors!r}")

        padding_strategy = self._padding_strategy(padding)
        truncation_strategy = self._truncation_strategy(truncation, padding_strategy, max_length)
        if max_length is None:
            if padding_strategy == "max_length" or truncation_strategy != "do_not_truncate":
                max_length = self.model_max_length
            if padding_strategy == "max_length" and max_length is None:
                raise ValueError('padding="max_length" needs max_length (the tokenizer has no model_max_length)')
        if max_length is not None:
            if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 0:
                raise ValueError(f"max_length must be a non-negative int, got {max_length!r}")
            has_pair = any(p is not None for p in pairs)
            needed = self.num_special_tokens_to_add(pair=has_pair) if add_special_tokens else 0
            if max_length < needed:
                raise ValueError(
                    f"max_length={max_length} is smaller than the {needed} special tokens "
                    f"({'[CLS] A [SEP] B [SEP]' if has_pair else '[CLS] A [SEP]'}) every input needs"
                )

        # ---- encode each example
        rows = []
        for a, b in zip(texts, pairs):
            ids = self.convert_tokens_to_ids(self.tokenize(a))
            pair_ids = self.convert_tokens_to_ids(self.tokenize(b)) if b is not None else None
            rows.append(self._prepare(ids, pair_ids, add_special_tokens, truncation_strategy, max_length))

        # ---- pad
        if padding_strategy != "do_not_pad" and rows:
            target = max_length if padding_strategy == "max_length" else max(len(r[0]) for r in rows)
            for input_ids, token_type_ids, attention_mask in rows:
                n = target - len(input_ids)
                if n > 0:
                    input_ids.extend([self.pad_token_id] * n)
                    token_type_ids.extend([0] * n)
                    attention_mask.extend([0] * n)

        out = BatchEncoding()
        out["input_ids"] = [r[0] for r in rows]
        if return_token_type_ids:
            out["token_type_ids"] = [r[1] for r in rows]
        if return_attention_mask:
            out["attention_mask"] = [r[2] for r in rows]

        if return_tensors == "np":
            import numpy as np

            lengths = {len(ids) for ids in out["input_ids"]}
            if len(lengths) > 1:
                raise ValueError(
                    f"cannot stack sequences of different lengths {sorted(lengths)} into an array; "
                    "use padding=True (or padding='max_length') with return_tensors='np'"
                )
            length = lengths.pop() if lengths else 0
            for key in list(out):
                out[key] = np.array(out[key], dtype=np.int64).reshape(len(rows), length)
        elif not batched:
            for key in list(out):
                out[key] = out[key][0]
        return out

    def _prepare(self, ids, pair_ids, add_special_tokens, truncation_strategy, max_length):
        """Truncate, add special tokens; returns ``[input_ids, token_type_ids, attention_mask]``."""
        num_special = self.num_special_tokens_to_add(pair_ids is not None) if add_special_tokens else 0
        total = len(ids) + len(pair_ids or []) + num_special
        if truncation_strategy != "do_not_truncate" and max_length is not None and total > max_length:
            ids, pair_ids = self._truncate(ids, pair_ids, total - max_length, truncation_strategy)
        if add_special_tokens:
            cls, sep = [self.cls_token_id], [self.sep_token_id]
            input_ids = cls + ids + sep
            token_type_ids = [0] * len(input_ids)
            if pair_ids is not None:
                input_ids += pair_ids + sep
                token_type_ids += [1] * (len(pair_ids) + 1)
        else:
            input_ids = ids + (pair_ids or [])
            token_type_ids = [0] * len(input_ids)
        attention_mask = [1] * len(input_ids)
        return [input_ids, token_type_ids, attention_mask]

    @staticmethod
    def _truncate(ids, pair_ids, n_remove, strategy):
        """Remove ``n_remove`` tokens from the end(s), following ``strategy``.

        >>> BertTokenizer._truncate([1, 2, 3, 4, 5, 6], [7, 8], 5, "longest_first")
        ([1, 2], [7])
        """
        if strategy == "only_second" and pair_ids is None:
            raise ValueError("truncation='only_second' needs a text_pair")
        if strategy == "only_first" or (strategy == "longest_first" and pair_ids is None):
            if n_remove > len(ids):
                raise ValueError(
                    f"cannot truncate: {n_remove} tokens must go but the first text has only {len(ids)}"
                )
            return ids[:len(ids) - n_remove], pair_ids
        if strategy == "only_second":
            if n_remove > len(pair_ids):
                raise ValueError(
                    f"cannot truncate: {n_remove} tokens must go but the second text has only {len(pair_ids)}"
                )
            return ids, pair_ids[:len(pair_ids) - n_remove]
        # longest_first with a pair: shorten the longer one to the length of the
        # shorter, then split the rest evenly, the second text losing one more if
        # the rest is odd.  Same result as HF's slow tokenizer (which removes one
        # token at a time from the longer text, from the second one on ties).
        # HF's fast (Rust) tokenizer differs on ties: there the first loses more.
        first_remove = min(abs(len(pair_ids) - len(ids)), n_remove)
        rest = n_remove - first_remove
        if len(ids) > len(pair_ids):
            remove_a, remove_b = first_remove + rest // 2, rest - rest // 2
        else:
            remove_a, remove_b = rest // 2, first_remove + rest - rest // 2
        return ids[:max(len(ids) - remove_a, 0)], pair_ids[:max(len(pair_ids) - remove_b, 0)]

    @staticmethod
    def _padding_strategy(padding) -> str:
        if padding is False or padding is None or padding == "do_not_pad":
            return "do_not_pad"
        if padding is True or padding == "longest":
            return "longest"
        if padding == "max_length":
            return "max_length"
        raise ValueError(f"padding must be False, True, 'longest', 'max_length' or 'do_not_pad', got {padding!r}")

    @staticmethod
    def _truncation_strategy(truncation, padding_strategy, max_length) -> str:
        if truncation is None:
            # HF: a max_length without padding or truncation means "truncate"
            if max_length is not None and padding_strategy == "do_not_pad":
                return "longest_first"
            return "do_not_truncate"
        if truncation is False or truncation == "do_not_truncate":
            return "do_not_truncate"
        if truncation is True or truncation == "longest_first":
            return "longest_first"
        if truncation in ("only_first", "only_second"):
            return truncation
        raise ValueError(
            "truncation must be True, False, 'longest_first', 'only_first', 'only_second' "
            f"or 'do_not_truncate', got {truncation!r}"
        )

    # ---------------------------------------------------------- decode
    def convert_tokens_to_string(self, tokens) -> str:
        """``["un", "##aff", "##able", "!"]`` -> ``"unaffable !"``."""
        return " ".join(tokens).replace(" ##", "").strip()

    def decode(self, ids, skip_special_tokens=False, clean_up_tokenization_spaces=True) -> str:
        """Ids -> text: tokens joined by spaces, ``##`` pieces glued to the previous one.

        The text is lower-cased and accent-free for an uncased vocabulary, and
        spaces around punctuation are not restored exactly.  With
        ``clean_up_tokenization_spaces`` (default True, as HF's slow
        BertTokenizer) " ." " ," " !" " ?" " n't" " 's" ... lose their space.

        >>> tok = BertTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "!"])
        >>> tok.decode([2, 5, 6, 7, 8, 3])
        '[CLS] unaffable! [SEP]'
        >>> tok.decode([2, 5, 6, 7, 8, 3], skip_special_tokens=True, clean_up_tokenization_spaces=False)
        'unaffable !'
        """
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        if isinstance(ids, int):
            ids = [ids]
        text = self.convert_tokens_to_string(self.convert_ids_to_tokens(ids, skip_special_tokens))
        if clean_up_tokenization_spaces:
            for old, new in _CLEANUPS:
                text = text.replace(old, new)
        return text

    def batch_decode(self, sequences, **kwargs) -> list[str]:
        """``decode`` each row of a batch (list of lists or a 2-D array)."""
        return [self.decode(ids, **kwargs) for ids in sequences]
