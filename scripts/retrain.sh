#!/usr/bin/env bash
# Periodic retraining, for cron or any scheduler. Optionally loads one source incrementally, then
# runs `kgrec retrain`: export, encode, train, publish if the quality gate passes, write back, prune.
#
#   scripts/retrain.sh                                              # retrain on what the graph holds
#   scripts/retrain.sh tabular /data/events.csv --mapping m.toml    # load new events first
#   0 3 * * *  KGREC_FEED=clicks /srv/kgrec/scripts/retrain.sh tabular /data/clicks.csv --mapping /data/m.toml
#
# Paths are taken from the directory it is started in. kgrec's state stays in this checkout's
# .kgrec/ unless KGREC_WORKDIR (or the workdir of KGREC_CONFIG's file) says otherwise; kgrec's own Neo4j is started when it is not running
# (unless NEO4J_URI names another server). Environment: KGREC (the kgrec command, default this
# checkout's .venv/bin/kgrec, installed on first use; run `make install` after a git pull), KGREC_FEED (the ingest feed whose watermark the load uses),
# KGREC_WAIT (seconds to wait for another ingest, default 600), KGREC_CONFIG (a TOML config file),
# and every KGREC_* / NEO4J_* setting kgrec reads.
# Exit status: 0 published, 3 the quality gate kept the served model, 4 published but the write-back
# to Neo4j failed (`kgrec writeback` retries it), 5 the new model is broken (training diverged or no finite test
# score; the served one stays), 6 another retrain of the model directory is still running (nothing done),
# anything else an error.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# this checkout's .kgrec unless KGREC_WORKDIR, or the workdir of the KGREC_CONFIG file, names another
# (KGREC_WORKDIR would override the file's, splitting cron's state from the user's own commands);
# without a file, KGREC_WORKDIR itself, which a kgrec older than KGREC_WORKDIR_DEFAULT reads too
if [ -n "${KGREC_CONFIG:-}" ]; then
  export KGREC_WORKDIR_DEFAULT=$root/.kgrec
else
  export KGREC_WORKDIR=${KGREC_WORKDIR:-$root/.kgrec}
fi
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
if [ -n "${KGREC:-}" ]; then
  kgrec=$KGREC
  command -v "$kgrec" >/dev/null || { echo "KGREC=$kgrec is not a command here (cron's PATH?)" >&2; exit 2; }
else
  kgrec=$root/.venv/bin/kgrec
  # installed on first use only: an upgrade (after a git pull) is `make install`, run by hand, not
  # by a nightly job that may be offline or race another one on the same venv
  [ -x "$kgrec" ] || make -s -C "$root" install >&2
fi
uri="${NEO4J_URI:-}${KGREC_NEO4J__URI:-}"
if [ -z "${uri//[[:space:]]/}" ]; then  # blank ones are unset, as kgrec reads them
  "$kgrec" neo4j start >&2  # kgrec's own server, after a reboot say; nothing to do when it runs
fi
wait_s=${KGREC_WAIT:-600}
if [ $# -gt 0 ]; then
  feed=()
  if [ -n "${KGREC_FEED:-}" ]; then feed=(--feed "$KGREC_FEED"); fi
  echo "$(date -u +%FT%TZ) ingest $*" >&2
  # its report goes to stderr: stdout is the retrain's JSON report alone (`scripts/retrain.sh | jq`)
  "$kgrec" ingest "$@" --incremental ${feed[@]+"${feed[@]}"} --wait "$wait_s" --no-quality >&2
fi
echo "$(date -u +%FT%TZ) retrain" >&2
exec "$kgrec" retrain --wait "$wait_s"
