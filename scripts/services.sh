#!/usr/bin/env bash
# Local test servers for Genesis-Flow (no Docker needed): RabbitMQ, a MongoDB
# wire-protocol server (SecantusDB) and Azurite (Azure Blob emulator); also makes
# sure nginx is installed (tests start their own nginx with their own config).
#
#   bash scripts/services.sh install   # idempotent; installs only what is missing
#   bash scripts/services.sh start     # starts what is not already answering
#   bash scripts/services.sh status    # exit 0 only when all three answer
#   bash scripts/services.sh stop [rabbitmq|mongodb|azurite ...]
#   bash scripts/services.sh env       # export lines for the test suite
#   bash scripts/services.sh is-up NAME   # exit 0 if NAME answers (for scripts)
#
# MongoDB wire server: SecantusDB's Rust server `secantusd-rs` when it is built (on PATH or in
# ~/.cargo/bin; much faster), else its Python server `secantusd-py`. `install` builds the Rust
# one in the background when cargo is there (about ten minutes on two cores, at the lowest CPU
# priority; log in .services/logs/secantusd-rs-build.log); until it is done, `start` uses the
# Python one and says so. GENESIS_FLOW_MONGO_SERVER=secantusd-py|secantusd-rs forces a choice
# (secantusd-rs then fails if it is not built); GENESIS_FLOW_BUILD_SECANTUS_RS=0 skips the build.
#
# State (data, logs, pid files): ${GENESIS_FLOW_SERVICES_DIR:-<repo>/.services}.
# `stop` only stops services whose pid file this script wrote, i.e. services it
# started itself; servers found already running are left alone.
# RabbitMQ is the Debian system node (rabbit@$(hostname -s)), run as user
# `rabbitmq` with Debian's own data/log dirs (/var/lib/rabbitmq, /var/log/rabbitmq):
# those work wherever the repo lives, even in a directory the rabbitmq user
# cannot read.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${GENESIS_FLOW_SERVICES_DIR:-$REPO/.services}"
LOGS="$STATE/logs"
RUN="$STATE/run"

HOST=127.0.0.1
MONGO_PORT=27017
AMQP_PORT=5672
BLOB_PORT=10000
AZURITE_VERSION=3.35.0
SECANTUS_REQ='SecantusDB>=0.7.0b3'
SECANTUS_RS_CRATE=secantus-mdb
SECANTUS_RS_VERSION=0.5.3-beta.196

RABBIT_TIMEOUT="${GENESIS_FLOW_RABBIT_TIMEOUT:-180}"
MONGO_TIMEOUT="${GENESIS_FLOW_MONGO_TIMEOUT:-90}"
AZURITE_TIMEOUT="${GENESIS_FLOW_AZURITE_TIMEOUT:-60}"

AZURITE_ACCOUNT=devstoreaccount1
AZURITE_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

MONGODB_URI="mongodb://$HOST:$MONGO_PORT/?directConnection=true"
AMQP_URL="amqp://guest:guest@$HOST:$AMQP_PORT/"
AZURE_CONNECTION_STRING="DefaultEndpointsProtocol=http;AccountName=$AZURITE_ACCOUNT;AccountKey=$AZURITE_KEY;BlobEndpoint=http://$HOST:$BLOB_PORT/$AZURITE_ACCOUNT;"

# ---------------------------------------------------------------- helpers ----

