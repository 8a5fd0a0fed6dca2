"""Measuring social bias in representations: WEAT, SEAT and a masked-LM template probe.

    from minilm.bias import weat, seat, WEAT_TESTS, mlm_template_probe
    weat(X, Y, A, B)                      # embeddings (n, C) each -> effect size, p-value
    seat(model, tok, "weat6")             # the same test on MiniLM sentence embeddings of templates
    mlm_template_probe(mlm, tok, ["[MASK] is a nurse."], ("he", "she"))

WEAT (Caliskan, Bryson & Narayanan, 2017) asks whether two target sets X, Y (say male and female
names) differ in how close they sit to two attribute sets A, B (career and family words):
    s(w, A, B) = mean_{a in A} cos(w, a) - mean_{b in B} cos(w, b)
    effect size d = (mean_{x in X} s(x) - mean_{y in Y} s(y)) / std_{w in X u Y} s(w)
with the sample standard deviation (ddof = 1), as in the reference implementations. d is a
Cohen's-d-like number: 0 is no association, |d| ~ 0.8 is large, |d| <= 2 always.
The p-value is a one-sided permutation test on S = sum_x s(x) - sum_y s(y): the share of
equal-size re-partitions (X_i, Y_i) of X u Y with S(X_i, Y_i) > S(X, Y). With few enough
partitions (C(|X|+|Y|, |X|) <= exact_limit) all are enumerated; otherwise `n_samples` random ones
are drawn (seeded), counting the observed partition as one of them, (1 + #greater) / (1 + n).

SEAT (May et al., 2019) is WEAT on sentence embeddings: every word is put into semantically
bleached templates ("This is X.", "X is here.", ...), and each sentence becomes a member of the
set. Here the sentences are embedded with all-MiniLM-L6-v2 (`minilm.pretrained`).

The masked-LM probe fills templates such as "[MASK] is a nurse." and compares
log P([MASK] = he) - log P([MASK] = she) at the masked position. It takes any
BertForMaskedLM + tokenizer. The all-MiniLM-L6-v2 checkpoint has no MLM head (sentence-transformers
dropped it), so it cannot be probed this way: the CLI shows the probe on a small BERT
pre-trained briefly on a corpus whose gender statistics we control.
"""
import itertools
import math

import numpy as np

from ...backend import to_numpy

# Word lists of Caliskan et al. (2017), Table 1 (WEAT 1, 6, 7, 8).
WEAT_TESTS = {
    "weat1": {
        "name": "flowers vs insects / pleasant vs unpleasant",
        "X": "aster clover hyacinth marigold poppy azalea crocus iris orchid rose bluebell daffodil lilac "
             "pansy tulip buttercup daisy lily peony violet carnation gladiola magnolia petunia zinnia".split(),
        "Y": "ant caterpillar flea locust spider bedbug centipede fly maggot tarantula bee cockroach gnat "
             "mosquito termite beetle cricket hornet moth wasp blackfly dragonfly horsefly roach weevil".split(),
        "A": "caress freedom health love peace cheer friend heaven loyal pleasure diamond gentle honest "
             "lucky rainbow diploma gift honor miracle sunrise family happy laughter paradise vacation".split(),
        "B": "abuse crash filth murder sickness accident death grief poison stink assault disaster hatred "
             "pollute tragedy divorce jail poverty ugly cancer kill rotten vomit agony prison".split(),
        "kind": ("word", "word"),
    },
    "weat6": {
        "name": "male vs female names / career vs family",
        "X": "John Paul Mike Kevin Steve Greg Jeff Bill".split(),
        "Y": "Amy Joan Lisa Sarah Diana Kate Ann Donna".split(),
        "A": "executive management professional corporation salary office business career".split(),
        "B": "home parents children family cousins marriage wedding relatives".split(),
        "kind": ("name", "word"),
    },
    "weat7": {
        "name": "math vs arts / male vs female terms",
        "X": "math algebra geometry calculus equations computation numbers addition".split(),
        "Y": "poetry art dance literature novel symphony drama sculpture".split(),
        "A": "male man boy brother he him his son".split(),
        "B": "female woman girl sister she her hers daughter".split(),
        "kind": ("word", "word"),
    },
    "weat8": {
        "name": "science vs arts / male vs female terms",
        "X": "science technology physics chemistry Einstein NASA experiment astronomy".split(),
        "Y": "poetry art Shakespeare dance literature novel symphony drama".split(),
        "A": "brother father uncle grandfather son he his him".split(),
        "B": "sister mother aunt grandmother daughter she hers her".split(),
        "kind": ("word", "word"),
    },
}

