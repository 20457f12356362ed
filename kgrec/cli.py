"""The ``kgrec`` command line. Errors from kgrec print one actionable line (exit 2), not a traceback."""
from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import sys
import threading
import time
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from kg.sources import DATASET_FORMATS, FORMATS, MAPPED_FORMATS, PACKAGED_FORMATS

from .config import MODELS, TEXT_MODELS, Config, ConfigError, TrainConfig, load_config

if TYPE_CHECKING:  # pragma: no cover
    from kg.connection import Graph
    from kg.governance import KnownIds
    from kg.synthetic import SyntheticSpec
    from serving.recommender import Recommender


# `kgrec demo`'s training settings for its small graph, used where neither a flag nor the config sets one
DEMO_TRAIN = {"model": "kgfused", "epochs": 40, "lr": 0.01, "batch_size": 1024}


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:  # argparse would name this function: "invalid _positive_int value"
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _non_negative(unit: str, finite: bool = False) -> Callable[[str], float]:
    """argparse type: a number of ``unit`` (seconds, days), >= 0 (and below infinity if ``finite``)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number of {unit} >= 0, got {text!r}") from None
        if not value >= 0:  # NaN too
            raise argparse.ArgumentTypeError(f"must be >= 0 {unit}, got {text}")
        if finite and value == float("inf"):
            raise argparse.ArgumentTypeError(f"must be a finite number of {unit}, got {text}")
        return value
    return parse


_seconds = _non_negative("seconds")  # --wait inf: wait as long as it takes
_days = _non_negative("days", finite=True)  # printed in a JSON report, which has no infinity


def _lock_wait(args: argparse.Namespace, cfg: Config) -> None:
    """``--wait`` overrides ``ingest.lock_wait_s``."""
    if args.lock_wait_s is not None:
        cfg.ingest.lock_wait_s = args.lock_wait_s


def _graph(cfg: Config, start: bool = False):
    from kg.connection import connect
    from kg.neo4j_server import ManagedNeo4j

    if start and cfg.neo4j.managed:
        status, started = ManagedNeo4j(cfg.neo4j).start()
        print(("started " if started else "already running: ") + status.describe().splitlines()[0])
    return connect(cfg.neo4j)


def cmd_neo4j(args: argparse.Namespace, cfg: Config) -> int:
    """``start``, ``stop`` or ``status`` of kgrec's own server; ``status`` exits 3 when it is stopped
    (as ``systemctl status`` does), so a script can test it, and 4 when its process lives but does not
    answer on the configured Bolt port (starting, or started by an earlier config)."""
    from kg.neo4j_server import ManagedNeo4j

    if not cfg.neo4j.managed:
        from kg.connection import connect

        with connect(cfg.neo4j) as g:
            print(f"NEO4J_URI is set: kgrec uses {g.where} and manages no server (reachable: yes)")
        return 0
    server = ManagedNeo4j(cfg.neo4j)
    if args.action == "start":
        status, started = server.start()
        print(("Started " if started else "Already running. ") + status.describe())
    elif args.action == "stop":
        print("stopped" if server.stop() else "not running (nothing to stop)")
    else:
        status = server.status()
        print(status.describe())
        return 0 if status.running else 4 if status.unanswering else 3
    return 0


def _this_command() -> str:
    """How to call this ``kgrec`` again from here: its name when the PATH finds this one, else its
    path (``.venv/bin/kgrec`` after ``make demo``, which activates nothing)."""
    me = Path(sys.argv[0])
    found = shutil.which("kgrec")
    if me.name != "kgrec" or (found is not None and Path(found).resolve() == me.resolve()):
        return "kgrec"  # `python -m kgrec.cli`, a test; or the one on the PATH
    return os.path.relpath(me) if me.resolve().is_relative_to(Path.cwd().resolve()) else str(me)


def _stop_command(args: argparse.Namespace) -> str:
    """The command that stops the server this run used: with its ``--config``, else the stop would
    look for a server in the default home (and say none runs), and from this directory, where the
    relative paths (``.venv/bin/kgrec``, the config, the default ``.kgrec`` workdir) point."""
    given = getattr(args, "config", None)
    return (f"cd {shlex.quote(str(Path.cwd()))} && {_this_command()} neo4j stop"
            + (f" --config {shlex.quote(given)}" if given else ""))


def cmd_demo(args: argparse.Namespace, cfg: Config) -> None:
    from kg.neo4j_server import ManagedNeo4j
    from kg.synthetic import SyntheticSpec

    from .pipeline import run_demo

    spec = SyntheticSpec(num_users=args.users, num_items=args.items, seed=args.seed)
    defaults = TrainConfig()
    for name, demo_value in DEMO_TRAIN.items():  # a flag wins; then the config, unless left at its default
        if getattr(args, name) is not None:
            setattr(cfg.train, name, getattr(args, name))
        elif getattr(cfg.train, name) == getattr(defaults, name):
            setattr(cfg.train, name, demo_value)
    _refuse_unused_flags(args, cfg.train.model, cfg.train.sampler)
    with _graph(cfg, start=True) as g:
        result = run_demo(g, cfg, spec, reset=args.reset)
    print()
    if cfg.neo4j.managed:
        st = ManagedNeo4j(cfg.neo4j).status()
        print(f"Neo4j is still running. Browser: {st.browser_url}  (connect to {st.bolt_uri}, user neo4j,")
        print(f"password in {st.password_file}: `cat {st.password_file}`). Stop it with `{_stop_command(args)}`.")
    print("Try in the Browser:  MATCH (u:User {id:'u0'})-[r:RECOMMENDED]->(i:Item) RETURN u, r, i")
    print(f"Timings (s): {result.timings}")


def cmd_ingest(args: argparse.Namespace, cfg: Config) -> None:
    from kg.ingest import check_dataset, event_key, existing_ids, graph_counts, ingest, without_placeholders_of
    from kg.lock import INGEST_LOCK, Lease, graph_lock, raise_if_busy

    _lock_wait(args, cfg)
    if args.format == "synthetic" and args.path is not None:  # it would only name the report files
        raise ConfigError(f"kgrec ingest synthetic generates its rows and reads no file ({args.path!r}): "
                          f"give --users, --items, --seed instead")
    given = [f"--{name}" for name in ("users", "items", "seed") if getattr(args, name) is not None]
    if args.format != "synthetic" and given:  # else ignored without a word: the whole source loads
        raise ConfigError(f"{', '.join(given)} size the synthetic dataset; kgrec ingest {args.format} loads its "
                          f"source whole")
    if args.mapping is not None and args.format not in MAPPED_FORMATS:  # else ignored without a word
        raise ConfigError(f"--mapping describes the files of {', '.join(MAPPED_FORMATS)} sources; kgrec ingest "
                          f"{args.format} reads its own layout")
    if args.format != "synthetic" and args.path is None:  # before the lock is waited for, or --merge judged
        raise ConfigError(f"kgrec ingest {args.format} needs a PATH")
    dataset = _dataset_name(args)
    if args.merge and dataset is None:  # else ignored without a word
        raise ConfigError(f"--merge lets a dataset ({', '.join(('synthetic', *DATASET_FORMATS))}) load into a graph "
                          f"of other data; kgrec ingest {args.format} loads your own rows, which merge with the "
                          f"graph's by id anyway")
    if args.bulk:
        from kg.bulk_import import bulk_import

        if args.incremental or args.feed or args.lock_wait_s is not None or args.merge:
            raise ConfigError("--bulk replaces the whole database offline: --incremental, --feed, --wait and "
                              "--merge apply to online ingests only")
        if not cfg.neo4j.managed:  # said before the source is read, not after
            raise ConfigError("--bulk imports into kgrec's own Neo4j (offline, with neo4j-admin); NEO4J_URI names "
                              "another server: leave out --bulk to load it online")
        records, extra = _read_source(args, cfg)  # into an empty database: nothing there to look up
        report = bulk_import(records, cfg.neo4j, dataset=dataset)
        with _graph(cfg) as g:
            report["graph"] = graph_counts(g)
    else:
        with _graph(cfg) as g, ExitStack() as held:
            if not cfg.ingest.lock_wait_s:  # a busy lock fails the load now, not after reading the source
                raise_if_busy(g, INGEST_LOCK)
            if dataset is not None:  # so does another dataset's graph (checked again under the lock)
                check_dataset(g, dataset, args.merge)
            leases: list[Lease] = []

            def locked() -> Lease:
                """The ingest lock, taken once the source is read, before anything is looked up or written."""
                if not leases:
                    leases.append(held.enter_context(graph_lock(g, INGEST_LOCK, cfg.ingest.lock_wait_s)))
                return leases[0]

            def known(kind: str, ids: list[str]) -> set[str]:
                """References to users/items/entities the graph holds are not unknown; looked up under
                the lock, so none is removed (forget-user) before the write."""
                locked()
                return existing_ids(g, kind, ids)

            records, extra = _read_source(args, cfg, known, governed=locked)
            lease = locked()
            skipped_file = Path(extra["quarantine_file"]).with_suffix("").with_suffix(".skipped.jsonl")

            skipped_keys: set[tuple] = set()

            def keep_skipped(rows: list[dict], mark: int) -> None:  # accounted for, beside the quarantine
                skipped_keys.update(event_key(r) for r in rows)
                reason = f"older than the watermark {mark} of feed {args.feed or '(shared)'} (--incremental)"
                with skipped_file.open("w", encoding="utf-8") as fh:  # a line at a time: a daily full export skips most
                    fh.writelines(json.dumps({"reason": reason, "row": r}) + "\n" for r in rows)
                extra.update(skipped_old=len(rows), skipped_file=str(skipped_file))
                print(f"kgrec: {len(rows)} events {reason}: listed in {skipped_file}", file=sys.stderr)

            report = ingest(g, records, cfg.ingest, incremental=args.incremental, feed=args.feed,
                            on_skipped=keep_skipped, lease=lease, dataset=dataset, merge=args.merge)
            report["graph"] = graph_counts(g)
            if skipped_keys:  # the quality summary describes what was loaded: not the skipped events,
                kept = [r for r in records.interactions if event_key(r) not in skipped_keys]  # nor their nodes
                skipped = [r for r in records.interactions if event_key(r) in skipped_keys]
                records = without_placeholders_of(dataclasses.replace(records, interactions=kept), skipped, kept)[0]
    if not args.no_quality:
        extra.update(_quality_report(records, cfg, args.format if args.path is None else _source_name(args.path)))
    print(json.dumps({**report, **extra}, indent=2, default=str))


def _read_source(args: argparse.Namespace, cfg: Config, known: "KnownIds | None" = None,
                 governed: Callable[[], object] | None = None) -> tuple[Any, dict[str, Any]]:
    """The rows to ingest (governed; quarantine and reconciliation files written) and what to report;
    ``governed()`` is called once they are governed, before any file is written."""
    from kg.governance import quarantine_summary, reconciliation_json, write_quarantine

    if args.format == "synthetic":  # generated rows go through the same governance as a file's
        from kg.governance import govern_records
        from kg.synthetic import generate

        name = "synthetic"
        result = govern_records(generate(_synthetic_spec(args)), cfg.ingest, name)
    else:  # a PATH: cmd_ingest checked
        from kg.sources import load_source

        name = _source_name(args.path)
        result = load_source(args.format, Path(args.path), Path(args.mapping) if args.mapping else None,
                             cfg.ingest, known=known)
    if governed is not None:
        governed()
    qdir = Path(cfg.ingest.quarantine_dir)
    for kind in ("quarantine.jsonl", "reconciliation.json", "skipped.jsonl"):
        _keep_previous(qdir / f"{name}.{kind}", name)  # a daily load of the same file keeps yesterday's
    qfile = qdir / f"{name}.quarantine.jsonl"
    write_quarantine(result, qfile)
    rfile = qfile.with_name(f"{name}.reconciliation.json")
    rfile.write_text(reconciliation_json(result))
    for line in quarantine_summary(result):  # beside the JSON report: a mostly quarantined file is seen
        print(f"kgrec: {line}; listed in {qfile}", file=sys.stderr)
    return result.records, {"reconciliation": json.loads(rfile.read_text()), "quarantine_file": str(qfile),
                            "reconciliation_file": str(rfile)}


def _dataset_name(args: argparse.Namespace) -> str | None:
    """The dataset a load is, as the graph records it (see kg.ingest.check_dataset): a packaged one's
    format (synthetic with its sizes and seed), a benchmark folder's format and name
    (``lightgcn:gowalla``); None for your own rows (tabular, triples), which share your ids on purpose."""
    if args.format == "synthetic":
        from kg.synthetic import dataset_name

        return dataset_name(_synthetic_spec(args))
    if args.format not in DATASET_FORMATS:
        return None
    if args.format in PACKAGED_FORMATS:
        return args.format
    name = _source_name(args.path)  # RecBole's <dataset>.inter, or a benchmark's folder
    return f"{args.format}:{name.split('.')[0] if Path(args.path).is_file() else name}"


def _synthetic_spec(args: argparse.Namespace) -> "SyntheticSpec":
    """The synthetic dataset ``kgrec ingest synthetic`` generates: its --users, --items, --seed."""
    from kg.synthetic import SyntheticSpec

    return SyntheticSpec(**{key: getattr(args, name) for key, name in (("num_users", "users"),
                            ("num_items", "items"), ("seed", "seed")) if getattr(args, name) is not None})


def _source_name(path: str) -> str:
    """The name a source's report files take: its file or folder name (``.``, the folder's own; a
    link's own name, not its target's, so a daily load through a moving link keeps one name)."""
    return Path(os.path.abspath(path)).name or "root"


def _keep_previous(path: Path, name: str) -> None:
    """Move an earlier load's ``<name>.<kind>`` file aside as ``<name>.<its time>.<kind>``."""
    if path.is_file():
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(path.stat().st_mtime))
        path.replace(path.with_name(f"{name}.{stamp}{path.name[len(name):]}"))


