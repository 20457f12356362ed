"""The recall index kept in the artifact: reading it when a model loads, against building it then.

``kgrec train`` builds the FAISS index of a catalogue of at least ``[serving] ann_min_items`` items
into the artifact (``serving.recall.save_item_index``); ``Recommender.load`` reads it. Before, every
load built it. Same clustered random 64-dimensional embeddings as ``bench_serving_scale.py``;
the baseline in the same run is the build at load (after a warm-up build, so that neither side pays
for importing FAISS). Also checks that the read index answers
exactly what the built one does for 200 users.

    .venv/bin/python bench/bench_ann_index.py --items 1000000
Writes bench/results/ann_index.json.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import peak_rss_mb, write_result  # noqa: E402
from bench.bench_serving_scale import make_recommender  # noqa: E402
from kgrec.config import ServingConfig  # noqa: E402
from serving.recall import INDEX_FILE, save_item_index  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--items", default="1000000")
    ap.add_argument("--users", type=int, default=200)
    args = ap.parse_args()
    rows = {}
    warm = make_recommender(20_000, 10)  # FAISS imported and its threads started before any timing:
    warm.use_index(ServingConfig(ann_min_items=1))  # otherwise the first baseline build pays for them
    for n in [int(x) for x in args.items.split(",")]:
        rec = make_recommender(n, args.users)
        cfg = ServingConfig(ann_min_items=1)
        t = time.perf_counter()
        rec.use_index(cfg)  # the baseline: built at load, as serving did before
        build_s = time.perf_counter() - t
        built = [[r.item_id for r in recs] for recs in rec.recommend_many(rec.user_ids, 10)]
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            saved = save_item_index(tmp, rec.item_emb.numpy(), min_items=1)  # what `kgrec train` does
            train_s = time.perf_counter() - t
            rec.meta["path"] = tmp
            t = time.perf_counter()
            rec.use_index(cfg)  # what a load does now
            read_s = time.perf_counter() - t
            assert rec.index.source == str(Path(tmp) / INDEX_FILE)
            same = [[r.item_id for r in recs] for recs in rec.recommend_many(rec.user_ids, 10)] == built
            size_mib = saved.stat().st_size / 2**20
        rows[n] = {"build_at_load_s": round(build_s, 1), "build_and_write_at_training_s": round(train_s, 1),
                   "read_at_load_s": round(read_s, 2), "x_faster_load": round(build_s / read_s, 1),
                   "file_mib": round(size_mib, 1), "same_top10_as_built": same}
        print(n, rows[n], flush=True)
    out = write_result("ann_index", {"rows": rows, "peak_rss_mb": round(peak_rss_mb(), 1),
                                     "command": "python bench/bench_ann_index.py " + " ".join(
                                         f"--{a.replace('_', '-')} {v}" for a, v in vars(args).items())})
    print(out)


if __name__ == "__main__":
    main()
