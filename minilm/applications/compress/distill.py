"""Knowledge distillation: a small student learns from a big teacher's outputs (Hinton et al. 2015).

The teacher's softened probabilities carry more than the label ("this 7 looks a bit like a
1"). With temperature T, p^T = softmax(z / T); the student minimises

    L = alpha * T^2 * KL(p_t^T || p_s^T)  +  (1 - alpha) * CE(p_s, y)

averaged over the N rows (examples, or token positions for a language model). The T^2 keeps
the soft term's gradient the same size as T changes (its gradient carries a 1/T, see below).

Hidden-state distillation (FitNets, Romero et al. 2015; TinyBERT, Jiao et al. 2020) also
matches intermediate representations: student layer l is paired with teacher layer m(l)
(evenly spaced: m(l) = (l + 1) L_t / L_s - 1), and

    L_hidden = beta * mean_l  mean_{rows, C_t} (h_s^l P_l - h_t^m(l))^2

with P_l a learnable (C_s, C_t) Linear projection when the widths differ (none when equal).
h^l is what the model returns as hidden_states[l + 1] with output_hidden_states=True (as in
`transformers`: a BERT layer's output; for GPT-2 the last entry is after the final LayerNorm),
and the gradient goes back through `student.backward(dlogits, dhidden_states=...)`: the
distiller uses the models' public interface only.

    d = Distiller(teacher, student, temperature=2.0, alpha=0.5, hidden_weight=1.0)
    opt = AdamW(d.parameters(), lr=1e-3)      # the student's and the projections' parameters
    out = d(input_ids=..., labels=...)        # teacher forward (no backward), student forward
    d.backward(); opt.step()                  # gradients reach the student and projections

`Distiller` is a Module whose loss is the distillation loss, so `minilm.train.Trainer` can
train it like any model; its state_dict holds the student (and the projections), never the
teacher.
"""
from ...backend import asarray, get_xp
from ...layers import Linear, Module
from ...ops.losses import IGNORE_INDEX
from ...models import GPT
from ...models.output import ModelOutput
from ...ops import log_softmax


# ----------------------------------------------------------------------------------------
# The soft-target loss
# ----------------------------------------------------------------------------------------

def distillation_loss_forward(student_logits, teacher_logits, labels=None, temperature=2.0,
                              alpha=0.5, ignore_index=IGNORE_INDEX):
    """student_logits, teacher_logits: (N, V); labels: (N,) ints (ignore_index: skip the
    row) or None (then alpha must be 1)  ->  loss: float

        p_s^T = softmax(z_s / T),  p_t^T = softmax(z_t / T),  p_s = softmax(z_s)
        KD  = 1/M sum_i sum_v p_t^T log(p_t^T / p_s^T)           (KL divergence, per row)
        CE  = -1/M sum_i log p_s[i, y_i]
        L   = alpha T^2 KD + (1 - alpha) CE
    M = the number of rows that count (labels != ignore_index; all rows without labels).
    """
    xp = get_xp(student_logits)
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ: the teacher must predict over the "
                         "same classes / vocabulary (same size and ids) as the student")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if labels is None and alpha < 1.0:
        raise ValueError("without labels only the soft targets are available: use alpha=1.0")
    N, V = student_logits.shape
    T = float(temperature)
    valid = xp.ones(N, dtype=bool) if labels is None else (labels != ignore_index)   # (N,)
    M = max(int(valid.sum()), 1)
    w = valid.astype(student_logits.dtype)[:, None]                    # (N, 1) row weights
    log_ps_T = log_softmax(student_logits / T)                        # (N, V)
    log_pt_T = log_softmax(teacher_logits.astype(student_logits.dtype) / T)
    pt_T = xp.exp(log_pt_T)
    kd = float((w * pt_T * (log_pt_T - log_ps_T)).sum()) / M           # mean KL(p_t^T || p_s^T)
    loss, log_ps = alpha * T * T * kd, None
    if alpha < 1.0:
        log_ps = log_softmax(student_logits)                          # (N, V)
        safe = xp.where(valid, labels, 0)
        ce = -float((w[:, 0] * log_ps[xp.arange(N), safe]).sum()) / M
        loss += (1.0 - alpha) * ce
    else:
        safe = None
    return loss, (log_ps_T, pt_T, log_ps, safe, w, M, T, alpha)