def _quality_report(records: Any, cfg: Config, name: str) -> dict[str, Any]:
    """Quality summary of the loaded rows, saved as JSON beside a degree-histogram plot."""
    from kg.quality import plot_degree_histograms, quality_summary

    out = Path(cfg.workdir) / "quality"
    out.mkdir(parents=True, exist_ok=True)
    summary = quality_summary(records)
    (out / f"{name}.quality.json").write_text(json.dumps(summary, indent=2, default=str))
    plot = plot_degree_histograms(records, out / f"{name}.degrees.png", title=name)
    return {"quality": summary, "quality_file": str(out / f"{name}.quality.json"), "quality_plot": str(plot)}


def cmd_export(args: argparse.Namespace, cfg: Config) -> None:
    from kg.export import export_locked

    _lock_wait(args, cfg)
    if args.split:
        cfg.export.split = args.split
    with _graph(cfg) as g:  # under the ingest lock: whole loads only
        print(export_locked(g, cfg.export, args.name, cfg.ingest.lock_wait_s))


def cmd_encode(args: argparse.Namespace, cfg: Config) -> None:
    from .pipeline import ensure_text_embeddings

    print(ensure_text_embeddings(Path(args.snapshot), cfg))


def cmd_train(args: argparse.Namespace, cfg: Config) -> None:
    from .pipeline import train_model

    if args.model:
        cfg.train.model = args.model
    if args.fusion:
        cfg.train.fusion = args.fusion
    for name in ("epochs", "lr", "batch_size", "patience"):  # flags over [train] and KGREC_TRAIN__*
        if getattr(args, name) is not None:
            setattr(cfg.train, name, getattr(args, name))
    if args.sampler:
        cfg.train.sampler = args.sampler
    if args.num_neighbors:
        try:
            cfg.train.num_neighbors = [int(k) for k in args.num_neighbors.split(",") if k.strip()]
        except ValueError:
            raise ConfigError(f"--num-neighbors takes whole numbers per layer such as 10,10, not "
                              f"{args.num_neighbors!r}") from None
    _refuse_unused_flags(args, cfg.train.model, cfg.train.sampler)
    artifact = train_model(Path(args.snapshot), cfg)
    metrics = json.loads((artifact / "metrics.json").read_text())
    # one JSON object (jq, json.load), as retrain prints; the per-epoch history stays in metrics.json
    print(json.dumps({"artifact": str(artifact), "model": cfg.train.model,
                      **{k: metrics.get(k) for k in ("eval_split", "best_epoch", "best_score")},
                      "test": metrics.get("test", {})}, indent=2))