# Semantically bleached templates in the style of May et al. (2019).
WORD_TEMPLATES = ["This is {}.", "That is {}.", "There is {}.", "Here is {}.", "{} is here.",
                  "{} is there.", "It is {}.", "{} is a word."]
NAME_TEMPLATES = ["This is {}.", "That is {}.", "Here is {}.", "{} is here.", "{} is there.",
                  "{} is a person.", "The person's name is {}."]


def _unit(E):
    E = np.asarray(to_numpy(E), dtype=np.float64)
    if E.ndim != 2 or len(E) == 0:
        raise ValueError(f"each set must be a non-empty (n, C) array of embeddings, got shape {E.shape}")
    return E / np.linalg.norm(E, axis=1, keepdims=True)


def association(W, A, B):
    """s(w, A, B) for every row w of W: mean cosine to A minus mean cosine to B -> (n,)."""
    W, A, B = _unit(W), _unit(A), _unit(B)
    return (W @ A.T).mean(axis=1) - (W @ B.T).mean(axis=1)


def weat_effect_size(X, Y, A, B):
    """(mean_x s(x) - mean_y s(y)) / std_{X u Y} s(w), sample std (ddof=1)."""
    sx, sy = association(X, A, B), association(Y, A, B)
    s_all = np.concatenate([sx, sy])
    std = s_all.std(ddof=1)
    if std == 0:
        raise ValueError("every target word has the same association: the effect size is undefined")
    return float((sx.mean() - sy.mean()) / std)


def weat_statistic(X, Y, A, B):
    """S(X, Y, A, B) = sum_x s(x) - sum_y s(y), the permutation test's statistic."""
    return float(association(X, A, B).sum() - association(Y, A, B).sum())


def weat_p_value(X, Y, A, B, n_samples=100000, exact_limit=100000, seed=0):
    """One-sided permutation p-value of S (see the module docstring) -> (p, exact, n_partitions).

    The associations s(w) are computed once; a partition only decides which of them are
    summed as X, so every partition costs a sum, and the sampled ones run vectorised."""
    s = np.concatenate([association(X, A, B), association(Y, A, B)])
    nx, n = len(X), len(X) + len(Y)
    observed = s[:nx].sum() - s[nx:].sum()
    total = s.sum()
    tol = 1e-12 * max(1.0, abs(observed))                  # ties up to round-off do not count as greater
    count = math.comb(n, nx)
    if count <= exact_limit:
        greater = 0
        for subset in itertools.combinations(range(n), nx):
            sx = s[list(subset)].sum()
            greater += (2 * sx - total) > observed + tol   # S_i = sum_Xi - (total - sum_Xi)
        return greater / count, True, count
    rng = np.random.default_rng(seed)
    greater, done, chunk = 0, 0, 2000
    while done < n_samples:
        k = min(chunk, n_samples - done)
        perms = np.argsort(rng.random((k, n)), axis=1)[:, :nx]     # k random nx-subsets
        sx = s[perms].sum(axis=1)
        greater += int(((2 * sx - total) > observed + tol).sum())
        done += k
    return (1 + greater) / (1 + n_samples), False, n_samples


def weat(X, Y, A, B, n_samples=100000, exact_limit=100000, seed=0):
    """{"effect_size", "p_value", "exact", "n_partitions", "statistic"} for embeddings X, Y, A, B."""
    p, exact, count = weat_p_value(X, Y, A, B, n_samples, exact_limit, seed)
    return {"effect_size": weat_effect_size(X, Y, A, B), "p_value": p, "exact": exact,
            "n_partitions": count, "statistic": weat_statistic(X, Y, A, B)}


# ---------------------------------------------------------------------------------------------
# SEAT on sentence embeddings
# ---------------------------------------------------------------------------------------------

def fill_templates(words, kind="word"):
    """Every word in every template (names get NAME_TEMPLATES, other words WORD_TEMPLATES)."""
    templates = NAME_TEMPLATES if kind == "name" else WORD_TEMPLATES
    return [t.format(w) for w in words for t in templates]


def embed_sentences(model, tokenizer, sentences, batch_size=64):
    """MiniLM sentence embeddings (unit rows, NumPy (n, C)) in batches."""
    from ...pretrained import sentence_embeddings
    out = []
    for i in range(0, len(sentences), batch_size):
        enc = tokenizer(sentences[i:i + batch_size], padding=True, truncation=True, max_length=64,
                        return_tensors="np")
        out.append(to_numpy(sentence_embeddings(model, enc)).astype(np.float64))
    return np.concatenate(out)