def distillation_loss_backward(dloss, cache):
    """dz_s = dloss / M * [ alpha T (p_s^T - p_t^T) + (1 - alpha) (p_s - onehot(y)) ]   per counted row.

    Derivation. d/dz_s of KL(p_t^T || p_s^T) = d/dz_s [-sum_v p_t^T log p_s^T] (the entropy of
    p_t^T does not depend on z_s); with u = z_s / T, d(-sum p_t log softmax(u))/du = p_s^T - p_t^T
    (the softmax-cross-entropy gradient, with soft targets summing to 1), and du/dz_s = 1/T.
    Times alpha T^2: alpha T (p_s^T - p_t^T). The hard term is the usual p_s - onehot(y).
    """
    log_ps_T, pt_T, log_ps, safe, w, M, T, alpha = cache
    xp = get_xp(log_ps_T)
    dz = alpha * T * (xp.exp(log_ps_T) - pt_T)                         # (N, V)
    if log_ps is not None:
        N = dz.shape[0]
        hard = xp.exp(log_ps)                                          # p_s
        hard[xp.arange(N), safe] -= 1.0                                # p_s - onehot(y)
        dz += (1.0 - alpha) * hard
    dz *= w * (dloss / M)
    return dz


# ----------------------------------------------------------------------------------------
# Hidden states: tapping blocks, and the projected MSE
# ----------------------------------------------------------------------------------------

def hidden_mse_forward(h, target, mask=None):
    """h, target: (B, T, C); mask: (B, T) 1/0 rows to count, or None  ->  loss: float

        L = 1 / (R C) sum_{counted rows r} sum_c (h_rc - target_rc)^2,   R = counted rows
    """
    xp = get_xp(h)
    w = xp.ones(h.shape[:-1], dtype=h.dtype) if mask is None else xp.asarray(mask).astype(h.dtype)
    n = max(float(w.sum()) * h.shape[-1], 1.0)
    diff = (h - target) * w[..., None]                                 # (B, T, C)
    return float((diff * diff).sum()) / n, (diff, n)


def hidden_mse_backward(dloss, cache):
    """dh = dloss * 2 (h - target) / (R C) on the counted rows, 0 elsewhere."""
    diff, n = cache
    return diff * (2.0 * dloss / n)


