"""What every minilm model shares beyond Module: its dropout stream and its pending caches."""
from ..layers import Module


class PreTrainedModel(Module):
    """Base of GPT, the BERT models, the encoder-decoder and Llama / Qwen3 (named after
    transformers' class).

    A model with dropout owns one random Generator, `_dropout_gen`, that every dropout layer
    draws from, so one seed drives the whole model and a checkpoint can save and restore the
    stream. A model without dropout (Llama) has none: its rng_state() is None.
    """
    _loss_cache = None
    _head_cache = None
    _forward_state = ("_embeds_given", "_hidden_shape")     # set by forward, read by backward

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def dropout_generator(self):
        gen = getattr(self, "_dropout_gen", None)
        if gen is None:
            raise AttributeError(f"{type(self).__name__} has no dropout Generator")
        return gen

    def set_dropout_generator(self, generator):
        """Make every dropout layer of the model draw from `generator` (a Generator, or an
        object with its `random(size, dtype=...)` and `bit_generator`); returns the old one.
        The layers hold the model's Generator itself, so this replaces it wherever a module
        holds it. minilm.dist.DataParallel uses it to draw the global batch's dropout masks."""
        old = getattr(self, "_dropout_gen", None)
        if old is None:
            raise AttributeError(f"{type(self).__name__} has no dropout Generator")
        for m in list(self.modules()):
            for name, value in list(vars(m).items()):
                if value is old:
                    setattr(m, name, generator)
        return old

    def rng_state(self):
        """The dropout stream's state (a JSON-able dict on every backend), None without one."""
        gen = getattr(self, "_dropout_gen", None)
        return None if gen is None else gen.bit_generator.state

    def set_rng_state(self, state):
        """Restore the dropout stream from rng_state(); a state of another generator (say,
        saved on the numpy backend, loaded on cupy) is refused with both names."""
        if getattr(self, "_dropout_gen", None) is None:
            if state is not None:
                raise ValueError(f"{type(self).__name__} has no dropout stream to restore, "
                                 "but the state given is one")
            return
        mine = self._dropout_gen.bit_generator.state
        theirs = state.get("bit_generator") if isinstance(state, dict) else None
        if isinstance(mine, dict) and theirs != mine.get("bit_generator"):
            raise ValueError(
                f"dropout RNG state of another generator: saved by {theirs!r}, this model "
                f"draws from {mine.get('bit_generator')!r} (NumPy's PCG64 on the numpy backend, "
                "minilm's counter-based stream on cupy and strict); resume on the backend "
                "that saved it")
        self._dropout_gen.bit_generator.state = state

    def transformer_blocks(self):
        """The model's Transformer blocks in forward order (GPT-2: transformer.h, BERT:
        encoder.layer, the encoder-decoder: the encoder's layers then the decoder's).
        Applications find "the layers inside the blocks" through this, not through names."""
        raise NotImplementedError(f"{type(self).__name__} does not list its Transformer blocks")

    def clear_caches(self):
        """Drop what the last forward kept for a backward (a forward run only for its outputs:
        generation, evaluation, a frozen teacher, interpretation)."""
        for m in self.modules():
            m.cache = None
        self._loss_cache = self._head_cache = None
