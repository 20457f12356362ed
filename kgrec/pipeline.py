"""The main job end to end, one stage after another, each handing the next a plain artifact.

synthetic rows -> kg.ingest -> Neo4j -> kg.export snapshot -> encoders -> gnn.train artifact
-> serving.Recommender (+ write-back to Neo4j for Cypher users).
"""
from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import shutil
import time
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Mapping

from kg.connection import Graph
from kg.export import export_snapshot
from kg.ingest import graph_counts, ingest
from kg.lock import INGEST_LOCK, graph_lock
from kg.schema import wipe
from kg.synthetic import TOPICS, SyntheticSpec, community_of_item, community_of_user, dataset_name, generate

from .config import TEXT_MODELS, Config, ConfigError

logger = logging.getLogger(__name__)


@dataclass
class DemoResult:
    """What the demo produced."""

    snapshot: Path
    model: Path
    metrics: dict[str, float]
    timings: dict[str, float] = field(default_factory=dict)


def ensure_text_embeddings(snapshot: Path, cfg: Config) -> Path:
    """Encode the snapshot's texts (cached), returning the ``text_embeddings.npz`` path."""
    from encoders.encode import encode_snapshot

    return encode_snapshot(snapshot, cfg.encoder)


def train_model(snapshot: Path, cfg: Config, publish: bool = True,
                extra_meta: Mapping[str, Any] | None = None) -> Path:
    """Train on a snapshot and publish the artifact as ``<out_dir>/current`` (unless ``publish`` is
    off: kgrec.retrain publishes only what passes its quality gate).

    An embedding model whose catalogue reaches ``[serving] ann_min_items`` gets its FAISS recall
    index built into the artifact before it is published; a catalogue with ``search_ann_min_items``
    items with text, the index of their text vectors.

    Item text vectors from ``kgrec encode`` (``text_embeddings.npz`` in the snapshot) are passed to
    the text-aware models (``kgfused`` gets the query and entity vectors too); ``fused`` and
    the ``text`` fusion need them and say so when they are missing. ``lightgcn`` uses them (and
    the attribute entities' vectors) only to embed the items without training events. Every model's artifact keeps
    the item vectors, when there are current ones, for free-text search (``serving.search``).
    ``extra_meta`` adds entries to the artifact's ``meta.json``.

    Raises:
        EncoderError: the vectors were encoded with another encoder setting, or from other texts,
            than ``cfg.encoder`` and the snapshot give now (``kgrec encode`` again).
    """
    import numpy as np

    from encoders import EncoderError, stale_embeddings_reason
    from encoders.encode import embeddings_read_lock, query_encoder_setting
    from encoders.texts import node_texts
    from gnn.artifact import TextIndex
    from gnn.artifact import publish as publish_artifact
    from gnn.train import check_train_config, train
    from kg.snapshot import Snapshot

    check_train_config(cfg.train)  # before the snapshot and its vectors are read

    # through a `-latest` link that an export re-points while this trains: the data, the vectors and
    # the artifact's record all come from the snapshot it named at the start
    snapshot = Path(snapshot).resolve()
    text, text_index = None, None
    snap = Snapshot.load(snapshot)
    vectors = snapshot / "text_embeddings.npz"
    arrays: dict = {}
    with embeddings_read_lock(snapshot):  # check, vectors and query setting of one `kgrec encode`
        try:
            reason = stale_embeddings_reason(snapshot, cfg.encoder, snap) if vectors.is_file() else "not encoded"
        except (OSError, ValueError, EncoderError) as e:  # unreadable meta, a bad template or model: fatal only
            # where training reads text
            if cfg.train.model in TEXT_MODELS:
                raise
            reason = f"cannot check it: {e}"
        if reason is None:
            try:  # a file cut short (a full disk, a power loss) is stale, not a crash
                with np.load(vectors) as z:
                    arrays = {k: z[k] for k in z.files}
                arrays["item"]
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
                reason = f"unreadable: {e}"
        setting = query_encoder_setting(snapshot, cfg.encoder) if reason is None else None
    if reason is None:
        searchable = arrays["item"].copy()
        item_texts = node_texts(snap, cfg.encoder)["item"]
        if len(item_texts) == len(searchable):
            searchable[[not t for t in item_texts]] = 0  # no text: no match
        text_index = TextIndex(searchable, setting)
        if cfg.train.model in TEXT_MODELS:  # kgfused also fuses query and entity text (issue #6)
            text = arrays if cfg.train.model == "kgfused" else arrays["item"]
    elif cfg.train.model in TEXT_MODELS and vectors.is_file():
        raise EncoderError(f"{vectors} is stale ({reason}): run `kgrec encode {snapshot}` again")
    elif cfg.train.model == "fused" or (cfg.train.model == "kgfused" and cfg.train.fusion == "text"):
        raise FileNotFoundError(f"model {cfg.train.model!r} needs item text vectors: run `kgrec encode {snapshot}` first")
    elif vectors.is_file():
        logger.warning("%s is stale (%s): the model will answer no free-text search until `kgrec encode %s`",
                       vectors, reason, snapshot)
    elif cfg.train.model == "kgfused":  # it runs on ids and the graph alone, but its text part is off
        logger.warning("%s was not encoded: kgfused trains without text (ids and the knowledge graph only) "
                       "and the model will answer no free-text search; `kgrec encode %s` first to fuse text",
                       snapshot, snapshot)
    else:
        logger.info("%s was not encoded: the model will answer no free-text search", snapshot)
    side = None
    if cfg.train.model == "lightgcn" and cfg.train.map_untrained_items and reason is None:
        # it embeds items without training events from these
        from gnn.coldstart import item_side_features_of, snapshot_item_entity_edges

        edges = snapshot_item_entity_edges(snap)
        side = lambda rows: item_side_features_of(rows, searchable, arrays.get("entity"), edges)  # noqa: E731
    artifact = train(snap, cfg.train, Path(cfg.train.out_dir), text,
                     snapshot_path=snapshot, publish_current=False, text_index=text_index,
                     extra_meta=extra_meta, side_features=side)
    try:
        _add_recall_index(artifact, cfg)
    except Exception:  # it only saves serving the build: the model is published without it
        logger.exception("could not build the recall index into %s; serving will build it when it loads", artifact)
    except BaseException:  # stopped (SIGTERM, Ctrl-C): a version no one will publish is not left behind
        shutil.rmtree(artifact, ignore_errors=True)
        raise
    if publish:  # not between a running retrain's quality gate and its publish: it gated against `current`
        with model_dir_lock(Path(cfg.train.out_dir), _wait_for_retrain, PUBLISH):
            publish_artifact(artifact, cfg.train.out_dir)
    return artifact