def layer_map(n_student, n_teacher):
    """Student layer l -> teacher layer (l + 1) L_t / L_s - 1: evenly spaced, last to last."""
    return [(l + 1) * n_teacher // n_student - 1 for l in range(n_student)]


def _width(model):
    cfg = model.config
    return cfg.n_embd if hasattr(cfg, "n_embd") else cfg.hidden_size


def _logits(out):
    return out.logits


def _n_layers(model):
    cfg = model.config
    return cfg.n_layer if hasattr(cfg, "n_layer") else cfg.num_hidden_layers


# ----------------------------------------------------------------------------------------
# The distiller
# ----------------------------------------------------------------------------------------

class Distiller(Module):
    """Train `student` on alpha * soft targets from `teacher` + (1 - alpha) * labels, plus
    (hidden_weight > 0) the projected hidden-state MSE on every student block.

    Both models are minilm classifiers (BertForSequenceClassification: logits (B, K), labels
    (B,)) or language models (GPT: logits (B, T, V), labels (B, T) shifted inside: position t
    is scored against labels[t + 1], as the GPT's own loss). The teacher is only run forward,
    in eval mode; its predictions must be over the same classes / vocabulary.
    """

    def __init__(self, teacher, student, temperature=2.0, alpha=0.5, hidden_weight=0.0, seed=0):
        self.teacher, self.student = teacher, student
        self.temperature, self.alpha, self.hidden_weight = temperature, alpha, hidden_weight
        self.shift = isinstance(student, GPT)
        self.projections = []
        if hidden_weight > 0:
            Cs, Ct = _width(student), _width(teacher)
            n_s, n_t = _n_layers(student), _n_layers(teacher)
            self.map = layer_map(n_s, n_t)
            from ...backend import host_rng
            rng = host_rng(seed)
            self.projections = [Linear(Cs, Ct, dtype=student.dtype, rng=rng, std=Cs ** -0.5)
                                if Cs != Ct else None for _ in range(n_s)]
        self.cache = None

    def named_children(self):
        kids = [("student", self.student)]
        return kids + [(f"projections.{i}", p) for i, p in enumerate(self.projections) if p is not None]

    def __call__(self, **batch):
        return self.forward(**batch)

    def forward(self, input_ids, labels=None, attention_mask=None, teacher_logits=None,
                teacher_hidden=None, **kw):
        """Returns ModelOutput(loss, kd_loss, hidden_loss, logits (the student's)).

        teacher_logits (and, for hidden-state distillation, teacher_hidden: the list of the
        mapped teacher layers' outputs, see `teacher_targets`): the teacher's outputs for this
        batch computed beforehand (a teacher in eval mode gives the same ones every epoch).
        None: run the teacher here.
        """
        use_hidden = self.hidden_weight > 0
        t_hidden = None if teacher_hidden is None else [asarray(h) for h in teacher_hidden]
        if teacher_logits is None or (use_hidden and t_hidden is None):
            t_logits, t_hidden = self.teacher_targets(input_ids, attention_mask=attention_mask, **kw)
        else:
            t_logits = asarray(teacher_logits)                # onto the active backend
        # the student
        s_out = self.student(input_ids, attention_mask=attention_mask, output_hidden_states=use_hidden, **kw)
        s_logits = _logits(s_out)
        if s_logits.shape[-1] != t_logits.shape[-1]:
            raise ValueError(f"the teacher predicts over {t_logits.shape[-1]} classes/tokens, the student "
                             f"over {s_logits.shape[-1]}: distillation needs the same output space")
        xp = get_xp(s_logits)
        shape = s_logits.shape
        lab = None if labels is None else xp.asarray(labels)
        zs, zt = s_logits, t_logits
        if self.shift:                                       # position t predicts token t + 1
            zs, zt = zs[:, :-1], zt[:, :-1]
            lab = None if lab is None else lab[:, 1:]
        V = shape[-1]
        loss, kd_cache = distillation_loss_forward(
            zs.reshape(-1, V), zt.reshape(-1, V), None if lab is None else lab.reshape(-1),
            self.temperature, self.alpha)
        total = loss
        hidden_caches, hidden_loss = [], 0.0
        if use_hidden:
            mask = attention_mask
            n_s = len(self.projections)
            for l in range(n_s):
                h = s_out.hidden_states[l + 1]                           # student layer l's output
                proj = self.projections[l]
                hp = proj.forward(h) if proj is not None else h          # (B, T, C_t)
                mse, c = hidden_mse_forward(hp, t_hidden[l], mask)
                hidden_loss += mse / n_s
                hidden_caches.append(c)
            total += self.hidden_weight * hidden_loss
        self.cache = (kd_cache, hidden_caches, shape, zs.shape)
        return ModelOutput(loss=total, kd_loss=loss, hidden_loss=hidden_loss, logits=s_logits)

    def backward(self):
        kd_cache, hidden_caches, shape, shifted = self._check_cache()
        xp = get_xp(kd_cache[0])
        dz = distillation_loss_backward(1.0, kd_cache).reshape(shifted)
        if self.shift:
            dlogits = xp.zeros(shape, dtype=dz.dtype)
            dlogits[:, :-1] = dz
        else:
            dlogits = dz
        dhidden = None
        if hidden_caches:
            # the hidden states feed both losses: their extra gradients, aligned with
            # out.hidden_states (entry 0, the embeddings, gets none)
            dhidden = [None] * (len(hidden_caches) + 1)
            scale = self.hidden_weight / len(hidden_caches)
            for l, c in enumerate(hidden_caches):
                dhp = hidden_mse_backward(scale, c)
                proj = self.projections[l]
                dhidden[l + 1] = proj.backward(dhp) if proj is not None else dhp
        self.student.backward(dlogits, dhidden_states=dhidden)

    def teacher_targets(self, input_ids, attention_mask=None, **kw):
        """(teacher logits, [mapped teacher hidden states] or None) for one batch, to store
        and pass back as teacher_logits / teacher_hidden."""
        use_hidden = self.hidden_weight > 0
        self.teacher.eval()                                  # forward only, in eval mode
        out = self.teacher(input_ids, attention_mask=attention_mask, output_hidden_states=use_hidden, **kw)
        hidden = [out.hidden_states[m + 1] for m in self.map] if use_hidden else None
        self.teacher.clear_caches()                          # no backward through the teacher
        return _logits(out), hidden

    def finish(self):
        """The trained student (kept for callers of the tap-based first version, which had
        to unwrap the models here; the models are never modified now)."""
        return self.student