def _refuse_unused_flags(args: argparse.Namespace, model: str, sampler: str) -> None:
    """``kgrec train`` (or ``demo``) flags the model would ignore without a word are an error naming
    them; ``sampler`` is the one training uses (the flag's, else the config's)."""
    trains = model not in ("gfcf", "bspm")  # the graph filters are fitted in closed form
    sampled = model == "rgcn" and sampler == "neighbor"
    unused = [flag for flag, name, used in (("--fusion", "fusion", model in TEXT_MODELS),
                                            ("--epochs", "epochs", trains), ("--lr", "lr", trains),
                                            ("--batch-size", "batch_size", trains), ("--patience", "patience", trains),
                                            ("--sampler", "sampler", getattr(args, "sampler", None) == "full"
                                             or model == "rgcn"),  # full is every model's way
                                            ("--num-neighbors", "num_neighbors", sampled))
              if getattr(args, name, None) is not None and not used]
    if unused:
        raise ConfigError(f"{', '.join(unused)} {'do' if len(unused) > 1 else 'does'} nothing for model {model!r}" + (
            "" if trains else " (a graph filter is fitted in closed form: [train] filter sets it)")
            + (f"; --fusion applies to {' and '.join(TEXT_MODELS)}" if "--fusion" in unused else ""))