def seat(model, tokenizer, test, n_samples=100000, seed=0, templates=True):
    """Run one WEAT test (a key of WEAT_TESTS, or a dict with X, Y, A, B and optional kind) as
    SEAT on `model` (a sentence encoder: BertModel such as load_minilm()'s). templates=False
    embeds the bare words instead (WEAT on a sentence encoder). Returns weat()'s dict plus the
    test name and set sizes."""
    spec = WEAT_TESTS[test] if isinstance(test, str) else test
    target_kind, attr_kind = spec.get("kind", ("word", "word"))
    sets = {}
    for key, kind in (("X", target_kind), ("Y", target_kind), ("A", attr_kind), ("B", attr_kind)):
        sentences = fill_templates(spec[key], kind) if templates else list(spec[key])
        sets[key] = embed_sentences(model, tokenizer, sentences)
    res = weat(sets["X"], sets["Y"], sets["A"], sets["B"], n_samples=n_samples, seed=seed)
    res.update(test=test if isinstance(test, str) else spec.get("name", "custom"),
               name=spec.get("name", ""), sizes={k: len(v) for k, v in sets.items()})
    return res


# ---------------------------------------------------------------------------------------------
# Masked-LM template probe
# ---------------------------------------------------------------------------------------------

PROFESSION_TEMPLATES = ["[MASK] is a {}.", "[MASK] works as a {}.", "[MASK] wants to be a {}."]
PROFESSIONS = ["nurse", "doctor", "engineer", "teacher", "secretary", "pilot", "librarian", "mechanic"]


def mlm_template_probe(model, tokenizer, templates, targets=("he", "she")):
    """For each template with one [MASK]: the log-probabilities of the target words there.

    model: any BertForMaskedLM (or a model returning MLM logits (B, T, V)); tokenizer: its
    BertTokenizer. Returns a list of dicts {"template", "logp": {word: log P}, "log_ratio":
    log P(targets[0]) - log P(targets[1])}; a positive log_ratio means the model prefers the first.
    """
    ids = []
    for w in targets:
        toks = tokenizer.tokenize(w)
        if len(toks) != 1 or toks[0] not in tokenizer.vocab or toks[0] == tokenizer.unk_token:
            raise ValueError(f"target {w!r} is not one token of the vocabulary ({toks})")
        ids.append(tokenizer.vocab[toks[0]])
    enc = tokenizer(list(templates), padding=True, return_tensors="np")
    input_ids = np.asarray(enc["input_ids"])
    rows, cols = np.nonzero(input_ids == tokenizer.mask_token_id)
    if sorted(rows.tolist()) != list(range(len(templates))):
        raise ValueError("every template needs exactly one [MASK]")
    was = model.training
    model.eval()
    try:
        logits = to_numpy(model(input_ids, attention_mask=enc["attention_mask"]).logits).astype(np.float64)
    finally:
        model.train(was)
        model.clear_caches()                                          # a forward for its logits only
    z = logits[rows, cols]                                             # (n, V) at the masks
    logp = z - z.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    out = []
    for r, template in zip(rows, np.asarray(templates)[rows]):
        lp = {w: float(logp[r, i]) for w, i in zip(targets, ids)}
        out.append({"template": str(template), "logp": lp, "log_ratio": lp[targets[0]] - lp[targets[1]]})
    return out


def gendered_corpus(n=4000, skew=0.8, seed=0):
    """A tiny synthetic corpus whose pronoun / profession statistics we choose: in "he/she is a
    <profession>." sentences, stereotypically female professions take "she" with probability
    `skew` (male ones "he"), plus neutral filler sentences. A BERT pre-trained on it should show
    the skew in mlm_template_probe, which is what makes the probe checkable."""
    rng = np.random.default_rng(seed)
    female = ["nurse", "secretary", "librarian", "teacher"]
    male = ["engineer", "pilot", "mechanic", "doctor"]
    verbs = ["is a", "works as a", "wants to be a"]
    filler = ["the weather is nice today.", "the train was late again.", "we went to the market.",
              "the book is on the table.", "it rained all day.", "the shop opens at nine."]
    lines = []
    for _ in range(n):
        if rng.random() < 0.2:
            lines.append(filler[rng.integers(len(filler))])
            continue
        female_job = rng.random() < 0.5
        job = (female if female_job else male)[rng.integers(4)]
        p_she = skew if female_job else 1 - skew
        pron = "she" if rng.random() < p_she else "he"
        lines.append(f"{pron} {verbs[rng.integers(3)]} {job}.")
    return lines
