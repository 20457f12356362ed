#!/usr/bin/env bash
# Issue #6's GPU figures on Gowalla, run on a lent device machine (docs/results.md, "GPU runbook").
#
# The device machine has no network and no ../shared: stage the data here first with
#   bash bench/gpu_gowalla.sh stage      # copies gowalla + the PyG recipe into .device/ (ignored)
# then, on the device (carry [".device"]), from the repository root:
#   bash bench/gpu_gowalla.sh speed      # ours vs the PyG recipe, same recipe (batch 8192, lr 1e-3): epoch
#                                        # time, Recall/NDCG@20 per epoch, peak GPU memory (about 5 min)
#   bash bench/gpu_gowalla.sh start      # the LightGCN paper recipe (batch 2048, lr 1e-3) in the background,
#                                        # in its own session so it outlives the call, then watches it
#   bash bench/gpu_gowalla.sh watch      # keeps watching; call again within 30 s of the last call's end
# Every mode copies its JSON and log tail into $OUT (the files that come back) as it goes.
# The device's python3 already holds torch and PyG; kgrec runs from the source tree (PYTHONPATH).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
PY=${KGREC_GPU_PYTHON:-python3}
DATA=${KGREC_GPU_DATA:-.device/gowalla}
RECIPE=${KGREC_GPU_RECIPE:-.device/pyg_lightgcn_recipe.py}
DEVICE=${KGREC_GPU_DEVICE:-cuda}
BUDGET_S=${KGREC_GPU_BUDGET_S:-1300}   # the background run's training budget
WATCH_S=${KGREC_GPU_WATCH_S:-540}      # how long one call watches (a device command may run 600 s)
RESULTS=${OUT:-bench/results}
RUN=.kgrec/gpu-run
mkdir -p "$RESULTS" "$RUN"

stage() {
    mkdir -p .device
    cp -r ../shared/datasets/gowalla .device/
    cp ../shared/baselines/pyg_lightgcn_recipe.py .device/
    du -sh .device
}

speed() {
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    "$PY" bench/bench_gnn_lightgcn.py --data "$DATA" --device "$DEVICE" --batch-size 8192 --lr 1e-3 \
        --positive-sampling interaction --eval-every 5 --budget-s 120 \
        --baseline --baseline-recipe "$RECIPE" --baseline-epochs 10 \
        --out "$RESULTS/gnn_lightgcn_gowalla_gpu_speed.json" > "$RESULTS/speed.log" 2>&1 || { tail -n 20 "$RESULTS/speed.log"; exit 1; }
    summary "$RESULTS/gnn_lightgcn_gowalla_gpu_speed.json"
}

summary() {  # the few figures worth reading in a call's output
    "$PY" - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
keep = ("complete", "wall_s", "mean_epoch_train_s", "median_epoch_train_s", "best", "time_to_target", "peak_memory",
        "epoch_time_ratio_baseline_over_ours", "epoch_time_ratio_baseline_over_ours_median", "machine")
print(json.dumps({k: r[k] for k in keep if k in r}, indent=1))
if "baseline" in r:
    b = r["baseline"]
    print(json.dumps({"baseline_mean_epoch_train_s": b["mean_epoch_train_s"], "baseline_peak_memory": b["peak_memory"],
                      "baseline_last_epoch": b["epochs"][-1]}, indent=1))
PY
}

alive() { [[ -f $RUN/pid ]] && kill -0 "$(cat "$RUN/pid")" 2>/dev/null; }

start() {
    if alive; then echo "already running (pid $(cat "$RUN/pid"))"; else
        # setsid: a process in its own session survives the end of this call (device README)
        setsid "$PY" bench/bench_gnn_lightgcn.py --data "$DATA" --device "$DEVICE" --batch-size 2048 --lr 1e-3 \
            --positive-sampling user --eval-every 20 --budget-s "$BUDGET_S" --models-dir .kgrec/bench-models/gpu \
            --out "$RUN/gnn_lightgcn_gowalla_gpu.json" > "$RUN/log" 2>&1 < /dev/null &
        echo $! > "$RUN/pid"
        echo "started pid $(cat "$RUN/pid")"
    fi
    watch
}

watch() {
    local t0=$SECONDS
    while alive && (( SECONDS - t0 < WATCH_S )); do sleep 10; done
    [[ -f $RUN/gnn_lightgcn_gowalla_gpu.json ]] && cp "$RUN/gnn_lightgcn_gowalla_gpu.json" "$RESULTS/"
    tail -c 200000 "$RUN/log" > "$RESULTS/gpu_run.log" || true
    [[ -f $RUN/gnn_lightgcn_gowalla_gpu.json ]] && summary "$RUN/gnn_lightgcn_gowalla_gpu.json"
    if alive; then echo "still running after ${WATCH_S}s: call 'watch' again"; else echo "finished"; grep -v "^{" "$RUN/log" | tail -n 3; fi
}

case "${1:-}" in
    stage) stage ;;
    speed) speed ;;
    start) start ;;
    watch) watch ;;
    *) echo "usage: $0 stage|speed|start|watch" >&2; exit 2 ;;
esac
