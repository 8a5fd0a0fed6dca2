"""Decoding for the encoder-decoder Transformer: greedy search and beam search.

The source is encoded once. Then the decoder writes one token per step, starting from BOS:

    greedy:  y_t = argmax_v log p(v | y_<t, source)
    beam:    keep the K best partial outputs ("beams") by length-normalised score

        score(y) = sum_t log p(y_t | y_<t, source) / len(y) ** alpha      (alpha = length_penalty)

len(y) counts the generated tokens, EOS included (not BOS). alpha = 0 is the raw
log-probability, which favours short outputs (every token costs probability); alpha = 1
is the mean log-probability per token (the form Hugging Face uses; GNMT's
((5 + len) / 6) ** alpha is a smoothed variant).

Each step every running beam is extended by every token (K * V candidates per source); a
beam that has produced EOS is finished and offers one candidate, itself, with its score
frozen. The K best candidates by score become the next beams, so finished hypotheses stay
in the beam for as long as nothing better turns up. With K = 1 this is exactly greedy search
(all candidates have the same length, so the best score is the argmax). A source is done
when no running beam can still beat its best finished hypothesis: sums of log-probabilities
only go down, so a running beam's final score is at most sum / max_len ** alpha (alpha > 0)
or sum / (len + 1) ** alpha (alpha <= 0).

With `use_cache` each step feeds only the newest token: the decoder's self-attention keys
and values of earlier positions are kept (and reordered when beams are re-ranked), and the
encoder output is projected to cross-attention keys and values once. Without it each step
re-runs the decoder over the whole prefix. Both give the same tokens.

The search itself (top-K, bookkeeping) runs on the host in NumPy, float64: one (N, V) row
of logits per step comes off the device.
"""
import numpy as np

from ..backend import asarray, as_host_array, get_xp, to_numpy
from ..models.output import ModelOutput
from ..ops import log_softmax


def log_softmax64(logits):
    """(N, V) logits (any backend) -> host float64 log-probabilities."""
    return log_softmax(to_numpy(logits).astype(np.float64))


def length_normalise(sum_logprob, length, alpha):
    """sum / len ** alpha, elementwise; an empty output (len 0) keeps its sum (0)."""
    length = np.maximum(np.asarray(length, dtype=np.float64), 1.0)
    return np.asarray(sum_logprob, dtype=np.float64) / length ** alpha


def _attention_mask(model, input_ids, attention_mask):
    """Hugging Face's generate() convention: without a mask, padding ids are masked out."""
    if attention_mask is not None:
        return attention_mask
    ids = as_host_array(input_ids)
    pad = model.config.pad_token_id
    if hasattr(ids, "dtype") and ids.dtype.kind in "iu" and ids.ndim == 2 and ids.size:
        host = to_numpy(ids)
        if (host == pad).any():
            return (host != pad).astype(np.int64)
    return None


def _next_logits(model, seqs, t, cache, memory, src_mask):
    """Logits (N, V) for the token after seqs (N, t + 1): feed only the newest token when
    there is a cache, else the whole prefix."""
    if cache is not None:
        return model.decode_step(asarray(seqs[:, -1:]), cache, t, src_mask)
    return model.decode(asarray(seqs), memory, src_mask)


