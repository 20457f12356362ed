"""The text-encoder interface and the text rules every encoder applies.

Text rules (applied by :func:`normalize_text`, so a cache keyed on the normalised text agrees with
what the model saw):

* ``None``, the empty string and text of whitespace, control and format characters only (a
  zero-width space, which tokenizers drop) become ``""``; the model encodes ``""`` to a fixed
  vector (never an error).
* ``bytes`` are decoded as UTF-8 with ``errors="replace"``; invalid sequences become U+FFFD.
* Lone surrogates in ``str`` (from ``surrogateescape`` decoding) become U+FFFD too.
* Text is NFKC-normalised (full-width letters, ligatures and compatibility forms fold together).
* Long text is truncated by the tokenizer at the encoder's ``max_length`` tokens.
* Emoji, Chinese and any other script pass through unchanged.
"""
from __future__ import annotations

import abc
import re
import unicodedata
from typing import Sequence, Union

import numpy as np

TextLike = Union[str, bytes, None]
_SURROGATES = re.compile("[\ud800-\udfff]")
_INVISIBLE = ("Cc", "Cf")  # controls and format characters (zero-width space, BOM): tokenizers drop them


class EncoderError(RuntimeError):
    """A text encoder cannot be built or used (model not found offline, bad option...)."""


def normalize_text(text: TextLike) -> str:
    """Apply the encoder text rules (see module docstring) to one text.

    Args:
        text: a ``str``, UTF-8 ``bytes`` (invalid sequences allowed) or ``None``.

    Returns:
        The NFKC-normalised text; ``""`` for missing input, or one of whitespace, control and
        format characters only (``"\\u200b"``: tokenizers drop them, so it would encode as ``""``).

    Raises:
        TypeError: ``text`` is of another type.
    """
    if text is None:
        return ""
    if isinstance(text, (bytes, bytearray, memoryview)):
        text = bytes(text).decode("utf-8", errors="replace")
    elif not isinstance(text, str):
        raise TypeError(f"text must be str, bytes or None, not {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = _SURROGATES.sub("\ufffd", text)
    text = unicodedata.normalize("NFKC", text)
    return text if any(not (c.isspace() or unicodedata.category(c) in _INVISIBLE) for c in text) else ""


def check_finite(vectors: np.ndarray, note: str = "") -> np.ndarray:
    """``vectors`` when every row is finite.

    Raises:
        EncoderError: some row holds a NaN or an infinity (half precision overflowing on a GPU):
            never a vector to store, cache or search with.
    """
    broken = ~np.isfinite(vectors).all(axis=1)
    if broken.any():
        raise EncoderError(f"the encoder gave non-finite vectors for {int(broken.sum())} of {len(vectors)} texts "
                           f"(half precision overflowing? set [encoder] dtype = \"float32\"){note}")
    return vectors


def normalize_texts(texts: Sequence[TextLike]) -> list[str]:
    """:func:`normalize_text` over a sequence."""
    return [normalize_text(t) for t in texts]


class TextEncoder(abc.ABC):
    """Encodes texts to L2-normalised float32 vectors.

    Subclasses implement :meth:`encode`, :attr:`model_id` and :attr:`dim`. :attr:`cache_namespace`
    names everything that changes the vectors (model, pooling, max length...), so a cache never
    returns vectors made by another configuration.
    """

    @property
    @abc.abstractmethod
    def model_id(self) -> str:
        """The model's id or path, as configured."""

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """Embedding dimension."""

    @property
    def cache_namespace(self) -> str:
        """Identity of the vectors this encoder produces (defaults to :attr:`model_id`)."""
        return self.model_id

    @abc.abstractmethod
    def encode(self, texts: Sequence[TextLike]) -> np.ndarray:
        """Encode texts.

        Args:
            texts: N texts (``str``, ``bytes`` or ``None``; see the module's text rules).

        Returns:
            float32 array of shape (N, dim), rows L2-normalised, in input order.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model_id={self.model_id!r}, dim={self.dim})"
