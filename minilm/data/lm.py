"""Language-model batches: random windows of a token stream.

Hugging Face semantics: `labels` equals `input_ids` and the model shifts them, so a window
of T tokens trains T - 1 next-token predictions.
"""
import numpy as np


def lm_batch(tokens, block_size, batch_size, rng):
    """tokens: 1-D int array; returns {"input_ids": (B, T), "labels": (B, T)} of random windows."""
    if len(tokens) <= block_size:
        raise ValueError(f"corpus of {len(tokens)} tokens is too short for block_size={block_size}")
    starts = rng.integers(0, len(tokens) - block_size, batch_size)
    x = np.stack([tokens[s:s + block_size] for s in starts]).astype(np.int64)   # (B, T)
    return {"input_ids": x, "labels": x}


class LMData:
    """A tokenised corpus split into train (first 90%) and validation (last 10%), as nanoGPT.

    `train_batch(rng)` / `val_batch(rng)` are the callables a Trainer draws from.
    """

    def __init__(self, ids, block_size, batch_size, val_fraction=0.1):
        ids = np.asarray(ids, dtype=np.int64)
        n = int(len(ids) * (1 - val_fraction))
        self.train, self.val = ids[:n], ids[n:]
        self.block_size, self.batch_size = block_size, batch_size

    def train_batch(self, rng):
        return lm_batch(self.train, self.block_size, self.batch_size, rng)

    def val_batch(self, rng):
        return lm_batch(self.val, self.block_size, self.batch_size, rng)