def generate_seq2seq(model, input_ids, attention_mask=None, max_new_tokens=None, num_beams=1,
                     length_penalty=1.0, use_cache=True, return_dict_in_generate=False):
    """input_ids: (B, S) sources -> (B, 1 + n) NumPy int64: BOS, the output, EOS, padding.

    max_new_tokens: at most this many tokens after BOS (None: max_position_embeddings).
    num_beams: 1 for greedy, K > 1 for beam search. length_penalty: alpha above.
    return_dict_in_generate: return ModelOutput(sequences, sequences_scores) with each
    output's length-normalised log-probability.
    Without attention_mask, positions holding pad_token_id are masked (as Hugging Face's
    generate does); pass the mask when a source may legitimately contain that id.
    """
    cfg = model.config
    if isinstance(num_beams, bool) or not isinstance(num_beams, (int, np.integer)) or num_beams < 1:
        raise ValueError(f"num_beams must be an integer >= 1 (1 = greedy), got {num_beams!r}")
    if max_new_tokens is None:
        max_new_tokens = cfg.max_position_embeddings
    if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if max_new_tokens > cfg.max_position_embeddings:
        raise ValueError(f"max_new_tokens={max_new_tokens} exceeds max_position_embeddings="
                         f"{cfg.max_position_embeddings} (the decoder reads BOS plus all but the last token)")
    attention_mask = _attention_mask(model, input_ids, attention_mask)
    was_training = model.training
    model.eval()
    try:
        with model.preserve_caches():            # a pending forward's caches stay for its backward
            memory, src_mask = model.encode(input_ids, attention_mask)      # (B, S, C) once
            if num_beams == 1:
                seqs, scores = greedy_search(model, memory, src_mask, max_new_tokens, length_penalty,
                                             use_cache)
            else:
                seqs, scores = beam_search(model, memory, src_mask, num_beams, max_new_tokens,
                                           length_penalty, use_cache)
    finally:
        model.train(was_training)
    if return_dict_in_generate:
        return ModelOutput(sequences=seqs, sequences_scores=scores)
    return seqs


def greedy_search(model, memory, src_mask, max_new_tokens, length_penalty=1.0, use_cache=True):
    """The most likely next token, every step. Returns (sequences (B, 1 + n), scores (B,))."""
    cfg = model.config
    B = memory.shape[0]
    seqs = np.full((B, 1), cfg.bos_token_id, dtype=np.int64)            # (B, 1) BOS
    sums = np.zeros(B)                                                   # sum of log-probs
    lengths = np.zeros(B, dtype=np.int64)                                # tokens generated
    done = np.zeros(B, dtype=bool)                                       # produced EOS
    cache = model.init_decoder_cache(memory, max_new_tokens) if use_cache and max_new_tokens else None
    for t in range(max_new_tokens):
        logp = log_softmax64(_next_logits(model, seqs, t, cache, memory, src_mask))   # (B, V)
        nxt = logp.argmax(axis=-1)                                       # (B,)
        nxt = np.where(done, cfg.pad_token_id, nxt)                      # finished: pad
        sums += np.where(done, 0.0, logp[np.arange(B), nxt])
        lengths += ~done
        done |= nxt == cfg.eos_token_id
        seqs = np.concatenate([seqs, nxt[:, None]], axis=1)              # (B, t + 2)
        if done.all():
            break
    return seqs, length_normalise(sums, lengths, length_penalty)


