"""Transformer blocks: residual sub-layers, normalised before (pre-LN) or after (post-LN).

A block is self-attention, optionally cross-attention over an encoder's output, and the
feed-forward network, each a residual sub-layer f with a LayerNorm and a dropout:

    pre-LN  (GPT-2, nn.Transformer norm_first=True):   h = x + dropout(f(norm(x)))
    post-LN (the 2017 paper, BERT):                    h = norm(x + dropout(f(x)))

The two orders are two classes with one body each. The models keep their checkpoint names by
passing the children as (name, role, module) triples in `named_children` order; the roles are

    attn,  attn_norm,  attn_dropout       self-attention (a MultiHeadAttention)
    cross, cross_norm, cross_dropout      cross-attention over `memory` (decoders only)
    ffn,   ffn_norm,   ffn_dropout        the feed-forward network

and a dropout may be left out (GPT-2's attention has its own `resid_dropout`). Each child is
an attribute under its checkpoint name (`block.ln_1`, `block.self_attn`), so it can be read
and replaced like any other child.

Where the checkpoint nests a sub-layer's pieces differently (BERT: `attention.self` holds
q/k/v, `attention.output` holds W_o beside the LayerNorm and dropout, `intermediate` and
`output` split the feed-forward network), the block takes its `tree` of children as they are
named, and `roles` as dotted paths into it; a role given as a tuple of paths is a chain, its
modules applied in order (BERT's attention is `attention.self` then `attention.output.dense`).
Paths are looked up at every call, so a piece replaced in the tree (a LoRA or quantised
Linear) is the one used.
"""
from .base import Module

ROLES = ("attn", "attn_norm", "attn_dropout", "cross", "cross_norm", "cross_dropout",
         "ffn", "ffn_norm", "ffn_dropout")


class _Chain(Module):
    """f = m_k(...m_1(x)): a sub-layer whose pieces live apart in the checkpoint's tree. Made
    on the fly from the block's paths; holds no state (its pieces keep their caches)."""

    def __init__(self, modules):
        self.pieces = modules

    def forward(self, x, **kwargs):               # keyword arguments (masks) go to the first
        x = self.pieces[0].forward(x, **kwargs)
        for m in self.pieces[1:]:
            x = m.forward(x)
        return x

    def backward(self, dout):
        for m in reversed(self.pieces):
            dout = m.backward(dout)               # undo: x = m(x), last piece first
        return dout


class _Block(Module):
    """What both orders share: the children, and calling each sub-layer's f."""

    def __init__(self, children=(), *, tree=None, roles=None):
        self._order = []                 # names in named_children order
        self._names = {}                 # role -> dotted path (or a tuple of paths: a chain)
        for name, role, module in children:
            if role not in ROLES:
                raise ValueError(f"unknown role {role!r} for {name!r}: one of {ROLES}")
            setattr(self, name, module)
            self._order.append(name)
            self._names[role] = name
        for name, module in (tree or ()):
            setattr(self, name, module)
            self._order.append(name)
        for role, path in (roles or {}).items():
            if role not in ROLES:
                raise ValueError(f"unknown role {role!r} for {path!r}: one of {ROLES}")
            self._names[role] = path
        for role in ("attn", "attn_norm", "ffn", "ffn_norm"):
            if role not in self._names:
                raise ValueError(f"a block needs a child with role {role!r}")
        if getattr(self.child("attn"), "o", True) is None:
            # the residual is added into the sub-layer's output in place, which must be a
            # fresh array (without W_o it would be a view of the attention's cached output)
            raise ValueError("a block's attention needs its own output projection")
        self.cache = None

    def named_children(self):
        return [(name, getattr(self, name)) for name in self._order]

    def _lookup(self, path):
        m = self
        for part in path.split("."):
            m = getattr(m, part)
        return m

    def child(self, role):
        """The module playing `role` (see ROLES), or None."""
        path = self._names.get(role)
        if path is None:
            return None
        if isinstance(path, tuple):
            return _Chain([self._lookup(p) for p in path])
        return self._lookup(path)

    def sublayers(self):
        """The residual sub-layers in forward order: role names "attn", ("cross",) "ffn"."""
        return [r for r in ("attn", "cross", "ffn") if r in self._names]

    def _f(self, role, z, memory, key_mask, memory_mask, rope=None):
        if role == "attn":
            if rope is not None:                # a rotary attention (Llama): the RoPE tables too
                return self.child("attn").forward(z, key_mask=key_mask, rope=rope)
            return self.child("attn").forward(z, key_mask=key_mask)
        if role == "cross":
            return self.child("cross").forward(z, memory, key_mask=memory_mask)
        return self.child("ffn").forward(z)

    def _f_backward(self, role, dz):
        """-> (d input, d memory or None)"""
        out = self.child(role).backward(dz)
        return out if role == "cross" else (out, None)

    def _dropout(self, role, x, backward=False):
        drop = self.child(role + "_dropout")
        if drop is None:
            return x
        return drop.backward(x) if backward else drop.forward(x)

    def _finish_backward(self, dx, dmemory):
        return (dx, dmemory) if "cross" in self._names else dx

    # -- inference with a key/value cache -----------------------------------------------------
    def forward_cached(self, x, past_k, past_v, pos, memory_k=None, memory_v=None, memory_mask=None,
                       rope=None):
        """New positions pos .. pos+t-1 of a decoder (x: (B, t, C)), reading and filling the
        self-attention buffers past_k / past_v (and reading the cross-attention keys and values
        from `project_memory`; rope: the RoPE tables at those positions for a rotary
        attention). No dropout, no backward."""
        def f(role, z):
            if role == "attn":
                if rope is not None:
                    return self.child("attn").forward_cached(z, past_k, past_v, pos, rope=rope)
                return self.child("attn").forward_cached(z, past_k, past_v, pos)
            if role == "cross":
                return self.child("cross").forward_memory(z, memory_k, memory_v, memory_mask)
            return self.child("ffn").forward(z)
        for role in self.sublayers():
            x = self._residual_inference(role, x, f)
        return x


