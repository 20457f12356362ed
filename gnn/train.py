"""Training entry point: BPR mini-batches, early stopping, checkpoints, versioned artifacts.

``train(snapshot, cfg, out_dir)`` resolves the :class:`~kgrec.config.TrainConfig` into a model,
trains it, writes ``out_dir/<version>/`` (see :mod:`gnn.artifact`) through a temporary directory
renamed at the end, and repoints ``out_dir/current``. Errors are raised, never turned into exits.
The training-free graph filters (``gfcf``, ``bspm``) take the same entry point: they are fitted in
closed form, evaluated like a trained model and written as the same kind of artifact.
Checkpoints live in ``out_dir/.checkpoints/<model>-<fingerprint>/`` and let an interrupted run
with the same configuration and data resume; they are removed once the artifact is published. A
run whose checkpoint directory a live process owns (a retrain and a ``kgrec train`` on the same data)
trains afresh in a private one beside it.
``seed_checkpoint`` starts a run from another run's checkpoint, to change batch size or learning rate
mid-way. With ``swa_start`` set, evaluation, early stopping and the artifact use the running mean of
the weights from that epoch on (stochastic weight averaging); the mean is kept in the checkpoint.
"""
from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import io
import json
import logging
import math
import os
import pickle
import random
import shutil
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import scipy.sparse as sp
import torch
from torch.optim.swa_utils import AveragedModel

from kg.durable import sync_dir, sync_files
from kgrec.config import DEFAULT_ID_WEIGHT_DECAY, TEXT_MODELS, TrainConfig

from .artifact import TextIndex, publish, save_artifact
from .evaluate import evaluate, to_csr
from .models.filters import FILTER_MODELS, build_filter, check_filter_params
from .models.fusion import FUSIONS
from .sampling import STRATEGIES, NegativeSampler, TrainPairs, check_positive_sampling, make_generator

logger = logging.getLogger(__name__)
CHECKPOINT_EVERY_S = 60.0  # between the checkpoints of epochs without an evaluation

EpochHook = Callable[[int, dict[str, Any]], None]
MODELS = ("lightgcn", "fused", "rgcn", "kgfused")


class TrainingError(RuntimeError):
    """Training could not produce an artifact (bad data, bad configuration)."""


class DivergedError(TrainingError):
    """The loss or the weights stopped being finite: a broken model, not bad data or configuration."""


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``.

    Raises:
        ValueError: a name torch does not know, a CUDA device this machine does not have, or MPS.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"unknown train device {name!r} ({e})") from None
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.type == "cuda" and (device.index or 0) >= count:
        raise ValueError(f"train device {name!r}: CUDA has {count or 'no'} device(s) here; use [train] device = "
                         f"\"auto\" or \"cpu\"")
    if device.type == "mps":  # not tried on Apple hardware, and known not to run: said before any work
        raise ValueError(f"train device {name!r}: training does not run on MPS (negative sampling, the loss sum and "
                         f"evaluation compute in float64, which MPS lacks); use [train] device = \"cpu\"")
    return device


@contextmanager
def deterministic_algorithms(on: bool, cuda: bool = False) -> Iterator[None]:
    """Within the block, make torch use deterministic kernels where it has them (``[train]
    deterministic``): CUDA sums by atomics (R-GCN's index_add, scatter) otherwise differ from run
    to run in their last bits. Kernels without a deterministic version warn and run. The previous
    setting is restored after the block. ``cuda``: the run is on CUDA (cuBLAS needs its workspace
    setting too)."""
    if not on:
        yield
        return
    if cuda and not os.environ.get("CUBLAS_WORKSPACE_CONFIG"):
        if not torch.cuda.is_initialized():  # cuBLAS reads it once, when first used: still in time
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"  # and left set: it cannot be taken back
        else:
            logger.warning("[train] deterministic: set CUBLAS_WORKSPACE_CONFIG=:4096:8 before starting, or "
                           "cuBLAS products on CUDA stay nondeterministic")
    before, before_warn = torch.are_deterministic_algorithms_enabled(), \
        torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=before_warn)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy's legacy RNG and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def code_version() -> str:
    """``git describe --always --dirty`` of kgrec's checkout when this file is tracked there (an
    editable install), else the installed package version: an install inside another project's
    repository would otherwise record that project's commit."""
    here = Path(__file__)
    try:
        tracked = subprocess.run(["git", "ls-files", "--error-unmatch", here.name], cwd=here.parent,
                                 capture_output=True, timeout=5)
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=here.parent,
                             capture_output=True, text=True, timeout=5) if tracked.returncode == 0 else None
        if out is not None and out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        from importlib.metadata import version
        return version("kgrec")
    except Exception:  # noqa: BLE001 - metadata missing in odd installs
        return "unknown"


def build_model(cfg: TrainConfig, snapshot: Any, text_embeddings: Any = None) -> torch.nn.Module:
    """Resolve ``cfg.model`` into a model with explicit constructor arguments.

    ``text_embeddings`` is an (I, T) item array, or for ``kgfused`` also a mapping
    ``{"item": (I, T), "query": (Q, T), "entity": (E, T)}`` (``text_embeddings.npz``'s arrays).

    Raises:
        ValueError: unknown model name, or a text model without text embeddings.
    """
    num_users, num_items = snapshot.num_users, snapshot.num_items
    if cfg.model == "rgcn":
        from .models.rgcn import RGCNRec
        counts = {t: snapshot.num_nodes(t) for t in ("user", "item", "query", "entity")}
        return RGCNRec(counts, RGCNRec.count_relations(snapshot.relations), embedding_dim=cfg.embedding_dim,
                       num_layers=cfg.num_layers)
    if cfg.model == "lightgcn":
        from .models.lightgcn import LightGCN
        if text_embeddings is not None:
            logger.warning("lightgcn ignores text embeddings")
        return LightGCN(num_users, num_items, embedding_dim=cfg.embedding_dim, num_layers=cfg.num_layers)
    if cfg.model == "kgfused":  # issue #6: fused text + LightGCN + R-GCN over the KG
        from .models.kgfused import KGFusedRec
        counts = {t: snapshot.num_nodes(t) for t in ("user", "item", "query", "entity")}
        text = dict(text_embeddings) if isinstance(text_embeddings, Mapping) else {"item": text_embeddings}
        return KGFusedRec(counts, KGFusedRec.count_relations(snapshot.relations), text, embedding_dim=cfg.embedding_dim,
                          num_layers=cfg.num_layers, kg_layers=cfg.kg_layers, fusion=cfg.fusion,
                          num_bases=cfg.kg_bases or None, kg_users=cfg.kg_users)
    if isinstance(text_embeddings, Mapping):
        text_embeddings = text_embeddings.get("item")
    if cfg.model == "fused":
        from .models.fused import FusedLightGCN
        if text_embeddings is None:
            raise ValueError("model 'fused' needs text_embeddings (I, T)")
        return FusedLightGCN(num_users, num_items, text_embeddings, embedding_dim=cfg.embedding_dim,
                             num_layers=cfg.num_layers, fusion=cfg.fusion)
    raise ValueError(f"unknown model {cfg.model!r}; trainable models: {MODELS}")


