"""The benchmark harness: FLOP counting, the torch reference's independence, a tiny run."""
import ast
import os

import pytest

from minilm import bench


def test_flop_count_matches_a_hand_count_for_the_baby_model():
    cfg = bench.full_config("baby")
    N, per_token, per_step = bench.flop_count(cfg)
    L, C, T, V, B = 4, 128, 64, 65, 12
    blocks = L * (C * 3 * C + 3 * C + C * C + C + C * 4 * C + 4 * C + 4 * C * C + C + 4 * C)
    assert N == blocks + V * C + 2 * C                     # no position table, as nanoGPT
    assert per_token == 6 * N + 12 * L * T * C
    assert per_step == per_token * B * T
    model, _ = bench.build_minilm(cfg)
    assert model.num_parameters() == N + T * C             # all parameters = N + wpe


def test_bench_torch_imports_only_torch_numpy_and_the_standard_library():
    path = os.path.join(os.path.dirname(bench.__file__), "torch_ref.py")
    tree = ast.parse(open(path, encoding="utf-8").read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports: it must run outside the package"
            names.add(node.module.split(".")[0])
    assert "minilm" not in names
    assert names <= {"argparse", "json", "math", "os", "resource", "statistics", "sys", "time",
                     "numpy", "torch"}


def test_train_step_keeps_float32_and_lowers_the_loss():
    cfg = dict(bench.full_config("baby"), n_layer=1, batch_size=2, block_size=16)
    model, opt = bench.build_minilm(cfg)
    params = model.parameters()
    ids = bench.random_batch(cfg)
    first = bench.train_step(model, opt, params, ids, 1.0)
    for _ in range(5):
        last = bench.train_step(model, opt, params, ids, 1.0)
    assert last < first
    assert all(p.data.dtype == "float32" and p.grad.dtype == "float32" for p in params)


def test_kvcache_gives_the_same_tokens():
    res = bench.bench_kvcache(context=24, new_tokens=4, n_positions=32, verbose=False)
    assert res["identical_tokens"]


def test_unknown_subcommand_is_an_argparse_error():
    with pytest.raises(SystemExit):
        bench.main(["nonsense"])


def test_converge_over_seeds_reports_mean_sd_and_the_estimate_noise(tmp_path):
    """A tiny run of the convergence benchmark on two seeds: each run measures how much a
    single validation batch's loss varies, and the summary is the mean and SD over seeds."""
    import this  # noqa: F401  (the Zen of Python: a text that ships with every Python)
    import codecs
    text = codecs.decode(this.s, "rot13") * 40
    path = tmp_path / "zen.txt"
    path.write_text(text, encoding="utf-8")
    runs = [bench.bench_converge(str(path), iters=6, eval_every=3, eval_iters=4, seed=seed,
                                 progress=False, verbose=False) for seed in (1, 2)]
    for r in runs:
        assert r["val_batch_loss_std"] > 0
        assert r["sd_of_20_batch_mean"] == pytest.approx(r["val_batch_loss_std"] / 20 ** 0.5)
    summary = bench.summarise_seeds(runs, verbose=False)
    losses = [r["val_loss"] for r in runs]
    assert summary["seeds"] == [1, 2] and losses[0] != losses[1]
    assert summary["minilm"]["mean"] == pytest.approx(sum(losses) / 2)
    assert summary["minilm"]["sd"] == pytest.approx(abs(losses[0] - losses[1]) / 2 ** 0.5)


def test_bench_gpu_without_cupy_says_what_it_needs():
    from minilm.backend import cupy_available
    if cupy_available()[0]:
        pytest.skip("a GPU is here: `python -m minilm bench gpu` would run")
    with pytest.raises(SystemExit, match="needs CuPy and a CUDA device"):
        bench.main(["gpu"])
