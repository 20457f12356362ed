"""The periodic retraining job: export -> encode -> train -> quality gate -> publish -> write-back -> prune.

``kgrec retrain`` runs it (from cron or a scheduler, after the day's ``kgrec ingest --incremental``
loads; ``scripts/retrain.sh`` chains the two). Each run:

1. exports a fresh snapshot while holding the graph's ingest lock, so it never sees half a load;
2. encodes its texts (cached: only new texts cost anything) when the model reads text;
3. trains a new version without publishing it;
4. compares its test ``retrain.metric`` with the served model's: it is published (``current`` is
   repointed atomically, and running ``kgrec serve`` processes switch to it) unless it falls more
   than ``retrain.max_drop`` below. Each figure is measured on its own snapshot's test split, so
   this catches broken runs and bad data, not small regressions;
5. writes embeddings, the vector index and ``RECOMMENDED`` lists back to Neo4j once published;
6. deletes model versions and retrain snapshots beyond the newest ``retrain.keep``, never the
   served one nor the snapshot it was trained on.

Only one retrain runs at a time per model directory (an OS file lock, released if the process
dies). A run that fails or is killed at any step leaves the served model as it was. The report
is printed and saved as ``<workdir>/retrain/<version>.json``.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from kg.connection import Graph
from kg.export import export_snapshot
from kg.lock import INGEST_LOCK, graph_lock

from .config import TEXT_MODELS, Config, ConfigError

logger = logging.getLogger(__name__)


class RetrainBusyError(RuntimeError):
    """Another retrain of the same model directory is running."""


@dataclass
class RetrainReport:
    """What one retrain did; ``published`` is False when the quality gate kept the served model."""

    snapshot: str
    version: str
    published: bool
    decision: str
    metric: str
    new_score: float
    served_version: str | None
    served_score: float | None
    writeback: dict[str, int] | None = None
    pruned: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def retrain(graph: Graph, cfg: Config, say: Callable[[str], None] = logger.info) -> RetrainReport:
    """Run the retraining job once (module docstring); the stage entry point of ``kgrec retrain``.

    Raises:
        RetrainBusyError: another retrain holds this model directory.
        ConfigError: ``retrain.metric`` is not a metric that training reports.
        kg.lock.LockedError: an ingest held the graph for longer than ``ingest.lock_wait_s``.
    """
    from gnn.artifact import publish

    from .pipeline import ensure_text_embeddings, train_model

    metric = _check_metric(cfg)
    out_dir = Path(cfg.train.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def stage(name: str, fn: Callable[[], Any]) -> Any:
        t = time.perf_counter()
        result = fn()
        timings[name] = round(time.perf_counter() - t, 2)
        return result

    with _exclusive(out_dir / ".retrain.lock"):
        with graph_lock(graph, INGEST_LOCK, cfg.ingest.lock_wait_s):  # a snapshot of whole loads only
            snapshot = stage("export", lambda: export_snapshot(graph, cfg.export, cfg.retrain.snapshot_name))
        say(f"exported {snapshot}")
        if cfg.train.model in TEXT_MODELS:
            stage("encode", lambda: ensure_text_embeddings(snapshot, cfg))
        artifact = stage("train", lambda: train_model(snapshot, cfg, publish=False))
        new_score = _test_score(artifact, metric)
        if new_score is None:
            raise ConfigError(f"{artifact} has no test {metric}: the snapshot needs a test split for the gate")
        served = _served(out_dir)
        served_score = _test_score(served, metric) if served is not None else None
        published, decision = _gate(new_score, served_score, cfg.retrain.max_drop, metric)
        say(f"trained {artifact.name}: test {metric} {new_score:.4f}; {decision}")
        report = RetrainReport(snapshot=str(snapshot), version=artifact.name, published=published,
                               decision=decision, metric=metric, new_score=new_score,
                               served_version=served.name if served is not None else None,
                               served_score=served_score, timings=timings)
        if published:
            stage("publish", lambda: publish(artifact, out_dir))
            if cfg.retrain.writeback:
                report.writeback = stage("writeback", lambda: _write_back(graph, out_dir / "current",
                                                                          cfg.retrain.writeback_k))
        report.pruned = stage("prune", lambda: prune(cfg))
    path = Path(cfg.workdir) / "retrain" / f"{artifact.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(report), indent=2))
    return report


def prune(cfg: Config) -> list[str]:
    """Delete model versions, then retrain snapshots, beyond the newest ``retrain.keep`` of each.

    The served version and every snapshot a remaining version was trained on are always kept; a
    ``keep`` of 0 keeps everything. Returns the deleted paths.
    """
    keep = cfg.retrain.keep
    if keep <= 0:
        return []
    out_dir = Path(cfg.train.out_dir)
    served = _served(out_dir)
    versions = sorted((p for p in out_dir.iterdir()  # not the link, nor a training run's .tmp-<version>
                       if (p / "meta.json").is_file() and not p.is_symlink() and not p.name.startswith(".")),
                      key=lambda p: p.name, reverse=True)
    doomed = [p for p in versions[keep:] if served is None or p.resolve() != served.resolve()]
    kept_snapshots = set()
    for p in versions:
        if p not in doomed:
            snap = json.loads((p / "meta.json").read_text()).get("snapshot")
            if snap:
                kept_snapshots.add(Path(snap).resolve())
    snap_dir = Path(cfg.export.out_dir)
    prefix = f"{cfg.retrain.snapshot_name}-"
    snapshots = sorted((p for p in snap_dir.glob(f"{prefix}*") if p.is_dir() and not p.is_symlink()),
                       key=lambda p: p.name, reverse=True) if snap_dir.is_dir() else []
    doomed += [p for p in snapshots[keep:] if p.resolve() not in kept_snapshots]
    for p in doomed:
        shutil.rmtree(p)
        logger.info("pruned %s", p)
    return [str(p) for p in doomed]


def _check_metric(cfg: Config) -> str:
    metric = cfg.retrain.metric.lower()
    name, _, k = metric.partition("@")
    known = ("recall", "ndcg", "precision", "hit", "mrr")
    if name not in known or not k.isdigit() or int(k) not in set(cfg.train.ks) | {20}:
        raise ConfigError(f"retrain.metric {cfg.retrain.metric!r} is not one training reports: use "
                          f"<{'|'.join(known)}>@k with k in train.ks {sorted(set(cfg.train.ks) | {20})}")
    return metric


def _gate(new: float, served: float | None, max_drop: float, metric: str) -> tuple[bool, str]:
    """Whether to publish, and why."""
    if served is None:
        return True, "published: no served model to compare with"
    floor = served * (1 - max_drop)
    if new >= floor:
        return True, f"published: {new:.4f} >= {floor:.4f} (served {served:.4f} less {max_drop:.0%})"
    return False, (f"kept the served model: {metric} {new:.4f} < {floor:.4f} (served {served:.4f} less "
                   f"{max_drop:.0%}); the new version stays on disk unpublished")


def _served(out_dir: Path) -> Path | None:
    link = out_dir / "current"
    return link.resolve() if (link / "meta.json").is_file() else None


def _test_score(artifact: Path, metric: str) -> float | None:
    try:
        value = json.loads((artifact / "metrics.json").read_text()).get("test", {}).get(metric)
    except (OSError, ValueError):
        return None
    return float(value) if value is not None else None


def _write_back(graph: Graph, model: Path, k: int) -> dict[str, int]:
    from serving.recommender import Recommender
    from serving.writeback import write_back

    return write_back(graph, Recommender.load(model), k)


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (the OS drops it if the process dies)."""
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise RetrainBusyError(f"another retrain is running on {path.parent} (pid {f.read().strip() or '?'}); "
                                   f"nothing was changed") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
