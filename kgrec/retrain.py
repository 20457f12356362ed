"""The periodic retraining job: export -> encode -> train -> quality gate -> publish -> write-back -> prune.

``kgrec retrain`` runs it (from cron or a scheduler, after the day's ``kgrec ingest --incremental``
loads; ``scripts/retrain.sh`` chains the two). Each run:

1. exports a fresh snapshot while holding the graph's ingest lock, so it never sees half a load;
2. encodes its texts (cached: only new texts cost anything) when the model reads text, or the
   served model answers free-text search (its artifact keeps item text vectors), so it still will;
3. trains a new version without publishing it;
4. compares its test ``retrain.metric`` with the served model's (``serving.model_dir`` when set,
   else ``current``): it is published (``current`` is repointed atomically, and running
   ``kgrec serve`` processes switch to it) unless it falls more than ``retrain.max_drop`` below,
   or the served model has no such figure to compare with (``force`` publishes anyway). When at
   least ``retrain.min_gate_users`` users have test events the served model never saw, both
   models are measured on those same events (:mod:`kgrec.gate`), which catches a worse model;
   otherwise each figure comes from its own snapshot's test split, which catches broken runs and
   bad data, not small regressions;
5. writes embeddings, the vector index and ``RECOMMENDED`` lists back to Neo4j once published;
6. deletes its own older versions (those with a ``retrain.json``) beyond the newest
   ``retrain.keep`` published ones and the latest rejected one, with their snapshots; never the
   served version, ``current``, nor anything ``kgrec train`` or another model directory made.

Only one retrain runs at a time per model directory (an OS file lock, released if the process
dies). A run that fails or is killed at any step leaves the served model as it was; a failed run
removes the snapshot it exported. The report is printed, saved in the version as
``retrain.json`` and as ``<workdir>/retrain/<version>.json``.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from kg.connection import Graph
from kg.export import check_snapshot_name, discard_snapshot, export_locked, snapshots_named

from .config import TEXT_MODELS, Config, ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from .gate import HeadToHead

logger = logging.getLogger(__name__)


class RetrainBusyError(RuntimeError):
    """Another retrain of the same model directory is running."""


REPORT_FILE = "retrain.json"  # in every version a retrain made: what prune may delete
MADE_BY_RETRAIN = {"made_by": "kgrec retrain"}  # in meta.json from birth: a run killed before its report


@dataclass
class RetrainReport:
    """What one retrain did; ``published`` is False when the quality gate kept the served model."""

    snapshot: str
    version: str
    model: str
    published: bool
    decision: str  # the gate's reason, for people; ``gate`` is its outcome, for prune
    metric: str
    new_score: float | None
    served_version: str | None
    served_model: str | None
    served_score: float | None  # new_score and served_score: each model's own test split
    # "head to head" (both models on the same newest events, kgrec.gate) or "own test splits"
    compared_on: str = "own test splits"
    head_to_head: dict[str, float] | None = None  # {new, served, users, events} when measured
    writeback: dict[str, int] | None = None
    writeback_error: str | None = None  # published, but Neo4j not (fully) updated: `kgrec writeback` retries
    writeback_skipped: str | None = None  # published, but another model is pinned as served: not written back
    pruned: list[str] = field(default_factory=list)
    prune_error: str | None = None  # old versions may be left: the next retrain tries again
    timings: dict[str, float] = field(default_factory=dict)
    gate: str = "undecided"  # "publish" or "reject" once the quality gate decided (prune reads it)


def retrain(graph: Graph, cfg: Config, say: Callable[[str], None] = logger.info,
            force: bool = False) -> RetrainReport:
    """Run the retraining job once (module docstring); the stage entry point of ``kgrec retrain``.

    Args:
        graph: connected graph.
        cfg: the configuration (``retrain``, ``export``, ``encoder``, ``train``, ``serving``).
        say: where progress lines go.
        force: publish whatever the gate says (a model whose score is not finite never is).

    Raises:
        RetrainBusyError: another retrain holds this model directory.
        ConfigError: ``retrain.metric`` is not a metric training reports, or the snapshot has no
            test split to gate on.
        kg.lock.LockedError: an ingest held the graph for longer than ``ingest.lock_wait_s``.
        kg.lock.LockLostError: the lock was lost during the export (its snapshot is removed).
    """
    from gnn.artifact import publish
    from gnn.train import check_train_config

    from .pipeline import ensure_text_embeddings, model_dir_lock, train_model

    check_train_config(cfg.train)  # before the export
    metric = _check_metric(cfg)
    _check_served(cfg)
    out_dir = Path(cfg.train.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def stage(name: str, fn: Callable[[], Any]) -> Any:
        t = time.perf_counter()
        result = fn()
        timings[name] = round(time.perf_counter() - t, 2)
        return result

    with model_dir_lock(out_dir, _busy(out_dir), "retrain"):
        snapshot = stage("export", lambda: export_locked(graph, cfg.export, cfg.retrain.snapshot_name,
                                                         cfg.ingest.lock_wait_s))  # a snapshot of whole loads only
        try:
            _record_export(out_dir, snapshot)  # first: the sweep removes only snapshots it names
            say(f"exported {snapshot}")
            tests = json.loads((snapshot / "meta.json").read_text())["interactions"].get("test", 0)
            if not tests:
                raise ConfigError(f"{snapshot} has no test interactions for the quality gate: use an "
                                  f"[export] split that holds some out (ratio, loo, temporal)")
            serving_now = _served(cfg)
            if cfg.train.model in TEXT_MODELS or (serving_now is not None and (serving_now / "item_text.npy").is_file()):
                stage("encode", lambda: ensure_text_embeddings(snapshot, cfg))  # cached; search keeps working
            artifact = stage("train", lambda: train_model(snapshot, cfg, publish=False,
                                                          extra_meta=MADE_BY_RETRAIN))
        except BaseException:  # nothing was trained on it: the snapshot goes, and the served model stays
            discard_snapshot(snapshot, cfg.retrain.snapshot_name)
            raise
        report = RetrainReport(snapshot=str(snapshot), version=artifact.name, model=cfg.train.model, published=False,
                               decision="stopped before the quality gate decided", metric=metric, new_score=None,
                               served_version=None, served_model=None, served_score=None, timings=timings)
        log = _claim_log(Path(cfg.workdir) / "retrain", artifact.name)
        _save(report, artifact, log)  # before anything else can fail: the version is marked as retrain's (prunable)
        new_score = _test_score(artifact, metric)
        served = _served(cfg)
        served_score = _test_score(served, metric) if served is not None else None
        duel = stage("gate", lambda: _head_to_head(served, artifact, snapshot, metric)) if served is not None else None
        compared_on = "own test splits"
        if _picked_on_test(artifact):
            compared_on += " (the new model's weights were picked on its test split: give the snapshot a validation split)"
        if duel is not None and new_score is not None and duel.users >= cfg.retrain.min_gate_users:
            compared_on = f"head to head on {duel.events} events of {duel.users} users the served model never saw"
            published, decision = _gate(duel.new, served, duel.served, cfg.retrain.max_drop, metric, force)
        else:
            if duel is not None and duel.users < cfg.retrain.min_gate_users:  # figures kept, not used
                compared_on += (f" (the head to head had {duel.users} users, below [retrain] min_gate_users "
                                f"{cfg.retrain.min_gate_users})")
            published, decision = _gate(new_score, served, served_score, cfg.retrain.max_drop, metric, force,
                                        incomparable=_split_mismatch(served, artifact))
        served_model = _meta(served).get("model") if served is not None else None
        changed = (f" (the served model is {served_model}, this one {cfg.train.model}: [train] model changed?)"
                   if served_model not in (None, cfg.train.model) else "")
        say(f"trained {artifact.name}: test {metric} {new_score}; compared on {compared_on}; {decision}{changed}")
        report = replace(report, decision=decision, gate="publish" if published else "reject",
                         new_score=new_score, served_score=served_score,
                         served_version=served.name if served is not None else None, served_model=served_model,
                         compared_on=compared_on, head_to_head=asdict(duel) if duel is not None else None)
        _save(report, artifact, log)  # published only once it is
        if published:
            stage("publish", lambda: publish(artifact, out_dir))
            report.published = True
            _save(report, artifact, log)
            pinned = Path(cfg.served_model()).resolve() != artifact.resolve()
            if pinned:  # Neo4j keeps the pinned model's vectors and lists: Browser shows what is served
                report.writeback_skipped = (f"serving.model_dir pins {cfg.served_model()}, which `kgrec serve` "
                                            f"keeps serving; Neo4j keeps its embeddings and lists")
                say(f"note: {report.writeback_skipped}")
            if cfg.retrain.writeback and not pinned:
                # saved first: a run killed mid-write-back leaves a report that says so, not a clean one
                report.writeback_error = (f"interrupted: `kgrec writeback --model {artifact} -k "
                                          f"{cfg.retrain.writeback_k}` finishes it")
                _save(report, artifact, log)
                try:
                    report.writeback = stage("writeback", lambda: _write_back(graph, artifact, cfg))
                    report.writeback_error = None
                except Exception as e:  # the model is published and serving: say so, and what to run
                    logger.exception("write-back of %s failed", artifact.name)
                    report.writeback_error = f"{type(e).__name__}: {e}"
                    say(f"published {artifact.name}, but the write-back to Neo4j failed ({report.writeback_error}); "
                        f"`kgrec writeback --model {artifact} -k {cfg.retrain.writeback_k}` retries it")
        try:
            report.pruned = stage("prune", lambda: prune(cfg))
        except OSError as e:  # the new model is decided (and maybe serving): a cleanup failure is a note
            logger.exception("pruning %s failed", out_dir)
            report.prune_error = f"{type(e).__name__}: {e}"
        _save(report, artifact, log)
    return report


def prune(cfg: Config) -> list[str]:
    """Delete the versions ``kgrec retrain`` made in ``train.out_dir`` beyond the newest
    ``retrain.keep`` published ones and the latest one the gate rejected, each with its
    ``retrain-*`` snapshot; a version whose run was killed before the gate decided goes too.

    The served model (``serving.model_dir``), ``current``'s target, a version a server on this
    machine is serving (``kgrec serve --model DIR``; :func:`gnn.artifact.in_use`), and versions
    without a ``retrain.json`` (from ``kgrec train``) are never deleted; a ``keep`` of 0 keeps
    every version. What killed runs left (:func:`_sweep_leftovers`) is swept either way.
    Returns the deleted paths.
    """
    from gnn.artifact import remove_unless_in_use

    keep = cfg.retrain.keep
    out_dir = Path(cfg.train.out_dir)
    if not out_dir.is_dir():
        return []
    if keep <= 0:
        return _logged(_sweep_leftovers(cfg))
    protected = _never_pruned(cfg)
    ours = sorted((p for p in out_dir.iterdir()  # not the link, nor a training run's .tmp-<version>
                   if (p / REPORT_FILE).is_file() and not p.is_symlink() and not p.name.startswith(".")),
                  key=_version_order, reverse=True)
    reports = {p: _report(p) for p in ours}
    ours = [p for p in ours if reports[p] is not None]  # an unreadable report: not deleted, logged
    # published: also a run killed between its publish and the report saying so (its decision does)
    published = [p for p in ours if reports[p].get("published") or _gate_outcome(reports[p]) == "publish"]
    rejected = [p for p in ours if p not in published and _gate_outcome(reports[p]) == "reject"]
    unfinished = [p for p in ours if p not in published and p not in rejected]  # killed before the gate decided
    doomed = [p for p in published[keep:] + rejected[1:] + unfinished if p.resolve() not in protected]
    snapshots = {p: _meta(p).get("snapshot") for p in doomed}
    deleted: list[str] = []
    for version in doomed:
        if remove_unless_in_use(version):
            deleted.append(str(version))
        else:
            logger.info("not pruning %s: a server is using it", version)
    kept_snapshots = _trained_snapshots(cfg)
    for snap in dict.fromkeys(snapshots[Path(v)] for v in deleted):
        if snap and Path(snap).resolve() not in kept_snapshots \
                and Path(snap).name.startswith(f"{cfg.retrain.snapshot_name}-") and Path(snap).is_dir():
            shutil.rmtree(snap)
            deleted.append(snap)
    return _logged(deleted + _sweep_leftovers(cfg))


def _logged(deleted: list[str]) -> list[str]:
    for path in deleted:
        logger.info("pruned %s", path)
    return deleted


def _gate_outcome(report: dict[str, Any]) -> str:
    """The gate's outcome a version's report records: ``publish``, ``reject`` or ``undecided``.
    Reports written before the ``gate`` field (2026-12-03) are read from their decision's wording."""
    if "gate" in report:
        return str(report["gate"])
    decision = str(report.get("decision") or "")
    return ("publish" if decision.startswith("published") else
            "reject" if decision.startswith("kept the served model") else "undecided")


