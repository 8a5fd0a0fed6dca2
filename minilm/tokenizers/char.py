"""Character-level tokenizer: one token per Unicode character.

The simplest possible tokenizer, handy for tiny language models trained on a
single text (Shakespeare, names, ...)::

    >>> tok = CharTokenizer.from_text("hello world")
    >>> tok.chars
    [' ', 'd', 'e', 'h', 'l', 'o', 'r', 'w']
    >>> tok.encode("hello")
    [3, 2, 4, 4, 5]
    >>> tok.decode([3, 2, 4, 4, 5])
    'hello'
    >>> tok.vocab_size
    8
"""

from __future__ import annotations

import json
import os

__all__ = ["CharTokenizer"]


class CharTokenizer:
    """Maps each character of a fixed alphabet to an integer id.

    Ids are positions in ``chars``; ``from_text`` sorts the alphabet so the
    ids do not depend on the order of the text.

    >>> tok = CharTokenizer(["a", "b", "c"])
    >>> tok.encode("cab")
    [2, 0, 1]
    >>> tok.encode("cat")
    Traceback (most recent call last):
    ...
    ValueError: character 't' (U+0074) at position 2 is not in the vocabulary of 3 characters
    """

    def __init__(self, chars):
        chars = list(chars)
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"every vocabulary entry must be a single character, got {c!r}")
        if len(set(chars)) != len(chars):
            seen, dups = set(), []
            for c in chars:
                if c in seen:
                    dups.append(c)
                seen.add(c)
            raise ValueError(f"duplicate characters in the vocabulary: {dups!r}")
        self.chars = chars
        self.stoi = {c: i for i, c in enumerate(chars)}  # string -> id
        self.itos = dict(enumerate(chars))  # id -> string

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        """Build the vocabulary from the sorted set of characters in ``text``.

        >>> CharTokenizer.from_text("banana").chars
        ['a', 'b', 'n']
        """
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        """Text -> list of ids.  ``"aab"`` -> ``[0, 0, 1]`` for the alphabet ``"ab"``."""
        stoi = self.stoi
        try:
            return [stoi[c] for c in text]
        except KeyError:
            pass
        for pos, c in enumerate(text):  # slow path, only to build the message
            if c not in stoi:
                raise ValueError(
                    f"character {c!r} (U+{ord(c):04X}) at position {pos} is not in the "
                    f"vocabulary of {self.vocab_size} characters"
                ) from None
        raise AssertionError("unreachable")

    def decode(self, ids) -> str:
        """List of ids -> text.  ``[0, 0, 1]`` -> ``"aab"`` for the alphabet ``"ab"``."""
        out = []
        for i in ids:
            i = int(i)
            if i not in self.itos:
                raise ValueError(f"token id {i} is outside the vocabulary (valid ids are 0..{self.vocab_size - 1})")
            out.append(self.itos[i])
        return "".join(out)

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"

    # ------------------------------------------------------------------ files
    def save(self, path) -> None:
        """Write the alphabet to a JSON file: ``{"type": "char", "chars": [...]}``
        (crash-safe: written beside it, fsync'ed, then renamed over it)."""
        from ..io import atomic_file
        with atomic_file(path) as f:
            json.dump({"type": "char", "chars": self.chars}, f, ensure_ascii=True)

    @classmethod
    def load(cls, path) -> "CharTokenizer":
        """Read a file written by :meth:`save`."""
        with open(os.fspath(path), encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, dict) or data.get("type") != "char" or "chars" not in data:
            raise ValueError(f"{os.fspath(path)!r} is not a CharTokenizer file (expected keys 'type'='char' and 'chars')")
        return cls(data["chars"])
