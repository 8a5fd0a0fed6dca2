"""Data: corpora, splits and batches (host-side NumPy; no math on model arrays here)."""
from .corpus import (TINYSHAKESPEARE_SHA256, TINYSHAKESPEARE_URL, load_pydoc_corpus,
                     load_text, load_tinyshakespeare)
from .lm import LMData, lm_batch
from .loader import DataLoader, default_collate
