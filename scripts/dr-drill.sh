#!/usr/bin/env bash
# Disaster-recovery drill (the production checklist's "Recovery Procedures Tested"):
#
#   1. back up the deployment and verify the backup     genesis-flow backup --out DIR --verify
#   2. destroy the database and the artifact store       (only with --destroy-source)
#   3. restore into a fresh database and artifact root   genesis-flow restore DIR --drop
#   4. start writer, ingest, query and the router on it  tools/deployment/dr_drill.py serve
#   5. compare counts, the metric-history digest and     tools/deployment/dr_drill.py compare
#      every run's artifacts with the manifest
#   6. run the end-to-end check                          tools/deployment/validate_deployment.py
#   7. stop the tiers; drop the restored database, its artifacts and queues (unless --keep)
#
#   bash scripts/dr-drill.sh [--workdir DIR] [--destroy-source] [--restore-db NAME]
#                            [--restore-artifact-root URI] [--keep]
#
# The deployment comes from the usual environment (GENESIS_FLOW_MONGODB_URI, GENESIS_FLOW_MONGODB_DB,
# GENESIS_FLOW_ARTIFACT_ROOT, AZURE_STORAGE_CONNECTION_STRING, GENESIS_FLOW_AMQP_URL, ...). The
# restored deployment uses database <db>_dr, artifacts under <workdir>/restored-artifacts and queues
# <prefix>-dr.* unless told otherwise, so a drill never touches the deployment it copies unless
# --destroy-source says so. PYTHON (default python3) must have genesis-flow and mlflow installed.
# Every step's output and reports stay in the work directory; exit status 0 when every step passed.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"

WORK="" DESTROY=0 KEEP=0
SOURCE_DB="${GENESIS_FLOW_MONGODB_DB:-mlflow_db}"
RESTORE_DB="" RESTORE_ROOT=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --workdir) WORK="$2"; shift 2 ;;
        --destroy-source) DESTROY=1; shift ;;
        --restore-db) RESTORE_DB="$2"; shift 2 ;;
        --restore-artifact-root) RESTORE_ROOT="$2"; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "dr-drill: unknown argument $1" >&2; exit 2 ;;
    esac
done
WORK="${WORK:-$(mktemp -d -t gf-dr-drill-XXXXXX)}"
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
RESTORE_DB="${RESTORE_DB:-${SOURCE_DB}_dr}"
RESTORE_ROOT="${RESTORE_ROOT:-file://$WORK/restored-artifacts}"
BACKUP="$WORK/backup"

export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"  # the checkout's code, from any directory
gf() { "$PY" -m genesis_flow.cli "$@"; }
drill() { "$PY" "$REPO/tools/deployment/dr_drill.py" "$@"; }
restored_env() {  # the restored deployment's settings, for the commands that follow
    export GENESIS_FLOW_MONGODB_DB="$RESTORE_DB" GENESIS_FLOW_ARTIFACT_ROOT="$RESTORE_ROOT" \
           GENESIS_FLOW_QUEUE_PREFIX="${GENESIS_FLOW_QUEUE_PREFIX:-genesis}-dr"
}
restored() { ( restored_env; "$@" ); }
step() { printf '\n[dr-drill %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

SERVE_PID=""
finish() {
    status=$?
    if [[ -n "$SERVE_PID" ]]; then kill "$SERVE_PID" 2>/dev/null || true; wait "$SERVE_PID" 2>/dev/null || true; fi
    if [[ $KEEP -eq 0 && -n "${RESTORED:-}" ]]; then
        step "7/7 clean up the restored deployment"
        restored drill cleanup --yes || true
    fi
    if [[ $status -eq 0 ]]; then step "drill passed; reports in $WORK"; else step "drill FAILED ($status); logs in $WORK"; fi
    exit "$status"
}
trap finish EXIT

step "1/7 back up $SOURCE_DB into $BACKUP (and verify it)"
gf backup --out "$BACKUP" --verify | tee "$WORK/backup.json"

if [[ $DESTROY -eq 1 ]]; then
    step "2/7 destroy $SOURCE_DB and its artifact store"
    drill destroy --yes
else
    step "2/7 (source left alone; --destroy-source destroys it)"
fi

step "3/7 restore into $RESTORE_DB, artifacts into $RESTORE_ROOT"
RESTORED=1
restored gf restore "$BACKUP" --drop | tee "$WORK/restore.json"

step "4/7 start writer, ingest, query and the router on $RESTORE_DB"
rm -f "$WORK/uri"
# exec: $! is the serve process itself, which stops the tiers it started when it is stopped
( restored_env; exec "$PY" "$REPO/tools/deployment/dr_drill.py" serve --uri-file "$WORK/uri" --workdir "$WORK/tiers" \
    > "$WORK/serve.log" 2>&1 ) &
SERVE_PID=$!
for _ in $(seq 1 600); do
    [[ -s "$WORK/uri" ]] && break
    kill -0 "$SERVE_PID" 2>/dev/null || { cat "$WORK/serve.log" >&2; exit 1; }
    sleep 0.2
done
[[ -s "$WORK/uri" ]] || { echo "dr-drill: the tiers did not become ready" >&2; exit 1; }
URI="$(cat "$WORK/uri")"
echo "tracking URI: $URI"

step "5/7 compare the restored deployment with the backup's manifest"
drill compare --tracking-uri "$URI" --backup "$BACKUP" --output "$WORK/compare.json"

step "6/7 end-to-end check"
"$PY" "$REPO/tools/deployment/validate_deployment.py" --tracking-uri "$URI" --artifact-root "$RESTORE_ROOT" \
    --output "$WORK/validation.json"