PUBLISH = "publish"  # the model directory lock's holder while train_model publishes (a retrain's is "retrain")


def _wait_for_retrain(holder: str) -> None:
    logger.warning("another process (%s) holds this model directory: publishing once it has finished", holder)


@contextmanager
def model_dir_lock(out_dir: Path, on_busy: Callable[[str], None], role: str) -> Iterator[None]:
    """Hold ``out_dir/.retrain.lock`` (the OS drops it if the process dies), with this pid and
    ``role`` in it: a retrain holds it from its export to its write-back, :func:`train_model` while
    it publishes (:data:`PUBLISH`). When another process holds it, ``on_busy`` gets that one's
    ``"<pid> <role>"`` and may raise; if it returns, this waits for the lock, and asks ``on_busy``
    again about each other process that takes it first (two retrains waiting for one publish: the
    second is refused once the first has it, rather than running after it)."""
    with open(out_dir / ".retrain.lock", "a+") as f:
        asked = None
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder_line(f)
                if holder is None:  # it came free meanwhile, and is ours
                    break
                if holder != asked:
                    on_busy(holder)
                    asked = holder
                time.sleep(0.1)
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()} {role}")
        f.flush()
        try:
            yield
        finally:  # no line of a finished process is left for the next one's waiters to read
            f.seek(0)
            f.truncate()
            f.flush()
            fcntl.flock(f, fcntl.LOCK_UN)


def _holder_line(f: IO[str], wait_s: float = 1.0) -> str | None:
    """The lock holder's ``"<pid> <role>"``, which it writes just after taking the lock and clears
    before letting go: while the file is empty it is read again for up to ``wait_s`` seconds (then
    ``"?"``), and the lock tried again, which is taken (None) if the holder has let go meanwhile."""
    deadline = time.monotonic() + wait_s
    while True:
        f.seek(0)
        line = f.read().strip()
        if line:
            return line
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return None
        except BlockingIOError:
            pass
        if time.monotonic() >= deadline:
            return "?"
        time.sleep(0.02)


