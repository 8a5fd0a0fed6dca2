"""Text corpora.

- `load_pydoc_corpus()`: the Python documentation topics that ship inside CPython
  (`pydoc_data.topics`, about 0.5 MB of English prose and code). Always available offline:
  the demo and the tests use it.
- `load_tinyshakespeare()`: Karpathy's 1.1 MB tiny-shakespeare, downloaded once from its
  canonical URL, checked against its SHA-256, and cached. It is not redistributed here.
"""
import hashlib
import os
import urllib.error
import urllib.request

TINYSHAKESPEARE_URL = ("https://raw.githubusercontent.com/karpathy/char-rnn/master/"
                       "data/tinyshakespeare/input.txt")
TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


def load_pydoc_corpus():
    """The pydoc topic texts, joined in sorted-key order (deterministic across runs)."""
    try:
        from pydoc_data import topics
    except ImportError as e:  # some stripped-down Pythons drop it
        raise RuntimeError("this Python has no pydoc_data module; use --data-file PATH "
                           "with any UTF-8 text file instead") from e
    return "\n\n".join(topics.topics[k].strip() for k in sorted(topics.topics))


def cache_dir():
    return os.environ.get("MINILM_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "minilm"))


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def load_tinyshakespeare(path=None, timeout=20):
    """Return the tiny-shakespeare text: from `path` if given, else from the cache, else
    downloaded from TINYSHAKESPEARE_URL (and cached). The SHA-256 is checked every time."""
    if path is None:
        path = os.path.join(cache_dir(), "tinyshakespeare.txt")
        if not os.path.exists(path):
            try:
                with urllib.request.urlopen(TINYSHAKESPEARE_URL, timeout=timeout) as r:
                    data = r.read()
            except (urllib.error.URLError, OSError) as e:
                raise RuntimeError(
                    f"could not download tinyshakespeare from {TINYSHAKESPEARE_URL} ({e}); "
                    "are you offline? Put a copy at " + path + " or pass --data-file PATH "
                    "(or use the bundled corpus: --dataset pydoc)") from None
            if _sha256(data) != TINYSHAKESPEARE_SHA256:
                raise RuntimeError(f"downloaded tinyshakespeare has the wrong SHA-256 ({_sha256(data)}); "
                                   "refusing to use it")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
    with open(path, "rb") as f:
        data = f.read()
    if _sha256(data) != TINYSHAKESPEARE_SHA256:
        raise RuntimeError(f"{path} is not the canonical tinyshakespeare (SHA-256 mismatch)")
    return data.decode("utf-8")


def load_text(dataset="pydoc", data_file=None):
    """Pick a corpus by name: "pydoc" (bundled), "tinyshakespeare" (downloaded), or any
    UTF-8 file given as data_file (which wins for "file")."""
    if dataset == "tinyshakespeare":
        return load_tinyshakespeare(data_file)
    if data_file is not None:
        with open(data_file, encoding="utf-8") as f:
            return f.read()
    if dataset == "pydoc":
        return load_pydoc_corpus()
    raise ValueError(f"unknown dataset {dataset!r}: choose pydoc or tinyshakespeare, or pass --data-file")
