"""The text cache's key index and merge at scale: sorted numpy keys against the dict index before.

Usage: python bench/bench_text_cache.py [--keys 1000000] [--dim 384] [--shards 65] [--lookups 100000]

Builds one cache namespace of ``--keys`` random keys and vectors in ``--shards`` shards (what that
many runs that each encoded new texts leave), then measures in fresh child processes, each leg
alternating with its baseline:

- **open**: opening the namespace (reading every key into the index): wall time, the peak and the
  retained Python/numpy heap (``tracemalloc``; the memory-mapped vectors are not heap);
- **warm check**: which of all the keys are cached (what ``CachedEncoder.encode`` asks first of a
  warm re-encode): ``contains_many`` against a dict lookup per key;
- **lookups**: ``get_many`` of ``--lookups`` random keys;
- **merge**: ``compact()`` of all the shards into one: wall time and peak heap.

With more than ``MAX_SHARDS`` (64) shards, the only leg is **open and merge**, what an encoder's
open does then: the baseline read every vector into memory and ``CachedEncoder`` merged them; now
the open merges, mapping one shard at a time.

The baseline is the index kgrec used before session 35, restated here (:class:`DictIndexCache`): a
dict of every key to its (shard, row), and a merge that reads every vector into one array and saves
it. Writes bench/results/text_cache_<shards>shards.json.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_result  # noqa: E402
from encoders.cache import MAX_SHARDS, VectorCache, _atomic_save  # noqa: E402

NAMESPACE = "bench-model|fp=c3-0|pooling=mean|max_length=128"


class DictIndexCache:
    """The index before session 35 (the baseline): every key in a dict of bytes -> (shard, row);
    past MAX_SHARDS shards every vector read into memory (each map holds a file open)."""

    def __init__(self, directory: Path, dim: int) -> None:
        self.dir, self.dim = directory, dim
        self._index: dict[bytes, tuple[str, int]] = {}
        self._vecs: dict[str, np.ndarray] = {}
        files = sorted(directory.glob("*.keys.npy"))
        mmap = "r" if len(files) <= MAX_SHARDS else None
        for keys_file in files:
            shard = keys_file.name[: -len(".keys.npy")]
            keys = np.load(keys_file)
            self._vecs[shard] = np.load(directory / f"{shard}.vecs.npy", mmap_mode=mmap)
            for row, key in enumerate(keys):
                self._index[key.tobytes()] = (shard, row)

    def __contains__(self, key: bytes) -> bool:
        return key in self._index

    def get_many(self, keys: list[bytes]) -> np.ndarray:
        out = np.empty((len(keys), self.dim), dtype=np.float32)
        by_shard: dict[str, tuple[list[int], list[int]]] = {}
        for i, k in enumerate(keys):
            shard, row = self._index[k]
            pos, rows = by_shard.setdefault(shard, ([], []))
            pos.append(i)
            rows.append(row)
        for shard, (pos, rows) in by_shard.items():
            out[pos] = self._vecs[shard][rows]
        return out

    def compact(self) -> int:
        keys = list(self._index)
        vectors = self.get_many(keys)  # every vector in memory at once
        shard = "merged"
        _atomic_save(self.dir / f"{shard}.vecs.npy", vectors)
        _atomic_save(self.dir / f"{shard}.keys.npy", np.frombuffer(b"".join(keys), np.uint8).reshape(-1, 32))
        for old in list(self._vecs):
            for suffix in (".keys.npy", ".vecs.npy"):
                (self.dir / f"{old}{suffix}").unlink()
        return len(keys)


def build(root: Path, n: int, dim: int, shards: int) -> tuple[Path, list[bytes]]:
    """A namespace of n random keys and vectors in ``shards`` shards; its directory and keys."""
    cache = VectorCache(root, NAMESPACE, dim)
    rng = np.random.default_rng(0)
    keys = [rng.bytes(32) for _ in range(n)]
    for part in np.array_split(np.arange(n), shards):
        cache.put_many([keys[i] for i in part], rng.standard_normal((len(part), dim), dtype=np.float32))
    return cache.dir, keys


def child(leg: str, impl: str, root: Path, dim: int, lookups: int) -> dict:
    """One measurement in this (fresh) process."""
    directory = next(p for p in root.iterdir() if p.is_dir())
    keys = [k.tobytes() for f in sorted(directory.glob("*.keys.npy")) for k in np.load(f)]

    def open_cache():
        return VectorCache(root, NAMESPACE, dim) if impl == "numpy" else DictIndexCache(directory, dim)

    if leg == "open_and_merge":  # past MAX_SHARDS: an encoder's open, which merges the shards
        del keys
        tracemalloc.start()
        t = time.perf_counter()
        cache = open_cache()  # now: the open merges; before: the open read every vector, then
        if impl == "dict":    # CachedEncoder merged
            cache.compact()
        wall = time.perf_counter() - t
        current, peak = tracemalloc.get_traced_memory()
        return {"wall_s": wall, "heap_peak_mib": peak / 2 ** 20, "heap_kept_mib": current / 2 ** 20}
    if leg == "open":
        del keys
        tracemalloc.start()
        t = time.perf_counter()
        cache = open_cache()
        wall = time.perf_counter() - t
        current, peak = tracemalloc.get_traced_memory()
        return {"wall_s": wall, "heap_peak_mib": peak / 2 ** 20, "heap_kept_mib": current / 2 ** 20}
    cache = open_cache()
    if leg == "warm_check":
        t = time.perf_counter()
        found = cache.contains_many(keys) if impl == "numpy" else np.array([k in cache for k in keys])
        assert found.all()
        return {"wall_s": time.perf_counter() - t, "keys": len(keys)}
    if leg == "lookups":
        pick = [keys[i] for i in np.random.default_rng(1).integers(0, len(keys), lookups)]
        t = time.perf_counter()
        cache.get_many(pick)
        return {"wall_s": time.perf_counter() - t, "keys": lookups}
    del keys
    tracemalloc.start()
    t = time.perf_counter()
    cache.compact()
    wall = time.perf_counter() - t
    return {"wall_s": wall, "heap_peak_mib": tracemalloc.get_traced_memory()[1] / 2 ** 20}


def run_child(leg: str, impl: str, root: Path, dim: int, lookups: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", leg, impl, str(root), "--dim", str(dim),
                          "--lookups", str(lookups)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--shards", type=int, default=MAX_SHARDS + 1)  # what an encoder's open merges
    ap.add_argument("--lookups", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", nargs=3, metavar=("LEG", "IMPL", "ROOT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        leg, impl, root = args.child
        print(json.dumps(child(leg, impl, Path(root), args.dim, args.lookups)))
        return

    scratch = Path(tempfile.mkdtemp(prefix="kgrec-bench-cache-"))
    try:
        source = scratch / "source"
        t = time.perf_counter()
        build(source, args.keys, args.dim, args.shards)
        print(f"built {args.keys:,} keys of dim {args.dim} in {args.shards} shards in {time.perf_counter() - t:.0f} s")
        legs: dict[str, dict[str, list[dict]]] = {}
        merging = args.shards > MAX_SHARDS  # then an open merges, and every leg changes the cache
        for leg in ("open_and_merge",) if merging else ("open", "warm_check", "lookups", "merge"):
            for _ in range(args.repeats if leg not in ("merge", "open_and_merge") else 1):
                for impl in ("dict", "numpy"):  # alternated, so drift on the machine hits both
                    root = source
                    if leg in ("merge", "open_and_merge"):  # each works on its own copy
                        root = scratch / f"merge-{impl}"
                        shutil.copytree(source, root)
                    legs.setdefault(leg, {}).setdefault(impl, []).append(
                        run_child(leg, impl, root, args.dim, args.lookups))
                    if root != source:
                        shutil.rmtree(root)
        summary: dict[str, dict] = {}
        for leg, by_impl in legs.items():
            row: dict[str, float] = {}
            for impl, runs in by_impl.items():
                for metric in runs[0]:
                    if metric != "keys":
                        row[f"{impl}_{metric}"] = round(float(np.median([r[metric] for r in runs])), 3)
            for metric in ("wall_s", "heap_peak_mib", "heap_kept_mib"):
                if f"numpy_{metric}" in row and row[f"numpy_{metric}"] > 0:
                    row[f"{metric}_ratio_dict_over_numpy"] = round(row[f"dict_{metric}"] / row[f"numpy_{metric}"], 2)
            summary[leg] = row
            print(leg, row)
        out = write_result(f"text_cache_{args.shards}shards", {
            "keys": args.keys, "dim": args.dim, "shards": args.shards, "lookups": args.lookups,
            "repeats": args.repeats, "baseline": "dict index (before session 35), restated in the bench",
            "legs": summary, "runs": legs})
        print(f"wrote {out}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