def _add_recall_index(artifact: Path, cfg: Config) -> None:
    """Keep the FAISS recall indexes in a model artifact when its catalogue is large enough for
    serving to recall through them, so no server builds them: the item embeddings' (an embedding
    model, ``[serving] ann_min_items``) and the item text vectors' (``search_ann_min_items``)."""
    import numpy as np

    from serving.recall import save_item_index, uses_index
    from serving.search import save_text_index

    num_items = json.loads((artifact / "meta.json").read_text()).get("num_items", 0)
    if not (artifact / "filter.npz").is_file() and uses_index(num_items, cfg.serving.ann_min_items):
        with np.load(artifact / "embeddings.npz") as z:
            items = z["item"]
        t = time.perf_counter()
        save_item_index(artifact, items, cfg.serving.ann_min_items, cfg.serving.ann_nprobe)
        logger.info("built the recall index of %d items into %s in %.0f s", len(items), artifact,
                    time.perf_counter() - t)
    if (artifact / "item_text.npy").is_file() and uses_index(num_items, cfg.serving.search_ann_min_items):
        t = time.perf_counter()
        if save_text_index(artifact, np.load(artifact / "item_text.npy"), cfg.serving.search_ann_min_items,
                           cfg.serving.search_nprobe):
            logger.info("built the text search index into %s in %.0f s", artifact, time.perf_counter() - t)


def claim_demo_graph(graph: Graph, spec: SyntheticSpec, reset: bool = False) -> int:
    """Let the demo write only into an empty database or one holding this very demo dataset.

    The demo MERGEs generated users ``u0…`` and items ``i0…``: into another dataset, or another
    demo's (other seed or sizes), they would mix, and the metrics would describe the mixture. A
    ``(:KgrecDemo)`` marker node records the spec the demo wrote, how many nodes its load left and
    how many kgrec writes the graph had then, so data loaded or removed since (an ingest, a
    ``forget-user``, even one whose node count another write evened out) is noticed too.

    Args:
        graph: the target database.
        spec: the dataset the demo is about to generate.
        reset: delete everything in the database first (``kgrec demo --reset``).

    Returns:
        Nodes deleted by ``reset`` (0 without it).

    Raises:
        ConfigError: the database holds other data and ``reset`` is off; nothing was written.
        kg.lock.LockedError: ``reset`` while an ingest holds the database; nothing was deleted.
    """
    want = json.dumps(dataclasses.asdict(spec), sort_keys=True)
    deleted = 0
    if reset:
        with graph_lock(graph, INGEST_LOCK):  # not under a running ingest (it would write into the wipe)
            deleted = wipe(graph, keep_locks=True)
    state = graph.query("demo/state")[0]
    if state["nodes"] and state["spec"] != want:
        if state["spec"] is None:
            what, other = "data that no kgrec demo wrote", ""
        else:
            what, other = f"another demo dataset ({state['spec']})", " rerun with that dataset's --users/--items/--seed,"
        raise ConfigError(
            f"the database at {graph.where} holds {state['nodes']} nodes of {what}; the demo would mix its "
            f"synthetic users and items into them. Nothing was written. Run `kgrec demo --reset` to delete "
            f"everything there first,{other} or point NEO4J_URI at an empty database.")
    changed = None
    if state["nodes"] and state["loaded"] is not None and state["nodes"] != state["loaded"]:
        changed = f"holds {state['nodes']} nodes where this demo's load left {state['loaded']}"
    elif state["nodes"] and state["loaded_writes"] is not None and state["writes"] != state["loaded_writes"]:
        changed = f"has had {(state['writes'] or 0) - state['loaded_writes']} kgrec write(s) since this demo's load"
    if changed:  # a forget-user whose node count another write evened out is caught by the writes
        raise ConfigError(
            f"the database at {graph.where} {changed}: data was loaded or removed since (`kgrec ingest`, "
            f"`forget-user`), and the demo would mix its dataset into it (or bring removed users back). Nothing "
            f"was written. Run `kgrec demo --reset` to delete everything there first, or point NEO4J_URI at an "
            f"empty database.")
    graph.write("demo/mark", spec=want)
    return deleted