def _never_pruned(cfg: Config) -> set[Path]:
    """``current``'s target and the served model (``serving.model_dir``), resolved."""
    out_dir = Path(cfg.train.out_dir)
    return {p.resolve() for p in (out_dir / "current", Path(cfg.served_model())) if p.exists()}


LEFTOVER_AGE_S = 86_400  # what a killed run left is swept once this old: a running one touches its files


def _sweep_leftovers(cfg: Config) -> list[str]:
    """What killed runs leave that no version names: training checkpoints of other data than the
    newest (each night's snapshot has its own, never resumed), ``.tmp-<version>`` directories,
    versions a retrain wrote but was killed before it reported on (a ``meta.json`` marked
    :data:`MADE_BY_RETRAIN`, no ``retrain.json``; never one served), a killed publish's new link,
    and ``<snapshot_name>-<time>`` snapshots that no version here nor the served model was trained
    on. Only things a day old, never a model's newest checkpoint (a rerun on the same data, or
    ``kgrec train`` after ``--max-time``, resumes it) nor one a run holds, nor the snapshot
    ``<name>-latest`` names."""
    from gnn.artifact import remove_unless_in_use
    from gnn.train import remove_checkpoint_dir
    from kg.durable import REMOVING_PREFIX

    out_dir, cutoff = Path(cfg.train.out_dir), time.time() - LEFTOVER_AGE_S
    served = _never_pruned(cfg)
    unreported = [p for p in out_dir.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")
                  and not (p / REPORT_FILE).exists() and p.stat().st_mtime < cutoff and p.resolve() not in served
                  and _meta(p).get("made_by") == MADE_BY_RETRAIN["made_by"]]
    swept = [str(p) for p in unreported if remove_unless_in_use(p)]
    newest: dict[str, Path] = {}  # per model (directories are <model>-<fingerprint>)
    for ckpt in sorted((p for p in (out_dir / ".checkpoints").glob("*") if p.is_dir()), key=lambda p: p.stat().st_mtime):
        newest[ckpt.name.split("-", 1)[0]] = ckpt
    stale_checkpoints = [p for p in (out_dir / ".checkpoints").glob("*") if p.is_dir() and p not in newest.values()
                         and p.stat().st_mtime < cutoff]  # a run resuming one touches nothing until it saves
    swept += [str(p) for p in stale_checkpoints if remove_checkpoint_dir(p)]
    stale = [p for p in out_dir.glob(".tmp-*") if p.is_dir() and p.stat().st_mtime < cutoff]
    stale += [p for p in out_dir.glob(f"{REMOVING_PREFIX}*") if p.is_dir()]  # a prune killed while it deleted
    snap_dir, name = Path(cfg.export.out_dir), cfg.retrain.snapshot_name
    kept = _trained_snapshots(cfg) | {(snap_dir / f"{name}-latest").resolve()}
    mine = _exported(out_dir)  # not another model directory's, sharing export.out_dir and the name
    stale += [p for p in snapshots_named(snap_dir, name) if p.resolve() not in kept and str(p.resolve()) in mine
              and p.stat().st_mtime < cutoff]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    for link in out_dir.glob(".*.tmp-*"):  # a publish killed between making its new link and moving it
        if link.is_symlink() and link.lstat().st_mtime < cutoff:
            link.unlink(missing_ok=True)
            swept.append(str(link))
    still = {s for s in mine if Path(s).exists()}
    if still != mine:  # the ledger lets go of what is gone
        _replace_text(out_dir / EXPORTED_FILE, "".join(f"{s}\n" for s in sorted(still)))
    return swept + [str(p) for p in stale if not p.exists()]