log() { printf '[services %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [[ $(id -u) -eq 0 ]]; then SUDO=(); else SUDO=(sudo -n); fi
# /usr/sbin is not always on a non-root PATH (rabbitmq-server, nginx live there).
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

pick_python() {
    if [[ -n "${PYTHON:-}" ]]; then echo "$PYTHON"
    elif command -v python >/dev/null 2>&1; then echo python
    elif command -v python3 >/dev/null 2>&1; then echo python3
    else die "no python/python3 on PATH"; fi
}
PY="$(pick_python)"

now() { date +%s; }

# TCP connect test with a short timeout (bash /dev/tcp; no curl/nc needed).
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

# A broker is "up" only when the AMQP handshake gets a connection.start frame
# back (a bare TCP accept is not enough).
amqp_up() {
    timeout 5 "$PY" - "$HOST" "$AMQP_PORT" <<'EOF' >/dev/null 2>&1
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
s.sendall(b"AMQP\x00\x00\x09\x01")
sys.exit(0 if s.recv(1) == b"\x01" else 1)
EOF
}

mongo_up() {
    timeout 10 "$PY" - "$MONGODB_URI" <<'EOF' >/dev/null 2>&1
import sys
from pymongo import MongoClient
c = MongoClient(sys.argv[1], serverSelectionTimeoutMS=1500, connectTimeoutMS=1500)
try:
    c.admin.command("ping")
finally:
    c.close()
EOF
}

azurite_up() { port_open "$HOST" "$BLOB_PORT"; }

is_up() {
    case "$1" in
        rabbitmq) amqp_up ;;
        mongodb) mongo_up ;;
        azurite) azurite_up ;;
        *) die "unknown service '$1' (rabbitmq, mongodb, azurite)" ;;
    esac
}

pid_alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }
pidfile() { echo "$RUN/$1.pid"; }
read_pid() { [[ -f "$(pidfile "$1")" ]] && tr -dc '0-9' <"$(pidfile "$1")" || true; }

rotate_log() { [[ -s "$1" ]] && mv -f "$1" "$1.1"; return 0; }

show_log_tail() { # file [lines]
    local f="$1" n="${2:-40}"
    if [[ -f "$f" ]]; then
        log "---- last $n lines of $f ----"
        tail -n "$n" "$f" >&2 || true
        log "---- end of $f ----"
    fi
}

rabbitmq_log_file() { # Debian default: /var/log/rabbitmq/rabbit@<shorthost>.log
    local f
    f="$(ls -t /var/log/rabbitmq/*.log 2>/dev/null | grep -v -e '_upgrade' | head -n1 || true)"
    echo "${f:-/var/log/rabbitmq/rabbit@$(hostname -s).log}"
}

rabbitmqctl_() { "${SUDO[@]}" rabbitmqctl "$@"; }

# Start a long-running server detached from this shell (own session, so a
# terminal's Ctrl-C or the caller's process group kill does not hit it) and
# record its pid. The inner bash writes its own pid, then execs the server.
spawn() { # name logfile cmd...
    local name="$1" logfile="$2"; shift 2
    if command -v setsid >/dev/null 2>&1; then
        setsid bash -c 'echo $$ >"$0"; exec "$@"' "$(pidfile "$name")" "$@" \
            >>"$logfile" 2>&1 </dev/null &
    else
        nohup bash -c 'echo $$ >"$0"; exec "$@"' "$(pidfile "$name")" "$@" \
            >>"$logfile" 2>&1 </dev/null &
    fi
    disown || true
    local i
    for i in $(seq 1 50); do [[ -s "$(pidfile "$name")" ]] && break; sleep 0.1; done
}

secantus_bin() {
    if command -v secantusd-py >/dev/null 2>&1; then command -v secantusd-py; return; fi
    local d
    d="$("$PY" -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)"
    if [[ -n "$d" && -x "$d/secantusd-py" ]]; then echo "$d/secantusd-py"; return; fi
    d="$("$PY" -c 'import site; print(site.getuserbase())' 2>/dev/null || true)"
    if [[ -n "$d" && -x "$d/bin/secantusd-py" ]]; then echo "$d/bin/secantusd-py"; return; fi
    return 1
}

secantus_rs_bin() {
    if command -v secantusd-rs >/dev/null 2>&1; then command -v secantusd-rs; return; fi
    local f="${CARGO_HOME:-$HOME/.cargo}/bin/secantusd-rs"
    if [[ -x "$f" ]]; then echo "$f"; return; fi
    return 1
}

cargo_bin() {
    if command -v cargo >/dev/null 2>&1; then command -v cargo; return; fi
    local f="${CARGO_HOME:-$HOME/.cargo}/bin/cargo"
    if [[ -x "$f" ]]; then echo "$f"; return; fi
    return 1
}

secantus_rs_building() { pid_alive "$(read_pid secantusd-rs-build)"; }

