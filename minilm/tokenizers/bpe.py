"""Byte-level Byte Pair Encoding (BPE), the tokenizer of GPT-2.

The idea (Sennrich et al. 2016, applied to bytes by GPT-2):

1. Start from the 256 possible bytes: any text is a sequence of UTF-8 bytes, so
   nothing is ever "unknown".
2. Training: repeatedly find the most frequent pair of adjacent tokens and
   replace it everywhere by a new token.  The list of merges, in the order they
   were learnt, *is* the tokenizer.
3. Encoding: turn the text into bytes and apply the learnt merges, always the
   earliest-learnt (lowest rank) merge that is possible, until none applies.
4. Decoding: concatenate the bytes of every token and decode as UTF-8.

Before counting pairs, GPT-2 cuts the text into chunks with a regular
expression (words with their leading space, runs of digits, runs of
punctuation, whitespace) and never merges across chunk boundaries, so that
"dog", "dog." and "dog!" share the token " dog".

A known answer (the Wikipedia example, used by Karpathy's minbpe), with no
pre-tokenisation split so the whole string is one chunk::

    >>> tok = BPETokenizer(pattern=None)
    >>> tok.train("aaabdaaabac", vocab_size=256 + 3)
    >>> tok.encode("aaabdaaabac")   # aa -> 256 (Z), ab -> 257 (Y), ZY -> 258 (X): "XdXac"
    [258, 100, 258, 97, 99]
    >>> tok.decode([258, 100, 258, 97, 99])
    'aaabdaaabac'

The files written by :meth:`BPETokenizer.save` are GPT-2's own ``vocab.json`` +
``merges.txt``, so the same class loads the real GPT-2 tokenizer::

    tok = BPETokenizer.from_pretrained("path/to/gpt2")   # folder with vocab.json, merges.txt
    tok.encode("Hello world")   # -> [15496, 995], exactly as GPT-2

Ids vs. the byte alphabet: a freshly trained tokenizer gives byte ``b`` the id
``b``.  GPT-2's files order the bytes differently (id 0 is ``"!"``), so the
class never assumes ``id == byte``; it keeps a ``byte -> id`` table instead.
"""

from __future__ import annotations

import functools
import contextlib
import hashlib
import heapq
import json
import os
import re
import unicodedata
from collections import Counter, defaultdict

import numpy as np

__all__ = ["BPETokenizer", "GPT2_SPLIT_PATTERN", "bytes_to_unicode", "gpt2_split_regex", "unicode_regex_to_re"]


# ------------------------------------------------------------------- GPT-2 split
#: The pre-tokenisation pattern of GPT-2 (``encoder.py`` of openai/gpt-2), written
#: for the third-party ``regex`` module.  Stdlib ``re`` has no ``\p{...}``; see
#: :func:`gpt2_split_regex` for the translation that is actually used.
GPT2_SPLIT_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

# Unicode White_Space, which is what ``\s`` means in the ``regex`` module.  Stdlib
# ``re``'s ``\s`` (str.isspace) also matches U+001C..U+001F (the "information
# separators"), which GPT-2 treats as punctuation, so we spell the set out.
_WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def _char_class_ranges(codepoints) -> str:
    """Sorted code points -> the inside of a ``[...]`` class, e.g. ``\\u00b2-\\u00b3\\u00b9``."""
    parts = []
    cps = list(codepoints)
    i = 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        lo, hi = cps[i], cps[j]
        parts.append(f"\\U{lo:08x}" if lo == hi else f"\\U{lo:08x}-\\U{hi:08x}")
        i = j + 1
    return "".join(parts)


@functools.lru_cache(maxsize=None)
def gpt2_split_regex() -> "re.Pattern[str]":
    r"""GPT-2's split pattern translated to stdlib ``re``.

    How each piece is translated (``\w`` in Python 3 ``re`` is exactly: Unicode
    letters L*, Unicode numbers N*, and ``_``; this is checked in the tests):

    * ``\p{L}`` (letters)  -> ``[^\W\d_<Nl+No>]``: word characters that are not a
      decimal digit, not ``_``, and not one of the "other" numbers.  Plain
      ``[^\W\d_]`` would be wrong: ``\d`` is only the decimal digits (category
      Nd), so characters like '²' (No), '½' (No) or 'Ⅻ' (Nl) are word characters
      that are not ``\d`` and would be taken for letters.
    * ``\p{N}`` (numbers)  -> ``[\d<Nl+No>]``: decimal digits plus the Nl and No
      characters, listed explicitly (about 1 100 code points).
    * ``\s``               -> the Unicode White_Space set spelled out (see above).
    * ``[^\s\p{L}\p{N}]``  -> ``(?:[^<ws>\w]|_)``: neither whitespace nor a word
      character, or the underscore (which ``\w`` includes but is not L/N).

    Where it may still differ from the ``regex`` module (or tiktoken / HF
    tokenizers): the Unicode version.  Categories come from Python's
    ``unicodedata`` (Unicode 14.0 on Python 3.11, 15.0 on 3.12 ...), so code
    points assigned in a later Unicode version than the other library's (or
    vice versa) are classified differently.  Everything else, including the
    backtracking of ``\s+(?!\S)``, behaves identically.

    >>> gpt2_split_regex().findall("Hello world! It's 2024, x²+y² ½")
    ['Hello', ' world', '!', ' It', "'s", ' 2024', ',', ' x', '²', '+', 'y', '²', ' ½']
    """
    other_numbers = [cp for cp in range(0x110000) if unicodedata.category(chr(cp)) in ("Nl", "No")]
    no = _char_class_ranges(other_numbers)
    letter = rf"[^\W\d_{no}]"
    number = rf"[\d{no}]"
    space = f"[{_WHITESPACE}]"
    not_space = f"[^{_WHITESPACE}]"
    other = rf"(?:[^{_WHITESPACE}\w]|_)"
    pattern = (
        r"'s|'t|'re|'ve|'m|'ll|'d"
        rf"| ?{letter}+"
        rf"| ?{number}+"
        rf"| ?{other}+"
        rf"|{space}+(?!{not_space})"
        rf"|{space}+"
    )
    return re.compile(pattern)


