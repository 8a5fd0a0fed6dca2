"""Checkpoint files: Hugging Face folders of `config.json` + `model.safetensors`.

Never pickle: safetensors stores raw little-endian arrays behind a JSON header, so loading
a checkpoint cannot run code. Arrays are made contiguous before saving (safetensors 0.8.0
silently corrupted non-contiguous arrays; a contiguous array is all it needs).

Nothing lost, nothing silent:
- every folder minilm writes (models, tokenizers, Trainer checkpoints) goes through
  `atomic_folder`: the files are written into `target.tmp`, flushed and fsync'ed, then
  swapped in (target -> `target.old`, `target.tmp` -> target, `target.old` removed). At every
  instant `target`, or `target.old` while target is missing, holds one whole checkpoint,
  old or new; a failed write raises and leaves the old one. `resolve_folder` finds
  `target.old` when a save died between the two renames.
- every tensor minilm saves carries the sha256 of its bytes in the safetensors
  `__metadata__` ("minilm.sha256.<name>": hex); `load_safetensors` checks it and names the
  tensor that does not match. Files written elsewhere (no digests) load as before.
"""
import contextlib
import hashlib
import json
import math
import os
import shutil
import struct
import warnings

import numpy as np

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
DIGEST_PREFIX = "minilm.sha256."        # __metadata__ key of each tensor's digest
TMP_SUFFIX = ".tmp"                     # the new folder, while it is written
ASIDE_SUFFIX = ".old"                   # the previous folder, while the new one is renamed in

# safetensors dtype names -> bytes per element
_DTYPE_SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "I16": 2,
                "F16": 2, "BF16": 2, "U32": 4, "I32": 4, "F32": 4, "U64": 8, "I64": 8, "F64": 8,
                "C64": 8}


class ChecksumError(ValueError):
    """A tensor's bytes do not match the digest saved beside them: the file is corrupt."""


# ------------------------------------------------------------------------------------------
# Crash-safe folders
# ------------------------------------------------------------------------------------------

def fsync_path(path):
    """Flush a file's or folder's data and metadata to the disk."""
    is_dir = os.path.isdir(path)
    if is_dir and os.name == "nt":
        return                              # Windows cannot open a folder to fsync it
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if is_dir else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(folder):
    for root, dirs, files in os.walk(folder):
        for name in files:
            if not os.path.islink(os.path.join(root, name)):     # a link's target is not ours
                fsync_path(os.path.join(root, name))
        fsync_path(root)


def _link_or_copy(src, dst):
    try:
        os.link(src, dst)                   # the old file's data, without copying it
    except OSError:
        shutil.copy2(src, dst)


def _carry_over(source, tmp):
    """Files of the old folder that the new one does not write (a tokenizer saved beside a
    model, say) are kept: linked (or copied) into the new folder before the swap."""
    for name in os.listdir(source):
        src, dst = os.path.join(source, name), os.path.join(tmp, name)
        if os.path.lexists(dst):
            continue
        if os.path.islink(src):
            os.symlink(os.readlink(src), dst)
        elif os.path.isdir(src):
            shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(src, dst)


def _delete(path):
    if os.path.islink(path) or not os.path.isdir(path):
        os.remove(path)
    else:
        shutil.rmtree(path)


def _remove(path):
    """Best-effort removal of a folder that is no longer needed (a failure leaves litter,
    never a broken checkpoint)."""
    with contextlib.suppress(OSError):
        if os.path.lexists(path):
            _delete(path)


