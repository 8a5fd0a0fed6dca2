"""A first multimodal model: CLIP (Radford et al., 2021) in miniature, on pictures we draw.

    from minilm.multimodal import ShapesData, CLIPConfig, CLIPModel, train_clip, retrieval_recall
    data = ShapesData(size=24)
    images, ids, mask, kinds = data.batch(rng, 64)    # (64, 24, 24, 3) floats, caption ids (64, T)
    model = CLIPModel(CLIPConfig(vocab_size=data.tokenizer.vocab_size))
    train_clip(model, data, steps=1500)
    retrieval_recall(model, data, seed=123)            # image->text and text->image recall@1, @5

The pictures: a circle, square or triangle in red, green, blue or yellow, drawn in one cell of
a 3 x 3 grid (3 x 4 x 9 = 108 kinds), with jittered size, position and colour, on a dark noisy
background. The caption names the three: "a blue triangle at the bottom right".

Two encoders map both into one E-dimensional space:
    image:  patchify into P x P patches -> Linear -> prepend [CLS] -> + learned positions
            -> pre-LN transformer blocks -> LayerNorm -> [CLS] vector -> Linear to E     (a ViT)
    text:   [CLS] + word ids -> embeddings + positions -> pre-LN blocks -> LayerNorm
            -> [CLS] vector -> Linear to E
and the symmetric contrastive loss pulls each image towards its own caption and away from the
other captions in the batch (and vice versa):
    u_i = img_i / ||img_i||,  v_j = txt_j / ||txt_j||,  s = exp(t)  (t learnable, s <= 100)
    logits = s U V^T                                                       (B, B)
    loss = ( CE(logits, diag) + CE(logits^T, diag) ) / 2
Its backward, written out in `clip_loss_backward`, goes through the cross-entropies, the
temperature and the L2 normalisations.
"""
import math
from dataclasses import dataclass

import numpy as np

from ..backend import get_xp, host_rng, resolve_dtype, to_numpy, asarray
from .. import layers
from ..layers import Embedding, FeedForward, LayerNorm, Linear, Module, MultiHeadAttention, new_param
from ..models.output import ModelOutput
from ..ops import padding_mask

# ---------------------------------------------------------------------------------------------
# The data: coloured shapes and their captions
# ---------------------------------------------------------------------------------------------

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (0.9, 0.15, 0.1), "green": (0.15, 0.8, 0.2), "blue": (0.15, 0.3, 0.95),
           "yellow": (0.95, 0.9, 0.1)}
POSITIONS = ("top left", "top", "top right", "left", "center", "right", "bottom left", "bottom",
             "bottom right")           # row-major cells of a 3 x 3 grid


def caption(shape, colour, position):
    """ "a red circle at the top left" / "a blue square in the center" """
    where = "in the center" if position == "center" else f"at the {position}"
    return f"a {colour} {shape} {where}"


def render(shape, colour, position, size=24, rng=None):
    """One (size, size, 3) float image in [0, 1]: the shape drawn in its grid cell."""
    rng = np.random.default_rng(0) if rng is None else rng
    cell = size / 3
    row, col = divmod(POSITIONS.index(position), 3)
    r = cell * rng.uniform(0.3, 0.45)                            # half-size of the shape
    cy = (row + 0.5) * cell + rng.uniform(-0.12, 0.12) * cell
    cx = (col + 0.5) * cell + rng.uniform(-0.12, 0.12) * cell
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    dy, dx = yy - cy, xx - cx
    if shape == "circle":
        inside = dy ** 2 + dx ** 2 <= r ** 2
    elif shape == "square":
        inside = (np.abs(dy) <= r * 0.9) & (np.abs(dx) <= r * 0.9)
    elif shape == "triangle":                                    # apex up: |dx| grows with dy
        inside = (dy >= -r) & (dy <= r) & (np.abs(dx) <= (dy + r) / 2)
    else:
        raise ValueError(f"unknown shape {shape!r}; choose from {SHAPES}")
    rgb = np.clip(np.asarray(COLOURS[colour]) + rng.normal(0, 0.05, 3), 0, 1)
    img = rng.uniform(0.0, 0.12, (size, size, 3))               # dark, noisy background
    img[inside] = rgb
    return img


def caption_vocabulary():
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "at", "in", "the"]
    words += list(COLOURS) + list(SHAPES) + ["top", "bottom", "left", "right", "center"]
    return words