def _one_request(args: argparse.Namespace, cfg: Config) -> "Recommender":
    """The served model (or ``--model``) for one request: ranked exactly, which is quicker than
    building the recall's index first."""
    from serving.recommender import Recommender

    exact = dataclasses.replace(cfg.serving, ann_min_items=0, search_ann_min_items=0)
    return Recommender.load(args.model or cfg.served_model(), exact)


def _print_items(items: list) -> None:
    for r in items:
        print(f"{r.item_id}\t{r.score:.4f}\t{r.title}")


def cmd_recommend(args: argparse.Namespace, cfg: Config) -> None:
    items = _one_request(args, cfg).recommend(args.user, args.k, within=args.within or (), exclude=args.exclude or ())
    if not items:  # an empty answer is not an error, but say why nothing printed
        why = "no item holds every one of those attributes" if args.within else "the user has every item already"
        print(f"kgrec: nothing to recommend: {why} (or all are excluded)", file=sys.stderr)
    _print_items(items)


def cmd_search(args: argparse.Namespace, cfg: Config) -> None:
    _print_items(_one_request(args, cfg).search(args.text, args.k, args.user))


def cmd_serve(args: argparse.Namespace, cfg: Config) -> None:
    import uvicorn

    from serving.http import create_app

    if args.host:
        cfg.serving.host = args.host
    if args.port is not None:
        cfg.serving.port = args.port
    if not 0 < cfg.serving.port < 65536:
        raise ConfigError(f"serving.port must be 1..65535, got {cfg.serving.port}")
    host, port = cfg.serving.host, cfg.serving.port
    _check_listenable(host, port)  # before the model loads: a port in use is said at once, not after
    uvicorn.run(create_app(args.model or cfg.served_model(), cfg=cfg.serving, warm_search=True), host=host, port=port)


