"""What a model call returns: named fields, read as attributes (`out.loss`) or keys (`out["loss"]`)."""


class ModelOutput:
    """A plain record, like Hugging Face's ModelOutput: fields set at construction."""

    def __init__(self, **fields):
        self.__dict__.update(fields)

    def __getitem__(self, key):
        return self.__dict__[key]

    def __contains__(self, key):
        return key in self.__dict__

    def keys(self):
        return self.__dict__.keys()

    def __repr__(self):
        parts = []
        for k, v in self.__dict__.items():
            shape = getattr(v, "shape", None)
            parts.append(f"{k}={'array' + str(tuple(shape)) if shape is not None else repr(v)}")
        return f"ModelOutput({', '.join(parts)})"
