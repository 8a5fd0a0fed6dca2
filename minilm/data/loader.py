"""DataLoader: batches of examples, as PyTorch's, so the document's training loops port as they are.

    loader = DataLoader(train_dataset, batch_size=16, shuffle=True, seed=0)
    for epoch in range(3):
        for batch in loader:                 # a new order every pass, the same for the same seed
            out = model(**batch)

A dataset is a list (or anything with len() and [i]) of examples, or a dict of equal-length
columns (what a tokenizer returns: {"input_ids": (N, T), "attention_mask": (N, T)}), which is
read as one dict example per row. Batches are collated as torch's default_collate does, with
NumPy in place of tensors: a batch of dicts becomes a dict of collated fields, numbers and
equal-shape arrays are stacked into an array, strings stay a list, tuples are collated field
by field. Everything here is host-side NumPy; models move batches to the backend themselves.
"""
import math
import numbers

import numpy as np


class DataLoader:
    """Iterate over `dataset` in batches of `batch_size` examples.

    shuffle: a new random order each pass (pass k uses the generator seeded with (seed, k));
    drop_last: leave out the last batch when it is smaller than batch_size;
    collate_fn: a function of the list of examples (default: `default_collate`).
    """

    def __init__(self, dataset, batch_size=32, shuffle=True, seed=0, drop_last=False, collate_fn=None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if isinstance(dataset, dict):
            dataset = _Columns(dataset)
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError(f"a dataset needs len() and [i] (a list of examples or a dict of columns), "
                            f"got {type(dataset).__name__}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = seed
        self.drop_last = bool(drop_last)
        self.collate_fn = collate_fn if collate_fn is not None else default_collate
        self.epoch = 0                       # passes started so far: the next pass's shuffle

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        n = len(self.dataset)
        order = (np.random.default_rng([self.seed, self.epoch]).permutation(n) if self.shuffle
                 else np.arange(n))
        self.epoch += 1
        for start in range(0, n, self.batch_size):
            index = order[start:start + self.batch_size]
            if self.drop_last and len(index) < self.batch_size:
                return
            yield self.collate_fn([self.dataset[int(i)] for i in index])


class _Columns:
    """A dict of equal-length columns seen as a list of dict rows."""

    def __init__(self, columns):
        lengths = {key: len(value) for key, value in columns.items()}
        if not lengths:
            raise ValueError("a dict dataset needs at least one column")
        if len(set(lengths.values())) > 1:
            raise ValueError(f"the columns of a dict dataset must have the same length, got {lengths}")
        self.columns = columns
        self.n = next(iter(lengths.values()))

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {key: value[i] for key, value in self.columns.items()}


def default_collate(batch, field="batch"):
    """Stack a list of examples into one batch (see the module docstring)."""
    first = batch[0]
    if isinstance(first, dict):
        keys = list(first)
        for ex in batch:
            if not isinstance(ex, dict) or list(ex) != keys:
                raise ValueError(f"every example must have the same fields {keys}, got {list(ex)}")
        return {key: default_collate([ex[key] for ex in batch], key) for key in keys}
    if isinstance(first, str):
        return list(batch)
    if isinstance(first, tuple):
        if any(len(ex) != len(first) for ex in batch):
            raise ValueError(f"{field}: tuples of different lengths in one batch")
        return tuple(default_collate([ex[i] for ex in batch], f"{field}[{i}]") for i in range(len(first)))
    if isinstance(first, (numbers.Number, np.number, np.bool_, np.ndarray, list)):
        arrays = [np.asarray(ex) for ex in batch]
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            raise ValueError(f"{field}: examples of different shapes {sorted(shapes)} cannot be stacked; pad them "
                             "(tokenizer(..., padding=True)) or pass a collate_fn")
        return np.stack(arrays)
    return list(batch)                                   # anything else: kept as a list