def has_item_ids_beside_text(model: str, fusion: str) -> bool:
    """Whether ``model`` with ``fusion`` gives items id embeddings beside their text (what
    ``TrainConfig.id_weight_decay`` penalises): ``fused``/``kgfused`` with fusion sum, concat or gate."""
    return model in TEXT_MODELS and fusion != "text"


def effective_id_weight_decay(cfg: TrainConfig) -> float:
    """The L2 weight on the item id embeddings that training uses: ``cfg.id_weight_decay``, or when it
    is unset, the model's ``DEFAULT_ID_WEIGHT_DECAY`` (``fused`` 1e-3) when it has item ids beside
    text, and 0 otherwise.

    Raises:
        ValueError: a negative value, or a positive one for a model without item id embeddings beside
            text (anything but ``fused``/``kgfused`` with fusion sum, concat or gate).
    """
    has_ids = has_item_ids_beside_text(cfg.model, cfg.fusion)
    if cfg.id_weight_decay is None:
        return DEFAULT_ID_WEIGHT_DECAY.get(cfg.model, 0.0) if has_ids else 0.0
    if not (math.isfinite(cfg.id_weight_decay) and cfg.id_weight_decay >= 0):  # NaN failed no comparison
        raise ValueError(f"id_weight_decay must be >= 0 (finite), got {cfg.id_weight_decay}")
    if cfg.id_weight_decay and not has_ids:
        raise ValueError(f"id_weight_decay applies to {' and '.join(TEXT_MODELS)} with item id embeddings "
                         f"(fusion sum, concat or gate), not model {cfg.model!r} with fusion {cfg.fusion!r}")
    return cfg.id_weight_decay


def loss_weights(cfg: TrainConfig) -> dict[str, float]:
    """The regularisation keyword arguments ``train`` passes to the model's ``loss`` (errors as
    :func:`effective_id_weight_decay`)."""
    mu = effective_id_weight_decay(cfg)
    return {"reg_weight": cfg.weight_decay, "id_reg_weight": mu} if mu else {"reg_weight": cfg.weight_decay}


def graph_relation_edges(snapshot: Any, names: Sequence[str]) -> np.ndarray | None:
    """(2, F) edges of the named user/item relations in LightGCN's joint index space, or ``None``.

    Users are ``0..U-1`` and items ``U..U+I-1``; this is what ``TrainConfig.graph_relations`` adds
    to the LightGCN adjacency.

    Raises:
        ValueError: a name the snapshot lacks, a relation touching other node types, or an index
            outside its node type (a user past the users would land on an item).
    """
    from .models.relconv import shifted_edges

    if not names:
        return None
    offset = {"user": 0, "item": snapshot.num_users}
    edges = []
    for name in names:
        if name not in snapshot.relations:
            raise ValueError(f"graph relation {name!r} is not in the snapshot; it has {sorted(snapshot.relations)}")
        src, dst = snapshot.relation_types[name]
        if src not in offset or dst not in offset:
            raise ValueError(f"graph relation {name!r} links {src} to {dst}; only user/item relations can join "
                             "the LightGCN graph (the KG reaches kgfused through R-GCN)")
        sizes = {"user": snapshot.num_users, "item": snapshot.num_items}
        edges.append(np.stack(shifted_edges(name, snapshot.relations[name], src, dst, sizes, offset)))
    return np.concatenate(edges, 1)


def _build_graph(model: torch.nn.Module, snapshot: Any, user: np.ndarray, item: np.ndarray,
                 device: torch.device, graph_relations: Sequence[str] = ()) -> Any:
    """The graph object the model's ``get_embedding``/``loss`` take (adjacency or typed edges)."""
    from .models.kgfused import KGFusedRec
    from .models.rgcn import RGCNRec
    extra = graph_relation_edges(snapshot, graph_relations)
    if isinstance(model, RGCNRec) and extra is not None:
        raise ValueError("graph_relations applies to lightgcn, fused and kgfused; rgcn already uses every relation")
    if isinstance(model, (RGCNRec, KGFusedRec)):
        counts = {t: snapshot.num_nodes(t) for t in ("user", "item", "query", "entity")}
        kw = {"extra_edges": extra} if isinstance(model, KGFusedRec) else {}
        return model.build_graph(user, item, counts, snapshot.relations, snapshot.relation_types, device=device, **kw)
    return model.build_adjacency(user, item, snapshot.num_users, snapshot.num_items, device=device, extra_edges=extra)


def evaluated_ks(cfg: TrainConfig) -> list[int]:
    """The cut-offs every evaluation reports: ``cfg.ks`` and 20, which early stopping uses."""
    return sorted(set(cfg.ks) | {20})


def _config_dict(cfg: TrainConfig) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def _fingerprint(cfg: TrainConfig, train_csr: sp.csr_matrix, text_embeddings: np.ndarray | None, *,
                 snapshot: Any) -> str:
    """Hash of what decides the optimisation path (not epochs/patience/out_dir/device/deterministic, nor the weight
    average, which the optimiser never sees: a run in progress can start averaging on resume): the
    training pairs, the snapshot's graph beyond them for the models that use it, and the pairs
    early stopping evaluates on (a resumed run compares scores on the same ones)."""
    d = _config_dict(cfg)
    for k in ("epochs", "patience", "out_dir", "device", "eval_every", "swa_start", "deterministic",
              "map_untrained_items"):
        d.pop(k, None)
    d["id_weight_decay"] = effective_id_weight_decay(cfg)  # the value in use, whether set or the default
    if not d["id_weight_decay"]:  # off: fingerprints match those made before the field existed
        d.pop("id_weight_decay")
    graph = _graph_relations_used(cfg, snapshot)
    if graph:  # the R-GCN's typed graph, or the extra LightGCN edges (plain LightGCN: the pairs alone)
        d["graph"] = _graph_shape(snapshot, graph)
    h = hashlib.sha1(json.dumps(d, sort_keys=True).encode())
    _hash_data(h, graph, train_csr, text_embeddings, snapshot)
    return h.hexdigest()[:12]


def data_fingerprint(cfg: TrainConfig, train_csr: sp.csr_matrix, text_embeddings: np.ndarray | None, *,
                     snapshot: Any) -> str:
    """Hash of the data a run of ``cfg.model`` trains and stops on, whatever its settings: kept in
    every checkpoint, so one seeded from a run on other data (same sizes) is refused on resume."""
    graph = _graph_relations_used(cfg, snapshot)
    d: dict[str, Any] = {"model": cfg.model}
    if graph:  # as in _fingerprint: a node the model never reads (a new query, say) is no other data
        d["graph"] = _graph_shape(snapshot, graph)
    h = hashlib.sha1(json.dumps(d, sort_keys=True).encode())
    _hash_data(h, graph, train_csr, text_embeddings, snapshot)
    return h.hexdigest()[:12]