def _check_listenable(host: str, port: int) -> None:
    """Bind each address ``host`` resolves to, as uvicorn will, and let go: a taken port or an
    unknown host is a clear error before the model is loaded (uvicorn binds only after that).

    Raises:
        ConfigError: the port is in use, or the host is unknown or not this machine's.
    """
    try:
        addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror} (--host or [serving] host)") from None
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: TIME_WAIT is no conflict
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as e:
                why = os.strerror(e.errno) if e.errno else str(e)
                hint = ": another server there? choose another with --port or [serving] port" \
                    if e.errno == errno.EADDRINUSE else ""
                raise ConfigError(f"cannot listen on {host}:{port} ({why}){hint}") from None


def cmd_writeback(args: argparse.Namespace, cfg: Config) -> None:
    from serving.recommender import Recommender
    from serving.writeback import write_back

    rec = Recommender.load(args.model or cfg.served_model(), cfg.serving)
    wait = {} if args.lock_wait_s is None else {"lock_wait_s": args.lock_wait_s}  # else write_back's 10 minutes
    with _graph(cfg) as g:
        print(json.dumps(write_back(g, rec, args.k, **wait)))  # JSON, as the other commands' reports


def cmd_retrain(args: argparse.Namespace, cfg: Config) -> int:
    """Exit status 0 when the new model was published, 3 when the quality gate kept the served one,
    4 when it was published but its write-back to Neo4j failed (``kgrec writeback`` retries it), 5
    when the new model is broken (training diverged, or no finite test score: never published, a
    run to look into), 6 when another retrain of the model directory is still running (nothing was
    done)."""
    from gnn.train import DivergedError

    from .retrain import RetrainBusyError, retrain

    _lock_wait(args, cfg)
    if args.model:
        cfg.train.model = args.model
    if args.no_writeback:
        cfg.retrain.writeback = False
    with _graph(cfg) as g:
        try:
            report = retrain(g, cfg, say=lambda line: print(line, file=sys.stderr), force=args.force)
        except RetrainBusyError as e:  # yesterday's run still going: not an error to look into
            print(f"kgrec: {e}", file=sys.stderr)
            return 6
        except DivergedError as e:  # a model that came out broken: the served one stays, the snapshot went
            print(f"kgrec: the new model is broken: {e}; the served model stays", file=sys.stderr)
            return 5
    print(json.dumps(dataclasses.asdict(report), indent=2))
    if report.published:
        return 4 if report.writeback_error else 0
    return 5 if report.new_score is None else 3


def cmd_forget_user(args: argparse.Namespace, cfg: Config) -> int:
    """Exit status 0 when the user was removed, 3 when the graph holds no such user (nothing to do:
    a typo, or one removed before), as a scripted privacy job needs to tell."""
    from kg.ingest import forget_user

    _lock_wait(args, cfg)
    with _graph(cfg) as g:
        removed = forget_user(g, args.user_id, cfg.ingest.lock_wait_s)
        if removed:
            print(f"removed user {args.user_id} ({removed} node(s): theirs, and the queries and attribute values "
                  f"only they had). Snapshots and model versions made before still hold them: the served model "
                  f"answers for them until a retrain publishes one without them")
            return 0
        print(f"no user {args.user_id!r}: nothing was deleted")
        hint = _lowercased_user(g, args.user_id)
        if hint is not None:  # ids are case-sensitive: 'Alice' may be another person, so only a hint
            print(f"there is a user {hint!r}: ids are case-sensitive, and a mapping with lowercase_ids = true "
                  f"stores them lowercased. If {hint!r} is the same person, forget them with: "
                  f"kgrec forget-user {shlex.quote(hint)}")
        return 3


def _lowercased_user(graph: "Graph", user_id: str) -> str | None:
    """The id ``user_id`` would have under a mapping's ``lowercase_ids``, when a user has it and it differs."""
    from kg.governance import GovernanceError, normalize_id
    from kg.ingest import existing_ids

    try:
        stored, lowered = normalize_id(user_id, "user id"), normalize_id(user_id, "user id", lowercase=True)
    except GovernanceError:
        return None
    return lowered if lowered != stored and existing_ids(graph, "users", [lowered]) else None


def cmd_unlock(args: argparse.Namespace, cfg: Config) -> None:
    from kg.lock import break_lock

    with _graph(cfg) as g:
        holder = break_lock(g, args.lock, force=args.force)
    print(f"the {args.lock} lock was free" if holder is None else
          f"removed the {args.lock} lock held by process {holder['pid']} on {holder['host']} since {holder['since']}")