def run_demo(graph: Graph, cfg: Config, spec: SyntheticSpec | None = None,
             say: Callable[[str], None] = print, reset: bool = False) -> DemoResult:
    """Generate, ingest, export, train, evaluate, recommend and write back.

    Args:
        graph: connected graph (the managed server, or NEO4J_URI's).
        cfg: the resolved configuration.
        spec: synthetic dataset sizes.
        say: where progress lines go (the CLI passes print).
        reset: delete everything in the database first (see :func:`claim_demo_graph`).

    Raises:
        ConfigError: the database holds data other than this demo dataset, and ``reset`` is off.
    """
    from gnn.train import check_train_config
    from serving.recommender import Recommender
    from serving.writeback import write_back

    check_train_config(cfg.train)  # before anything is loaded
    spec = spec or SyntheticSpec()
    timings: dict[str, float] = {}
    deleted = claim_demo_graph(graph, spec, reset)
    if deleted:
        say(f"[0/6] --reset: deleted {deleted} nodes (and their relationships) from {graph.where}")

    def stage(name: str, fn, *args):
        t = time.perf_counter()
        out = fn(*args)
        timings[name] = round(time.perf_counter() - t, 2)
        return out

    from kg.governance import govern_records

    loaded = stage("generate", lambda: govern_records(generate(spec), cfg.ingest, "synthetic"))
    records = loaded.records
    say(f"[1/6] generated synthetic catalogue: {records.counts()}; "
        f"governance: {loaded.totals()} (reconciles: {loaded.reconciles()})")
    report = stage("ingest", lambda: ingest(graph, records, cfg.ingest,  # claim_demo_graph checked the graph
                                            dataset=dataset_name(spec), merge=True))
    graph.write("demo/loaded")  # what a later demo compares the database with
    say(f"[2/6] ingested into Neo4j ({timings['ingest']}s): the graph holds {graph_counts(graph)}; "
        f"this load created {report['nodes_created']} nodes, {report['relationships_created']} relationships")
    snapshot = stage("export", export_snapshot, graph, cfg.export, "demo")
    say(f"[3/6] exported snapshot {snapshot} ({timings['export']}s)")
    emb = stage("encode", ensure_text_embeddings, snapshot, cfg)
    say(f"[4/6] encoded item/query/attribute texts with {cfg.encoder.model} -> {emb.name} ({timings['encode']}s)")
    model = stage("train", train_model, snapshot, cfg)
    rec = Recommender.load(Path(cfg.train.out_dir) / "current", cfg.serving)
    run = json.loads((model / "metrics.json").read_text())
    metrics = run.get("test", {})
    shown = {k: round(v, 4) for k, v in metrics.items() if k.split("@")[0] in ("recall", "ndcg") and k.endswith("@20")}
    epochs = rec.meta.get("epochs_run")
    ran = f"{epochs} epochs, best {run.get('best_epoch')}" if epochs else "closed form"  # a graph filter: no epochs
    say(f"[5/6] trained {cfg.train.model} on {rec.meta.get('device', 'cpu')} ({timings['train']}s, {ran}): "
        f"test {shown}")
    say(f"      artifact: {model}")
    for user in ("u0", "u1"):
        if user not in rec.user_index:
            continue
        comm = community_of_user(user, spec)
        items = rec.recommend(user, k=5)
        hits = sum(community_of_item(r.item_id, spec) == comm for r in items)
        say(f"      {user} (community {comm}): {hits}/5 from their community")
        for r in items:
            say(f"        {r.item_id:>6}  {r.score:7.3f}  {r.title}")
    if rec.text_search is not None and "u1" in rec.user_index:
        query = " ".join(TOPICS[next(iter(TOPICS))][:2])  # words of community 0, searched by u1 of community 1
        say(f"      search {query!r} for u1 (text match, ranked by the model):")
        for r in rec.search(query, k=3, user_id="u1"):
            say(f"        {r.item_id:>6}  community {community_of_item(r.item_id, spec)}  {r.title}")
    other = f"cat:{list(TOPICS)[1]}" if spec.num_communities > 1 else None
    if other in rec.attribute_index and "u0" in rec.user_index:  # graph recall, then the model's ranking
        say(f"      u0 within {other} (items with that category, ranked by the model):")
        for r in rec.recommend("u0", k=3, within=[other]):
            say(f"        {r.item_id:>6}  {r.score:7.3f}  {r.title}")
    wb = stage("writeback", write_back, graph, rec, 10)
    say(f"[6/6] wrote embeddings, vector index and {wb['recommendations']} RECOMMENDED edges back to Neo4j")
    return DemoResult(snapshot, model, metrics, timings)