@contextlib.contextmanager
def atomic_folder(target, keep_other_files=True):
    """Write a folder so that a crash at any moment leaves the old or the new one, whole.

        with atomic_folder("ckpt") as tmp:       # an empty folder beside the target
            write files into tmp
        # here: tmp fsync'ed and swapped in as "ckpt"; the previous "ckpt" removed

    keep_other_files: files of the previous folder that the new one does not write are
    carried over (so `model.save_pretrained(d)` keeps a tokenizer saved in d before).
    An exception inside the block, or while swapping, removes the new folder and re-raises;
    the target is then untouched (or, if the process dies between the two renames, found
    by `resolve_folder` under `target.old`).
    """
    target = os.path.abspath(os.fspath(target))
    if os.path.islink(target):
        target = os.path.realpath(target)   # save where the link points, keep the link
    if os.path.lexists(target) and not os.path.isdir(target):
        raise NotADirectoryError(f"cannot save a checkpoint folder to {target}: it is a file")
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    cwd = os.getcwd()
    if cwd == target or cwd.startswith(target + os.sep):
        # the folder we run in (save_pretrained(".")): not renamed, so each file is
        # replaced on its own (each one whole; a crash may mix old and new files)
        with _replace_files_in(target) as tmp:
            yield tmp
        return
    tmp, aside = target + TMP_SUFFIX, target + ASIDE_SUFFIX
    if os.path.lexists(tmp):
        _delete(tmp)                        # left by a save that died
    os.mkdir(tmp)
    try:
        yield tmp
        if keep_other_files:
            source = target if os.path.isdir(target) else aside if os.path.isdir(aside) else None
            if source is not None:
                _carry_over(source, tmp)
        _fsync_tree(tmp)                    # the new data is on disk before any rename
        if os.path.isdir(target):
            if os.path.lexists(aside):
                _delete(aside)              # stale: the target is whole
            os.rename(target, aside)
            try:
                os.rename(tmp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.rename(aside, target)
                raise
        else:
            os.rename(tmp, target)          # (a leftover target.old is now out of date)
        fsync_path(parent)                  # the renames are on disk
    except BaseException:
        _remove(tmp)
        raise
    _remove(aside)


@contextlib.contextmanager
def _replace_files_in(target):
    tmp = os.path.join(target, TMP_SUFFIX)
    if os.path.lexists(tmp):
        shutil.rmtree(tmp)
    os.mkdir(tmp)
    try:
        yield tmp
        _fsync_tree(tmp)
        for name in os.listdir(tmp):
            os.replace(os.path.join(tmp, name), os.path.join(target, name))
        fsync_path(target)
    finally:
        _remove(tmp)


def resolve_folder(folder):
    """`folder`, or its `.old` twin when a save died between moving the old folder aside
    and renaming the new one in (a warning says so)."""
    folder = os.fspath(folder)
    if os.path.isdir(folder):
        return folder
    aside = os.path.abspath(folder) + ASIDE_SUFFIX
    if os.path.isdir(aside):
        warnings.warn(f"{folder} is missing but {aside} holds the checkpoint that was there "
                      "before an interrupted save: loading that one", RuntimeWarning, stacklevel=3)
        return aside
    return folder


def write_bytes(path, data):
    """Write, flush and fsync one file (use inside `atomic_folder`)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_json(path, obj, **kwargs):
    write_bytes(path, (json.dumps(obj, **kwargs) + "\n").encode("utf-8"))


@contextlib.contextmanager
def atomic_file(path, mode="w", encoding="utf-8"):
    """One file, crash-safe: written to `path.tmp`, fsync'ed, then renamed over `path`."""
    path = os.path.abspath(os.fspath(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + TMP_SUFFIX
    try:
        with open(tmp, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_path(os.path.dirname(path))
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


# ------------------------------------------------------------------------------------------
# safetensors with digests
# ------------------------------------------------------------------------------------------

def tensor_digest(array):
    """sha256 (hex) of an array's bytes as safetensors stores them (C order, little-endian)."""
    a = np.ascontiguousarray(array)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    h = hashlib.sha256()
    h.update(memoryview(a).cast("B") if a.size and a.ndim else a.tobytes())
    return h.hexdigest()


def save_safetensors(path, tensors, metadata=None):
    """Write {name: array} (any backend) to `path` as safetensors, with each tensor's digest
    in the metadata, then fsync it. `format: pt` is what `transformers` requires."""
    from safetensors.numpy import save_file

    from .backend import to_numpy
    arrays = {k: np.ascontiguousarray(to_numpy(v)) for k, v in tensors.items()}
    meta = {"format": "pt", **(metadata or {})}
    meta.update({DIGEST_PREFIX + k: tensor_digest(a) for k, a in arrays.items()})
    try:
        save_file(arrays, str(path), metadata=meta)
    except OSError:
        raise
    except Exception as e:          # safetensors' own error type, e.g. for a full disk
        raise OSError(f"could not write {path}: {e}") from e
    fsync_path(str(path))


def _check_header(path, header, data_size):
    """ValueError naming the tensor when a header parses as JSON but is malformed."""
    if not isinstance(header, dict):
        raise ValueError(f"{path} is corrupt: its header is a {type(header).__name__}, not a JSON object")
    meta = header.get("__metadata__")
    if meta is not None and not (isinstance(meta, dict)
                                 and all(isinstance(v, str) for v in meta.values())):
        raise ValueError(f"{path} is corrupt: __metadata__ must map strings to strings")
    for name, info in header.items():
        if name == "__metadata__":
            continue
        where = f"{path}: tensor {name!r}"
        if not isinstance(info, dict):
            raise ValueError(f"{where} has a malformed header entry {info!r} "
                             "(expected {{'dtype', 'shape', 'data_offsets'}})")
        for key in ("dtype", "shape", "data_offsets"):
            if key not in info:
                raise ValueError(f"{where} has no {key!r} in the header")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in _DTYPE_SIZES:
            raise ValueError(f"{where} has an unknown dtype {dtype!r} "
                             f"(expected one of {sorted(_DTYPE_SIZES)})")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise ValueError(f"{where} has a malformed shape {shape!r} (expected a list of ints >= 0)")
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(type(o) is int for o in offsets) and 0 <= offsets[0] <= offsets[1]):
            raise ValueError(f"{where} has malformed data_offsets {offsets!r} "
                             "(expected [begin, end] with 0 <= begin <= end)")
        need = math.prod(shape) * _DTYPE_SIZES[dtype]
        if offsets[1] - offsets[0] != need:
            raise ValueError(f"{where}: data_offsets {offsets} span {offsets[1] - offsets[0]} bytes, "
                             f"but a {dtype} tensor of shape {tuple(shape)} needs {need}")
        if offsets[1] > data_size:
            raise ValueError(f"{where} ends at byte {offsets[1]} of the data, but the file holds only "
                             f"{data_size} bytes of data (truncated?)")


def read_safetensors_header(path):
    """The parsed and checked JSON header of a safetensors file (cheap: reads no tensor)."""
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
    _check_header(path, header, size - 8 - n)
    return header


def load_safetensors(path, verify=True):
    """Read a safetensors file into {name: NumPy array}, with clear errors for bad files.

    verify: check each tensor against the sha256 saved in the metadata (when there is one);
    a mismatch raises ChecksumError (a ValueError) naming the tensor."""
    path = str(path)
    header = read_safetensors_header(path)
    from safetensors.numpy import load_file
    try:
        tensors = load_file(path)
    except Exception as e:  # safetensors raises its own error type
        raise ValueError(f"{path} could not be read as safetensors: {e}") from None
    if verify:
        meta = header.get("__metadata__") or {}
        for name, array in tensors.items():
            expected = meta.get(DIGEST_PREFIX + name)
            if expected is not None and tensor_digest(array) != expected:
                raise ChecksumError(f"{path} is corrupt: tensor {name!r} does not match the sha256 "
                                    "saved with it (a changed byte on disk or in transit)")
    return tensors


# ------------------------------------------------------------------------------------------
# config.json
# ------------------------------------------------------------------------------------------

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
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(cfg).__name__}")
    mt = cfg.get("model_type")
    if expected_model_types and mt not in expected_model_types:
        raise ValueError(f"{folder} holds a {mt!r} checkpoint, but this model reads "
                         f"{' or '.join(map(repr, expected_model_types))}")
    return cfg


def write_config(folder, cfg):
    """Write `folder/config.json` (flushed and fsync'ed; call inside `atomic_folder`)."""
    os.makedirs(folder, exist_ok=True)
    write_json(os.path.join(folder, CONFIG_NAME), cfg, indent=2, sort_keys=True)


def save_pretrained_folder(folder, config_dict, tensors):
    """The one writer of model folders: config.json + model.safetensors, swapped in whole."""
    with atomic_folder(folder) as tmp:
        write_config(tmp, config_dict)
        save_safetensors(os.path.join(tmp, WEIGHTS_NAME), tensors)
    return os.fspath(folder)
