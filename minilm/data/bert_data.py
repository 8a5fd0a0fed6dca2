"""BERT's data: masked-LM masking, next-sentence pairs, and the inputs of the fine-tuning tasks.

Everything here is host-side NumPy and plain Python: it turns text into integer arrays
(`input_ids`, `token_type_ids`, `attention_mask`, and the targets) that a BERT model takes as
`model(**batch)`. Randomness always comes from a `numpy.random.Generator` passed in, so a
seed reproduces every mask and every pair.

Pre-training (Devlin et al. 2018, section 3.1 and appendix A.1)
    mask_tokens                 15% of the real tokens chosen; of those 80% -> [MASK],
                                10% -> a random token, 10% kept; labels -100 elsewhere
    DataCollatorForLanguageModeling   pad a list of examples, then mask_tokens (as HF's)
    split_sentences, pydoc_documents  documents as lists of sentences
    pack_pair                   [CLS] A [SEP] B [SEP] + token_type_ids, truncated to max_length
    create_nsp_examples         sentence pairs: 50% the true next segment (label 0),
                                50% a segment of another document (label 1); HF's convention
    PretrainingBatches          a Trainer's get_batch(rng): random examples, padded, masked
    build_wordpiece_vocab       a small WordPiece vocabulary from a corpus

Fine-tuning
    encode_classification       texts (+ labels) -> a padded batch
    tokenize_and_align_labels   NER: word labels -> the first word piece of each word,
                                -100 on the other pieces and on [CLS]/[SEP]
    offset_mapping              (token, start, end) character offsets of every word piece
    prepare_qa_features         QA: answer character span -> start/end token positions
    best_span                   QA: the best (start, end) from start/end logits
"""
import re
from collections import Counter

import numpy as np

from ..tokenizers.bert import BasicTokenizer

IGNORE_INDEX = -100                          # Hugging Face's "no loss at this position"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def pad_sequences(seqs, value, length=None):
    """Right-pad lists of ints into an int64 array (N, length); length defaults to the longest.

    Example: pad_sequences([[5, 6, 7], [8]], 0) -> [[5, 6, 7], [8, 0, 0]]
    """
    length = max(len(s) for s in seqs) if length is None else length
    out = np.full((len(seqs), length), value, dtype=np.int64)
    for i, s in enumerate(seqs):
        if len(s) > length:
            raise ValueError(f"sequence {i} has {len(s)} tokens, more than length={length}")
        out[i, :len(s)] = s
    return out


def _check_max_length(max_length, needed, what):
    if not isinstance(max_length, (int, np.integer)) or isinstance(max_length, bool):
        raise TypeError(f"max_length must be an int, got {type(max_length).__name__}")
    if max_length < needed:
        raise ValueError(f"max_length={max_length} is smaller than the {needed} tokens that "
                         f"{what} needs at least")


# =============================================================================================
# Masked language modelling
# =============================================================================================

def mask_tokens(input_ids, rng, *, mask_token_id, vocab_size, special_ids=(), attention_mask=None,
                mlm_probability=0.15):
    """BERT's masking: choose ~15% of the real tokens as prediction targets, then corrupt them.

    input_ids: (B, T) ints; rng: numpy.random.Generator; special_ids: ids never chosen
    ([CLS], [SEP], [PAD], ...); attention_mask: (B, T), positions with 0 (padding) never chosen.

        chosen   ~ Bernoulli(mlm_probability) on every non-special, non-padding position
        labels   = input_ids where chosen, else -100     (the loss only sees chosen positions)
        of the chosen: 80% -> [MASK], 10% -> a token drawn uniformly from the vocabulary,
                       10% -> left unchanged
    The random and unchanged 10%s keep the model from learning that only [MASK] positions
    matter, since at fine-tuning time there is no [MASK]. Each position is drawn independently
    (as Hugging Face's DataCollatorForLanguageModeling), so the count varies around 15%.

    Returns (masked_input_ids, labels): new int64 arrays; input_ids is not modified.
    """
    ids = np.asarray(input_ids)
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"input_ids must be a 2-D integer array (B, T), got {ids.dtype} {ids.shape}")
    if not 0.0 <= mlm_probability <= 1.0:
        raise ValueError(f"mlm_probability must be in [0, 1], got {mlm_probability}")
    ids = ids.astype(np.int64)
    can_choose = ~np.isin(ids, np.asarray(list(special_ids), dtype=np.int64))    # (B, T)
    if attention_mask is not None:
        can_choose &= np.asarray(attention_mask).astype(bool)
    chosen = (rng.random(ids.shape) < mlm_probability) & can_choose               # (B, T)
    labels = np.where(chosen, ids, IGNORE_INDEX)                                  # (B, T)

    u = rng.random(ids.shape)                     # one draw decides the 80 / 10 / 10 split
    to_mask = chosen & (u < 0.8)
    to_random = chosen & (u >= 0.8) & (u < 0.9)
    masked = ids.copy()
    masked[to_mask] = mask_token_id
    masked[to_random] = rng.integers(0, vocab_size, int(to_random.sum()))
    return masked, labels


