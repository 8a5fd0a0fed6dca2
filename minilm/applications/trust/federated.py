"""Federated learning, simulated: FedAvg (McMahan et al., 2017) over K clients that never share
their data, only model weights, with IID or label-skewed (Dirichlet) splits, and DP-FedAvg
(McMahan et al., 2018) for client-level differential privacy.

    from minilm.federated import dirichlet_split, fedavg
    clients = dirichlet_split(train["labels"], num_clients=10, alpha=0.3, seed=0)   # index arrays
    history = fedavg(model, train, clients, rounds=30, client_fraction=0.5, local_epochs=2,
                     lr=0.05, eval_data=test)

One round of FedAvg:
    1. the server samples m = max(1, round(fraction x K)) clients
    2. each starts from the global weights w and runs `local_epochs` of mini-batch SGD on its own
       data, ending at w_k
    3. the server averages, weighted by the clients' data sizes n_k:
           w <- sum_k (n_k / n) w_k,        n = sum over the sampled clients of n_k
With one client, one local step and the whole data set as the batch, that is one step of plain
SGD, exactly (n_1 / n = 1.0, and 1.0 x w_1 is w_1 bit for bit): tests/test_trust.py checks it.

Non-IID data is the hard case: with Dirichlet(alpha) label skew (Hsu, Qi & Brown, 2019), each
class's examples are spread over the clients in proportions drawn from Dir(alpha): alpha -> inf
is IID, alpha = 0.1 gives most clients nearly one class. Local steps then pull the clients' models
towards different optima (client drift), and the average learns more slowly.

DP-FedAvg (client-level privacy: hiding whether a *client* took part, all its data at once):
each update Delta_k = w_k - w is clipped to joint norm S, the server averages the clipped
updates with equal weights and adds N(0, (z S / m)^2) noise:
    w <- w + (1/m) (sum_k clip(Delta_k, S) + N(0, z^2 S^2 I))
The accountant treats each round as a sampled Gaussian mechanism with q = m / K and noise
multiplier z (clients are sampled as a fixed-size subset here; as for shuffled DP-SGD batches,
using q = m / K is the usual approximation of Poisson client sampling).
"""
import math

import numpy as np

from ...backend import get_xp, random_normal


# ---------------------------------------------------------------------------------------------
# Splitting a data set over clients
# ---------------------------------------------------------------------------------------------

def iid_split(n, num_clients, seed=0):
    """A random permutation of range(n) cut into `num_clients` near-equal parts."""
    if num_clients < 1:
        raise ValueError(f"num_clients must be >= 1, got {num_clients}")
    if n < num_clients:
        raise ValueError(f"cannot give {num_clients} clients data from {n} examples: some would have none")
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(order, num_clients)]


def dirichlet_split(labels, num_clients, alpha, seed=0, min_size=1, max_tries=1000):
    """Label-skewed split: for every class c, its examples go to the clients in proportions
    p_c ~ Dirichlet(alpha, ..., alpha). Draws again (up to max_tries) until every client has at
    least `min_size` examples; raises ValueError if that never happens."""
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    if num_clients < 1:
        raise ValueError(f"num_clients must be >= 1, got {num_clients}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    for _ in range(max_tries):
        parts = [[] for _ in range(num_clients)]
        for c in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == c))
            p = rng.dirichlet(np.full(num_clients, float(alpha)))
            cuts = (np.cumsum(p)[:-1] * len(idx)).astype(int)
            for k, chunk in enumerate(np.split(idx, cuts)):
                parts[k].extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_size:
            return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
    raise ValueError(f"could not split {len(labels)} examples over {num_clients} clients with "
                     f"Dirichlet(alpha={alpha}) so that each has >= {min_size}; "
                     "use fewer clients or a larger alpha")


def label_histogram(labels, clients):
    """(K, num_classes) counts: how skewed a split is."""
    labels = np.asarray(labels)
    C = int(labels.max()) + 1
    return np.array([np.bincount(labels[idx], minlength=C) for idx in clients])


# ---------------------------------------------------------------------------------------------
# Clients and server
# ---------------------------------------------------------------------------------------------

def _get_weights(model):
    return [p.data.copy() for p in model.parameters()]


def _set_weights(model, weights):
    for p, w in zip(model.parameters(), weights):
        p.data[...] = w