class ShapesData:
    """Endless (image, caption) pairs; a batch holds distinct kinds, so no caption repeats."""

    def __init__(self, size=24):
        from ..tokenizers import BertTokenizer
        self.size = size
        self.kinds = [(s, c, p) for s in SHAPES for c in COLOURS for p in POSITIONS]   # 108
        self.captions = [caption(*k) for k in self.kinds]
        self.tokenizer = BertTokenizer(caption_vocabulary())

    def encode(self, captions):
        """ids (n, T) with [CLS] first (no [SEP]), attention mask (n, T)."""
        enc = self.tokenizer(list(captions), padding=True, return_tensors="np")
        ids, mask = np.asarray(enc["input_ids"]), np.asarray(enc["attention_mask"])
        sep = ids == self.tokenizer.sep_token_id                 # drop [SEP]: [CLS] summarises
        ids, mask = np.where(sep, self.tokenizer.pad_token_id, ids), np.where(sep, 0, mask)
        return ids[:, :-1].astype(np.int64), mask[:, :-1].astype(np.int64)

    def images_of(self, kind_ids, rng):
        return np.stack([render(*self.kinds[k], size=self.size, rng=rng) for k in kind_ids])

    def batch(self, rng, batch_size):
        """(images (B, S, S, 3), ids (B, T), mask (B, T), kind ids (B,)) of distinct kinds."""
        kinds = rng.choice(len(self.kinds), size=min(batch_size, len(self.kinds)), replace=False)
        ids, mask = self.encode([self.captions[k] for k in kinds])
        return self.images_of(kinds, rng), ids, mask, kinds


# ---------------------------------------------------------------------------------------------
# The encoders
# ---------------------------------------------------------------------------------------------

@dataclass
class CLIPConfig:
    """Both encoders' sizes (kept equal for simplicity) and the shared embedding width."""
    vocab_size: int = 26               # V: caption vocabulary
    max_text_len: int = 12             # longest caption, [CLS] included
    image_size: int = 24               # S: square RGB images
    patch_size: int = 4                # P: the ViT cuts S x S into (S/P)^2 patches
    hidden_size: int = 64              # C: width of both transformers
    num_layers: int = 2                # L: pre-LN blocks per encoder
    num_heads: int = 4                 # H
    intermediate_size: int = 128       # F: feed-forward width
    embed_dim: int = 32                # E: the joint embedding space
    init_logit_scale: float = math.log(1 / 0.07)   # t at start: s = exp(t) = 14.3, as CLIP
    max_logit_scale: float = 100.0     # CLIP clamps s = exp(t) to <= 100
    seed: int = 0

    def __post_init__(self):
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} must be divisible by num_heads {self.num_heads}")


def PreLNBlock(C, H, F, dtype, rng):                       # noqa: N802 (a block, built)
    """Pre-norm transformer block: h = x + attn(ln1(x)); out = h + mlp(ln2(h)) (no dropout);
    minilm.layers.PreLNBlock with this tower's names."""
    return layers.PreLNBlock([("ln1", "attn_norm", LayerNorm(C, 1e-5, dtype)),
                              ("attn", "attn", MultiHeadAttention(C, H, 0.0, dtype, rng)),
                              ("ln2", "ffn_norm", LayerNorm(C, 1e-5, dtype)),
                              ("mlp", "ffn", FeedForward(C, F, "gelu", dtype, rng))])


def patchify(images, P):
    """(B, S, S, 3) -> (B, N, P*P*3), N = (S/P)^2 patches in row-major order."""
    B, S, _, Ch = images.shape
    n = S // P
    x = images.reshape(B, n, P, n, P, Ch).transpose(0, 1, 3, 2, 4, 5)     # (B, n, n, P, P, 3)
    return x.reshape(B, n * n, P * P * Ch)