def _graph_shape(snapshot: Any, graph: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Node counts, relation names and the node types each relation joins."""
    shape: dict[str, Any] = {"nodes": {k: len(v) for k, v in snapshot.ids.items()}, "relations": sorted(graph)}
    types = {name: list(snapshot.relation_types[name]) for name in sorted(graph) if name in snapshot.relation_types}
    if types:  # the same edges between other node types are another graph
        shape["types"] = types
    return shape


def _hash_data(h: Any, graph: Mapping[str, np.ndarray], train_csr: sp.csr_matrix,
               text_embeddings: np.ndarray | None, snapshot: Any) -> None:
    """Feed ``h`` the graph's edges, the training pairs, the text vectors and the evaluation pairs."""
    for name in sorted(graph):
        h.update(np.ascontiguousarray(graph[name], dtype=np.int64).tobytes())
    h.update(np.asarray(train_csr.shape, dtype=np.int64).tobytes())
    h.update(train_csr.indptr.astype(np.int64).tobytes())
    h.update(train_csr.indices.astype(np.int64).tobytes())
    if text_embeddings is not None:
        for part in (text_embeddings.values() if isinstance(text_embeddings, Mapping) else [text_embeddings]):
            h.update(np.ascontiguousarray(part, dtype=np.float32).tobytes())
    name, pairs = eval_split_of(snapshot)
    ev = to_csr(pairs.user, pairs.item, *train_csr.shape)
    h.update(name.encode())
    h.update(ev.indptr.astype(np.int64).tobytes())
    h.update(ev.indices.astype(np.int64).tobytes())


def eval_split_of(snapshot: Any) -> tuple[str, Any]:
    """The split early stopping evaluates on, and its interactions: ``valid``, or ``test`` when the
    snapshot has no validation pairs (as the LightGCN reference code does)."""
    valid = snapshot.splits.get("valid")
    name = "valid" if valid is not None and len(valid) > 0 else "test"
    return name, snapshot.splits[name]


def _graph_relations_used(cfg: TrainConfig, snapshot: Any) -> dict[str, np.ndarray]:
    """The snapshot's relations that shape the model's graph besides the training pairs."""
    names = snapshot.relations if cfg.model in ("rgcn", "kgfused") else cfg.graph_relations
    return {name: snapshot.relations[name] for name in names if name in snapshot.relations}


def checkpoint_dir(out_dir: str | Path, cfg: TrainConfig, train_csr: sp.csr_matrix,
                   text_embeddings: np.ndarray | None = None, *, snapshot: Any) -> Path:
    """The directory where ``train`` keeps, and resumes from, the checkpoint of ``cfg`` on ``train_csr``
    and ``snapshot`` (its evaluation pairs, and its graph for the models that use more than the
    training pairs)."""
    return Path(out_dir) / ".checkpoints" / f"{cfg.model}-{_fingerprint(cfg, train_csr, text_embeddings, snapshot=snapshot)}"


def seed_checkpoint(src: str | Path, dst: str | Path, lr: float) -> bool:
    """Make the run whose checkpoint directory is ``dst`` resume from the checkpoint in ``src``.

    Weights, Adam moments, epoch count and early-stopping state carry over; the learning rate
    becomes ``lr``, and early stopping's patience starts again. The two runs must train the same
    model on the same data (the resumed run refuses a checkpoint that records other data; those
    written before checkpoints recorded it are taken on their shapes alone); batch size,
    learning rate or negative and positive sampling may differ, the ``sampler`` not (a full-graph
    and a neighbour-sampled R-GCN keep their weights under other names). Returns False, and changes
    nothing, when ``dst`` already has a checkpoint of its own.
    """
    src, dst = Path(src), Path(dst)
    if (dst / "last.pt").is_file():
        return False
    if not (src / "last.pt").is_file():
        raise FileNotFoundError(f"no checkpoint (last.pt) in {src}")
    state = torch.load(src / "last.pt", map_location="cpu", weights_only=False)
    for group in state["optimizer"]["param_groups"]:
        group["lr"] = lr
    state["bad_evals"] = 0  # patience afresh: a run that had stopped early would otherwise train nothing
    dst.mkdir(parents=True, exist_ok=True)
    _write_checkpoint(dst, state)
    return True


def _write_checkpoint(ckpt_dir: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``last.pt`` and its history beside it, each atomically (a temporary file
    of this process, renamed; not fsynced: every epoch writes one)."""
    tmp = ckpt_dir / f".last.pt.{os.getpid()}.tmp"
    torch.save(state, tmp)
    tmp.replace(ckpt_dir / "last.pt")
    tmp = ckpt_dir / f".history.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(state["history"], indent=1))
    tmp.replace(ckpt_dir / "history.json")


def _curve_png(history: list[dict[str, Any]], metric: str) -> bytes:
    """Loss and validation metric per epoch as PNG bytes (Agg canvas, no global backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.2))
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot([r["epoch"] for r in history], [r["loss"] for r in history], marker=".")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("BPR loss")
    ev = [r for r in history if metric in r]
    ax2.plot([r["epoch"] for r in ev], [r[metric] for r in ev], marker=".", color="C1")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel(metric)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _claim_version(out_dir: Path, model: str) -> tuple[str, Path]:
    """A new version name and its temporary directory, created here: two runs never share one."""
    base = f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{model}"  # UTC: ordered across DST and zones
    version, n = base, 1
    while True:
        tmp = out_dir / f".tmp-{version}"
        try:
            tmp.mkdir()
        except FileExistsError:  # another run is writing this version
            pass
        else:  # claimed first, checked second: a run publishing this name meanwhile is seen here
            if not (out_dir / version).exists():
                return version, tmp
            tmp.rmdir()
        n += 1
        version = f"{base}-{n}"


@contextmanager
def _claimed_checkpoint_dir(ckpt_dir: Path) -> Iterator[Path]:
    """``ckpt_dir``, held by this run while the context lasts (an exclusive lock on its ``owner``
    file, which the OS drops when the process dies; the pid in it is for people), or, while another
    run holds it, a fresh private directory beside it: a retrain and a ``kgrec train`` on the same
    data share the fingerprint, and would resume from (and delete) each other's checkpoints. Two
    runs that find a killed run's directory cannot both take it (a pid check could let them)."""
    held = _lock_owner_file(ckpt_dir)  # which makes the directory
    if held is None:
        try:
            holder = (ckpt_dir / "owner").read_text().strip() or "?"
        except OSError:
            holder = "?"
        private = ckpt_dir.with_name(f"{ckpt_dir.name}-pid{os.getpid()}")
        logger.warning("another run (pid %s) is training on the same data in %s: this one starts afresh in %s",
                       holder, ckpt_dir, private.name)
        shutil.rmtree(private, ignore_errors=True)  # an earlier process of this pid's leftovers
        ckpt_dir, held = private, _lock_owner_file(private)
    try:
        yield ckpt_dir
    finally:
        held.close()  # and with it the lock


def remove_checkpoint_dir(ckpt_dir: Path) -> bool:
    """Delete a checkpoint directory unless a run holds it (its ``owner`` lock); True when deleted.
    The lock is held while deleting, so a run starting meanwhile trains in a private directory
    instead of one that is going."""
    try:
        held = _lock_owner_file(ckpt_dir)
    except OSError as e:  # another user's directory, say: left, and the caller's other clean-up goes on
        logger.warning("cannot claim %s to remove it: %s", ckpt_dir, e)
        return False
    if held is None:
        return False
    try:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    finally:
        held.close()
    return not ckpt_dir.exists()


def _lock_owner_file(ckpt_dir: Path) -> IO[str] | None:
    """``ckpt_dir/owner`` opened and exclusively locked, this pid written in it; None while another
    process holds it. A file removed while it was being locked (the run before ended and deleted
    its directory) is opened again."""
    while True:
        ckpt_dir.mkdir(parents=True, exist_ok=True)  # the run before (or a sweep) may have just removed it
        try:
            f = open(ckpt_dir / "owner", "a+")
        except FileNotFoundError:  # removed again between the two: made again
            continue
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            return None
        except OSError as e:  # a filesystem without locks (NFS mounted nolock): claimed unlocked
            logger.warning("cannot lock %s (%s): a run started meanwhile on the same data could share its "
                           "checkpoints", ckpt_dir / "owner", e)
            return f
        try:
            same = os.stat(ckpt_dir / "owner").st_ino == os.fstat(f.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            f.seek(0)
            f.truncate()
            f.write(str(os.getpid()))
            f.flush()
            return f
        f.close()


@dataclasses.dataclass
class _RunState:
    """Early-stopping bookkeeping of a training run, saved with the model in every checkpoint."""

    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    epoch: int = 0  # the last finished epoch
    best_score: float = -1.0
    best_epoch: int = 0
    bad_evals: int = 0
    best_state: dict[str, torch.Tensor] | None = None

    def end_epoch(self, row: dict[str, Any], score: float | None, model: torch.nn.Module) -> None:
        """Record an epoch's row; with a validation ``score``, keep the best weights so far."""
        self.epoch = row["epoch"]
        self.history.append(row)
        if score is None:
            return
        if score > self.best_score:
            self.best_score, self.best_epoch, self.bad_evals = score, self.epoch, 0
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self.bad_evals += 1

    def save(self, ckpt_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
             gen: torch.Generator, swa: AveragedModel | None = None,
             scaler: torch.amp.GradScaler | None = None, data: str | None = None, swa_start: int = 0) -> None:
        """Write ``last.pt`` (atomically, through a temporary file) and ``history.json``; ``data`` is
        the run's :func:`data_fingerprint`, ``swa_start`` the epoch its weight average began at."""
        bookkeeping = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        _write_checkpoint(ckpt_dir, {"data": data, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                     "sampler_rng": gen.get_state(), "torch_rng": torch.get_rng_state(),
                                     "swa": swa.state_dict() if swa is not None else None, "swa_start": swa_start,
                                     "scaler": scaler.state_dict() if scaler is not None else None, **bookkeeping})

    @classmethod
    def load(cls, state: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
             gen: torch.Generator, device: torch.device, swa: AveragedModel | None = None,
             scaler: torch.amp.GradScaler | None = None, swa_start: int = 0) -> "_RunState":
        """Restore model, optimizer, weight average, fp16 loss scale and RNG states from a loaded
        ``last.pt``; return the bookkeeping.

        A checkpoint of a run on another kind of device, or of a kgrec that sampled with numpy, has no
        usable sampler state: the sampler then keeps its fresh seed (logged). A checkpoint without a
        weight average (a run without ``swa_start``, or one seeded from it) starts the average afresh,
        and so does one whose average began at another epoch than ``swa_start`` now says (the mean
        of epochs 3-4 under a new ``swa_start = 7`` would be scored in epochs 5 and 6, and published
        mixed into 7-8's).
        """
        model.load_state_dict(_persistent_only(state["model"], model))
        for saved, now in zip(state["optimizer"]["param_groups"], optimizer.param_groups):
            for key in ("fused", "foreach", "capturable"):  # this device's kernels, not the saving run's
                if key in now:
                    saved[key] = now[key]
        optimizer.load_state_dict(state["optimizer"])
        if swa is not None and state.get("swa") is not None:
            began = state.get("swa_start")  # None: a checkpoint from before it was recorded
            if began in (None, swa_start):
                swa.load_state_dict(_persistent_only(state["swa"], swa))
            elif int(state["swa"].get("n_averaged", 0)):  # one that had not begun yet loses nothing
                logger.warning("the checkpoint's weight average began at epoch %d, but swa_start is now %d: the "
                               "average starts afresh", began, swa_start)
        if state.get("best_state") is not None:
            state["best_state"] = _persistent_only(state["best_state"], model)
        if scaler is not None and scaler.is_enabled() and state.get("scaler"):  # fp16 AMP only
            scaler.load_state_dict(state["scaler"])
        try:  # generator states are CPU byte tensors; map_location moved them
            gen.set_state(state["sampler_rng"].cpu())
        except (KeyError, RuntimeError) as e:
            logger.warning("the checkpoint has no sampler state for %s (%s); sampling starts from the seed",
                           gen.device, type(e).__name__)
        torch.set_rng_state(state["torch_rng"].cpu())
        return cls(**{f.name: state[f.name] for f in dataclasses.fields(cls)})


def _persistent_only(state: dict[str, torch.Tensor], module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``state`` less the entries of ``module``'s non-persistent buffers, which checkpoints written
    before the text features became non-persistent still hold (the model has them from the snapshot)."""
    constants = {name for name, _ in module.named_buffers()} - set(module.state_dict())
    return {k: v for k, v in state.items() if k not in constants}


def weight_average(model: torch.nn.Module) -> AveragedModel:
    """``AveragedModel(model)`` whose copy shares ``model``'s buffers instead of deep-copying them.

    The average (``use_buffers=False``) never updates buffers, and ours are constants: the fused models'
    text features and masks. Sharing them keeps weight averaging from doubling that memory, which
    for a large catalogue's text embeddings is most of the model; only the parameters are copied.
    """
    owners = [(module, name, buf) for module in model.modules() for name, buf in module._buffers.items()
              if buf is not None]
    for module, name, _ in owners:  # hidden from the deep copy, then handed to both models
        module._buffers[name] = None
    try:
        swa = AveragedModel(model)
    finally:
        for module, name, buf in owners:
            module._buffers[name] = buf
    copies = dict(zip(map(id, model.modules()), swa.module.modules()))
    for module, name, buf in owners:
        copies[id(module)]._buffers[name] = buf
    return swa


def check_train_config(cfg: TrainConfig) -> None:
    """Refuse settings that training would refuse only later (after an SVD, a graph build or an
    epoch): an unknown model, device or sampling strategy, a cut-off in ``ks`` below 1, ``epochs``,
    ``eval_every``, ``patience``, ``batch_size`` or ``embedding_dim`` below 1, a negative layer count,
    ``kg_bases``, ``swa_start`` or ``weight_decay``, an ``lr`` not above 0, an ``id_weight_decay`` or
    ``graph_relations`` the model cannot take, a neighbour sampler off ``rgcn`` or a fan-out
    longer than its layers, or filter parameters the graph filter does not take.

    Raises:
        ValueError: the first such setting, named.
    """
    if cfg.model not in MODELS and cfg.model not in FILTER_MODELS:
        raise ValueError(f"unknown model {cfg.model!r}; choose from {MODELS + tuple(FILTER_MODELS)}")
    if not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in cfg.ks):
        raise ValueError(f"ks must be cut-offs >= 1, got {cfg.ks}")
    effective_id_weight_decay(cfg)
    resolve_device(cfg.device)
    if cfg.model in TEXT_MODELS and cfg.fusion not in FUSIONS:  # else refused once the text vectors are read
        raise ValueError(f"unknown fusion {cfg.fusion!r}; choose from {FUSIONS}")
    if cfg.model in FILTER_MODELS:
        if cfg.graph_relations:
            raise ValueError("graph_relations applies to lightgcn, fused and kgfused; a graph filter scores the "
                             "user-item matrix alone")
        check_filter_params(cfg.model, cfg.filter)
        return
    check_positive_sampling(cfg.positive_sampling)
    if cfg.embedding_dim < 1 or cfg.num_layers < 0 or cfg.kg_layers < 0 or cfg.kg_bases < 0 or cfg.swa_start < 0:
        raise ValueError(f"embedding_dim must be >= 1 and num_layers, kg_layers, kg_bases and swa_start >= 0, got "
                         f"{cfg.embedding_dim}, {cfg.num_layers}, {cfg.kg_layers}, {cfg.kg_bases} and {cfg.swa_start}")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0) or not (math.isfinite(cfg.weight_decay) and cfg.weight_decay >= 0):
        raise ValueError(f"lr must be > 0 and weight_decay >= 0 (finite), got {cfg.lr} and {cfg.weight_decay}")
    if cfg.negative_sampling not in STRATEGIES:
        raise ValueError(f"unknown negative_sampling {cfg.negative_sampling!r}; choose from {STRATEGIES}")
    for name in ("epochs", "eval_every", "patience", "batch_size"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.sampler != "full":
        from .sampled import SAMPLERS, fan_out

        if cfg.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {cfg.sampler!r}; choose from {SAMPLERS}")
        if cfg.model != "rgcn":
            raise ValueError(f"sampler {cfg.sampler!r} is implemented for model 'rgcn' only")
        fan_out(cfg.num_neighbors, cfg.num_layers)


def unused_settings(cfg: TrainConfig) -> list[str]:
    """The settings ``cfg`` changes from their defaults that ``cfg.model`` does not read, as
    ``name = value``: ``fusion`` off the text models, ``filter`` off the graph filters, ``kg_bases``
    and ``kg_users`` off ``kgfused``. A config shared between models may hold them, so training
    warns of them rather than refusing."""
    unused = []
    if cfg.fusion != "sum" and cfg.model not in TEXT_MODELS:
        unused.append(f"fusion = {cfg.fusion!r}")
    if cfg.filter and cfg.model not in FILTER_MODELS:
        unused.append(f"filter = {cfg.filter}")
    if cfg.kg_bases and cfg.model != "kgfused":
        unused.append(f"kg_bases = {cfg.kg_bases}")
    if cfg.kg_users and cfg.model != "kgfused":
        unused.append("kg_users = true")
    return unused


def train(snapshot: Any, cfg: TrainConfig, out_dir: str | Path, text_embeddings: np.ndarray | None = None,
          *, snapshot_path: str | Path | None = None, epoch_hook: EpochHook | None = None,
          resume: bool = True, publish_current: bool = True, max_time_s: float | None = None,
          progress: bool = True, text_index: TextIndex | None = None,
          extra_meta: Mapping[str, Any] | None = None,
          side_features: Callable[[np.ndarray], np.ndarray] | None = None) -> Path:
    """Train ``cfg.model`` on ``snapshot`` and write a model artifact.

    Args:
        snapshot: a :class:`kg.snapshot.Snapshot` (``splits``, ``ids``, ``num_users``, ``num_items``).
        cfg: training configuration.
        out_dir: models directory; the artifact goes to ``out_dir/<version>/``.
        text_embeddings: optional (I, t) item text vectors for text-aware models.
        snapshot_path: recorded in ``meta.json``.
        epoch_hook: called as ``hook(epoch, row)`` after each epoch and its checkpoint, when one
            is written (an exception raised there aborts training, leaving ``current`` untouched).
            A checkpoint is written after every evaluation and the last epoch, and otherwise at
            most every :data:`CHECKPOINT_EVERY_S` seconds.
        resume: continue from a matching checkpoint when one exists.
        publish_current: repoint ``out_dir/current`` at the new artifact.
        max_time_s: stop after the first epoch that ends past this many seconds of training; the
            artifact is written and the checkpoint kept, so calling again continues the run (not
            a run that trained in a checkpoint of its own, another run holding the shared one).
        progress: show a tqdm bar over batches, and each evaluation's score (unless INFO logs every epoch).
        text_index: item text vectors kept in the artifact for free-text search (any model; not
            used in training).
        extra_meta: more entries for the artifact's ``meta.json`` (``kgrec.retrain`` marks its own).
        side_features: optional, the (n, F) side features of given item rows
            (:func:`gnn.coldstart.item_side_features_of`): ``lightgcn``, which has nothing but ids,
            embeds the items without training events that have some from them
            (:func:`gnn.coldstart.map_untrained_items`) before its test figures and artifact,
            instead of keeping their untrained embeddings; ``metrics.json`` then also holds
            ``test_before_map``, the same weights' test figures without the map (``history`` and
            ``best_score`` are scored without it).

    Returns:
        The artifact directory.

    Raises:
        TrainingError: no training interactions, or nothing to evaluate on.
        ValueError: a setting :func:`check_train_config` refuses, checked before anything is built.
    """
    check_train_config(cfg)
    unused = unused_settings(cfg)
    if unused:
        logger.warning("model %r does not use [train] %s; they are ignored", cfg.model, ", ".join(unused))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.model in FILTER_MODELS:
        return _fit_filter(snapshot, cfg, out_dir, snapshot_path=snapshot_path, publish_current=publish_current,
                           text_index=text_index, extra_meta=extra_meta or {})
    on_cuda = cfg.deterministic and resolve_device(cfg.device).type == "cuda"
    with deterministic_algorithms(cfg.deterministic, cuda=on_cuda), ExitStack() as held:  # held: the checkpoint's claim
        return _train_embeddings(snapshot, cfg, out_dir, text_embeddings, snapshot_path=snapshot_path,
                                 epoch_hook=epoch_hook, resume=resume, publish_current=publish_current,
                                 max_time_s=max_time_s, progress=progress, text_index=text_index,
                                 extra_meta=extra_meta or {}, side_features=side_features, held=held)


def _train_embeddings(snapshot: Any, cfg: TrainConfig, out_dir: Path, text_embeddings: np.ndarray | None, *,
                      snapshot_path: str | Path | None, epoch_hook: EpochHook | None, resume: bool,
                      publish_current: bool, max_time_s: float | None, progress: bool,
                      text_index: TextIndex | None, extra_meta: Mapping[str, Any],
                      side_features: Callable[[np.ndarray], np.ndarray] | None = None,
                      held: ExitStack) -> Path:
    """:func:`train` for the trainable (embedding) models; ``held`` keeps the checkpoint directory's
    claim until :func:`train` returns."""
    from tqdm.auto import tqdm

    regularisation = loss_weights(cfg)
    cfg = dataclasses.replace(cfg, id_weight_decay=effective_id_weight_decay(cfg))  # the value used, for the artifact
    device = resolve_device(cfg.device)
    U, I = snapshot.num_users, snapshot.num_items
    tr = snapshot.splits["train"]
    if len(tr) == 0:
        raise TrainingError("snapshot has no training interactions")
    valid = snapshot.splits.get("valid")
    test = snapshot.splits.get("test")
    eval_split, ev = eval_split_of(snapshot)
    if len(ev) == 0:
        raise TrainingError("snapshot has neither valid nor test interactions to evaluate on")
    if eval_split == "test":
        logger.warning("the snapshot has no validation split: early stopping and the published weights use "
                       "the test split (as the LightGCN reference code does), so its test metrics are optimistic")
    train_csr = to_csr(tr.user, tr.item, U, I)
    eval_csr = to_csr(ev.user, ev.item, U, I)
    ks = evaluated_ks(cfg)
    stop_metric = "ndcg@20"
    score_key = f"{eval_split}_{stop_metric}"

    seed_everything(cfg.seed)
    model = build_model(cfg, snapshot, text_embeddings).to(device)
    coo = train_csr.tocoo()
    pairs_u = coo.row.astype(np.int64)
    pairs_i = coo.col.astype(np.int64)
    if cfg.sampler == "full":
        adj = _build_graph(model, snapshot, pairs_u, pairs_i, device, cfg.graph_relations)
    else:  # neighbour-sampled mini-batches (gnn.sampled): the typed graph stays on CPU, subgraphs go to device
        from .sampled import prepare
        model, adj = prepare(model, _build_graph(model, snapshot, pairs_u, pairs_i, torch.device("cpu"),
                                                 cfg.graph_relations),
                             cfg.sampler, cfg.num_neighbors)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=device.type == "cuda")
    gen = make_generator(cfg.seed, device)
    train_pairs = TrainPairs(train_csr, device)
    sampler = NegativeSampler(train_pairs, cfg.negative_sampling, gen)
    use_amp = bool(cfg.amp and device.type == "cuda")
    # bf16 where the GPU computes it natively (Ampere on); is_bf16_supported() also says yes for older
    # GPUs that only emulate it, and asks about the current device rather than this one
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.get_device_capability(device)[0] >= 8 else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    # the weight average (cfg.swa_start > 0) is what is evaluated and published once it holds an epoch
    swa = weight_average(model) if cfg.swa_start > 0 else None

    def scored_model() -> torch.nn.Module:
        return swa.module if swa is not None and int(swa.n_averaged) > 0 else model

    ckpt_dir = held.enter_context(_claimed_checkpoint_dir(checkpoint_dir(out_dir, cfg, train_csr, text_embeddings,
                                                                         snapshot=snapshot)))
    private = ckpt_dir.name.endswith(f"-pid{os.getpid()}")  # no later run resumes it: removed at the end
    data_fp = data_fingerprint(cfg, train_csr, text_embeddings, snapshot=snapshot)
    run = _RunState()
    if resume and (ckpt_dir / "last.pt").is_file():
        try:
            state = torch.load(ckpt_dir / "last.pt", map_location=device, weights_only=False)
        except (EOFError, RuntimeError, pickle.UnpicklingError) as e:
            # cut short (a power loss: not fsynced) is a fresh start; anything else (CUDA out of
            # memory, say) stops the run, so the next save does not overwrite a good checkpoint
            if isinstance(e, RuntimeError) and "PytorchStreamReader" not in str(e):
                raise
            logger.warning("the checkpoint %s cannot be read (%s): training starts afresh", ckpt_dir / "last.pt", e)
        else:
            if state.get("data") not in (None, data_fp):  # None: a checkpoint from before the check
                raise TrainingError(f"the checkpoint {ckpt_dir / 'last.pt'} is of a run on other data (seeded "
                                    f"from one, same sizes): remove it, or seed from a run on this snapshot")
            run = _RunState.load(state, model, optimizer, gen, device, swa, scaler, cfg.swa_start)
            logger.info("resumed %s from epoch %d", ckpt_dir.name, run.epoch)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    logger.info("training %r on %s: %d users, %d items, %d train pairs, early stopping on %s %s",
                model, device, U, I, len(pairs_u), eval_split, stop_metric)

    def embeddings(net: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        net.eval()
        with torch.no_grad():
            ue, ie = net.get_embedding(adj)
        return ue.float(), ie.float()

    def run_eval(net: torch.nn.Module, truth: sp.csr_matrix, exclude: sp.csr_matrix | None) -> dict[str, float]:
        return evaluate_embeddings(*embeddings(net), truth, exclude)

    def evaluate_embeddings(ue: torch.Tensor, ie: torch.Tensor, truth: sp.csr_matrix,
                            exclude: sp.csr_matrix | None) -> dict[str, float]:
        return evaluate(lambda u: ue[u] @ ie.t(), train_csr, truth, ks, I, device=device, exclude=exclude)

    def add_scores(row: dict[str, Any]) -> float:
        """The scored model's metrics on the evaluation pairs, into the epoch's row; returns its score."""
        row.update({f"{eval_split}_{k}": v for k, v in run_eval(scored_model(), eval_csr, None).items()
                    if k != "num_users"})
        return row[score_key]

    t_start = time.perf_counter()
    last_save = -float("inf")
    budget_stop = False
    n = len(pairs_u)
    epoch = run.epoch
    # a checkpoint of a run that had already stopped early (killed before its artifact was written)
    # goes straight to the artifact, as the uninterrupted run did
    first = run.epoch + 1 if run.bad_evals < cfg.patience else cfg.epochs + 1
    for epoch in range(first, cfg.epochs + 1):
        t0 = time.perf_counter()
        ue_h = ie_h = None
        if cfg.negative_sampling == "hard":
            ue_h, ie_h = embeddings(model)  # hard negatives come from the live weights, not the average
        model.train()
        # the epoch's triples are drawn on the device, and the loss is summed there, so no step waits
        # on the host
        starts = range(0, n, cfg.batch_size)
        users, positives = train_pairs.epoch_pairs(cfg.positive_sampling, gen)
        negatives = sampler.sample(users, ue_h, ie_h)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        counted = torch.zeros((), dtype=torch.int64, device=device)  # pairs of batches with a finite loss
        for b in tqdm(starts, desc=f"epoch {epoch}", leave=False, disable=not progress):
            u, p, neg = (t[b:b + cfg.batch_size] for t in (users, positives, negatives))
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=use_amp):
                loss = model.loss(adj, u, p, neg, **regularisation)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            finite = loss.detach().isfinite()
            loss_sum += torch.where(finite, loss.detach().double() * len(u), 0.0)
            counted += finite * len(u)
        total, counted_pairs = float(loss_sum), int(counted)
        # fp16's loss scaler skips the step of a batch whose loss overflowed (and lowers the scale):
        # a few such batches are normal; anywhere else, one non-finite loss is divergence. Each loss
        # is taken before its step, so the epoch's last step can make the weights NaN under a finite
        # loss: checked too, before they are averaged, evaluated or checkpointed
        weights_finite = bool(torch.stack([p.detach().isfinite().all() for p in model.parameters()]).all())
        skipped = n - counted_pairs
        # an overflow the scaler cannot mend (the forward pass's own, not the scaled gradients') comes
        # back every batch: past half an epoch's pairs it is divergence too
        if (skipped and not scaler.is_enabled()) or skipped * 2 > n or not weights_finite:
            raise DivergedError(f"loss diverged at epoch {epoch} (lr {cfg.lr} too high?)")
        row: dict[str, Any] = {"epoch": epoch, "loss": total / counted_pairs,
                               "train_s": round(time.perf_counter() - t0, 3)}
        if skipped:
            row["overflow_pairs"] = skipped  # their batches' steps were skipped by the fp16 loss scaler
        if swa is not None and epoch >= cfg.swa_start:
            swa.update_parameters(model)
            row["swa_epochs"] = int(swa.n_averaged)
        score = None
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            t1 = time.perf_counter()
            score = add_scores(row)
            row["eval_s"] = round(time.perf_counter() - t1, 3)
        run.end_epoch(row, score, scored_model())
        logger.info("epoch %d %s", epoch, json.dumps(row))
        if progress and score is not None and not logger.isEnabledFor(logging.INFO):  # -v logs every row
            tqdm.write(f"epoch {epoch}: loss {row['loss']:.4f}, {eval_split} {stop_metric} {score:.4f} "
                       f"(best {run.best_score:.4f} at epoch {run.best_epoch})", file=sys.stderr)
        out_of_time = max_time_s is not None and time.perf_counter() - t_start > max_time_s
        stopping = run.bad_evals >= cfg.patience or out_of_time or epoch == cfg.epochs
        # a GPU epoch can take less time than writing the checkpoint: epochs without an evaluation
        # write one at most every CHECKPOINT_EVERY_S, so a killed run redoes at most that much
        if score is not None or stopping or time.perf_counter() - last_save >= CHECKPOINT_EVERY_S:
            run.save(ckpt_dir, model, optimizer, gen, swa, scaler, data_fp, cfg.swa_start)
            last_save = time.perf_counter()
        if epoch_hook is not None:
            epoch_hook(epoch, row)
        if run.bad_evals >= cfg.patience:
            logger.info("early stop at epoch %d (best %s %.4f at epoch %d)", epoch, stop_metric, run.best_score,
                        run.best_epoch)
            break
        if out_of_time:
            logger.info("time budget %.0fs reached after epoch %d; %s", max_time_s, epoch,
                        "the checkpoint is kept, so the same call continues from here" if not private else
                        "this call's own checkpoint (another run held the shared one) is discarded, so "
                        "calling again starts afresh")
            budget_stop = epoch < cfg.epochs
            break

    if not budget_stop and run.history and score_key not in run.history[-1]:
        # resumed past a lowered cfg.epochs after an unevaluated epoch: the last epoch is evaluated,
        # as an uninterrupted run's last epoch is (unevaluated weights are never published)
        row = run.history.pop()
        run.end_epoch(row, add_scores(row), scored_model())
    model.load_state_dict(run.best_state if run.best_state is not None else scored_model().state_dict())
    ue, ie = embeddings(model)
    mapped = 0
    if side_features is not None and cfg.model == "lightgcn":  # untrained item rows: from their text
        from .coldstart import item_train_counts, map_untrained_items

        ie_mapped, mapped = map_untrained_items(ie.cpu().numpy(), side_features, item_train_counts(train_csr) > 0,
                                                seed=cfg.seed)
        ie_unmapped, ie = ie, torch.from_numpy(ie_mapped).to(ie.device)
    final: dict[str, float] = {}
    before_map: dict[str, float] = {}
    if test is not None and len(test) > 0:
        excl = to_csr(valid.user, valid.item, U, I) if eval_split == "valid" else None
        test_csr = to_csr(test.user, test.item, U, I)
        final = evaluate_embeddings(ue, ie, test_csr, excl)
        if mapped:  # the same weights with their untrained item rows, as history and best_score saw them
            before_map = evaluate_embeddings(ue, ie_unmapped, test_csr, excl)
    if budget_stop and run.best_state is None and publish_current:
        logger.warning("the time budget ran out before the first evaluation: the artifact is written, not "
                       "published as current")
        publish_current = False

    final_dir = _write_artifact(
        out_dir, cfg, snapshot, train_csr, ue.cpu().numpy(), ie.cpu().numpy(),
        metrics={"test": final, **({"test_before_map": before_map} if before_map else {}),
                 "eval_split": eval_split, "stop_metric": stop_metric,
                 "best_epoch": run.best_epoch, "best_score": run.best_score, "history": run.history},
        meta={**extra_meta, "device": str(device), "epochs_run": epoch,
              **({"untrained_items_from_text": mapped} if side_features is not None else {})},
        snapshot_path=snapshot_path,
        curve_png=_curve_png(run.history, score_key), publish_current=publish_current,
        text_index=text_index)
    if not budget_stop or private:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    logger.info("wrote %s (test %s)", final_dir, {k: round(v, 4) for k, v in final.items() if "@20" in k})
    return final_dir


MAX_REACH_ENTRIES = 50_000_000  # (item, entity one triple on) pairs kept in an artifact, at most


def reach_size(direct: "sp.csr_matrix", triples: "sp.csr_matrix") -> int:
    """Entries of ``direct @ triples`` before merging: for each entity, the items linking to it times
    its triples. In int64: scipy's int32 ``indptr`` would wrap past 2^31 and slip under the cap."""
    return int(np.diff(direct.tocsc().indptr).astype(np.int64) @ np.diff(triples.indptr).astype(np.int64))


def item_attributes(snapshot: Any) -> tuple[np.ndarray, np.ndarray, list[str]] | None:
    """Each item's attributes and knowledge-graph entities as a CSR over the entities that some item
    reaches: (indptr, indices, entity ids); None when the snapshot links items to none.

    An item reaches the entities it links to (every item->entity relation of the snapshot) and, one
    knowledge-graph triple further, their tails: an artist ``same_as`` a Freebase entity reaches
    that entity's genre."""
    if not hasattr(snapshot, "item_entity_edges"):
        return None
    items, entities = snapshot.item_entity_edges()
    if not len(items):
        return None
    n_entities = len(snapshot.ids["entity"])
    direct = sp.csr_matrix((np.ones(len(items), np.float32), (items, entities)), shape=(snapshot.num_items, n_entities))
    direct.sum_duplicates()  # a pair linked by two relations is one entry
    heads, tails = snapshot.entity_entity_edges() if hasattr(snapshot, "entity_entity_edges") else ([], [])
    reach = direct
    if len(heads):
        triples = sp.csr_matrix((np.ones(len(heads), np.float32), (heads, tails)), shape=(n_entities, n_entities))
        triples.sum_duplicates()
        size = reach_size(direct, triples)
        if size <= MAX_REACH_ENTRIES:
            reach = direct + direct @ triples
        else:  # an attribute that is also a KG hub (a mapping without entity_prefix, say)
            logger.warning("items reach %d entities one triple on, more than %d: recommendations within "
                           "an entity use the items' own links only", size, MAX_REACH_ENTRIES)
    reach = reach.tocsc()
    used = np.flatnonzero(np.diff(reach.indptr))  # entities some item reaches
    m = reach[:, used].tocsr()
    m.sum_duplicates()
    m.sort_indices()
    return m.indptr, m.indices, [snapshot.ids["entity"][e] for e in used.tolist()]


def _write_artifact(out_dir: Path, cfg: TrainConfig, snapshot: Any, train_csr: sp.csr_matrix, ue: np.ndarray,
                    ie: np.ndarray, *, metrics: dict[str, Any], meta: dict[str, Any],
                    snapshot_path: str | Path | None, curve_png: bytes | None, publish_current: bool,
                    filter_state: dict[str, np.ndarray] | None = None, text_index: TextIndex | None = None) -> Path:
    """Write ``out_dir/<version>/`` through a temporary directory renamed at the end, then publish it."""
    version, tmp = _claim_version(out_dir, cfg.model)
    U, I = train_csr.shape
    try:
        parts = [p for p in snapshot.splits.values() if p is not None and len(p) > 0]
        seen_csr = to_csr(np.concatenate([p.user for p in parts]), np.concatenate([p.item for p in parts]), U, I)
        save_artifact(
            tmp, user_embeddings=ue, item_embeddings=ie,
            ids={"user": list(snapshot.ids["user"]), "item": list(snapshot.ids["item"]),
                 "item_title": list(getattr(snapshot, "item_titles", None) or [""] * I)},
            train_indptr=train_csr.indptr, train_indices=train_csr.indices, config=_config_dict(cfg),
            metrics=metrics,
            meta={"version": version, "model": cfg.model, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "code_version": code_version(),
                  "snapshot": str(snapshot_path) if snapshot_path is not None else snapshot.meta.get("name"),
                  "split": snapshot.meta.get("split"),  # test figures compare only between the same scheme
                  "split_settings": snapshot.meta.get("split_settings"),  # and the same ratios
                  **meta, "num_users": U, "num_items": I,
                  "embedding_dim": int(ue.shape[1])},
            curve_png=curve_png, filter_state=filter_state, seen_indptr=seen_csr.indptr, seen_indices=seen_csr.indices,
            text_index=text_index, item_attributes=item_attributes(snapshot))
        final_dir = out_dir / version
        sync_files(tmp)  # on disk before its name says it is whole (published or not: a gated retrain's
        tmp.rename(final_dir)  # version stays for `kgrec serve --model`)
        sync_dir(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if publish_current:
        publish(final_dir, out_dir)
    return final_dir


def spectral_dim(rank: int, num_items: int) -> int:
    """How many leading low-pass directions a graph filter's embeddings keep: all ``rank`` of them,
    but at most a quarter of the catalogue. Near the catalogue's size (bspm's k = 448 on 400 items)
    the directions span nearly every item on its own, and every item is orthogonal to every other:
    its nearest neighbours would be noise."""
    return max(1, min(rank, num_items // 4))


def _fit_filter(snapshot: Any, cfg: TrainConfig, out_dir: Path, *, snapshot_path: str | Path | None,
                publish_current: bool, text_index: TextIndex | None = None,
                extra_meta: Mapping[str, Any] | None = None) -> Path:
    """Fit ``gfcf``/``bspm`` on the training split, evaluate it like a trained model, write its artifact.

    The artifact's embeddings are the filter's low-pass factors (``GFCF.spectral_embeddings``, for
    the vector index and item similarity; the leading :func:`spectral_dim` of them); ``filter.npz``
    holds what serving needs to score with the whole filter.
    """
    device = resolve_device(cfg.device)
    U, I = snapshot.num_users, snapshot.num_items
    splits = {name: snapshot.splits.get(name) for name in ("train", "valid", "test")}
    if splits["train"] is None or len(splits["train"]) == 0:
        raise TrainingError("snapshot has no training interactions")
    train_csr = to_csr(splits["train"].user, splits["train"].item, U, I)
    model = build_filter(cfg.model, cfg.filter, cfg.seed, device).fit(train_csr)
    state = model.state()  # its low-pass factors copied to the host once: checked, sized, written
    rank = int(state["vt"].shape[0])
    if rank == 0:
        raise TrainingError(f"{cfg.model} needs a low-pass rank k >= 1 for its embeddings "
                            f"(k={model.k}, {min(train_csr.shape)} users or items)")
    ks = evaluated_ks(cfg)
    results: dict[str, dict[str, float]] = {}
    valid = splits["valid"]
    for name in ("valid", "test"):
        part = splits[name]
        if part is None or len(part) == 0:
            continue
        exclude = (to_csr(valid.user, valid.item, U, I) if name == "test" and valid is not None and len(valid) > 0
                   else None)
        results[name] = evaluate(model.score, train_csr, to_csr(part.user, part.item, U, I), ks, I,
                                 device=device, exclude=exclude)
    if not results:
        raise TrainingError("snapshot has neither valid nor test interactions to evaluate on")
    ue, ie = model.spectral_embeddings(spectral_dim(rank, I))
    if ue.shape[1] < rank:
        logger.warning("%s keeps %d of %d item directions (k near the catalogue size): its embeddings (item "
                       "similarity, the vector index) take the leading %d; scoring uses them all", cfg.model, rank,
                       I, ue.shape[1])
    eval_split = "valid" if "valid" in results else "test"
    row = {"epoch": 0, "loss": 0.0, "train_s": round(model.fit_seconds, 3),
           **{f"{eval_split}_{k}": v for k, v in results[eval_split].items() if k != "num_users"}}
    final_dir = _write_artifact(
        out_dir, cfg, snapshot, train_csr, ue, ie,
        metrics={"test": results.get("test", {}), "eval_split": eval_split, "stop_metric": "ndcg@20",
                 "best_epoch": 0, "best_score": results[eval_split]["ndcg@20"], "history": [row],
                 "fit_seconds": model.fit_seconds},
        meta={**(extra_meta or {}), "device": str(device), "epochs_run": 0, "scorer": cfg.model, "filter_rank": rank},
        snapshot_path=snapshot_path,
        curve_png=None, publish_current=publish_current, filter_state=state, text_index=text_index)
    logger.info("wrote %s (%r, test %s)", final_dir, model,
                {k: round(v, 4) for k, v in results.get("test", {}).items() if "@20" in k})
    return final_dir