# "name path" of the MongoDB wire server `start` runs (see the header).
mongo_server() {
    local want="${GENESIS_FLOW_MONGO_SERVER:-}" bin
    case "$want" in
        "" | secantusd-rs)
            if bin="$(secantus_rs_bin)"; then echo "secantusd-rs $bin"; return; fi
            [[ -z "$want" ]] || die "GENESIS_FLOW_MONGO_SERVER=secantusd-rs, but secantusd-rs is not built" ;;
        secantusd-py) ;;
        *) die "GENESIS_FLOW_MONGO_SERVER must be secantusd-py or secantusd-rs, not '$want'" ;;
    esac
    bin="$(secantus_bin)" || die "secantusd-py not installed: run 'bash $0 install'"
    echo "secantusd-py $bin"
}

# ---------------------------------------------------------------- install ----

install_secantus_rs() {
    local bin cargo
    if bin="$(secantus_rs_bin)"; then
        log "install: secantusd-rs already built ($bin)"
        return 0
    fi
    if [[ "${GENESIS_FLOW_BUILD_SECANTUS_RS:-1}" == 0 ]]; then
        log "install: GENESIS_FLOW_BUILD_SECANTUS_RS=0: not building secantusd-rs; secantusd-py it is"
        return 0
    fi
    if ! cargo="$(cargo_bin)"; then
        log "install: no cargo here: the MongoDB wire server will be secantusd-py"
        return 0
    fi
    if secantus_rs_building; then
        log "install: secantusd-rs is already building (pid $(read_pid secantusd-rs-build))"
        return 0
    fi
    mkdir -p "$LOGS" "$RUN"
    log "install: building secantusd-rs in the background (cargo install $SECANTUS_RS_CRATE $SECANTUS_RS_VERSION," \
        "~10 min on 2 cores, lowest CPU priority; log $LOGS/secantusd-rs-build.log); secantusd-py until then"
    # Its manifest asks for rustc 1.98; it builds and runs on 1.95.
    spawn secantusd-rs-build "$LOGS/secantusd-rs-build.log" nice -n 19 "$cargo" install --quiet \
        "$SECANTUS_RS_CRATE" --version "$SECANTUS_RS_VERSION" --ignore-rust-version
}

deb_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