class _Encoder(Module):
    """What both towers share: [CLS] + tokens, learned positions, blocks, final LN, projection."""

    def _init_tower(self, cfg, T, dtype, rng):
        C = cfg.hidden_size
        self.position = new_param((T, C), dtype, rng, std=0.02)                     # (T, C)
        self.blocks = [PreLNBlock(C, cfg.num_heads, cfg.intermediate_size, dtype, rng)
                       for _ in range(cfg.num_layers)]
        self.ln_f = LayerNorm(C, 1e-5, dtype)
        self.proj = Linear(C, cfg.embed_dim, bias=False, dtype=dtype, rng=rng, std=C ** -0.5)

    def _tower_children(self):
        return ([(f"blocks.{i}", b) for i, b in enumerate(self.blocks)]
                + [("ln_f", self.ln_f), ("proj", self.proj)])

    def _tower_forward(self, x, key_mask):                  # (B, T, C) -> (B, E)
        x = x + self.position.data[None, :x.shape[1]]
        for block in self.blocks:
            x = block.forward(x, key_mask=key_mask)
        x = self.ln_f.forward(x)
        self.cache = x.shape
        return self.proj.forward(x[:, 0])                   # the [CLS] position

    def _tower_backward(self, dz):                          # (B, E) -> (B, T, C)
        shape = self._check_cache()
        xp = get_xp(dz)
        dx = xp.zeros(shape, dtype=dz.dtype)
        dx[:, 0] = self.proj.backward(dz)                   # undo: z = proj(x[:, 0])
        dx = self.ln_f.backward(dx)
        for block in reversed(self.blocks):
            dx = block.backward(dx)
        self.position.grad[:shape[1]] += dx.sum(axis=0)     # undo: x + position (shared by the batch)
        return dx