class DataCollatorForLanguageModeling:
    """Pad a list of examples into a batch and mask it, like Hugging Face's collator.

        collate = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, seed=0)
        batch = collate([{"input_ids": [...], "token_type_ids": [...]}, ...])
        batch -> input_ids, attention_mask, token_type_ids, labels (+ next_sentence_label if
                 the examples have it): int64 arrays, ready for BertForPreTraining / ForMaskedLM

    The masking is drawn anew every call ("dynamic masking", as RoBERTa and HF do; the
    original BERT masked each example once, ten different ways). Pass `rng` to a call to use
    your own generator (a Trainer's) instead of the collator's.
    """

    def __init__(self, tokenizer, mlm_probability=0.15, seed=0):
        self.tokenizer = tokenizer
        self.mlm_probability = mlm_probability
        self.rng = np.random.default_rng(seed)

    def __call__(self, examples, rng=None):
        tok = self.tokenizer
        batch = pad_batch(examples, tok.pad_token_id)
        batch["input_ids"], batch["labels"] = mask_tokens(
            batch["input_ids"], self.rng if rng is None else rng,
            mask_token_id=tok.mask_token_id, vocab_size=tok.vocab_size,
            special_ids=tok.all_special_ids, attention_mask=batch["attention_mask"],
            mlm_probability=self.mlm_probability)
        return batch


def pad_batch(examples, pad_token_id):
    """Examples (dicts of lists) -> a dict of padded int64 arrays with an attention_mask.

    input_ids are padded with pad_token_id, token_type_ids with 0, labels with -100; scalar
    fields (next_sentence_label, label, start_positions, ...) become 1-D arrays.
    """
    if not examples:
        raise ValueError("no examples to put in a batch")
    batch = {"input_ids": pad_sequences([e["input_ids"] for e in examples], pad_token_id)}
    T = batch["input_ids"].shape[1]
    batch["attention_mask"] = pad_sequences([[1] * len(e["input_ids"]) for e in examples], 0, T)
    if "token_type_ids" in examples[0]:
        batch["token_type_ids"] = pad_sequences([e["token_type_ids"] for e in examples], 0, T)
    for key in examples[0]:
        if key in batch or key == "attention_mask":
            continue
        values = [e[key] for e in examples]
        if isinstance(values[0], (list, tuple, np.ndarray)):
            if key == "labels":
                batch[key] = pad_sequences(values, IGNORE_INDEX, T)
        else:
            batch[key] = np.asarray(values, dtype=np.int64)
    return batch


# =============================================================================================
# Next-sentence prediction
# =============================================================================================

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(\[])")


def split_sentences(text):
    """Paragraphs (blank-line separated) -> sentences, whitespace collapsed.

    A sentence ends at . ! or ? followed by a space and a capital letter (or quote/bracket):
    crude, but enough for pre-training pairs.
    Example: "One. Two?\\n\\nThree" -> ["One.", "Two?", "Three"]
    """
    sentences = []
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = " ".join(paragraph.split())
        if paragraph:
            sentences.extend(s for s in _SENTENCE_END.split(paragraph) if s)
    return sentences


