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


def selector(model, targets=None):
    """A predicate `pick(name, module)` for the layers a technique should touch.

    targets=None: every module inside one of the model's Transformer blocks
    (`model.transformer_blocks()`): the attention and feed-forward projections, not the
    embeddings, pooler or task heads. Otherwise an iterable of name fragments: a layer
    matches when its dotted name ends with one of them (`"c_attn"`,
    `"attention.output.dense"`) or contains it between dots (`".h.0."`), the checkpoint
    names being the public way to point at one layer.
    """
    if targets is None:
        inside = {id(m) for block in model.transformer_blocks() for m in block.modules()}
        return lambda name, module: id(module) in inside
    if isinstance(targets, str):
        targets = (targets,)
    targets = tuple(targets)

    def pick(name, module):
        dotted = "." + name + "."
        return any(name.endswith(t) or ("." + t.strip(".") + ".") in dotted for t in targets)
    return pick