cmd_install() {
    local t0; t0=$(now)
    local missing=() p
    # chromium: the browser the UI tests drive (headless; Playwright cannot download one here).
    for p in rabbitmq-server nginx chromium; do deb_installed "$p" || missing+=("$p"); done
    if ((${#missing[@]})); then
        command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install ${missing[*]} by hand"
        # apt-get update only when the package lists do not know the packages
        # (fresh images ship with empty lists).
        local need_update=0
        for p in "${missing[@]}"; do
            apt-cache show "$p" >/dev/null 2>&1 || need_update=1
        done
        if ((need_update)); then
            log "install: apt-get update"
            "${SUDO[@]}" apt-get update -qq
        fi
        # Keep maintainer scripts from starting the daemons (no init here; we start
        # RabbitMQ ourselves, and tests run their own nginx).
        local policy=/usr/sbin/policy-rc.d added_policy=0
        if [[ ! -e $policy ]]; then
            printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
            "${SUDO[@]}" chmod 755 "$policy"
            added_policy=1
        fi
        log "install: apt-get install ${missing[*]}"
        local rc=0
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends "${missing[@]}" || rc=$?
        if ((rc != 0 && need_update == 0)); then # stale lists (404s): refresh once
            log "install: apt-get install failed ($rc); retrying after apt-get update"
            "${SUDO[@]}" apt-get update -qq
            rc=0
            "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
                apt-get install -y -qq --no-install-recommends "${missing[@]}" || rc=$?
        fi
        ((added_policy)) && "${SUDO[@]}" rm -f "$policy"
        ((rc == 0)) || die "apt-get install ${missing[*]} failed (exit $rc)"
    else
        log "install: rabbitmq-server, nginx and chromium already installed"
    fi

    if command -v azurite-blob >/dev/null 2>&1; then
        local v; v="$(azurite-blob --version 2>/dev/null | tr -d '[:space:]' || true)"
        log "install: azurite-blob already installed (version ${v:-unknown})"
        [[ "$v" == "$AZURITE_VERSION" ]] ||
            log "install: WARNING: expected azurite $AZURITE_VERSION (newer ones need Node 22)"
    else
        command -v npm >/dev/null 2>&1 || die "npm not found: Node.js 20 + npm are needed for Azurite"
        log "install: npm install -g azurite@$AZURITE_VERSION"
        "${SUDO[@]}" npm install -g --no-fund --no-audit --loglevel=error "azurite@$AZURITE_VERSION"
        command -v azurite-blob >/dev/null 2>&1 || die "azurite-blob not on PATH after npm install -g"
    fi

    if secantus_bin >/dev/null; then
        log "install: secantusd-py already installed ($(secantus_bin))"
    else
        log "install: $PY -m pip install '$SECANTUS_REQ'"
        PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
            "$PY" -m pip install -q "$SECANTUS_REQ"
        secantus_bin >/dev/null || die "secantusd-py not found after pip install $SECANTUS_REQ"
    fi
    install_secantus_rs
    if ! "$PY" -c 'import pymongo' 2>/dev/null; then
        log "install: $PY -m pip install pymongo (used for the MongoDB ping)"
        PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore "$PY" -m pip install -q pymongo
    fi
    log "install: done in $(($(now) - t0))s"
}

# ------------------------------------------------------------------ start ----

rabbit_node_pid() { # pid of the Erlang VM, or empty
    local out
    out="$(rabbitmqctl_ -q eval 'os:getpid().' 2>/dev/null || true)"
    tr -dc '0-9' <<<"$out"
}

start_rabbitmq() {
    local t0; t0=$(now)
    local out="$LOGS/rabbitmq-start.log"
    if amqp_up; then
        log "rabbitmq: already answering on $HOST:$AMQP_PORT, not starting it"
        return 0
    fi
    rotate_log "$out"
    command -v rabbitmq-server >/dev/null 2>&1 || die "rabbitmq-server not installed: run 'bash $0 install'"
    if rabbitmqctl_ -q ping >/dev/null 2>&1; then
        # Erlang node up but the rabbit app stopped (e.g. a test's stop_app).
        log "rabbitmq: node is up but the broker app is stopped; rabbitmqctl start_app"
        rabbitmqctl_ -q start_app >>"$out" 2>&1 || true
    else
        log "rabbitmq: rabbitmq-server -detached (node rabbit@$(hostname -s), log $(rabbitmq_log_file))"
        "${SUDO[@]}" rabbitmq-server -detached >>"$out" 2>&1 ||
            { show_log_tail "$out"; die "rabbitmq: rabbitmq-server -detached failed"; }
    fi
    # await_startup exits 69 while the node is not yet reachable: retry, bounded.
    local tries=0 rc
    while :; do
        tries=$((tries + 1))
        rc=0
        rabbitmqctl_ -q await_startup --timeout 60 >>"$out" 2>&1 || rc=$?
        ((rc == 0)) && break
        if (($(now) - t0 >= RABBIT_TIMEOUT)); then
            show_log_tail "$out"
            show_log_tail "$(rabbitmq_log_file)"
            die "rabbitmq: not started after ${RABBIT_TIMEOUT}s ($tries await_startup tries, last exit $rc)"
        fi
        sleep 2
    done
    # Quorum queues: on by default for a fresh 3.10 node; enabling all flags is
    # idempotent and covers a node whose data dir predates them.
    rabbitmqctl_ -q enable_feature_flag all >>"$out" 2>&1 ||
        log "rabbitmq: WARNING: enable_feature_flag all failed (see $out)"
    local pid; pid="$(rabbit_node_pid)"
    [[ -n "$pid" ]] && echo "$pid" >"$(pidfile rabbitmq)"
    until amqp_up; do
        if (($(now) - t0 >= RABBIT_TIMEOUT)); then
            show_log_tail "$(rabbitmq_log_file)"
            die "rabbitmq: node started but AMQP port $AMQP_PORT does not answer"
        fi
        sleep 1
    done
    log "rabbitmq: up on amqp://$HOST:$AMQP_PORT (pid ${pid:-?}, ${tries} await_startup tries) in $(($(now) - t0))s"
}

start_mongodb() {
    local t0; t0=$(now)
    local logfile="$LOGS/mongodb.log" server name bin data
    if mongo_up; then
        log "mongodb: already answering on $HOST:$MONGO_PORT, not starting it"
        return 0
    fi
    port_open "$HOST" "$MONGO_PORT" &&
        die "mongodb: port $MONGO_PORT is taken by something that does not answer a MongoDB ping"
    server="$(mongo_server)"
    name="${server%% *}" bin="${server#* }"
    if [[ "$name" == secantusd-py ]] && secantus_rs_building; then
        log "mongodb: secantusd-rs is still building (see $LOGS/secantusd-rs-build.log): this run uses secantusd-py"
    fi
    data="$STATE/mongodb-data-$name"
    mkdir -p "$data"
    rotate_log "$logfile"
    log "mongodb: MongoDB wire server is $name: $bin --host $HOST --port $MONGO_PORT --storage-path $data (log $logfile)"
    spawn mongodb "$logfile" "$bin" --host "$HOST" --port "$MONGO_PORT" --storage-path "$data"
    local pid; pid="$(read_pid mongodb)"
    until mongo_up; do
        if ! pid_alive "$pid"; then
            show_log_tail "$logfile"
            rm -f "$(pidfile mongodb)"
            die "mongodb: $name (pid ${pid:-?}) exited during startup"
        fi
        if (($(now) - t0 >= MONGO_TIMEOUT)); then
            show_log_tail "$logfile"
            stop_pid mongodb "$pid" secantusd
            rm -f "$(pidfile mongodb)"
            die "mongodb: no answer to ping on $HOST:$MONGO_PORT after ${MONGO_TIMEOUT}s (killed pid $pid)"
        fi
        sleep 0.5
    done
    log "mongodb: $name up on $MONGODB_URI (pid $pid) in $(($(now) - t0))s"
}

start_azurite() {
    local t0; t0=$(now)
    local logfile="$LOGS/azurite.log"
    if azurite_up; then
        log "azurite: already answering on $HOST:$BLOB_PORT, not starting it"
        return 0
    fi
    command -v azurite-blob >/dev/null 2>&1 || die "azurite-blob not installed: run 'bash $0 install'"
    mkdir -p "$STATE/azurite-data"
    rotate_log "$logfile"
    log "azurite: azurite-blob --blobHost $HOST --blobPort $BLOB_PORT --location $STATE/azurite-data (log $logfile)"
    spawn azurite "$logfile" azurite-blob --blobHost "$HOST" --blobPort "$BLOB_PORT" \
        --location "$STATE/azurite-data" --skipApiVersionCheck --loose --disableTelemetry
    local pid; pid="$(read_pid azurite)"
    until azurite_up; do
        if ! pid_alive "$pid"; then
            show_log_tail "$logfile"
            rm -f "$(pidfile azurite)"
            die "azurite: azurite-blob (pid ${pid:-?}) exited during startup"
        fi
        if (($(now) - t0 >= AZURITE_TIMEOUT)); then
            show_log_tail "$logfile"
            stop_pid azurite "$pid" azurite
            rm -f "$(pidfile azurite)"
            die "azurite: port $BLOB_PORT not answering after ${AZURITE_TIMEOUT}s (killed pid $pid)"
        fi
        sleep 0.3
    done
    log "azurite: up on http://$HOST:$BLOB_PORT/$AZURITE_ACCOUNT (pid $pid) in $(($(now) - t0))s"
}

cmd_start() {
    local t0; t0=$(now)
    mkdir -p "$LOGS" "$RUN"
    command -v nginx >/dev/null 2>&1 ||
        log "WARNING: nginx is not installed (tests need it): run 'bash $0 install'"
    start_rabbitmq
    start_mongodb
    start_azurite
    log "start: all services up in $(($(now) - t0))s"
}

# ------------------------------------------------------------------- stop ----

# Only kill a pid that still runs the program we started (pids get reused).
pid_matches() { # pid pattern
    [[ -r /proc/$1/cmdline ]] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -q -- "$2"
}

stop_pid() { # name pid pattern
    local name="$1" pid="$2" pat="$3" i
    if ! pid_alive "$pid"; then
        log "$name: pid $pid is not running"
        return 0
    fi
    if ! pid_matches "$pid" "$pat"; then
        log "$name: pid $pid is not $pat any more; not killing it"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do pid_alive "$pid" || break; sleep 0.1; done
    if pid_alive "$pid"; then
        log "$name: pid $pid ignored SIGTERM for 10s; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for i in $(seq 1 50); do pid_alive "$pid" || break; sleep 0.1; done
    fi
    log "$name: stopped (pid $pid)"
}

stop_rabbitmq() {
    local pid; pid="$(read_pid rabbitmq)"
    if [[ ! -f "$(pidfile rabbitmq)" ]]; then
        log "rabbitmq: not started by this script (no $(pidfile rabbitmq)); leaving it alone"
        return 0
    fi
    if rabbitmqctl_ -q ping >/dev/null 2>&1; then
        log "rabbitmq: rabbitmqctl shutdown (pid ${pid:-?})"
        rabbitmqctl_ -q shutdown >>"$LOGS/rabbitmq-start.log" 2>&1 ||
            rabbitmqctl_ -q stop >>"$LOGS/rabbitmq-start.log" 2>&1 || true
    fi
    if pid_alive "$pid"; then stop_pid rabbitmq "$pid" beam; fi
    rm -f "$(pidfile rabbitmq)"
    log "rabbitmq: stopped"
}

stop_simple() { # name pattern
    local name="$1" pat="$2" pid
    if [[ ! -f "$(pidfile "$name")" ]]; then
        log "$name: not started by this script (no $(pidfile "$name")); leaving it alone"
        return 0
    fi
    pid="$(read_pid "$name")"
    stop_pid "$name" "$pid" "$pat"
    rm -f "$(pidfile "$name")"
}

cmd_stop() {
    local names=("$@") n
    ((${#names[@]})) || names=(azurite mongodb rabbitmq)
    for n in "${names[@]}"; do
        case "$n" in
            rabbitmq) stop_rabbitmq ;;
            mongodb) stop_simple mongodb secantusd ;;
            azurite) stop_simple azurite azurite ;;
            *) die "unknown service '$n' (rabbitmq, mongodb, azurite)" ;;
        esac
    done
}

# ----------------------------------------------------------- status / env ----

cmd_status() {
    local all=0 n pid what
    for n in rabbitmq mongodb azurite; do
        case "$n" in
            rabbitmq) what="amqp://$HOST:$AMQP_PORT" ;;
            mongodb) what="$MONGODB_URI" ;;
            azurite) what="http://$HOST:$BLOB_PORT/$AZURITE_ACCOUNT" ;;
        esac
        pid="$(read_pid "$n")"
        if is_up "$n"; then
            printf '%-9s UP    %s%s\n' "$n" "$what" "${pid:+  (pid $pid, started by this script)}"
        else
            printf '%-9s DOWN  %s%s\n' "$n" "$what" "${pid:+  (pid file: $pid)}"
            all=1
        fi
    done
    if command -v nginx >/dev/null 2>&1; then
        printf '%-9s OK    %s (installed; tests start their own)\n' nginx "$(command -v nginx)"
    else
        printf '%-9s MISSING\n' nginx
        all=1
    fi
    return $all
}

cmd_env() {
    printf "export GENESIS_FLOW_TEST_MONGODB_URI='%s'\n" "$MONGODB_URI"
    printf "export GENESIS_FLOW_TEST_AMQP_URL='%s'\n" "$AMQP_URL"
    printf "export GENESIS_FLOW_TEST_AZURE_CONNECTION_STRING='%s'\n" "$AZURE_CONNECTION_STRING"
}

usage() {
    sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

main() {
    local cmd="${1:-}"
    shift || true
    case "$cmd" in
        install) cmd_install ;;
        start) cmd_start ;;
        stop) mkdir -p "$LOGS" "$RUN"; cmd_stop "$@" ;;
        status) cmd_status ;;
        env) cmd_env ;;
        is-up) [[ $# -eq 1 ]] || die "usage: $0 is-up rabbitmq|mongodb|azurite"; is_up "$1" ;;
        -h | --help | help) usage ;;
        *) usage; exit 2 ;;
    esac
}

main "$@"