class VisionEncoder(_Encoder):
    """ViT (Dosovitskiy et al., 2021), pre-LN: images (B, S, S, 3) -> (B, E)."""

    def __init__(self, cfg, dtype, rng):
        C, P = cfg.hidden_size, cfg.patch_size
        self.patch_size = P
        self.patch_embed = Linear(P * P * 3, C, dtype=dtype, rng=rng, std=0.02)
        self.cls = new_param((C,), dtype, rng, std=0.02)
        self._init_tower(cfg, (cfg.image_size // P) ** 2 + 1, dtype, rng)
        self.cache = None

    def own_parameters(self):
        return [("cls", self.cls), ("position", self.position)]

    def named_children(self):
        return [("patch_embed", self.patch_embed)] + self._tower_children()

    def forward(self, images):
        xp = get_xp(images)
        patches = self.patch_embed.forward(patchify(images, self.patch_size))   # (B, N, C)
        B, N, C = patches.shape
        x = xp.concatenate([xp.broadcast_to(self.cls.data, (B, 1, C)), patches], axis=1)  # (B, N+1, C)
        return self._tower_forward(x, None)

    def backward(self, dz):
        dx = self._tower_backward(dz)                       # (B, N+1, C)
        self.cls.grad += dx[:, 0].sum(axis=0)               # undo: prepend [CLS]
        self.patch_embed.backward(dx[:, 1:])                # undo: patches = patchify(images) W
        return None


class TextEncoder(_Encoder):
    """Caption ids (B, T) with [CLS] first -> (B, E)."""

    def __init__(self, cfg, dtype, rng):
        self.tok_embed = Embedding(cfg.vocab_size, cfg.hidden_size, dtype, rng, std=0.02)
        self._init_tower(cfg, cfg.max_text_len, dtype, rng)
        self.cache = None

    def own_parameters(self):
        return [("position", self.position)]

    def named_children(self):
        return [("tok_embed", self.tok_embed)] + self._tower_children()

    def word_embedding_site(self):
        return self, "tok_embed"

    def forward(self, ids, attention_mask=None):
        T = ids.shape[1]
        if T > self.position.shape[0]:
            raise ValueError(f"caption length {T} exceeds max_text_len={self.position.shape[0]}")
        key_mask = None if attention_mask is None else padding_mask(attention_mask)
        return self._tower_forward(self.tok_embed.forward(ids), key_mask)

    def backward(self, dz):
        self.tok_embed.backward(self._tower_backward(dz))
        return None


# ---------------------------------------------------------------------------------------------
# The contrastive loss
# ---------------------------------------------------------------------------------------------

def _normalize_forward(x):
    """u = x / ||x|| row-wise: (B, E) -> (B, E), cache (u, ||x||)."""
    xp = get_xp(x)
    norm = xp.sqrt((x * x).sum(axis=1, keepdims=True))     # (B, 1)
    return x / norm, (x / norm, norm)


def _normalize_backward(du, cache):
    """dx = (du - u (u . du)) / ||x||: the part of du along u is lost in normalising."""
    u, norm = cache
    return (du - u * (u * du).sum(axis=1, keepdims=True)) / norm


def clip_loss_forward(img, txt, logit_scale, max_scale=100.0):
    """img, txt: (B, E) unnormalised embeddings (row i of each is a matching pair);
    logit_scale: t, a (1,) array  ->  (loss: float, logits (B, B), cache)

        u = img / ||img||,  v = txt / ||txt||,  s = min(exp(t), max_scale)
        logits = s u v^T                           logits[i, j]: image i vs caption j
        loss = (CE(logits, diag) + CE(logits^T, diag)) / 2
    """
    xp = get_xp(img)
    B = img.shape[0]
    u, ucache = _normalize_forward(img)                    # (B, E)
    v, vcache = _normalize_forward(txt)                    # (B, E)
    t = float(to_numpy(logit_scale).reshape(-1)[0])
    clamped = math.exp(t) > max_scale
    s = max_scale if clamped else math.exp(t)
    logits = s * (u @ v.T)                                 # (B, B)
    # row softmax (image -> text) and column softmax (text -> image), in log space
    lr = logits - logits.max(axis=1, keepdims=True)
    lr = lr - xp.log(xp.exp(lr).sum(axis=1, keepdims=True))          # (B, B) log p(text j | image i)
    lc = logits - logits.max(axis=0, keepdims=True)
    lc = lc - xp.log(xp.exp(lc).sum(axis=0, keepdims=True))          # (B, B) log p(image i | text j)
    diag = xp.arange(B)
    loss = -0.5 * (float(lr[diag, diag].mean()) + float(lc[diag, diag].mean()))
    return loss, logits, (u, v, ucache, vcache, s, clamped, xp.exp(lr), xp.exp(lc))


def clip_loss_backward(dloss, cache):
    """Returns (dimg, dtxt, dlogit_scale (1,)); the forward read from the bottom up.

        dlogits = dloss / (2B) ((P_row - I) + (P_col - I))     P_row: row softmax, P_col: column softmax
        du = s dlogits v,   dv = s dlogits^T u,   ds = sum(dlogits * u v^T),   dt = ds * s
        dimg = (du - u (u . du)) / ||img||      (and the same for txt)
    dt is 0 while s is clamped at max_scale.
    """
    u, v, ucache, vcache, s, clamped, p_row, p_col = cache
    xp = get_xp(u)
    B = u.shape[0]
    eye = xp.eye(B, dtype=u.dtype)
    # undo: loss = (CE(logits, diag) + CE(logits^T, diag)) / 2
    dlogits = (dloss / (2 * B)) * ((p_row - eye) + (p_col - eye))    # (B, B)
    # undo: logits = s u v^T
    du = s * (dlogits @ v)                                 # (B, E)
    dv = s * (dlogits.T @ u)                               # (B, E)
    ds = float((dlogits * (u @ v.T)).sum())
    dt = 0.0 if clamped else ds * s                        # s = exp(t): ds/dt = s
    # undo: u = img / ||img||, v = txt / ||txt||
    return (_normalize_backward(du, ucache), _normalize_backward(dv, vcache),
            xp.asarray([dt], dtype=u.dtype))


class CLIPModel(Module):
    """Image and text towers plus the learnable temperature t (`logit_scale`).

        out = model(images, input_ids, attention_mask)     # images (B, S, S, 3)
        out.loss, out.logits_per_image (B, B), out.image_embeds, out.text_embeds (unit rows)
        model.backward()
    """

    def __init__(self, config, dtype="float32"):
        self.config = config
        self.dtype = resolve_dtype(dtype)
        rng = host_rng(config.seed)
        self.vision = VisionEncoder(config, self.dtype, rng)
        self.text = TextEncoder(config, self.dtype, rng)
        self.logit_scale = new_param((1,), self.dtype, None, fill=config.init_logit_scale)
        self._loss_cache = None

    def own_parameters(self):
        return [("logit_scale", self.logit_scale)]

    def named_children(self):
        return [("vision", self.vision), ("text", self.text)]

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, images, input_ids, attention_mask=None):
        images = asarray(images).astype(self.dtype, copy=False)
        ids = asarray(input_ids).astype(get_xp().int64, copy=False)
        mask = None if attention_mask is None else asarray(attention_mask)
        if images.shape[0] != ids.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {ids.shape[0]} captions: they must pair up")
        img = self.vision.forward(images)                  # (B, E)
        txt = self.text.forward(ids, mask)                 # (B, E)
        loss, logits, self._loss_cache = clip_loss_forward(img, txt, self.logit_scale.data,
                                                           self.config.max_logit_scale)
        u, v = self._loss_cache[0], self._loss_cache[1]
        return ModelOutput(loss=loss, logits_per_image=logits, logits_per_text=logits.T,
                           image_embeds=u, text_embeds=v)

    def backward(self):
        if self._loss_cache is None:
            raise RuntimeError("backward() needs a forward first")
        cache, self._loss_cache = self._loss_cache, None
        dimg, dtxt, dt = clip_loss_backward(1.0, cache)
        self.logit_scale.grad += dt
        self.text.backward(dtxt)
        self.vision.backward(dimg)

    def _inference(self, fn, *args):
        was = self.training
        self.eval()
        try:
            z = fn(*args)
            return to_numpy(z / get_xp(z).sqrt((z * z).sum(axis=1, keepdims=True)))
        finally:
            for m in self.modules():
                if hasattr(m, "cache"):
                    m.cache = None
            self.train(was)

    def encode_image(self, images, batch_size=256):
        """Unit image embeddings, NumPy (N, E)."""
        return np.concatenate([self._inference(self.vision.forward,
                                               asarray(images[i:i + batch_size]).astype(self.dtype))
                               for i in range(0, len(images), batch_size)])

    def encode_text(self, input_ids, attention_mask=None):
        """Unit caption embeddings, NumPy (N, E)."""
        mask = None if attention_mask is None else asarray(attention_mask)
        return self._inference(self.text.forward, asarray(input_ids), mask)


# ---------------------------------------------------------------------------------------------
# Training and retrieval
# ---------------------------------------------------------------------------------------------

def recall_at_k(similarity, ks=(1, 5)):
    """similarity (N, N), the right match of query i being item i -> {k: recall@k}."""
    sim = np.asarray(similarity)
    correct = sim[np.arange(len(sim)), np.arange(len(sim))][:, None]
    rank = (sim > correct).sum(axis=1)                     # items strictly better than the right one
    return {k: float((rank < k).mean()) for k in ks}


def retrieval_recall(model, data, seed=123, ks=(1, 5)):
    """Recall@k both ways on one fresh image per kind (108 images vs the 108 distinct captions)."""
    rng = np.random.default_rng(seed)
    kinds = np.arange(len(data.kinds))
    images = data.images_of(kinds, rng)
    ids, mask = data.encode([data.captions[k] for k in kinds])
    sim = model.encode_image(images) @ model.encode_text(ids, mask).T   # (N, N) cosine
    return {"image_to_text": recall_at_k(sim, ks), "text_to_image": recall_at_k(sim.T, ks),
            "n": len(kinds)}


def train_clip(model, data, steps=1500, batch_size=64, lr=2e-3, weight_decay=0.01, warmup=100,
               seed=0, eval_every=None, log=None):
    """AdamW with warm-up and cosine decay on fresh batches (minilm.train.Trainer's loop);
    returns the history."""
    from ..training.optim import AdamW, cosine_with_warmup, param_groups_with_decay
    from ..training.trainer import Trainer
    groups = param_groups_with_decay(model.named_parameters(), weight_decay)
    opt = AdamW(groups, lr=lr)
    history = []

    def step_fn(batch):
        images, ids, mask, _ = batch
        out = model(images, ids, mask)
        model.backward()
        return out

    def after_step(trainer):
        step = trainer.step
        row = {"step": step, "loss": trainer.last_output.loss,
               "logit_scale": float(math.exp(float(to_numpy(model.logit_scale.data)[0])))}
        if eval_every and (step % eval_every == 0 or step == steps):
            r = retrieval_recall(model, data)
            row.update(i2t_r1=r["image_to_text"][1], t2i_r1=r["text_to_image"][1])
            history.append(row)
            if log:
                log(row)

    Trainer(model, opt, lambda rng: data.batch(rng, batch_size), max_steps=steps, seed=seed,
            progress=False, step_fn=step_fn, after_step=after_step,
            lr_schedule=lambda step: cosine_with_warmup(step, lr, lr * 0.05, min(warmup, steps), steps)).fit()
    model.eval()
    return history