def local_update(model, data, idx, epochs=1, batch_size=32, lr=0.1, rng=None, shuffle=True,
                 optimizer="sgd"):
    """Client training: `epochs` passes of mini-batch SGD over the examples `idx` of `data`,
    starting from the model's current weights (a fresh optimiser: no state crosses rounds).
    batch_size=None uses all the client's data in one batch. Returns the number of steps."""
    from ...training.optim import SGD, AdamW
    from ...training.trainer import Trainer
    from .common import model_inputs, take
    idx = np.asarray(idx)
    if len(idx) == 0:
        raise ValueError("a client with no data cannot train: every client needs at least one example")
    params = model.parameters()
    opt = SGD(params, lr=lr) if optimizer == "sgd" else AdamW(params, lr=lr, weight_decay=0.0)
    rng = np.random.default_rng(0) if rng is None else rng
    bs = len(idx) if batch_size is None else int(batch_size)

    def client_batches():                   # `epochs` passes over the client's examples
        for _ in range(epochs):
            order = rng.permutation(idx) if shuffle else idx
            for i in range(0, len(order), bs):
                yield model_inputs(take(data, order[i:i + bs]))

    steps = epochs * math.ceil(len(idx) / bs)
    Trainer(model, opt, client_batches(), max_steps=steps, progress=False).fit()
    return steps


def weighted_average(weight_sets, sizes):
    """sum_k (n_k / n) w_k for each parameter (w_k: lists of arrays, one list per client)."""
    n = float(sum(sizes))
    out = []
    for j in range(len(weight_sets[0])):
        acc = None
        for w, nk in zip(weight_sets, sizes):
            term = (nk / n) * w[j]
            acc = term if acc is None else acc + term
        out.append(acc)
    return out


def fedavg(model, data, clients, rounds, client_fraction=1.0, local_epochs=1, batch_size=32, lr=0.1,
           seed=0, eval_data=None, eval_every=1, shuffle=True, optimizer="sgd",
           dp_clip=None, dp_noise_multiplier=0.0, dp_delta=1e-5, log=None):
    """Run FedAvg; the model ends holding the global weights. Returns the history: one dict per
    evaluated round with "round", "clients" (ids sampled), "test_acc" (when eval_data is given)
    and, for DP-FedAvg, "epsilon" (client-level, at dp_delta).

    data: a batch dict (see minilm.trust_common); clients: list of index arrays into it.
    dp_clip S and dp_noise_multiplier z switch on DP-FedAvg (both must be > 0).
    """
    from .privacy import RDPAccountant
    from .common import accuracy_of
    K = len(clients)
    if K == 0:
        raise ValueError("fedavg needs at least one client")
    empty = [k for k, idx in enumerate(clients) if len(idx) == 0]
    if empty:
        raise ValueError(f"client {empty[0]} has no data: every client needs at least one example "
                         f"({len(empty)} of {K} are empty)")
    if not 0 < client_fraction <= 1:
        raise ValueError(f"client_fraction must be in (0, 1], got {client_fraction}")
    private = dp_clip is not None or dp_noise_multiplier
    if private and not (dp_clip is not None and dp_clip > 0):
        raise ValueError(f"DP-FedAvg needs a clipping bound dp_clip > 0, got {dp_clip}")
    if private and not dp_noise_multiplier > 0:
        raise ValueError(f"DP-FedAvg needs dp_noise_multiplier > 0, got {dp_noise_multiplier}")
    rng = np.random.default_rng(seed)
    m = max(1, int(round(client_fraction * K)))
    accountant = RDPAccountant() if private else None
    history = []
    for r in range(rounds):
        chosen = np.sort(rng.choice(K, size=m, replace=False))
        w_global = _get_weights(model)
        new_weights, sizes = [], []
        for k in chosen:
            _set_weights(model, w_global)
            local_update(model, data, clients[k], local_epochs, batch_size, lr,
                         np.random.default_rng([seed, r, int(k)]), shuffle, optimizer)
            new_weights.append(_get_weights(model))
            sizes.append(len(clients[k]))
        if not private:
            _set_weights(model, weighted_average(new_weights, sizes))
        else:
            _set_weights(model, _dp_aggregate(w_global, new_weights, dp_clip, dp_noise_multiplier, rng))
            accountant.step(dp_noise_multiplier, m / K)
        if eval_data is not None and ((r + 1) % eval_every == 0 or r + 1 == rounds):
            row = {"round": r + 1, "clients": chosen.tolist(), "test_acc": accuracy_of(model, eval_data)}
            if private:
                row["epsilon"] = accountant.get_epsilon(dp_delta)
            history.append(row)
            if log:
                log(row)
    model.eval()
    return history


def _dp_aggregate(w_global, new_weights, clip, z, rng):
    """w + (1/m)(sum_k clip(w_k - w, S) + N(0, z^2 S^2)), clipping each update's joint norm."""
    xp = get_xp(w_global[0])
    m = len(new_weights)
    total = [xp.zeros_like(w) for w in w_global]
    for w_k in new_weights:
        delta = [a - b for a, b in zip(w_k, w_global)]
        norm = math.sqrt(sum(float((d * d).sum()) for d in delta))
        scale = min(1.0, clip / (norm + 1e-12))
        for t, d in zip(total, delta):
            t += scale * d
    return [w + (t + random_normal(rng, w.shape, z * clip, w.dtype)) / m for w, t in zip(w_global, total)]