class PreLNBlock(_Block):
    """Pre-LN: each sub-layer is  h = x + dropout(f(norm(x))).

        block.forward(x, memory=None, key_mask=None, memory_mask=None) -> (B, T, C)
        block.backward(dout) -> dx, or (dx, dmemory) with cross-attention
    """

    def forward(self, x, memory=None, key_mask=None, memory_mask=None, rope=None):
        """x: (B, T, C); memory: (B, S, C) encoder output (cross-attention blocks only);
        key_mask: (B, 1, 1, T) and memory_mask: (B, 1, 1, S) bool, False = padding;
        rope: (cos, sin) RoPE tables for a rotary self-attention (Llama), else None."""
        for role in self.sublayers():
            z = self.child(role + "_norm").forward(x)
            h = self._dropout(role, self._f(role, z, memory, key_mask, memory_mask, rope))
            h += x                          # h = x + dropout(f(norm(x))), in f's fresh output
            x = h
        return x

    def backward(self, dout):
        dmemory = None
        for role in reversed(self.sublayers()):
            # undo: h = x + dropout(f(norm(x)))   (x reaches h directly and through f: add both)
            dz, dm = self._f_backward(role, self._dropout(role, dout, backward=True))
            dx = self.child(role + "_norm").backward(dz)
            dx += dout
            if dm is not None:
                dmemory = dm if dmemory is None else dmemory + dm
            dout = dx
        return self._finish_backward(dout, dmemory)

    def _residual_inference(self, role, x, f):
        return x + f(role, self.child(role + "_norm").forward(x))


class PostLNBlock(_Block):
    """Post-LN: each sub-layer is  h = norm(x + dropout(f(x))).

        block.forward(x, memory=None, key_mask=None, memory_mask=None) -> (B, T, C)
        block.backward(dout) -> dx, or (dx, dmemory) with cross-attention
    """

    def forward(self, x, memory=None, key_mask=None, memory_mask=None):
        """x: (B, T, C); memory: (B, S, C) encoder output (cross-attention blocks only);
        key_mask: (B, 1, 1, T) and memory_mask: (B, 1, 1, S) bool, False = padding."""
        for role in self.sublayers():
            s = self._dropout(role, self._f(role, x, memory, key_mask, memory_mask))
            s += x                          # s = x + dropout(f(x))
            x = self.child(role + "_norm").forward(s)
        return x

    def backward(self, dout):
        dmemory = None
        for role in reversed(self.sublayers()):
            # undo: h = norm(s)
            ds = self.child(role + "_norm").backward(dout)
            # undo: s = x + dropout(f(x))   (x reaches s directly and through f: add both)
            dx, dm = self._f_backward(role, self._dropout(role, ds, backward=True))
            dx += ds
            if dm is not None:
                dmemory = dm if dmemory is None else dmemory + dm
            dout = dx
        return self._finish_backward(dout, dmemory)

    def _residual_inference(self, role, x, f):
        return self.child(role + "_norm").forward(x + f(role, x))
