"""Text encoders: node texts to L2-normalised vectors, cached on disk by content.

Importing this package is cheap: torch and transformers load only when an encoder is built.
"""
from encoders.base import EncoderError, TextEncoder, normalize_text, normalize_texts
from encoders.cache import CachedEncoder, CachedNamespace, VectorCache, cached_namespaces, prune_cache
from encoders.encode import EMBEDDINGS_FILE, META_FILE, build_encoder, encode_snapshot, stale_embeddings_reason
from encoders.resolve import DEFAULT_MODEL, packaged_model_dir, resolve_model
from encoders.texts import node_texts

__all__ = [
    "CachedEncoder", "CachedNamespace", "DEFAULT_MODEL", "EMBEDDINGS_FILE", "EncoderError", "HFTextEncoder",
    "META_FILE", "TextEncoder", "VectorCache", "build_encoder", "cached_namespaces", "encode_snapshot",
    "node_texts", "normalize_text", "normalize_texts", "packaged_model_dir", "prune_cache", "resolve_model",
    "stale_embeddings_reason",
]


def __getattr__(name: str):
    if name == "HFTextEncoder":  # lazy: keeps `import encoders` free of torch
        from encoders.hf import HFTextEncoder

        return HFTextEncoder
    raise AttributeError(f"module 'encoders' has no attribute {name!r}")