def pydoc_documents(min_sentences=2):
    """The bundled corpus as documents: one per pydoc topic (`pydoc_data.topics`, sorted by
    topic name), each a list of sentences; topics with fewer than min_sentences are dropped."""
    try:
        from pydoc_data import topics
    except ImportError as e:  # some stripped-down Pythons drop it
        raise RuntimeError("this Python has no pydoc_data module") from e
    docs = [split_sentences(topics.topics[k]) for k in sorted(topics.topics)]
    return [d for d in docs if len(d) >= min_sentences]


def pack_pair(ids_a, ids_b, cls_token_id, sep_token_id, max_length):
    """[CLS] A [SEP] B [SEP] with token_type_ids 0 for [CLS] A [SEP] and 1 for B [SEP].

    When the pair is longer than max_length, tokens are cut from the end of the longer
    segment, one at a time (BERT's truncate_seq_pair, without its random front/back choice).
    Returns (input_ids, token_type_ids) as lists.

    Example: pack_pair([7, 8, 9], [4], 2, 3, max_length=6)
        -> ([2, 7, 8, 3, 4, 3], [0, 0, 0, 0, 1, 1])
    """
    _check_max_length(max_length, 3, "[CLS] A [SEP] B [SEP]")
    a, b = list(ids_a), list(ids_b)
    while len(a) + len(b) > max_length - 3:
        (a if len(a) > len(b) else b).pop()
    input_ids = [cls_token_id] + a + [sep_token_id] + b + [sep_token_id]
    token_type_ids = [0] * (len(a) + 2) + [1] * (len(b) + 1)
    return input_ids, token_type_ids


