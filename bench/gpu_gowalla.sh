#!/usr/bin/env bash
# Issue #6's GPU figures on Gowalla in one device call (docs/results.md, "GPU runbook").
#
# The device machine has no network and no ../shared: stage the data here first with
#   bash bench/gpu_gowalla.sh stage      # copies gowalla + the PyG recipe into .device/ (ignored)
# then, on the device (carry [".device"], timeout_s 600), from the repository root:
#   bash bench/gpu_gowalla.sh run        # about 8 minutes (369 s on an H200, session 41), sized for a session's 15 device minutes
# `run` trains ours with the recipe that reached Recall@20 0.18 in the fewest optimiser steps on CPU
# (batch 16,384, lr 5e-3, user sampling, weight averaging from epoch 400 of 1,000: session 14 in
# docs/results.md, 0.18 at epoch 450 = 22,500 steps, against run D's 56,000 at batch 8,192) for TRAIN_S
# seconds, then the PyG recipe (its own batch of 8,192, lr 1e-3) for BASELINE_S seconds in the same
# process, and records: epoch time
# of each, the epoch-time ratio, training seconds to the recipe's best Recall@20 on each side (the
# "same quality" ratio), ours' wall time to 0.18, and peak GPU memory of each; first, bench_sampling.py
# times drawing an epoch's triples on the GPU against the old numpy sampler, and bench_step.py one BPR
# step by batch size. The JSON is rewritten
# after every evaluation and copied with the log into $OUT, so a call cut short still brings back
# what it measured.
# If ours stopped short of Recall@20 0.18 and device time is left, call at once (a machine goes back
# 30 s after a call)
#   bash bench/gpu_gowalla.sh more       # TRAIN_S more seconds of ours from run's checkpoint
# which writes ..._gpu_more.json: its epochs carry on from run's, its times start at zero.
# The device's python3 already holds torch and PyG; kgrec runs from the source tree (PYTHONPATH).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
PY=${KGREC_GPU_PYTHON:-python3}
DATA=${KGREC_GPU_DATA:-.device/gowalla}
RECIPE=${KGREC_GPU_RECIPE:-.device/pyg_lightgcn_recipe.py}
DEVICE=${KGREC_GPU_DEVICE:-cuda}
TRAIN_S=${KGREC_GPU_TRAIN_S:-240}        # ours: wall budget of the epochs, evaluations and checkpoints included
BASELINE_S=${KGREC_GPU_BASELINE_S:-150}  # the PyG recipe: wall budget, start-up included
SWA_START=${KGREC_GPU_SWA_START:-400}    # ours: the epoch the published weight average starts
MODELS_DIR=${KGREC_GPU_MODELS_DIR:-.kgrec/bench-models/gpu-gowalla}  # ours' checkpoint, which `more` resumes
RESULTS=${OUT:-bench/results}
mkdir -p "$RESULTS"

stage() {
    mkdir -p .device
    rm -rf .device/gowalla  # a second stage would copy into .device/gowalla/gowalla
    cp -r ../shared/datasets/gowalla .device/
    cp ../shared/baselines/pyg_lightgcn_recipe.py .device/
    du -sh .device
}

summary() {  # the few figures worth reading in a call's output
    "$PY" - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
keep = ("complete", "wall_s", "mean_epoch_train_s", "median_epoch_train_s", "best", "time_to_target", "peak_memory",
        "epoch_time_ratio_baseline_over_ours", "epoch_time_ratio_baseline_over_ours_median",
        "step_time_ratio_baseline_over_ours", "time_to_baseline_quality", "time_to_target_quality", "ours_error",
        "machine")
print(json.dumps({k: r[k] for k in keep if k in r}, indent=1))
if "baseline" in r:
    b = r["baseline"]
    print(json.dumps({"baseline_mean_epoch_train_s": b["mean_epoch_train_s"], "baseline_peak_memory": b["peak_memory"],
                      "baseline_epochs": len(b["epochs"]), "baseline_last_epoch": b["epochs"][-1]}, indent=1))
PY
}

report() {  # $1 the bench's JSON, $2 its log, $3 its exit status: the summary, and the log's end on failure
    [[ -f $1 ]] && { summary "$1" || echo "(no summary: $1 is incomplete)"; }  # never the bench's status
    if (( $3 )); then tail -n 30 "$2"; fi
    return "$3"
}

ours() {  # our LightGCN with session 14's recipe for TRAIN_S seconds, resuming MODELS_DIR's checkpoint if any
    local json=$1; shift
    "$PY" bench/bench_gnn_lightgcn.py --data "$DATA" --device "$DEVICE" --batch-size 16384 --lr 5e-3 \
        --positive-sampling user --eval-every 10 --epochs 1000 --swa-start "$SWA_START" --budget-s "$TRAIN_S" \
        --models-dir "$MODELS_DIR" --out "$json" "$@"
}

run() {
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    local name json status=0
    name=$(basename "$DATA")
    json=$RESULTS/gnn_lightgcn_${name}_gpu.json
    # drawing an epoch's triples: torch on CPU and CUDA against the old numpy sampler (about 30 s)
    "$PY" bench/bench_sampling.py --data "$DATA" > "$RESULTS/sampling.log" 2>&1 \
        && cp "bench/results/sampling_$name.json" "$RESULTS/sampling_${name}_gpu.json" || tail -n 5 "$RESULTS/sampling.log"
    # one BPR step by batch size, int32 against int64 adjacency indices (about 20 s)
    "$PY" bench/bench_step.py --data "$DATA" --device "$DEVICE" --batch-sizes 2048,8192,65536 > "$RESULTS/step.log" 2>&1 \
        && cp "bench/results/step_${name}_${DEVICE%%:*}.json" "$RESULTS/" || tail -n 5 "$RESULTS/step.log"
    rm -rf "$MODELS_DIR"  # a fresh start; `more` continues from where this run's budget stops it
    ours "$json" --baseline --baseline-recipe "$RECIPE" --baseline-epochs 1000 --baseline-budget-s "$BASELINE_S" \
        > "$RESULTS/gpu_run.log" 2>&1 || status=$?
    report "$json" "$RESULTS/gpu_run.log" "$status"
}

more() {  # a second call on the still-warm machine: TRAIN_S more seconds of ours from run's checkpoint
    local json status=0
    # no run to continue: a fresh machine (the warm one was handed back), or run's training finished
    # (a finished run removes its checkpoint)
    if ! compgen -G "$MODELS_DIR/.checkpoints/*/last.pt" > /dev/null; then
        echo "gpu_gowalla.sh more: no checkpoint in $MODELS_DIR/.checkpoints to continue (handed back, or run finished)" >&2
        exit 2
    fi
    json=$RESULTS/gnn_lightgcn_$(basename "$DATA")_gpu_more.json
    ours "$json" > "$RESULTS/gpu_more.log" 2>&1 || status=$?
    report "$json" "$RESULTS/gpu_more.log" "$status"
}

case "${1:-}" in
    stage) stage ;;
    run) run ;;
    more) more ;;
    *) echo "usage: $0 stage|run|more" >&2; exit 2 ;;
esac