# ------------------------------------------------------------ GPT-2 file format
@functools.lru_cache(maxsize=None)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table byte -> printable character used in ``vocab.json``/``merges.txt``.

    Printable bytes map to themselves; the others (control characters, space,
    ...) are shifted to code points 256+ so every token is a visible string
    without spaces.  The space byte becomes 'Ġ', newline 'Ċ'.

    >>> table = bytes_to_unicode()
    >>> table[ord("a")], table[ord(" ")], table[ord("\\n")]
    ('a', 'Ġ', 'Ċ')
    """
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


@functools.lru_cache(maxsize=None)
def _unicode_to_bytes() -> dict[str, int]:
    return {c: b for b, c in bytes_to_unicode().items()}


def _token_to_str(token: bytes) -> str:
    """``b" hello"`` -> ``"Ġhello"`` (GPT-2 file spelling of a token's bytes)."""
    table = bytes_to_unicode()
    return "".join(table[b] for b in token)


def _str_to_token(s: str) -> bytes | None:
    """``"Ġhello"`` -> ``b" hello"``; None if ``s`` uses characters outside the byte alphabet."""
    table = _unicode_to_bytes()
    try:
        return bytes(table[c] for c in s)
    except KeyError:
        return None


# ---------------------------------------------------------------------- helpers
def _merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every non-overlapping occurrence of ``pair`` (left to right) by ``new_id``.

    >>> _merge([1, 2, 3, 1, 2], (1, 2), 4)
    [4, 3, 4]
    >>> _merge([5, 5, 5], (5, 5), 6)
    [6, 5]
    """
    out = []
    i = 0
    n = len(ids)
    a, b = pair
    while i < n:
        if i + 1 < n and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


_DEFAULT = "gpt2"  # marker meaning "GPT-2's split pattern"


class BPETokenizer:
    """Byte-level BPE tokenizer (GPT-2 style).

    Args:
        pattern: how text is cut into chunks before BPE.  ``"gpt2"`` (default)
            or :data:`GPT2_SPLIT_PATTERN`: GPT-2's pattern (translated to stdlib
            ``re``).  ``None``: no split, the whole text (between special tokens)
            is a single chunk, as in minbpe's ``BasicTokenizer``.  Any other
            string is compiled with stdlib ``re``.

    Attributes:
        vocab: ``{id: bytes}`` for every token, special tokens included (their
            bytes are their UTF-8 text).
        merges: ``{(id_a, id_b): new_id}`` in rank order (first learnt first).
        special_tokens: ``{text: id}``, e.g. ``{"<|endoftext|>": 50256}``.

    Special tokens (like ``<|endoftext|>``) are never produced by merges.  The
    choice made here: :meth:`encode` recognises them in the text **by default**
    (``allowed_special="all"``), as Hugging Face's GPT2Tokenizer does and as
    tiktoken's ``encode(text, allowed_special="all")`` does; pass
    ``allowed_special="none"`` (or call :meth:`encode_ordinary`) to encode them
    as ordinary text like tiktoken's ``encode_ordinary``.  Unlike tiktoken's
    plain ``encode`` nothing raises when a disallowed special token appears.

    >>> tok = BPETokenizer()
    >>> tok.train("the cat<|endoftext|>the hat<|endoftext|>", 256 + 3, special_tokens=["<|endoftext|>"])
    >>> tok.special_tokens
    {'<|endoftext|>': 258}
    >>> tok.merges      # "at" (in " cat" and " hat") and "he" (twice in "the")
    {(97, 116): 256, (104, 101): 257}
    >>> tok.encode("the hat<|endoftext|>")    # t, he, space, h, at, <|endoftext|>
    [116, 257, 32, 104, 256, 258]
    >>> tok.encode_ordinary("<|endoftext|>")[:3]
    [60, 124, 101]
    """

    def __init__(self, pattern=_DEFAULT):
        self.vocab: dict[int, bytes] = {b: bytes([b]) for b in range(256)}
        self.merges: dict[tuple[int, int], int] = {}
        self.special_tokens: dict[str, int] = {}
        self._byte_ids: list[int | None] = list(range(256))  # byte value -> token id
        # what a Hugging Face tokenizer.json may ask for (from_tokenizer_json sets them)
        self._keep_gaps = False         # Split behavior "Isolated": text between matches is a chunk too
        self._add_prefix_space = False  # ByteLevel(add_prefix_space=True): " " before each piece
        self._normalizer = None         # "NFC" (Qwen2/3) or None
        self._ignore_merges = False     # Llama 3: a chunk that is itself a token is not merged
        self._set_pattern(pattern)
        self._rebuild()

    # ------------------------------------------------------------ internals
    def _set_pattern(self, pattern) -> None:
        if pattern == _DEFAULT or pattern == GPT2_SPLIT_PATTERN:
            self.pattern = _DEFAULT
            self._split_re = gpt2_split_regex()
        elif pattern is None:
            self.pattern = None
            self._split_re = None
        elif isinstance(pattern, str):
            self.pattern = pattern
            self._split_re = re.compile(pattern)
        else:
            raise TypeError(f"pattern must be 'gpt2', None or a regular expression string, got {type(pattern).__name__}")

    def _rebuild(self) -> None:
        """Recompute the derived tables after vocab/merges/special tokens changed."""
        self._ranks = {pair: rank for rank, pair in enumerate(self.merges)}
        self._inverse_special = {i: s for s, i in self.special_tokens.items()}
        self._special_re = self._special_regex(self.special_tokens)
        self._cache: dict[str, list[int]] = {}
        self._token_ids = ({t: i for i, t in self.vocab.items() if i not in self._inverse_special}
                           if self._ignore_merges else {})

    @staticmethod
    def _special_regex(specials):
        if not specials:
            return None
        # longest first, so that "<|a|>" wins over a special "<|a" at the same place
        alternatives = sorted(specials, key=len, reverse=True)
        return re.compile("(" + "|".join(re.escape(s) for s in alternatives) + ")")

    def _chunks(self, text: str) -> list[str]:
        """Pre-tokenisation: ``"Hello world!"`` -> ``["Hello", " world", "!"]``."""
        if not text:
            return []
        if self._split_re is None:
            return [text]
        if not self._keep_gaps:
            return self._split_re.findall(text)
        chunks, end = [], 0                 # "Isolated": matches and the gaps between them
        for m in self._split_re.finditer(text):
            if m.start() > end:
                chunks.append(text[end:m.start()])
            if m.end() > m.start():
                chunks.append(m.group())
            end = m.end()
        if end < len(text):
            chunks.append(text[end:])
        return chunks

    def _split_special(self, text: str, specials) -> list[tuple[str, bool]]:
        """``"a<|endoftext|>b"`` -> ``[("a", False), ("<|endoftext|>", True), ("b", False)]``."""
        regex = self._special_regex(specials)
        if regex is None:
            return [(text, False)] if text else []
        parts = regex.split(text)  # the capturing group keeps the specials at odd positions
        return [(p, i % 2 == 1) for i, p in enumerate(parts) if p]

    # ------------------------------------------------------------- training
    def train(self, text: str, vocab_size: int, verbose: bool = False, special_tokens=()) -> None:
        """Learn merges on ``text`` until the vocabulary has ``vocab_size`` tokens.

        ``vocab_size`` counts the 256 byte tokens, the merges and the special
        tokens (GPT-2: 256 + 50 000 + 1 = 50 257); special tokens get the last
        ids.  Special tokens occurring in ``text`` are cut out first and never
        take part in merges.  Training stops early if no pair is left to merge.

        Ties between equally frequent pairs go to the pair with the smallest ids
        (deterministic; minbpe instead takes the pair seen first in the text).

        Pair counts are kept up to date incrementally: text is reduced to its
        distinct chunks with their counts, and a merge only revisits the chunks
        that contain the merged pair.

        >>> tok = BPETokenizer(pattern=None)
        >>> tok.train("aaabdaaabac", 259)
        >>> {pair: new for pair, new in tok.merges.items()}
        {(97, 97): 256, (97, 98): 257, (256, 257): 258}
        """
        if isinstance(special_tokens, str):
            special_tokens = [special_tokens]
        special_tokens = list(dict.fromkeys(special_tokens))
        if vocab_size < 256:
            raise ValueError(f"vocab_size must be at least 256 (one token per byte), got {vocab_size}")
        if vocab_size < 256 + len(special_tokens):
            raise ValueError(
                f"vocab_size={vocab_size} leaves no room for the 256 byte tokens plus "
                f"{len(special_tokens)} special token(s)"
            )
        for s in special_tokens:
            if not isinstance(s, str) or not s:
                raise ValueError(f"special tokens must be non-empty strings, got {s!r}")
        target = vocab_size - len(special_tokens)  # size before adding the special tokens

        # 1. distinct chunks and how often each occurs
        chunk_counts: Counter[str] = Counter()
        for piece, is_special in self._split_special(text, special_tokens):
            if not is_special:
                chunk_counts.update(self._chunks(piece))
        words = [list(chunk.encode("utf-8")) for chunk in chunk_counts]
        counts = list(chunk_counts.values())

        # 2. initial pair counts, and which words contain each pair
        pair_counts: dict[tuple[int, int], int] = defaultdict(int)
        where: dict[tuple[int, int], set[int]] = defaultdict(set)
        for w, ids in enumerate(words):
            for pair in zip(ids, ids[1:]):
                pair_counts[pair] += counts[w]
                where[pair].add(w)
        # max-heap of (-count, pair); entries go stale when a count changes and are
        # skipped when popped (a fresh entry is pushed for every change)
        heap = [(-c, pair) for pair, c in pair_counts.items()]
        heapq.heapify(heap)

        vocab = {b: bytes([b]) for b in range(256)}
        bytes_to_id = {v: k for k, v in vocab.items()}
        merges: dict[tuple[int, int], int] = {}
        n_merges = 0
        while len(vocab) < target:
            # 3. most frequent pair
            best = None
            while heap:
                neg_count, pair = heapq.heappop(heap)
                if pair_counts.get(pair, 0) == -neg_count > 0:
                    best = pair
                    break
            if best is None:
                if verbose:
                    print(f"no pair left to merge; stopping with {len(vocab)} tokens")
                break
            count = pair_counts[best]
            new_bytes = vocab[best[0]] + vocab[best[1]]
            if new_bytes in bytes_to_id:
                # Guard: the same bytes already form a token (through another split).
                # Reuse its id, as GPT-2's vocab.json holds one id per string.
                new_id = bytes_to_id[new_bytes]
            else:
                new_id = len(vocab)
                vocab[new_id] = new_bytes
                bytes_to_id[new_bytes] = new_id
            merges.setdefault(best, new_id)
            n_merges += 1
            if verbose:
                print(f"merge {n_merges}: {best} -> {new_id} ({new_bytes!r}) had {count} occurrences")

            # 4. apply it to every word containing the pair, updating the counts
            changed = set()
            for w in where.pop(best):
                old = words[w]
                new = _merge(old, best, new_id)
                if len(new) == len(old):  # stale entry of `where`
                    continue
                c = counts[w]
                for pair in zip(old, old[1:]):
                    pair_counts[pair] -= c
                    changed.add(pair)
                for pair in zip(new, new[1:]):
                    pair_counts[pair] += c
                    where[pair].add(w)
                    changed.add(pair)
                words[w] = new
            for pair in changed:
                c = pair_counts[pair]
                if c > 0:
                    heapq.heappush(heap, (-c, pair))
                else:
                    del pair_counts[pair]
                    where.pop(pair, None)

        base = len(vocab)  # == target unless training ran out of pairs
        for k, s in enumerate(special_tokens):
            vocab[base + k] = s.encode("utf-8")
        self.vocab = vocab
        self.merges = merges
        self.special_tokens = {s: base + k for k, s in enumerate(special_tokens)}
        self._byte_ids = list(range(256))
        self._rebuild()

    # ------------------------------------------------------------- encoding
    def _encode_chunk(self, chunk: str) -> list[int]:
        """BPE on one chunk: ``" hello"`` -> ids, applying the lowest-rank merge first."""
        cached = self._cache.get(chunk)
        if cached is not None:
            return list(cached)
        if self._ignore_merges:
            whole = self._token_ids.get(chunk.encode("utf-8"))
            if whole is not None:
                return [whole]
        byte_ids = self._byte_ids
        ids = []
        for b in chunk.encode("utf-8"):
            i = byte_ids[b]
            if i is None:
                raise ValueError(f"byte 0x{b:02x} (in {chunk!r}) has no token in this vocabulary")
            ids.append(i)
        ranks = self._ranks
        while len(ids) >= 2:
            # the adjacent pair that was learnt first
            pair = min(zip(ids, ids[1:]), key=lambda p: ranks.get(p, float("inf")))
            if pair not in ranks:
                break
            ids = _merge(ids, pair, self.merges[pair])
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[chunk] = ids
        return list(ids)

    def _allowed_specials(self, allowed_special) -> dict[str, int]:
        if allowed_special == "all":
            return self.special_tokens
        if allowed_special == "none" or allowed_special is None:
            return {}
        if isinstance(allowed_special, str):
            raise ValueError(f"allowed_special must be 'all', 'none' or a collection of strings, got {allowed_special!r}")
        allowed = set(allowed_special)
        unknown = allowed - set(self.special_tokens)
        if unknown:
            raise ValueError(f"not special tokens of this tokenizer: {sorted(unknown)!r}")
        return {s: i for s, i in self.special_tokens.items() if s in allowed}

    def encode(self, text: str, allowed_special="all") -> list[int]:
        """Text -> list of token ids.

        ``allowed_special``: ``"all"`` (default: every special token written in
        the text becomes its id), ``"none"`` (special tokens are encoded as
        plain text), or a set of the special tokens to recognise.

        >>> tok = BPETokenizer()            # untrained: one token per byte
        >>> tok.encode("hé!")
        [104, 195, 169, 33]
        """
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        specials = self._allowed_specials(allowed_special)
        ids: list[int] = []
        for piece, is_special in self._split_special(text, specials):
            if is_special:
                ids.append(specials[piece])
            else:
                if self._normalizer:
                    piece = unicodedata.normalize(self._normalizer, piece)
                if self._add_prefix_space and not piece.startswith(" "):
                    piece = " " + piece
                for chunk in self._chunks(piece):
                    ids.extend(self._encode_chunk(chunk))
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Like ``encode(text, allowed_special="none")``: special tokens are plain text."""
        return self.encode(text, allowed_special="none")

    def decode_bytes(self, ids) -> bytes:
        """Ids -> the raw bytes they stand for (may be cut inside a UTF-8 character)."""
        parts = []
        for i in ids:
            i = int(i)
            token = self.vocab.get(i)
            if token is None:
                raise ValueError(f"token id {i} is not in the vocabulary (vocab_size={self.vocab_size})")
            parts.append(token)
        return b"".join(parts)

    def decode(self, ids, skip_special_tokens=False) -> str:
        """Ids -> text.  Invalid UTF-8 (e.g. half of a multi-byte character)
        becomes U+FFFD, as GPT-2's ``errors="replace"``. ``skip_special_tokens``
        leaves out the special tokens (``<|endoftext|>``), as Hugging Face's.

        >>> BPETokenizer().decode([104, 195, 169, 33])
        'hé!'
        >>> BPETokenizer().decode([104, 195])
        'h\\ufffd'
        """
        if skip_special_tokens:
            special = set(self.special_tokens.values())
            ids = [i for i in ids if int(i) not in special]
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def __call__(self, text, return_tensors=None):
        """Hugging Face's call for one text or a list of equal-length encodings:
        {"input_ids", "attention_mask"}, lists of ids, or (B, T) int64 arrays with
        return_tensors="np" (no padding: GPT-2's tokenizer has no pad token).

        >>> BPETokenizer()("hi", return_tensors="np")["input_ids"]
        array([[104, 105]])
        """
        texts = [text] if isinstance(text, str) else list(text)
        ids = [self.encode(t) for t in texts]
        if return_tensors is None:
            ids = ids[0] if isinstance(text, str) else ids
            mask = [1] * len(ids) if isinstance(text, str) else [[1] * len(i) for i in ids]
            return {"input_ids": ids, "attention_mask": mask}
        if return_tensors != "np":
            raise ValueError(f"return_tensors must be 'np' or None, got {return_tensors!r}")
        if len({len(i) for i in ids}) > 1:
            raise ValueError("texts of different token lengths: GPT-2's tokenizer has no padding; "
                             "encode them one at a time")
        input_ids = np.array(ids, dtype=np.int64).reshape(len(ids), -1)     # (B, T)
        return {"input_ids": input_ids, "attention_mask": np.ones_like(input_ids)}

    @property
    def vocab_size(self) -> int:
        """Size of an embedding table indexed by these ids (largest id + 1)."""
        return max(self.vocab) + 1 if self.vocab else 0

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        pattern = "gpt2" if self.pattern == _DEFAULT else self.pattern
        return (
            f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
            f"special_tokens={list(self.special_tokens)}, pattern={pattern!r})"
        )

    def token_strings(self, ids) -> list[str]:
        """Ids -> GPT-2 spellings of the tokens, e.g. ``[" hello"]`` -> ``["Ġhello"]``; handy for looking at encodings."""
        out = []
        for i in ids:
            i = int(i)
            if i in self._inverse_special:
                out.append(self._inverse_special[i])
            elif i in self.vocab:
                out.append(_token_to_str(self.vocab[i]))
            else:
                raise ValueError(f"token id {i} is not in the vocabulary (vocab_size={self.vocab_size})")
        return out

    # ---------------------------------------------------------------- files
    @staticmethod
    def _paths(path) -> tuple[str, str, str]:
        """Directory -> ``dir/vocab.json`` ...; anything else is a prefix -> ``prefix-vocab.json`` ..."""
        path = os.fspath(path)
        if os.path.isdir(path) or path.endswith(("/", os.sep)):
            return (
                os.path.join(path, "vocab.json"),
                os.path.join(path, "merges.txt"),
                os.path.join(path, "minilm_bpe.json"),
            )
        return path + "-vocab.json", path + "-merges.txt", path + "-minilm_bpe.json"

    def save(self, prefix_or_dir) -> list[str]:
        """Write GPT-2's file format and return the paths written.

        ``prefix_or_dir`` an existing directory, or a path ending in "/": writes
        ``vocab.json``, ``merges.txt`` (loadable by GPT-2/Hugging Face code) and
        ``minilm_bpe.json`` (split pattern and special tokens, which GPT-2's two
        files cannot express) into it.  Otherwise it is a prefix:
        ``prefix-vocab.json``, ``prefix-merges.txt``, ``prefix-minilm_bpe.json``.

        ``vocab.json``: ``{"Ġhello": 31373, ...}``, tokens spelt with
        :func:`bytes_to_unicode`, special tokens written as their text.
        ``merges.txt``: ``#version: 0.2`` then one merge per line, ``Ġ hello``,
        in rank order.
        """
        from ..io import ASIDE_SUFFIX, atomic_file, atomic_folder
        vocab_path, merges_path, config_path = self._paths(prefix_or_dir)
        encoder: dict[str, int] = {}
        for i in sorted(self.vocab):
            s = self._inverse_special[i] if i in self._inverse_special else _token_to_str(self.vocab[i])
            if s in encoder:
                raise ValueError(f"tokens {encoder[s]} and {i} are both spelt {s!r}; GPT-2's vocab.json cannot hold both")
            encoder[s] = i
        merges = "".join(f"{_token_to_str(self.vocab[a])} {_token_to_str(self.vocab[b])}\n"
                         for a, b in self.merges)
        texts = [json.dumps(encoder, ensure_ascii=False), "#version: 0.2\n" + merges]
        # minilm_bpe.json, written last, records the other two files' sha256: a prefix save
        # interrupted between its files leaves a set that load() refuses instead of mixing
        config = {"pattern": self.pattern, "special_tokens": self.special_tokens,
                  "sha256": {name: hashlib.sha256(text.encode("utf-8")).hexdigest()
                             for name, text in zip(("vocab.json", "merges.txt"), texts)}}
        texts.append(json.dumps(config, ensure_ascii=False, indent=1))
        paths = [vocab_path, merges_path, config_path]
        target = os.fspath(prefix_or_dir)
        if os.path.isdir(target) or target.endswith(("/", os.sep)):       # as in _paths
            # a folder: swapped in whole (other files in it are kept), crash-safe
            with atomic_folder(os.path.dirname(vocab_path)) as tmp:
                for path, text in zip(paths, texts):
                    with open(os.path.join(tmp, os.path.basename(path)), "wb") as f:
                        f.write(text.encode("utf-8"))
        else:
            # a prefix: each file is replaced on its own (written beside, fsync'ed, renamed
            # over), and the previous vocab/merges stay linked as name.old until the new
            # minilm_bpe.json, which holds their sha256, is in place: load() then finds a
            # matching set, old or new, wherever a crash stops the save
            kept = []
            for path, text in zip(paths, texts):
                if path != config_path and os.path.exists(path):
                    if os.path.lexists(path + ASIDE_SUFFIX):
                        os.remove(path + ASIDE_SUFFIX)
                    os.link(path, path + ASIDE_SUFFIX)
                    kept.append(path + ASIDE_SUFFIX)
                with atomic_file(path, "wb") as f:
                    f.write(text.encode("utf-8"))
            for path in kept:
                with contextlib.suppress(OSError):
                    os.remove(path)
        return paths

    @classmethod
    def load(cls, prefix_or_dir, pattern=_DEFAULT) -> "BPETokenizer":
        """Read what :meth:`save` wrote, or a GPT-2 folder (``vocab.json`` + ``merges.txt``).

        ``minilm_bpe.json`` is optional; when present its pattern and special
        tokens win over the ``pattern`` argument.
        """
        from ..io import ASIDE_SUFFIX, resolve_folder
        folder = os.fspath(prefix_or_dir).rstrip("/" + os.sep)
        if not os.path.exists(folder) and os.path.isdir(os.path.abspath(folder) + ASIDE_SUFFIX):
            prefix_or_dir = os.path.join(resolve_folder(folder), "")  # left by an interrupted save
        vocab_path, merges_path, config_path = cls._paths(prefix_or_dir)
        special_tokens = None
        if os.path.exists(config_path):
            with open(config_path, encoding="utf-8") as f:
                config = json.load(f)
            pattern = config.get("pattern", _DEFAULT)
            special_tokens = config.get("special_tokens")
            digests = config.get("sha256") or {}
            vocab_path = _matching_file(vocab_path, digests.get("vocab.json"), config_path)
            merges_path = _matching_file(merges_path, digests.get("merges.txt"), config_path)
        return cls.from_files(vocab_path, merges_path, special_tokens=special_tokens, pattern=pattern)

    @classmethod
    def from_pretrained(cls, directory, pattern=_DEFAULT) -> "BPETokenizer":
        """Load a GPT-2 style folder holding ``vocab.json`` and ``merges.txt``."""
        directory = os.fspath(directory)
        if not os.path.isdir(directory):
            raise ValueError(f"{directory!r} is not a directory (expected one with vocab.json and merges.txt)")
        return cls.load(directory, pattern=pattern)

    @classmethod
    def from_tokenizer_json(cls, path) -> "BPETokenizer":
        """Load a Hugging Face ``tokenizer.json`` of a byte-level BPE model (GPT-2, Llama 3,
        Qwen2/3 style): its split pattern (translated to stdlib ``re`` by
        :func:`unicode_regex_to_re`), merges, added tokens (recognised in text as special
        tokens), NFC normaliser, ``add_prefix_space`` and ``ignore_merges``. Other kinds
        (WordPiece, SentencePiece with byte_fallback, Metaspace) raise ValueError."""
        return _from_tokenizer_json(cls, path)

    @classmethod
    def from_files(cls, vocab_file, merges_file, special_tokens=None, pattern=_DEFAULT) -> "BPETokenizer":
        """Build from GPT-2's ``vocab.json`` and ``merges.txt``.

        ``special_tokens``: list of strings (or ``{text: id}``) to treat as
        special.  When None, every ``vocab.json`` entry that is neither a single
        byte nor the result of a merge is taken as special; for GPT-2 that is
        exactly ``<|endoftext|>``.

        Bytes that have no token are allowed (tiny test vocabularies); encoding
        text that needs one raises ValueError.
        """
        for p in (vocab_file, merges_file):
            if not os.path.exists(p):
                raise FileNotFoundError(f"no such file: {os.fspath(p)!r}")
        with open(vocab_file, encoding="utf-8") as f:
            encoder = json.load(f)
        if not isinstance(encoder, dict):
            raise ValueError(f"{os.fspath(vocab_file)!r} must hold a JSON object mapping token strings to ids")
        merge_pairs = []
        with open(merges_file, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                line = line.rstrip("\r\n")
                if (lineno == 1 and line.startswith("#version")) or not line.strip():
                    continue
                parts = line.split(" ")
                if len(parts) != 2:
                    raise ValueError(f"{os.fspath(merges_file)}:{lineno}: expected 'a b', got {line!r}")
                merge_pairs.append((parts[0], parts[1]))
        if isinstance(special_tokens, dict):
            special_tokens = list(special_tokens)
        return cls._from_encoder(encoder, merge_pairs, special_tokens, pattern, source=os.fspath(merges_file))

    @classmethod
    def _from_encoder(cls, encoder, merge_pairs, special_tokens, pattern, source="merges") -> "BPETokenizer":
        tok = cls(pattern=pattern)
        ids = list(encoder.values())
        if any(not isinstance(i, int) or i < 0 for i in ids):
            raise ValueError("vocab.json ids must be non-negative integers")
        if len(set(ids)) != len(ids):
            raise ValueError("vocab.json maps several tokens to the same id")

        merged_strings = {a + b for a, b in merge_pairs}
        if special_tokens is None:
            specials = {
                s for s in encoder
                if not (len(s) == 1 and s in _unicode_to_bytes()) and s not in merged_strings
            }
        else:
            specials = set(special_tokens)
            missing = specials - set(encoder)
            if missing:
                raise ValueError(f"special tokens not in vocab.json: {sorted(missing)!r}")

        vocab: dict[int, bytes] = {}
        for s, i in encoder.items():
            if s in specials:
                vocab[i] = s.encode("utf-8")
                continue
            token = _str_to_token(s)
            if token is None:
                raise ValueError(f"vocab.json token {s!r} (id {i}) is not spelt in GPT-2's byte alphabet")
            vocab[i] = token

        merges: dict[tuple[int, int], int] = {}
        for n, (a, b) in enumerate(merge_pairs, start=1):
            for part in (a, b, a + b):
                if part not in encoder or part in specials:
                    raise ValueError(f"{source}: merge #{n} '{a} {b}' needs token {part!r}, which vocab.json lacks")
            pair = (encoder[a], encoder[b])
            if pair not in merges:  # a repeated merge keeps its first (lowest) rank
                merges[pair] = encoder[a + b]

        tok.vocab = vocab
        tok.merges = merges
        tok.special_tokens = {s: encoder[s] for s in sorted(specials, key=lambda s: encoder[s])}
        table = bytes_to_unicode()
        tok._byte_ids = [encoder.get(table[b]) if table[b] not in specials else None for b in range(256)]
        tok._rebuild()
        return tok


# ------------------------------------------------------ Hugging Face tokenizer.json
@functools.lru_cache(maxsize=None)
def _category_ranges(prefix: str) -> str:
    """The inside of a ``[...]`` class holding every code point whose Unicode category starts
    with ``prefix`` ("L": letters, "N": numbers), from Python's ``unicodedata``."""
    return _char_class_ranges(cp for cp in range(0x110000) if unicodedata.category(chr(cp)).startswith(prefix))


def unicode_regex_to_re(pattern: str) -> str:
    r"""Translate a split pattern written for the ``regex`` module / Rust's ``onig`` (as in
    tokenizer.json) to stdlib ``re``: ``\p{L}`` and ``\p{N}`` become their code-point ranges,
    ``\s`` / ``\S`` the Unicode White_Space set (stdlib ``\s`` also matches U+001C..U+001F),
    inside and outside ``[...]`` classes. Other ``\p{..}``, ``\P{..}`` and ``\S`` inside a
    class raise ValueError instead of silently meaning something else.

    >>> unicode_regex_to_re(r" ?\p{N}+").startswith(" ?[")
    True
    """
    out, i, in_class = [], 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            if nxt in "pP" and pattern[i + 2:i + 3] == "{":
                close = pattern.index("}", i)
                name = pattern[i + 3:close]
                if nxt == "P" or name not in ("L", "N"):
                    raise ValueError(f"split pattern: \\{nxt}{{{name}}} is not supported (only \\p{{L}} and \\p{{N}})")
                ranges = _category_ranges(name)
                out.append(ranges if in_class else f"[{ranges}]")
                i = close + 1
                continue
            if nxt == "s":
                out.append(_WHITESPACE if in_class else f"[{_WHITESPACE}]")
            elif nxt == "S":
                if in_class:
                    raise ValueError("split pattern: \\S inside [...] is not supported")
                out.append(f"[^{_WHITESPACE}]")
            else:
                out.append(pattern[i:i + 2])
            i += 2
            continue
        if c == "[" and not in_class:
            in_class = True
            out.append(c)
            if pattern[i + 1:i + 2] == "^":
                out.append("^")
                i += 1
            if pattern[i + 1:i + 2] == "]":         # a literal ] first in the class
                out.append("\\]")
                i += 1
        elif c == "]" and in_class:
            in_class = False
            out.append(c)
        else:
            out.append(c)
        i += 1
    return "".join(out)


def _tokenizer_json_pre_tokenizer(pre):
    """tokenizer.json's pre_tokenizer -> (split pattern for stdlib re or "gpt2", keep gaps, add_prefix_space)."""
    if pre is None:
        raise ValueError("tokenizer.json has no pre_tokenizer: not a byte-level BPE tokenizer")
    steps = pre["pretokenizers"] if pre.get("type") == "Sequence" else [pre]
    kinds = [p.get("type") for p in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return _DEFAULT, False, bool(steps[0].get("add_prefix_space", False))
    if (kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True)
            and steps[0].get("behavior") == "Isolated" and not steps[0].get("invert", False)
            and "Regex" in steps[0].get("pattern", {})):
        return (unicode_regex_to_re(steps[0]["pattern"]["Regex"]), True,
                bool(steps[1].get("add_prefix_space", False)))
    raise ValueError(f"tokenizer.json pre_tokenizer {kinds} is not supported: minilm reads ByteLevel "
                     "(GPT-2) or Sequence[Split(Regex, Isolated), ByteLevel(use_regex=False)] (Llama 3, Qwen2/3)")


def _tokenizer_json_normalizer(norm):
    if norm is None:
        return None
    if norm.get("type") == "NFC":
        return "NFC"
    if norm.get("type") == "Sequence" and not norm.get("normalizers"):
        return None
    raise ValueError(f"tokenizer.json normalizer {norm.get('type')!r} is not supported (only none or NFC)")


def _from_tokenizer_json(cls, path):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path!r}")
    with open(path, encoding="utf-8") as f:
        d = json.load(f)
    model = d.get("model") or {}
    if model.get("type") != "BPE":
        raise ValueError(f"{path}: model type {model.get('type')!r}; BPETokenizer reads byte-level BPE only")
    for key in ("continuing_subword_prefix", "end_of_word_suffix", "dropout"):
        if model.get(key):
            raise ValueError(f"{path}: BPE {key}={model[key]!r} is not supported")
    if model.get("byte_fallback"):
        raise ValueError(f"{path}: byte_fallback BPE (SentencePiece-style, e.g. Llama 2) is not byte-level BPE")
    pattern, keep_gaps, prefix_space = _tokenizer_json_pre_tokenizer(d.get("pre_tokenizer"))
    normalizer = _tokenizer_json_normalizer(d.get("normalizer"))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model.get("merges", [])]
    if any(len(m) != 2 for m in merges):
        raise ValueError(f"{path}: every merge must be a pair of tokens")
    encoder = dict(model.get("vocab", {}))
    added = {t["content"]: t["id"] for t in d.get("added_tokens", [])}
    for s, i in added.items():
        if encoder.get(s, i) != i:
            raise ValueError(f"{path}: added token {s!r} has id {i} but the vocabulary says {encoder[s]}")
        encoder[s] = i
    tok = cls._from_encoder(encoder, merges, list(added), None, source=path)
    if pattern == _DEFAULT:
        tok._set_pattern(_DEFAULT)
    else:
        tok.pattern, tok._split_re = pattern, re.compile(pattern)
    tok._keep_gaps, tok._add_prefix_space = keep_gaps, prefix_space
    tok._normalizer, tok._ignore_merges = normalizer, bool(model.get("ignore_merges", False))
    tok._rebuild()
    return tok



def _matching_file(path, digest, config_path):
    """`path`, or `path.old` left by an interrupted prefix save, whichever matches the sha256
    that minilm_bpe.json records; ValueError when neither does (no digest: `path`)."""
    if digest is None:
        return path
    for candidate in (path, path + ".old"):
        if os.path.exists(candidate):
            with open(candidate, "rb") as f:
                if hashlib.sha256(f.read()).hexdigest() == digest:
                    return candidate
    raise ValueError(f"{path} does not match the sha256 recorded in {config_path}: the files "
                     "come from different saves, or one was changed")