def create_nsp_examples(documents, tokenizer, max_length, rng, nsp_probability=0.5, dupe_factor=1):
    """Sentence-pair examples for masked LM + next-sentence prediction.

    documents: list of documents, each a list of sentence strings (split_sentences).
    Walking through each document, segment A takes one or more consecutive sentences, up to
    a length drawn at random between a quarter and three quarters of the budget
    max_length - 3 (so passes cut the text differently); then with probability
    1 - nsp_probability segment B is the text that really follows A (next_sentence_label 0:
    "B is the next sentence", Hugging Face's convention) and otherwise a stretch of a
    *different* random document (label 1). A random B leaves the true continuation unused,
    so the walk resumes right after A, as in BERT's create_pretraining_data.py.
    dupe_factor: how many passes over the corpus, each with its own cuts and random
    partners (BERT used 10). With a single pairing a small model soon memorises which fixed
    pairs are "random" instead of learning what makes text follow on.

    Returns a list of {"input_ids", "token_type_ids", "next_sentence_label"} (lists and ints).
    """
    _check_max_length(max_length, 5, "a sentence pair with one token per segment")
    docs = [[ids for ids in (tokenizer.convert_tokens_to_ids(tokenizer.tokenize(s)) for s in doc)
             if ids] for doc in documents]                     # sentences as id lists
    docs = [doc for doc in docs if doc]
    if len(docs) < 2:
        raise ValueError(f"next-sentence pairs need at least 2 non-empty documents (a random B "
                         f"comes from another document), got {len(docs)}")
    budget = max_length - 3
    examples = []
    for _ in range(dupe_factor):
        for d, doc in enumerate(docs):
            i = 0
            while i < len(doc) - 1:
                a_budget = int(rng.integers(budget // 4, 3 * budget // 4 + 1))
                a, j = list(doc[i]), i + 1                      # A: sentences i .. j-1
                while j < len(doc) - 1 and len(a) + len(doc[j]) <= a_budget:
                    a += doc[j]
                    j += 1
                if rng.random() < nsp_probability:              # B from another document
                    other = int(rng.integers(0, len(docs) - 1))
                    other += other >= d                         # any document but d
                    k = int(rng.integers(0, len(docs[other])))
                    b, label, next_i = [], 1, j
                    while k < len(docs[other]) and len(a) + len(b) < budget:
                        b += docs[other][k]
                        k += 1
                else:                                           # B: what really follows A
                    b, label = [], 0
                    while j < len(doc) and len(a) + len(b) < budget:
                        b += doc[j]
                        j += 1
                    next_i = j
                input_ids, token_type_ids = pack_pair(a, b, tokenizer.cls_token_id,
                                                      tokenizer.sep_token_id, max_length)
                examples.append({"input_ids": input_ids, "token_type_ids": token_type_ids,
                                 "next_sentence_label": label})
                i = next_i
    return examples


class PretrainingBatches:
    """A Trainer's `get_batch(rng)` for BertForPreTraining: batch_size random examples,
    padded and masked with the Trainer's generator.

        batches = PretrainingBatches(examples, tokenizer, batch_size=32)
        trainer = Trainer(model, opt, batches, ...)      # calls batches(trainer.rng)
    """

    def __init__(self, examples, tokenizer, batch_size, mlm_probability=0.15):
        if not examples:
            raise ValueError("no pre-training examples")
        self.examples = examples
        self.batch_size = batch_size
        self.collate = DataCollatorForLanguageModeling(tokenizer, mlm_probability)

    def __call__(self, rng):
        picks = rng.integers(0, len(self.examples), self.batch_size)
        return self.collate([self.examples[i] for i in picks], rng=rng)


def build_wordpiece_vocab(texts, vocab_size, min_frequency=2, word_fraction=0.6):
    """A WordPiece vocabulary (list of tokens, id = position) for BertTokenizer, from a corpus.

    A simple recipe, not Google's WordPiece trainer (which grows pieces by likelihood):
      1. the special tokens [PAD] [UNK] [CLS] [SEP] [MASK] (ids 0-4);
      2. every character seen, alone and as a "##" continuation, so no word is [UNK];
      3. word_fraction of the remaining room: the most frequent whole words;
      4. the rest: the pieces that save the most characters in the words not yet in the
         vocabulary -- prefixes ("pars") and "##" continuations ("##ing") of 2 to 5
         characters, scored by count * (length - 1).
    Words are BERT's basic tokens (lower-cased, accents stripped, punctuation split off).
    Ties are broken alphabetically, so the result is deterministic.
    """
    basic = BasicTokenizer()
    words = Counter()
    for text in texts:
        words.update(basic.tokenize(text))
    chars = sorted({c for w in words for c in w})
    vocab = list(SPECIAL_TOKENS) + chars + ["##" + c for c in chars]
    room = vocab_size - len(vocab)
    if room < 0:
        raise ValueError(f"vocab_size={vocab_size} is too small: the special tokens and the "
                         f"{len(chars)} characters already take {len(vocab)} entries")
    taken = set(vocab)
    ranked = sorted((w for w, c in words.items() if c >= min_frequency and w not in taken),
                    key=lambda w: (-words[w], w))
    whole = ranked[:int(room * word_fraction)]
    vocab += whole
    taken.update(whole)
    pieces = Counter()
    for w, c in words.items():
        if w in taken or len(w) < 3:
            continue
        for k in range(2, min(5, len(w) - 1) + 1):
            pieces[w[:k]] += c * (k - 1)                        # a prefix saves k - 1 pieces
            for s in range(1, len(w) - k + 1):
                pieces["##" + w[s:s + k]] += c * (k - 1)
    ranked_pieces = sorted((p for p in pieces if p not in taken), key=lambda p: (-pieces[p], p))
    vocab += ranked_pieces[:vocab_size - len(vocab)]
    return vocab


# =============================================================================================
# Fine-tuning inputs
# =============================================================================================

def encode_classification(tokenizer, texts, labels=None, max_length=128, text_pairs=None):
    """Texts (and optional second texts / integer labels) -> a padded batch dict:
    input_ids, attention_mask, token_type_ids (+ labels), int64 arrays (B, T) and (B,)."""
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings (a batch), got one string")
    _check_max_length(max_length, 3 if text_pairs is not None else 2, "[CLS] text [SEP]")
    enc = tokenizer(list(texts), text_pair=None if text_pairs is None else list(text_pairs),
                    padding=True, truncation=True, max_length=max_length, return_tensors="np")
    batch = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    if labels is not None:
        labels = np.asarray(labels, dtype=np.int64)
        if labels.shape != (len(texts),):
            raise ValueError(f"got {len(texts)} texts but labels of shape {labels.shape}")
        batch["labels"] = labels
    return batch


def tokenize_and_align_labels(tokenizer, words, labels=None, max_length=128):
    """NER: a sentence as words (+ one integer label per word) -> word pieces and piece labels.

    Each word is tokenized on its own; its label goes to its *first* piece, and every other
    piece gets -100, as do [CLS] and [SEP] (the loss and the metrics look at one prediction per
    word, as in the BERT paper's CoNLL-2003 setup). word_ids maps each position back to its
    word (None for the special tokens). A sentence longer than max_length loses its last
    pieces; words left out entirely have no position (predict "O" for them).

    Example, with "Rotterdam" -> "rot ##ter ##dam":
        words  ["Visit", "Rotterdam", "now"]      labels [0, 3, 0]
        tokens [CLS] visit rot ##ter ##dam now [SEP]
        labels -100  0     3   -100  -100  0   -100
        word_ids None 0    1   1     1     2   None

    Returns {"input_ids", "token_type_ids", "labels" (if labels given), "word_ids"}: lists.
    """
    _check_max_length(max_length, 2, "[CLS] ... [SEP]")
    if isinstance(words, str):
        raise TypeError("words must be a list of words (the sentence already split), got a string")
    if labels is not None and len(labels) != len(words):
        raise ValueError(f"got {len(words)} words but {len(labels)} labels")
    ids, piece_labels, word_ids = [tokenizer.cls_token_id], [IGNORE_INDEX], [None]
    for w, word in enumerate(words):
        pieces = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(word))
        for p, piece in enumerate(pieces):
            ids.append(piece)
            word_ids.append(w)
            piece_labels.append(int(labels[w]) if labels is not None and p == 0 else IGNORE_INDEX)
    ids, piece_labels, word_ids = ids[:max_length - 1], piece_labels[:max_length - 1], word_ids[:max_length - 1]
    ids.append(tokenizer.sep_token_id)
    piece_labels.append(IGNORE_INDEX)
    word_ids.append(None)
    out = {"input_ids": ids, "token_type_ids": [0] * len(ids), "word_ids": word_ids}
    if labels is not None:
        out["labels"] = piece_labels
    return out


def word_predictions(piece_predictions, word_ids, n_words, default=0):
    """Per-piece predictions (T,) -> per-word predictions (n_words,): each word takes its first
    piece's prediction; words without a position (cut by truncation) get `default`."""
    out = [default] * n_words
    seen = set()
    for pos, w in enumerate(word_ids):
        if w is not None and w not in seen:
            seen.add(w)
            out[w] = int(piece_predictions[pos])
    return out


def offset_mapping(tokenizer, text):
    """The word pieces of `text` with their character spans: (tokens, offsets), where
    text[start:end] is the stretch of the original text that offsets[i] = (start, end) covers.

    Found by re-tokenising word by word: each whitespace-separated word is split by the basic
    tokenizer (punctuation, lower-casing, accents), every basic token is located in the word
    (compared character by character after the same normalisation), and its word pieces
    divide its span by their lengths ("##" not counted). An [UNK] covers its whole basic
    token. The tokens are those of tokenizer.tokenize(text) for any text without special
    tokens such as "[MASK]" written in it.

    Example: "Héllo, world" -> tokens ["hello", ",", "world"], offsets [(0, 5), (5, 6), (7, 12)]
    (with the MiniLM vocabulary).
    """
    basic = tokenizer.basic_tokenizer
    wordpiece = tokenizer.wordpiece_tokenizer
    tokens, offsets = [], []
    normalised = {}                                   # char -> its normalised form
    for match in re.finditer(r"\S+", text):
        word, base = match.group(), match.start()
        # the word normalised char by char: norm[k] came from word[src[k]]
        norm, src = [], []
        for i, ch in enumerate(word):
            if ch not in normalised:
                normalised[ch] = "".join(basic.tokenize(ch))
            for c in normalised[ch]:
                norm.append(c)
                src.append(i)
        norm = "".join(norm)
        cursor = 0
        for piece in basic.tokenize(word):
            k = norm.find(piece, cursor)
            if k < 0:
                raise ValueError(f"offset_mapping could not align {piece!r} in {word!r}")
            start, cursor = k, k + len(piece)
            subs = wordpiece.tokenize(piece)
            if subs == [tokenizer.unk_token]:
                spans = [(start, cursor)]
            else:
                spans, s = [], start
                for sub in subs:
                    n = len(sub) - 2 if sub.startswith("##") else len(sub)
                    spans.append((s, s + n))
                    s += n
            for sub, (s, e) in zip(subs, spans):
                tokens.append(sub)
                offsets.append((base + src[s], base + src[e - 1] + 1))
    return tokens, offsets


def prepare_qa_features(tokenizer, question, context, answer_text=None, answer_start=None,
                        max_length=384):
    """Extractive QA: encode [CLS] question [SEP] context [SEP] and place the answer.

    The answer is given as characters (answer_text at context[answer_start:], SQuAD style;
    without answer_start the first occurrence is used). offset_mapping gives every context
    piece its character span; the answer's start token is the first piece that ends after
    the answer starts, its end token the last piece that starts before the answer ends.
    Only the context is truncated (the question is kept whole), from its end; when the answer
    is cut away, start and end point at [CLS] (position 0), Hugging Face's convention for
    "no answer in this window". (HF's document stride, several windows per long context, is
    left out: our contexts fit.)

    Returns {"input_ids", "token_type_ids", "start_positions", "end_positions" (if an answer
    is given), "offsets": per position (start, end) into the context or None}.
    Raises ValueError when the answer is not in the context, or when max_length leaves no
    room for the context.
    """
    q_ids = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(question))
    _check_max_length(max_length, len(q_ids) + 4, "[CLS] question [SEP] context [SEP] (with one "
                      f"context token, for this {len(q_ids)}-token question)")
    tokens, ctx_offsets = offset_mapping(tokenizer, context)
    room = max_length - len(q_ids) - 3
    tokens, ctx_offsets = tokens[:room], ctx_offsets[:room]
    ctx_ids = tokenizer.convert_tokens_to_ids(tokens)
    input_ids = [tokenizer.cls_token_id] + q_ids + [tokenizer.sep_token_id] + ctx_ids + [tokenizer.sep_token_id]
    token_type_ids = [0] * (len(q_ids) + 2) + [1] * (len(ctx_ids) + 1)
    first = len(q_ids) + 2                                      # position of the first context piece
    offsets = [None] * first + list(ctx_offsets) + [None]
    out = {"input_ids": input_ids, "token_type_ids": token_type_ids, "offsets": offsets}
    if answer_text is None:
        return out

    if not answer_text or not answer_text.strip():
        raise ValueError("the answer is empty")
    if answer_start is None:
        answer_start = context.find(answer_text)
        if answer_start < 0:
            raise ValueError(f"answer {answer_text!r} not found in the context {context[:60]!r}...")
    elif context[answer_start:answer_start + len(answer_text)] != answer_text:
        raise ValueError(f"answer {answer_text!r} not found in the context at character "
                         f"{answer_start} (found {context[answer_start:answer_start + len(answer_text)]!r})")
    answer_end = answer_start + len(answer_text)                # exclusive
    start = next((i for i, (s, e) in enumerate(ctx_offsets) if e > answer_start), None)
    end = next((i for i in range(len(ctx_offsets) - 1, -1, -1) if ctx_offsets[i][0] < answer_end), None)
    inside = (start is not None and end is not None and start <= end
              and ctx_offsets[start][0] < answer_end and ctx_offsets[-1][1] >= answer_end)
    if inside:
        out["start_positions"], out["end_positions"] = first + start, first + end
    else:                                                       # truncated away: point at [CLS]
        out["start_positions"], out["end_positions"] = 0, 0
    return out


def best_span(start_logits, end_logits, allowed, max_answer_length=30):
    """The (start, end) maximising start_logits[start] + end_logits[end] with
    start <= end < start + max_answer_length, both at positions where allowed is True
    (the context pieces). start_logits, end_logits, allowed: (T,). Returns two ints."""
    s = np.where(allowed, np.asarray(start_logits, dtype=np.float64), -np.inf)   # (T,)
    e = np.where(allowed, np.asarray(end_logits, dtype=np.float64), -np.inf)     # (T,)
    if not np.any(allowed):
        raise ValueError("no allowed position for the answer")
    T = s.shape[0]
    offset = np.arange(T)[None, :] - np.arange(T)[:, None]    # end - start, (T, T)
    scores = s[:, None] + e[None, :]                            # (T, T): start down, end across
    scores[(offset < 0) | (offset >= max_answer_length)] = -np.inf
    start, end = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return int(start), int(end)