def beam_search(model, memory, src_mask, num_beams, max_new_tokens, length_penalty=1.0,
                use_cache=True):
    """Beam search over a batch of sources. Returns (sequences (B, 1 + n), scores (B,))."""
    cfg = model.config
    B, K, alpha = memory.shape[0], num_beams, length_penalty
    pad, eos = cfg.pad_token_id, cfg.eos_token_id
    xp = get_xp(memory)
    rows = xp.repeat(xp.arange(B), K)                                    # beam row -> its source
    memory = memory[rows]                                                # (B*K, S, C)
    src_mask = src_mask[rows] if src_mask is not None else None          # (B*K, 1, 1, S)
    seqs = np.full((B * K, 1), cfg.bos_token_id, dtype=np.int64)         # (B*K, 1)
    sums = np.zeros((B, K))                                              # (B, K) sum of log-probs
    sums[:, 1:] = -np.inf                  # all beams start equal: expand only the first one
    lengths = np.zeros((B, K), dtype=np.int64)
    finished = np.zeros((B, K), dtype=bool)
    results = [None] * B                   # (sequence, score) once a source is done
    cache = model.init_decoder_cache(memory, max_new_tokens) if use_cache and max_new_tokens else None

    for t in range(max_new_tokens):
        logp = log_softmax64(_next_logits(model, seqs, t, cache, memory, src_mask))   # (B*K, V)
        V = logp.shape[-1]
        # candidates: every running beam extended by every token ...
        cand_sum = sums[:, :, None] + logp.reshape(B, K, V)              # (B, K, V)
        cand_score = length_normalise(cand_sum, lengths[:, :, None] + 1, alpha)
        # ... and every finished beam once, as itself (parked in the pad column)
        cand_score[finished] = -np.inf
        cand_score[finished, pad] = length_normalise(sums, lengths, alpha)[finished]
        # the K best candidates of each source become its beams
        top = np.argsort(-cand_score.reshape(B, K * V), axis=1, kind="stable")[:, :K]  # (B, K)
        beam, tok = top // V, top % V                                    # (B, K) each
        was_finished = np.take_along_axis(finished, beam, axis=1)
        sums = np.where(was_finished, np.take_along_axis(sums, beam, axis=1),
                        np.take_along_axis(cand_sum.reshape(B, K * V), top, axis=1))
        lengths = np.take_along_axis(lengths, beam, axis=1) + ~was_finished
        tok = np.where(was_finished, pad, tok)
        finished = was_finished | (tok == eos)
        index = (np.arange(B)[:, None] * K + beam).reshape(-1)           # (B*K,) rows to keep
        seqs = np.concatenate([seqs[index], tok.reshape(-1, 1)], axis=1)  # (B*K, t + 2)
        if cache is not None:
            model.reorder_decoder_cache(cache, asarray(index))

        # a source is done when no running beam can beat its best finished hypothesis
        scores = length_normalise(sums, lengths, alpha)                  # (B, K)
        if alpha > 0:
            bound = sums / float(max_new_tokens) ** alpha                # best possible final score
        else:
            bound = length_normalise(sums, lengths + 1, alpha)
        best_finished = np.where(finished, scores, -np.inf).max(axis=1)  # (B,)
        best_running = np.where(finished, -np.inf, bound).max(axis=1)    # (B,)
        for b in range(B):
            if results[b] is None and finished[b].any() and best_finished[b] >= best_running[b]:
                k = int(np.argmax(np.where(finished[b], scores[b], -np.inf)))
                results[b] = (seqs[b * K + k], scores[b, k])
        if all(r is not None for r in results):
            break

    # sources still open at max_new_tokens: the best beam, finished or not
    scores = length_normalise(sums, lengths, alpha)
    for b in range(B):
        if results[b] is None:
            k = int(np.argmax(scores[b]))
            results[b] = (seqs[b * K + k], scores[b, k])
    width = max(len(s) for s, _ in results)
    out = np.full((B, width), pad, dtype=np.int64)
    for b, (s, _) in enumerate(results):
        out[b, :len(s)] = s
    used = np.nonzero((out != pad).any(axis=0))[0]                     # trim all-padding columns
    width = int(used.max()) + 1 if used.size else 1
    return out[:, :width], np.array([score for _, score in results])


def score_sequences(model, input_ids, sequences, attention_mask=None, length_penalty=1.0):
    """Length-normalised log-probability of outputs as `generate` returns them (BOS, tokens,
    EOS, padding), by one teacher-forced forward pass: an independent check of the search.

    The tokens counted are those after BOS up to and including the first EOS (all of them
    when there is no EOS)."""
    cfg = model.config
    seqs = np.asarray(to_numpy(as_host_array(sequences)), dtype=np.int64)
    if seqs.ndim != 2 or seqs.shape[1] < 2:
        raise ValueError(f"sequences must be (B, 1 + n) with n >= 1, got shape {seqs.shape}")
    attention_mask = _attention_mask(model, input_ids, attention_mask)
    was_training = model.training
    model.eval()
    try:
        with model.preserve_caches():            # a pending forward's caches stay for its backward
            out = model(input_ids, attention_mask=attention_mask, decoder_input_ids=seqs[:, :-1])
            logp = log_softmax64(out.logits.reshape(-1, out.logits.shape[-1]))
    finally:
        model.train(was_training)
    B, T = seqs.shape[0], seqs.shape[1] - 1
    targets = seqs[:, 1:]                                                # (B, T)
    token_logp = logp[np.arange(B * T), targets.reshape(-1)].reshape(B, T)
    is_eos = targets == cfg.eos_token_id
    first_eos = np.where(is_eos.any(axis=1), is_eos.argmax(axis=1), T - 1)   # (B,)
    counted = np.arange(T)[None, :] <= first_eos[:, None]                # (B, T)
    return length_normalise((token_logp * counted).sum(axis=1), counted.sum(axis=1), length_penalty)
