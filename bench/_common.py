"""Helpers shared by the benchmarks: machine description and JSON result writing."""
from __future__ import annotations

import json
import os
import platform
import resource
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

if TYPE_CHECKING:  # pragma: no cover
    import torch

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    """What the figures were measured on: the CPU model, torch's thread count and the load average
    at the end too, since a shared host's neighbours move timings by 2-4x."""
    import torch

    info = {"python": platform.python_version(), "cpus": os.cpu_count(), "cpu_model": _cpu_model(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
            "platform": platform.platform(), "load_average": [round(x, 2) for x in os.getloadavg()]}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def neo4j_config(heap: str = "1g", home: str = "neo4j-bench", bolt_port: int = 7692, http_port: int = 7479):
    """The benches' own managed Neo4j under ``.kgrec/<home>`` (``heap`` for both the heap and the page
    cache; a running one keeps the heap it was started with). Never ``NEO4J_URI``'s server: benches
    wipe the database they write to."""
    from kgrec.config import Neo4jConfig

    return Neo4jConfig(home=RESULTS.parents[1] / ".kgrec" / home, bolt_port=bolt_port, http_port=http_port,
                       heap=heap, pagecache=heap)


def timed(fn: Callable[[], object], device: "torch.device") -> float:
    """Seconds that ``fn()`` takes, with the CUDA device synchronised before and after it."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t


def latencies_ms(fn: Callable[[object], object], args: list) -> dict[str, float]:
    """p50 / p95 / mean milliseconds of ``fn(a)`` for each ``a``, one call at a time."""
    import statistics

    times = []
    for a in args:
        t = time.perf_counter()
        fn(a)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {"p50_ms": round(statistics.median(times), 2), "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2),
            "mean_ms": round(statistics.fmean(times), 2)}


def alternating_latencies_ms(fns: dict[str, Callable[[object], object]], args: list,
                             block: int = 25) -> dict[str, dict[str, float]]:
    """:func:`latencies_ms` of several ways of answering the same calls, taken in turn ``block``
    calls at a time, so that a burst of load from a neighbour on a shared host slows every way
    alike. (Blocks rather than single calls: a way that leaves thread pools spinning, as FAISS's
    OpenMP does for a while after each search, would otherwise slow the next way's call.)"""
    import statistics

    times: dict[str, list[float]] = {name: [] for name in fns}
    for start in range(0, len(args), block):
        for name, fn in fns.items():
            for a in args[start:start + block]:
                t = time.perf_counter()
                fn(a)
                times[name].append((time.perf_counter() - t) * 1000)
    out = {}
    for name, ts in times.items():
        ts.sort()
        out[name] = {"p50_ms": round(statistics.median(ts), 2), "p95_ms": round(ts[int(0.95 * (len(ts) - 1))], 2),
                     "mean_ms": round(statistics.fmean(ts), 2)}
    return out


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident memory so far, in MiB: of this process, or (``children``) of the largest waited-for child."""
    return resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF).ru_maxrss / 1024


def results_dir() -> Path:
    """Where results go: ``bench/results``, or ``$KGREC_BENCH_RESULTS`` (a trial run at small sizes,
    which would otherwise overwrite the recorded figures of the same name)."""
    return Path(os.environ.get("KGREC_BENCH_RESULTS") or RESULTS)


def write_result(name: str, payload: dict) -> Path:
    """Write ``<results_dir()>/<name>.json`` (with machine info and a timestamp) and return its path."""
    out = results_dir() / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
                               "machine": machine(), **payload}, indent=2))
    return out


def plan_operators(plan: dict) -> Iterator[dict]:
    """Every operator of a Neo4j EXPLAIN/PROFILE plan (the driver's ``summary.plan``/``profile``), root first."""
    yield plan
    for child in plan.get("children", []):
        yield from plan_operators(child)
