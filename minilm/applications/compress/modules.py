"""Finding layers inside a model and swapping them for compressed versions.

Every technique in `minilm.compress` works the same way: walk the model, pick some `Linear`
(or `Embedding`) layers by their dotted names, and put a new layer in the old one's place:
`LoRALinear`, `MaskedLinear`, `QuantizedLinear`, `QATLinear`. The models call their children
as attributes (`self.c_attn.forward(x)`), and each parent lists its children by hand in
`named_children`, reading those same attributes, so replacing a child means setting the
attribute on the parent, nothing more:

    parent.c_attn = LoRALinear(parent.c_attn, r=8)

`replace_module` does exactly that, finding which attribute (or which list entry, for
`GPT.transformer.h` or `BertEncoder.layer`) holds the old module.
"""


def named_modules(module, prefix=""):
    """Yield (dotted name, module, parent) for `module` and everything below it."""
    yield from _walk(module, prefix, None)


def _walk(module, prefix, parent):
    yield prefix.rstrip("."), module, parent
    for name, child in module.named_children():
        yield from _walk(child, prefix + name + ".", module)


def replace_module(parent, old, new):
    """Put `new` where `parent` keeps `old`: a plain attribute, or an entry of a list attribute."""
    for attr, value in vars(parent).items():
        if value is old:
            setattr(parent, attr, new)
            return
        if isinstance(value, list):
            for i, item in enumerate(value):
                if item is old:
                    value[i] = new
                    return
    raise ValueError(f"{type(parent).__name__} does not hold this {type(old).__name__} "
                     "as an attribute or list entry")


def in_transformer_block(name):
    """True for names inside a GPT block (`transformer.h.3.`) or a BERT layer
    (`encoder.layer.3.`): the attention and feed-forward projections, not the embeddings,
    pooler or task heads."""
    return ".h." in "." + name or "encoder.layer." in name


def select(name, targets):
    """Does the dotted layer name match `targets`?

    targets=None: every layer inside a Transformer block. Otherwise an iterable of name
    fragments: a layer matches when its name ends with one of them (`"c_attn"`,
    `"attention.output.dense"`) or contains it between dots (`".h.0."`).
    """
    if targets is None:
        return in_transformer_block(name)
    if isinstance(targets, str):
        targets = (targets,)
    dotted = "." + name + "."
    return any(name.endswith(t) or ("." + t.strip(".") + ".") in dotted for t in targets)


def clear_caches(model):
    """Drop every forward cache (a model run only forward, for a frozen teacher or evaluation)."""
    for m in model.modules():
        for attr in list(vars(m)):
            if attr == "cache" or (attr.startswith("_") and attr.endswith("_cache")):
                setattr(m, attr, None)


def block_list(model):
    """The list of Transformer blocks of a GPT (`transformer.h`) or BERT (`encoder.layer`)
    model, the list object itself (so entries can be swapped)."""
    if hasattr(model, "transformer") and hasattr(model.transformer, "h"):
        return model.transformer.h
    bert = getattr(model, "bert", model)
    if hasattr(bert, "encoder") and hasattr(bert.encoder, "layer"):
        return bert.encoder.layer
    raise TypeError(f"cannot find the Transformer blocks of a {type(model).__name__}: "
                    "expected a GPT (transformer.h) or a BERT model (bert.encoder.layer)")