def cmd_watermark(args: argparse.Namespace, cfg: Config) -> None:
    from kg.governance import GovernanceError, parse_timestamp
    from kg.ingest import get_watermark, reset_watermark, watermark_horizon

    _lock_wait(args, cfg)
    value = None
    if args.set is not None:
        try:
            value = parse_timestamp(args.set)
        except GovernanceError as e:
            raise ConfigError(f"--set {args.set!r}: {e}") from None
        if not args.set.strip() or value > watermark_horizon():
            raise ConfigError(f"--set {args.set!r}: give a time no later than a day ahead (unix seconds or ISO 8601)")
    with _graph(cfg) as g:
        if args.set is not None or args.clear:
            reset_watermark(g, args.feed, value, cfg.ingest.lock_wait_s)
        print(json.dumps({"feed": args.feed, "watermark": get_watermark(g, args.feed)}))


def cmd_cache(args: argparse.Namespace, cfg: Config) -> None:
    """``list`` the text cache's namespaces (one per model, weights and settings), or ``prune`` those
    unused for ``--unused-days``; JSON on stdout."""
    from encoders.cache import cached_namespaces, prune_cache

    if cfg.encoder.cache_dir is None:
        raise ConfigError("[encoder] cache_dir is unset: there is no text cache")

    def described(n: Any) -> dict[str, Any]:
        used = datetime.fromtimestamp(n.last_used, timezone.utc).isoformat(timespec="seconds")
        return {"namespace": n.namespace, "path": str(n.path), "vectors": n.vectors,
                "mib": round(n.bytes / 2 ** 20, 1), "last_used": used}

    if args.action == "list":
        print(json.dumps([described(n) for n in cached_namespaces(cfg.encoder.cache_dir)], indent=2))
        return
    gone = prune_cache(cfg.encoder.cache_dir, args.unused_days, dry_run=args.dry_run)
    print(json.dumps({"dry_run": args.dry_run, "unused_days": args.unused_days,
                      "freed_mib": round(sum(n.bytes for n in gone) / 2 ** 20, 1),
                      "removed": [described(n) for n in gone]}, indent=2))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kgrec", description="Knowledge-graph recommender on Neo4j + PyTorch")
    p.add_argument("--config", help="TOML config file (environment overrides still apply)")
    p.add_argument("-v", "--verbose", action="store_true")
    # the same two after the command too (`kgrec train SNAP --config my.toml`), where given there
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, help="TOML config file (environment overrides still apply)")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kwargs)

    s = command("neo4j", help="manage kgrec's own Neo4j server")
    s.add_argument("action", choices=["start", "stop", "status"])
    s.set_defaults(func=cmd_neo4j)

    s = command("demo", help="end to end on a generated dataset: ingest, export, encode, train, recommend")
    s.add_argument("--users", type=_positive_int, default=600)
    s.add_argument("--items", type=_positive_int, default=400)
    s.add_argument("--seed", type=int, default=7)
    s.add_argument("--model", choices=MODELS,
                   help="kgfused (default): text + LightGCN + R-GCN over the attribute graph; see `kgrec train`")
    s.add_argument("--epochs", type=_positive_int, help="training epochs (default 40, for the small demo graph)")
    s.add_argument("--lr", type=_positive_float, help="learning rate (default 0.01)")
    s.add_argument("--batch-size", type=_positive_int, help="training batch size (default 1024)")
    s.add_argument("--reset", action="store_true",
                   help="delete everything in the target database first (the demo refuses a database that "
                        "holds anything but its own dataset)")
    s.set_defaults(func=cmd_demo)

    s = command("ingest", help="load a source into Neo4j (validated; bad rows quarantined)")
    s.add_argument("format", choices=("synthetic", *FORMATS), metavar="FORMAT",
                   help=" | ".join(("synthetic", *FORMATS)))
    s.add_argument("path", nargs="?")
    s.add_argument("--mapping", help="mapping TOML: tabular sources need one; lastfm and ml100k take one in "
                                     "place of their packaged mapping")
    s.add_argument("--incremental", action="store_true", help="skip events dated before the feed's stored watermark")
    s.add_argument("--feed", help="name of the event feed whose watermark this load reads and advances "
                                  "(default: one watermark shared by every load)")
    s.add_argument("--wait", type=_seconds, metavar="SECONDS", dest="lock_wait_s",
                   help="wait this long for another ingest to finish (default: ingest.lock_wait_s, 0)")
    s.add_argument("--bulk", action="store_true",
                   help="initial load through neo4j-admin import (replaces the managed database)")
    s.add_argument("--users", type=_positive_int, help="synthetic only: users to generate (default 600)")
    s.add_argument("--items", type=_positive_int, help="synthetic only: items to generate (default 400)")
    s.add_argument("--seed", type=int, help="synthetic only: the generator's seed (default 7)")
    s.add_argument("--no-quality", action="store_true", help="skip the quality summary and its plot")
    s.add_argument("--merge", action="store_true",
                   help="load a dataset into a graph holding other data (refused by default: ids that two datasets "
                        "share would merge)")
    s.set_defaults(func=cmd_ingest)

    s = command("export", help="export the graph to a versioned snapshot")
    s.add_argument("--name", default="graph")
    s.add_argument("--split", choices=["auto", "given", "ratio", "loo", "temporal"],
                   help="auto (default): the source's split when every interaction has one, else ratio")
    s.add_argument("--wait", type=_seconds, metavar="SECONDS", dest="lock_wait_s",
                   help="wait this long for a running ingest to finish (default: ingest.lock_wait_s, 0)")
    s.set_defaults(func=cmd_export)

    s = command("encode", help="encode a snapshot's texts (cached)")
    s.add_argument("snapshot")
    s.set_defaults(func=cmd_encode)

    s = command("cache", help="list the text cache's namespaces (one per encoder model and setting), "
                                     "or prune those unused for a while")
    s.add_argument("action", choices=["list", "prune"])
    s.add_argument("--unused-days", type=_days, default=30.0, metavar="DAYS",
                   help="prune: remove the namespaces not opened or written for this many days (default 30)")
    s.add_argument("--dry-run", action="store_true", help="prune: say what would go, remove nothing")
    s.set_defaults(func=cmd_cache)

    s = command("train", help="train on a snapshot and publish the model artifact")
    s.add_argument("snapshot")
    s.add_argument("--model", choices=MODELS,
                   help="fused: item text + LightGCN; kgfused: text + LightGCN + R-GCN over the KG; "
                        "gfcf, bspm: training-free graph filters (fitted in closed form)")
    s.add_argument("--fusion", choices=["sum", "concat", "gate", "text"],
                   help="how text and id embeddings combine (text: text only, no item ids)")
    s.add_argument("--sampler", choices=["full", "neighbor"],
                   help="rgcn: full-graph steps, or mini-batches on neighbour-sampled subgraphs")
    s.add_argument("--num-neighbors", metavar="K1,K2", help="fan-out per layer for --sampler neighbor, e.g. 10,10")
    s.add_argument("--epochs", type=_positive_int)
    s.add_argument("--lr", type=_positive_float, help="learning rate ([train] lr)")
    s.add_argument("--batch-size", type=_positive_int, help="training pairs per step ([train] batch_size)")
    s.add_argument("--patience", type=_positive_int,
                   help="evaluations without a better validation NDCG@20 before stopping ([train] patience)")
    s.set_defaults(func=cmd_train)

    s = command("recommend", help="top-k items for a user from the current model")
    s.add_argument("user")
    s.add_argument("-k", type=_positive_int, default=10)
    s.add_argument("--within", action="append", metavar="ATTRIBUTE",
                   help="rank only items with this attribute (an entity id such as genre:Comedy); repeatable")
    s.add_argument("--exclude", action="append", metavar="ITEM",
                   help="leave this item out too (repeat the flag for several): one taken up since the model's snapshot")
    s.add_argument("--model", help="artifact directory (default: serving.model_dir, else <train.out_dir>/current)")
    s.set_defaults(func=cmd_recommend)

    s = command("search", help="items for a free-text query, ranked for a user when one is given")
    s.add_argument("text")
    s.add_argument("--user", help="rank the matches for this known user")
    s.add_argument("-k", type=_positive_int, default=10)
    s.add_argument("--model", help="artifact directory (default: serving.model_dir, else <train.out_dir>/current)")
    s.set_defaults(func=cmd_search)

    s = command("serve", help="HTTP API over the current model")
    s.add_argument("--model")
    s.add_argument("--host", help="address to listen on (default: serving.host, 127.0.0.1)")
    s.add_argument("--port", type=int, help="port to listen on (default: serving.port, 8000)")
    s.set_defaults(func=cmd_serve)

    s = command("writeback", help="write embeddings, vector index and top-k lists to Neo4j")
    s.add_argument("--model")
    s.add_argument("-k", type=_positive_int, default=10)
    s.add_argument("--wait", type=_seconds, metavar="SECONDS", dest="lock_wait_s",
                   help="wait this long for another write-back to finish (default 600)")
    s.set_defaults(func=cmd_writeback)

    s = command("retrain", help="periodic job: export, encode, train, publish if the quality gate "
                                       "passes, write back, prune old versions (exit 3: gate kept the old model)")
    s.add_argument("--model", choices=MODELS, help="model to train (default: [train] model)")
    s.add_argument("--force", action="store_true", help="publish whatever the quality gate says")
    s.add_argument("--no-writeback", action="store_true", help="leave Neo4j's embeddings and RECOMMENDED lists")
    s.add_argument("--wait", type=_seconds, metavar="SECONDS", dest="lock_wait_s",
                   help="wait this long for a running ingest to finish before exporting")
    s.set_defaults(func=cmd_retrain)

    s = command("forget-user", help="remove a user and all their events (privacy)")
    s.add_argument("user_id")
    s.add_argument("--wait", type=_seconds, metavar="SECONDS", dest="lock_wait_s",
                   help="wait this long for a running ingest to finish (default: ingest.lock_wait_s, 0)")
    s.set_defaults(func=cmd_forget_user)

    s = command("watermark", help="show a feed's incremental-load watermark, or set or clear it")
    s.add_argument("--feed", help="the feed (default: the watermark loads share)")
    action = s.add_mutually_exclusive_group()
    action.add_argument("--set", metavar="TIME", help="unix seconds or ISO 8601; may lower it")
    action.add_argument("--clear", action="store_true", help="remove it: the next --incremental load skips nothing")
    s.add_argument("--wait", type=_seconds, metavar="SECONDS", dest="lock_wait_s",
                   help="wait this long for a running ingest to finish (default: ingest.lock_wait_s, 0)")
    s.set_defaults(func=cmd_watermark)

    s = command("unlock", help="remove the ingest lock left by a writer that died (before its heartbeat "
                                      "goes stale and the next writer takes it over)")
    s.add_argument("--force", action="store_true", help="remove it even if its holder looks alive")
    s.add_argument("--lock", choices=("ingest", "writeback"), default="ingest",  # kg.lock's lock names
                   help="which lock: ingest (loads, exports, forget-user) or writeback (default ingest)")
    s.set_defaults(func=cmd_unlock)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from tqdm.contrib.logging import logging_redirect_tqdm

    try:  # log lines (a retried transaction's warning, say) print above a progress bar, not into it
        with _sigterm_unwinds(), logging_redirect_tqdm(), _short_retry_warnings(args.verbose):
            cfg = load_config(args.config)
            status = args.func(args, cfg)
    except KeyboardInterrupt:  # Ctrl-C: as SIGTERM, one line (a train resumes from its checkpoint when run again)
        print("kgrec: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if not isinstance(e, _user_errors()):
            raise
        if args.verbose:
            logging.getLogger("kgrec").exception("the full story")
        print(f"kgrec: error: {e.args[0] if isinstance(e, KeyError) and e.args else e}", file=sys.stderr)
        return 2
    return status or 0


class _OneLineRetry(logging.Filter):
    """The driver's "will be retried" warning as one line naming the error's code, without the
    server's lock report (concurrent ingest writers meet a deadlock now and then; the driver
    retries it, and the load goes on). Driver 6 passes the error, 5.2x a string or the whole text."""

    RETRY = re.compile(r"Transaction failed and will be retried in ([0-9.]+)s")
    CODE = re.compile(r"Neo\.[A-Za-z]+\.[A-Za-z]+\.[A-Za-z]+")

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        retry = self.RETRY.match(text)
        if retry:
            error = record.args[-1] if isinstance(record.args, tuple) and record.args else None
            code = getattr(error, "code", None) or next(iter(self.CODE.findall(text)), "a transient error")
            record.msg, record.args = "a transaction failed (%s) and is retried in %.1f s", (code, float(retry[1]))
        return True


@contextmanager
def _short_retry_warnings(verbose: bool) -> Iterator[None]:
    """Retry warnings in one line while the command runs (in full with ``-v``); driver 6 logs them
    on ``neo4j.session``, 5.2x on ``neo4j.pool``."""
    if verbose:
        yield
        return
    one_line, loggers = _OneLineRetry(), [logging.getLogger(name) for name in ("neo4j.session", "neo4j.pool")]
    for driver_log in loggers:
        driver_log.addFilter(one_line)
    try:
        yield
    finally:
        for driver_log in loggers:
            driver_log.removeFilter(one_line)


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """While a command runs, SIGTERM (kill, a scheduler's timeout) and SIGHUP (a dropped ssh session;
    not under nohup, which ignores it) unwind like Ctrl-C, so the graph lock and temporary files are
    released on the way out (exit status 143 or 129)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signals = [signal.SIGTERM] + ([signal.SIGHUP] if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN else [])
    previous = {sig: signal.signal(sig, stop) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors whose message says what to fix: kgrec's own, and bad values (``ValueError``). The
    modules are looked up, not imported: one not loaded yet cannot have raised."""
    # an OSError of these kinds names the path (a models directory that is a file, one not writable)
    found: list[type[Exception]] = [ConfigError, FileNotFoundError, FileExistsError, NotADirectoryError,
                                    IsADirectoryError, PermissionError, ValueError]
    for module, name in (("kg.errors", "KgError"), ("gnn.train", "TrainingError"),
                         ("kgrec.retrain", "RetrainBusyError"), ("encoders.base", "EncoderError"),
                         ("serving.recommender", "UnknownUserError"), ("serving.recommender", "UnknownItemError"),
                         ("serving.recommender", "UnknownAttributeError"),
                         ("serving.search", "SearchUnavailableError")):
        if module in sys.modules:
            found.append(getattr(sys.modules[module], name))
    return tuple(found)


if __name__ == "__main__":
    sys.exit(main())