def _trained_snapshots(cfg: Config) -> set[Path]:
    """The snapshots (resolved) that the versions in ``train.out_dir`` and the served model were trained on."""
    versions = [*Path(cfg.train.out_dir).iterdir(), Path(cfg.served_model())]
    return {Path(s).resolve() for s in (_meta(v).get("snapshot") for v in versions) if s}


EXPORTED_FILE = ".retrain-snapshots"  # in train.out_dir: the snapshots this directory's retrains exported


def _record_export(out_dir: Path, snapshot: Path) -> None:
    """Note that a retrain of ``out_dir`` exported ``snapshot`` (the leftover sweep removes only those)."""
    with open(out_dir / EXPORTED_FILE, "a") as fh:
        fh.write(f"{snapshot.resolve()}\n")


def _exported(out_dir: Path) -> set[str]:
    path = out_dir / EXPORTED_FILE
    return set(path.read_text().splitlines()) - {""} if path.is_file() else set()


def _replace_text(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all (a temp file renamed over it; one that fails, on a full
    disk say, is removed)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _version_order(version: Path) -> tuple[str, int]:
    """Sort key of ``<time>-<model>[-n]`` version names (gnn.train._claim_version): oldest first."""
    base, _, n = version.name.rpartition("-")
    return (base, int(n)) if n.isdigit() else (version.name, 1)


def _check_metric(cfg: Config) -> str:
    """The gate's metric as training names it (``ndcg@20``), after checking the ``[retrain]`` settings."""
    from gnn.train import evaluated_ks

    if not 0 <= cfg.retrain.max_drop <= 1:  # NaN too
        raise ConfigError(f"retrain.max_drop must be a fraction from 0 to 1, got {cfg.retrain.max_drop}")
    if cfg.retrain.writeback and cfg.retrain.writeback_k < 1:
        raise ConfigError(f"retrain.writeback_k must be >= 1, got {cfg.retrain.writeback_k}")
    if cfg.retrain.keep < 0 or cfg.retrain.min_gate_users < 0:
        raise ConfigError(f"retrain.keep and retrain.min_gate_users must be >= 0, got {cfg.retrain.keep} and "
                          f"{cfg.retrain.min_gate_users}")
    try:
        check_snapshot_name(cfg.retrain.snapshot_name)
    except ValueError as e:
        raise ConfigError(f"retrain.snapshot_name: {e}") from None
    metric = cfg.retrain.metric.lower()
    name, _, k = metric.partition("@")
    known, ks = ("recall", "ndcg", "precision", "hit", "mrr"), evaluated_ks(cfg.train)
    if name not in known or not k.isdigit() or int(k) not in ks:
        raise ConfigError(f"retrain.metric {cfg.retrain.metric!r} is not one training reports: use "
                          f"<{'|'.join(known)}>@k with k in train.ks {ks}")
    return f"{name}@{int(k)}"


def _gate(new: float | None, served: Path | None, served_score: float | None, max_drop: float, metric: str,
          force: bool, incomparable: str | None = None) -> tuple[bool, str]:
    """Whether to publish, and why; ``incomparable`` says why the two test figures cannot be compared."""
    if new is None:
        return False, f"kept the served model: the new version has no finite test {metric}"
    if force:
        return True, "published: --force"
    if served is None:
        return True, "published: no served model to compare with"
    if incomparable:
        return False, f"kept the served model: {incomparable}; --force publishes the new version"
    if served_score is None:
        return False, (f"kept the served model: {served.name} has no test {metric} to compare with; "
                       f"--force publishes the new version")
    floor = served_score * (1 - max_drop)
    if new >= floor - 1e-12 * abs(floor):  # 0.1 less 10 % is 0.09000000000000001: 0.09 is on the floor
        return True, f"published: {new:.4f} >= {floor:.4f} (served {served_score:.4f} less {max_drop:.0%})"
    return False, (f"kept the served model: {metric} {new:.4f} < {floor:.4f} (served {served_score:.4f} less "
                   f"{max_drop:.0%}); the new version stays on disk unpublished")


def _split_mismatch(served: Path | None, new: Path) -> str | None:
    """Why the two models' own test figures are not comparable (their snapshots were split by
    different schemes, a leave-one-out figure is not a ratio split's, or with other held-out
    ratios), or None. Artifacts that do not record their split are taken as comparable; so are two
    seeds (another draw, as new data gives)."""
    if served is None:
        return None
    a, b = _meta(served).get("split"), _meta(new).get("split")
    if a and b and a != b:
        return (f"{served.name}'s test figure comes from a {a!r} split and the new version's from a {b!r} "
                f"split ([export] split changed?)")
    sa, sb = _meta(served).get("split_settings") or {}, _meta(new).get("split_settings") or {}
    changed = [k for k in ("valid_ratio", "test_ratio") if k in sa and k in sb and sa[k] != sb[k]]
    if changed:
        return (f"{served.name}'s test figure comes from a split with "
                f"{', '.join(f'{k} {sa[k]}' for k in changed)} and the new version's from one with "
                f"{', '.join(f'{k} {sb[k]}' for k in changed)} ([export] changed?)")
    return None


def _check_served(cfg: Config) -> None:
    """A ``serving.model_dir`` that names no model artifact is a mistake, not "nothing served": the
    gate would publish anything and prune would not spare the pinned model. (Naming the
    ``current`` link that the first publish makes is not a pin.)

    Raises:
        ConfigError: ``serving.model_dir`` is set to another path and holds no ``meta.json``.
    """
    pinned = cfg.serving.model_dir
    # compared as written, less `.` and `..` (resolving would follow `current` to the version it names)
    follows_current = pinned is not None and (os.path.normpath(Path(pinned).absolute())
                                              == os.path.normpath((Path(cfg.train.out_dir) / "current").absolute()))
    if pinned is not None and not follows_current and not (Path(pinned) / "meta.json").is_file():
        where = "" if Path(pinned).is_absolute() else f" (relative to {Path.cwd()}: give an absolute path)"
        raise ConfigError(f"serving.model_dir {str(pinned)!r} is not a model artifact{where}; nothing was "
                          f"retrained")


def _served(cfg: Config) -> Path | None:
    path = Path(cfg.served_model())
    return path.resolve() if (path / "meta.json").is_file() else None


def _json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when it cannot be read or holds something else."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _meta(version: Path) -> dict[str, Any]:
    return _json_object(version / "meta.json") or {}


def _head_to_head(served: Path, artifact: Path, snapshot: Path, metric: str) -> HeadToHead | None:
    """Both models on the newest events (kgrec.gate); None, logged, when that cannot be measured
    (an artifact that does not load fails the gate's other path instead)."""
    from .gate import head_to_head

    try:
        return head_to_head(served, artifact, snapshot, metric)
    except Exception:
        logger.exception("could not compare %s and %s head to head; comparing their own test figures",
                         served.name, artifact.name)
        return None


def _picked_on_test(artifact: Path) -> bool:
    from .gate import picked_on_test

    try:
        return picked_on_test(artifact)
    except (OSError, ValueError):
        return False


def _test_score(artifact: Path, metric: str) -> float | None:
    """The artifact's finite test ``metric``, None when it has none."""
    test = (_json_object(artifact / "metrics.json") or {}).get("test")
    value = test.get(metric) if isinstance(test, dict) else None
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _report(version: Path) -> dict[str, Any] | None:
    """A version's ``retrain.json``; None, logged, when it cannot be read."""
    report = _json_object(version / REPORT_FILE)
    if report is None:
        logger.warning("cannot read %s (not a JSON object): the version is left alone", version / REPORT_FILE)
    return report


def _claim_log(folder: Path, version: str) -> Path:
    """``folder/<version>.json``, created empty here, or ``<version>-<n>.json`` when that name is taken:
    another model directory sharing the workdir made a version of the same name in the same second."""
    folder.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        path = folder / (f"{version}.json" if n == 1 else f"{version}-{n}.json")
        try:
            path.open("x").close()
            return path
        except FileExistsError:
            n += 1


def _save(report: RetrainReport, artifact: Path, log: Path) -> None:
    """Write the report into the version and as ``log`` (under ``<workdir>/retrain/``), each atomically.
    Once the version is published, a failure to write (a full disk) is logged, not raised: the new
    model serves, and the write-back and prune still run."""
    text = json.dumps(asdict(report), indent=2)
    try:
        for target in (artifact / REPORT_FILE, log):
            _replace_text(target, text)
    except OSError:
        if not report.published:
            raise
        logger.exception("could not save the report of %s, which is published and serving", artifact.name)


def _write_back(graph: Graph, model: Path, cfg: Config) -> dict[str, int]:
    from serving.recommender import Recommender
    from serving.writeback import write_back

    return write_back(graph, Recommender.load(model, cfg.serving), cfg.retrain.writeback_k)


def _busy(out_dir: Path) -> Callable[[str], None]:
    """What a retrain does when another process holds ``out_dir``'s lock: wait for a ``kgrec train``
    that publishes (a moment), stop, changing nothing, for another retrain."""
    from .pipeline import PUBLISH

    def refuse(holder: str) -> None:
        pid, _, role = holder.partition(" ")
        if role == PUBLISH:
            logger.info("a kgrec train (pid %s) is publishing into %s: waiting for it", pid, out_dir)
            return
        raise RetrainBusyError(f"another retrain is running on {out_dir} (pid {pid}); nothing was changed")
    return refuse
