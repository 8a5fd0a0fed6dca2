"""minilm.data.DataLoader: PyTorch's loop shape, seeded shuffles, default collation."""
import numpy as np
import pytest

from minilm.data import DataLoader, default_collate


def examples(n):
    return [{"text": f"example {i}", "label": i % 3, "ids": np.arange(4) + i} for i in range(n)]


def test_every_example_once_per_pass_with_the_last_batch_smaller():
    loader = DataLoader(examples(10), batch_size=4, shuffle=True, seed=1)
    assert len(loader) == 3
    batches = list(loader)
    assert [len(b["text"]) for b in batches] == [4, 4, 2]
    seen = sorted(int(t.split()[1]) for b in batches for t in b["text"])
    assert seen == list(range(10))


def test_collation_matches_torch_default_collate():
    batch = next(iter(DataLoader(examples(3), batch_size=3, shuffle=False)))
    assert batch["text"] == ["example 0", "example 1", "example 2"]
    assert batch["label"].tolist() == [0, 1, 2] and batch["label"].dtype.kind == "i"
    assert batch["ids"].shape == (3, 4) and np.array_equal(batch["ids"][2], np.arange(4) + 2)
    pairs = default_collate([(1.0, "a"), (2.0, "b")])
    assert pairs[0].tolist() == [1.0, 2.0] and pairs[1] == ["a", "b"]


def test_seeded_shuffle_differs_between_passes_and_repeats_across_loaders():
    def orders(loader):
        return [[t for b in loader for t in b["text"]] for _ in range(2)]
    a, b = orders(DataLoader(examples(12), batch_size=5, seed=7)), orders(DataLoader(examples(12), batch_size=5, seed=7))
    assert a == b, "same seed, same orders"
    assert a[0] != a[1], "a new order each pass"
    assert orders(DataLoader(examples(12), batch_size=5, seed=8)) != a
    assert [t for bt in DataLoader(examples(5), batch_size=2, shuffle=False) for t in bt["text"]] == \
        [f"example {i}" for i in range(5)]


def test_drop_last_and_dict_of_columns():
    columns = {"input_ids": np.arange(14).reshape(7, 2), "labels": [0, 1, 0, 1, 0, 1, 0]}
    loader = DataLoader(columns, batch_size=3, shuffle=False, drop_last=True)
    batches = list(loader)
    assert len(loader) == 2 == len(batches)
    assert batches[1]["input_ids"].tolist() == [[6, 7], [8, 9], [10, 11]]
    assert batches[1]["labels"].tolist() == [1, 0, 1]


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(batch_size=2.5), ValueError, "batch_size"),
    (dict(dataset=iter([1, 2])), TypeError, "len"),
    (dict(dataset={"a": [1, 2], "b": [1]}), ValueError, "same length"),
])
def test_bad_arguments_say_what_is_wrong(kwargs, error, match):
    args = dict(dataset=examples(3), batch_size=2)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        DataLoader(**args)


def test_ragged_fields_ask_for_padding():
    ragged = [{"ids": [1, 2, 3]}, {"ids": [4]}]
    with pytest.raises(ValueError, match="pad"):
        next(iter(DataLoader(ragged, batch_size=2)))
