#!/usr/bin/env bash
# The text and knowledge-graph models on the GPU, in one device call (docs/results.md, "GPU runbook").
#
# gpu_gowalla.sh measures LightGCN; this one runs the rest of gnn/ on CUDA: the lastfm and ml-100k
# ablations (id-only LightGCN, text only, fused, fused + R-GCN with bf16 autocast), GF-CF on Gowalla
# with CUDA scoring, and the full-graph against neighbour-sampled R-GCN bench.
# The device machine has no network, no ../shared and no Neo4j: stage here first with
#   bash bench/gpu_kg.sh stage   # the ablations' encoded snapshots (built here through Neo4j by
#                                # bench_ablation.py) and gowalla into .device/ (ignored)
# The snapshots' text embeddings travel as float16 (lastfm's are 60 MB in float32, over a call's
# 64 MiB); `run` turns them back into float32 before use, so the models read what they read here,
# to float16's precision (about 3 significant digits). The image has no Neo4j driver, which kg's
# modules import at the top (the sampled bench's synthetic catalogue goes through kg.export): stage
# downloads its wheel and pytz's into .device/whl, and run installs them into /tmp/site.
# Then on the device (carry [".device"]) from the repository root:
#   bash bench/gpu_kg.sh run     # about 5 minutes (292 s on an H200, session 41); each part has its own
#                                # time limit, in order of value (together more than a call's 600 s:
#                                # a slow machine loses the last parts, not the first)
# Every JSON goes to $OUT (KGREC_BENCH_RESULTS), with one log, so a call cut short brings back
# the parts it finished.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
PY=${KGREC_GPU_PYTHON:-python3}
DEVICE=${KGREC_GPU_DEVICE:-cuda}
ROW_S=${KGREC_GPU_ROW_S:-60}        # each trained ablation row's training budget
THREADS=${KGREC_GPU_THREADS:-8}     # torch CPU threads of the ablation's CPU parts (ridge map, fold-in)
RESULTS=${OUT:-bench/results}
export KGREC_BENCH_RESULTS=$RESULTS
LOG=$RESULTS/gpu_kg.log
mkdir -p "$RESULTS"

recast() {  # $1 an .npz of text embeddings, $2 the dtype its float arrays are stored in from now on
    "$PY" - "$1" "$2" <<'PY'
import sys, numpy as np
path, dtype = sys.argv[1], sys.argv[2]
with np.load(path) as z:
    arrays = {k: z[k].astype(dtype) if z[k].dtype.kind == "f" else z[k] for k in z.files}
np.savez(path, **arrays)
PY
}

stage() {  # here, with kgrec's venv (numpy) unless KGREC_GPU_PYTHON says otherwise
    local name src
    [[ -n ${KGREC_GPU_PYTHON:-} || ! -x .venv/bin/python ]] || PY=.venv/bin/python
    mkdir -p .device/snapshots
    for name in lastfm ml-100k; do
        src=.kgrec/bench-snapshots/ablation-$name-latest
        if [[ ! -f $src/text_embeddings.npz ]]; then
            echo "gpu_kg.sh stage: no encoded $name snapshot; build one with" \
                 "python bench/bench_ablation.py --dataset $name --rows popularity" >&2
            exit 2
        fi
        rm -rf ".device/snapshots/$name"
        cp -rL "$src/" ".device/snapshots/$name"
        rm -f ".device/snapshots/$name/.encode.lock"
        recast ".device/snapshots/$name/text_embeddings.npz" float16
    done
    rm -rf .device/gowalla .device/whl
    cp -r ../shared/datasets/gowalla .device/
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 -d .device/whl \
        "neo4j==$("$PY" -c 'import importlib.metadata as m; print(m.version("neo4j"))')" pytz
    du -sh .device
}

part() {  # $1 a time limit in seconds, then the command: logged, never fatal
    local limit=$1; shift
    echo "=== $* (limit ${limit}s) $(date +%T)" >> "$LOG"
    timeout "$limit" "$@" >> "$LOG" 2>&1 || echo "=== exit $? $(date +%T)" >> "$LOG"
}

run() {
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    local name
    if compgen -G ".device/whl/*.whl" > /dev/null; then  # the Neo4j driver (see above)
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/kgrec-site \
            .device/whl/*.whl
        export PYTHONPATH=$PYTHONPATH:/tmp/kgrec-site
    fi
    for name in lastfm ml-100k; do  # back to float32 (see stage)
        recast ".device/snapshots/$name/text_embeddings.npz" float32
    done
    part $((4 * ROW_S + 60)) "$PY" bench/bench_ablation.py --dataset lastfm --snapshot .device/snapshots/lastfm \
        --device "$DEVICE" --threads "$THREADS" --budget-s "$ROW_S" --out ablation_lastfm_gpu
    part 90 "$PY" bench/bench_gnn_gfcf.py --data .device/gowalla --device "$DEVICE" \
        --out "$RESULTS/gnn_gfcf_gowalla_gpu.json"
    # the training part only, 2 epochs: the sampled variant samples its subgraphs on the CPU (about
    # 16 s an epoch on one thread), and session 41's 5 epochs of both parts overran 60 s
    part 120 "$PY" bench/bench_gnn_sampled.py --device "$DEVICE" --parts train --epochs 2 --threads "$THREADS" \
        --out gnn_sampled_gpu
    part $((4 * ROW_S + 60)) "$PY" bench/bench_ablation.py --dataset ml-100k --snapshot .device/snapshots/ml-100k \
        --device "$DEVICE" --threads "$THREADS" --budget-s "$ROW_S" --out ablation_ml-100k_gpu
    grep -h "^===\|^| \|Traceback\|Error" "$LOG" || true
}

case "${1:-}" in
    stage) stage ;;
    run) run ;;
    *) echo "usage: $0 stage|run" >&2; exit 2 ;;
esac
