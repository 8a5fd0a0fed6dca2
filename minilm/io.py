"""Checkpoint files: Hugging Face folders of `config.json` + `model.safetensors`.

Never pickle: safetensors stores raw little-endian arrays behind a JSON header, so loading
a checkpoint cannot run code. Arrays are made contiguous before saving (safetensors 0.8.0
silently corrupted non-contiguous arrays).
"""
import json
import os
import struct

import numpy as np

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def save_safetensors(path, tensors, metadata=None):
    """Write {name: array} (any backend) to `path` as safetensors."""
    from safetensors.numpy import save_file

    from .backend import to_numpy
    arrays = {k: np.ascontiguousarray(to_numpy(v)) for k, v in tensors.items()}
    save_file(arrays, str(path), metadata={"format": "np", **(metadata or {})})


def load_safetensors(path):
    """Read a safetensors file into {name: NumPy array}, with clear errors for bad files."""
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{path} is not a safetensors file: only {size} bytes (truncated?)")
        (n,) = struct.unpack("<Q", head)
        if 8 + n > size:
            raise ValueError(f"{path} is truncated or corrupt: its header claims {n} bytes "
                             f"but the file has {size}")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path} is corrupt: its header is not valid JSON ({e})") from None
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end > size:
        raise ValueError(f"{path} is truncated: tensors need {8 + n + end} bytes, file has {size}")
    from safetensors.numpy import load_file
    try:
        return load_file(path)
    except Exception as e:  # safetensors raises its own error type
        raise ValueError(f"{path} could not be read as safetensors: {e}") from None


def read_config(folder, expected_model_types=None):
    """Load `folder/config.json`, checking its model_type when `expected_model_types` is given."""
    folder = str(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"checkpoint folder not found: {folder}")
    path = os.path.join(folder, CONFIG_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no {CONFIG_NAME} in {folder}: is this a Hugging Face checkpoint folder?")
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    mt = cfg.get("model_type")
    if expected_model_types and mt not in expected_model_types:
        raise ValueError(f"{folder} holds a {mt!r} checkpoint, but this model reads "
                         f"{' or '.join(map(repr, expected_model_types))}")
    return cfg


def write_config(folder, cfg):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, CONFIG_NAME), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
