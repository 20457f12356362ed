#!/usr/bin/env bash
# Periodic retraining, for cron or any scheduler. Optionally loads one source incrementally, then
# runs `kgrec retrain`: export, encode, train, publish if the quality gate passes, write back, prune.
#
#   scripts/retrain.sh                                   # retrain on what the graph holds
#   scripts/retrain.sh tabular /data/events.csv --mapping m.toml   # load new events first
#   0 3 * * *  cd /srv/kgrec && KGREC_FEED=clicks scripts/retrain.sh tabular /data/clicks-today.csv --mapping m.toml
#
# Environment: KGREC (the kgrec executable, default .venv/bin/kgrec), KGREC_FEED (the ingest feed
# whose watermark the load uses), KGREC_WAIT (seconds to wait for another ingest, default 600),
# plus every KGREC_* / NEO4J_* setting kgrec reads.
# Exit status: 0 published, 3 the quality gate kept the served model, 2 an error (one line on stderr).
set -euo pipefail
cd "$(dirname "$0")/.."
kgrec=${KGREC:-.venv/bin/kgrec}
if [ ! -x "$kgrec" ]; then make -s install; fi
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
wait_s=${KGREC_WAIT:-600}
if [ $# -gt 0 ]; then
  feed=()
  if [ -n "${KGREC_FEED:-}" ]; then feed=(--feed "$KGREC_FEED"); fi
  echo "$(date -u +%FT%TZ) ingest $*" >&2
  "$kgrec" ingest "$@" --incremental "${feed[@]}" --wait "$wait_s" --no-quality
fi
echo "$(date -u +%FT%TZ) retrain" >&2
exec "$kgrec" retrain --wait "$wait_s"
