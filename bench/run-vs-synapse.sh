#!/usr/bin/env bash
# Runs a tessera-bench scenario against Tessera and then Synapse on this machine (loopback only)
# and prints both reports and the Tessera/Synapse ratios. Everything it makes lives in bench/work/.
#
# Usage: bench/run-vs-synapse.sh [--scenario auth|send|messages|rooms|sync|media|e2ee|feed|idle-syncs|idle-websockets|all]
#                                [--only tessera|synapse]
#                                [--shared-secret-registration]
#                                [--tessera-depth LIST] [--synapse-depth LIST]
#                                [-- extra `tessera-bench SCENARIO` options, e.g. --users 100]
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
WORK=$BENCH_DIR/work
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
TESSERA_PORT=18009
SYNAPSE_PORT=18008
READY_DEADLINE_SECS=180

only=""
scenario=auth
# `messages` fills a room to each depth in turn. Synapse fills at about 40 messages/s, so it
# gets only the shallow depth by default; Tessera gets that one too, for a like-for-like ratio.
tessera_depth=5000,100000
synapse_depth=5000
# Both servers get the same throwaway secret; the bench uses it only with --shared-secret-registration.
shared_secret=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
registration_args=()
bench_args=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --scenario) scenario=$2; shift 2 ;;
        --only) only=$2; shift 2 ;;
        --tessera-depth) tessera_depth=$2; shift 2 ;;
        --synapse-depth) synapse_depth=$2; shift 2 ;;
        --shared-secret-registration) registration_args=(--shared-secret "$shared_secret"); shift ;;
        --) shift; bench_args=("$@"); break ;;
        *) echo "unknown option: $1 (see the usage at the top of $0)" >&2; exit 2 ;;
    esac
done
case $only in
    "") servers=(tessera synapse) ;;
    tessera | synapse) servers=("$only") ;;
    *) echo "--only takes tessera or synapse" >&2; exit 2 ;;
esac
case $scenario in
    all) scenarios=(auth send messages rooms sync media e2ee feed idle-syncs idle-websockets) ;;
    auth | send | messages | rooms | sync | media | e2ee | feed | idle-syncs | idle-websockets) scenarios=("$scenario") ;;
    *) echo "--scenario takes auth, send, messages, rooms, sync, media, e2ee, feed, idle-syncs, idle-websockets or all" >&2; exit 2 ;;
esac

# The servers a scenario runs against: `feed` is Tessera's IM API and `idle-websockets` its
# WebSocket sync transport, which Synapse does not have.
servers_of() {
    local scenario=$1 server
    for server in "${servers[@]}"; do
        [[ ($scenario == feed || $scenario == idle-websockets) && $server == synapse ]] || echo "$server"
    done
}

machine="$(nproc) cpus, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
echo "machine: $machine"
mkdir -p "$WORK"
# `sync` holds a long-poll open per room member (1,000 by default) and `idle-*` 10,000
# connections, each a socket in the bench and one in the server: lift the soft limit on open
# files, inherited by both, to the hard one.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# (a) build: the workspace's feature set, so the build shares artifacts with other release
# builds of the workspace in the same target directory.
(cd "$ROOT" && cargo build --release --workspace --bins)
bench_bin=$CARGO_TARGET_DIR/release/tessera-bench

# The server under test runs alone, so the other one's background work does not skew it.
server_pid=""
stop_server() {
    if [[ -n $server_pid ]]; then
        kill "$server_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
}
trap stop_server EXIT

port_in_use() { curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$1/"; }

# Polls /versions until it answers, the process dies, or the deadline passes.
wait_ready() {
    local name=$1 port=$2 log=$3 deadline=$((SECONDS + READY_DEADLINE_SECS))
    until curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$port/_matrix/client/versions"; do
        if ! kill -0 "$server_pid" 2>/dev/null; then
            echo "$name exited during start-up; last lines of $log:" >&2; tail -n 30 "$log" >&2; exit 1
        fi
        if ((SECONDS >= deadline)); then
            echo "$name not ready after ${READY_DEADLINE_SECS}s; last lines of $log:" >&2; tail -n 30 "$log" >&2; exit 1
        fi
        sleep 0.5
    done
    echo "$name ready on 127.0.0.1:$port"
}

start_tessera() {
    local dir=$WORK/tessera
    rm -rf "$dir/data" # a fresh database each run
    mkdir -p "$dir"
    cat >"$dir/tessera.toml" <<EOF
server_name = "localhost"
data_dir = "$dir/data"

[[listeners]]
bind = "127.0.0.1"
port = $TESSERA_PORT
apis = ["client"]

[registration]
mode = "open"
shared_secret = "$shared_secret"

[rate_limits]
enabled = false

[media]
# The media scenario uploads a 1 GiB file.
max_upload_size = 2147483648
EOF
    "$CARGO_TARGET_DIR/release/tessera" serve --config "$dir/tessera.toml" >"$WORK/tessera.log" 2>&1 &
    server_pid=$!
    wait_ready Tessera "$TESSERA_PORT" "$WORK/tessera.log"
}

start_synapse() {
    local dir=$WORK/synapse python=$WORK/venv/bin/python
    if ! "$python" -c 'import synapse' 2>/dev/null; then
        echo "installing Synapse into $WORK/venv"
        python3 -m venv "$WORK/venv"
        "$WORK/venv/bin/pip" install --quiet matrix-synapse
    fi
    mkdir -p "$dir"
    # Synapse's own generated config (secrets, signing key, log config, SQLite) is the base;
    # bench.yaml, given second, overrides only what the benchmark needs.
    # Run from $dir: the generated log config puts homeserver.log in the current directory.
    if [[ ! -f $dir/homeserver.yaml ]]; then
        (cd "$dir" && "$python" -m synapse.app.homeserver --server-name "localhost:18448" \
            --config-path homeserver.yaml --data-directory "$dir" \
            --generate-config --report-stats=no)
    fi
    rm -f "$dir"/homeserver.db* # a fresh database each run
    local unlimited="{ per_second: 1000000, burst_count: 1000000 }"
    cat >"$dir/bench.yaml" <<EOF
listeners:
  - port: $SYNAPSE_PORT
    bind_addresses: ["127.0.0.1"]
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
report_stats: false
trusted_key_servers: []
suppress_key_server_warning: true
enable_registration: true
enable_registration_without_verification: true
registration_shared_secret: "$shared_secret"
# Every rate limit lifted; everything else stays at Synapse's defaults (bcrypt_rounds 12, ...).
rc_message: $unlimited
rc_registration: $unlimited
rc_registration_token_validity: $unlimited
rc_login:
  address: $unlimited
  account: $unlimited
  failed_attempts: $unlimited
rc_admin_redaction: $unlimited
rc_joins:
  local: $unlimited
  remote: $unlimited
rc_joins_per_room: $unlimited
rc_key_requests: $unlimited
rc_3pid_validation: $unlimited
rc_invites:
  per_room: $unlimited
  per_user: $unlimited
  per_issuer: $unlimited
rc_third_party_invite: $unlimited
rc_media_create: $unlimited
rc_presence:
  per_user: $unlimited
rc_delayed_event_mgmt: $unlimited
rc_room_creation: $unlimited
rc_reports: $unlimited
rc_user_directory: $unlimited
rc_profile: $unlimited
# The media scenario uploads a 1 GiB file.
max_upload_size: 2G
rc_federation:
  window_size: 1000
  sleep_limit: 1000000
  sleep_delay: 0
  reject_limit: 1000000
  concurrent: 1000000
EOF
    (cd "$dir" && exec "$python" -m synapse.app.homeserver -c homeserver.yaml -c bench.yaml) >"$WORK/synapse.log" 2>&1 &
    server_pid=$!
    wait_ready Synapse "$SYNAPSE_PORT" "$WORK/synapse.log"
}

# The options each scenario runs with unless the ones after `--` (which come later on the
# command line, and the last occurrence of an option wins) say otherwise.
scenario_args() {
    local scenario=$1 server=$2
    case $scenario in
        send) echo --senders 1,8,10,64 --rooms 1,64 ;;
        messages) local depth_var=${server}_depth; echo --depth "${!depth_var}" ;;
        # A fan-out message counts as lost when some of the 1,000 live syncs do not have it
        # within --timeout-secs; Synapse answers them one after another on one core.
        sync) echo --timeout-secs 300 ;;
        # The 1 GiB transfers take a while; the server's PID lets the bench sample its memory.
        media) echo --timeout-secs 600 --server-pid "$server_pid" ;;
        # Synapse takes in 10,000 long-polls, and answers them, one after another on one core.
        idle-syncs | idle-websockets) echo --timeout-secs 280 --server-pid "$server_pid" ;;
    esac
}

status=0
for scenario in "${scenarios[@]}"; do
    for server in $(servers_of "$scenario"); do
        port_var=${server^^}_PORT
        port=${!port_var}
        if port_in_use "$port"; then
            echo "something already answers on 127.0.0.1:$port; stop it first" >&2; exit 1
        fi
        "start_$server" # a fresh database for every scenario
        read -ra default_args <<<"$(scenario_args "$scenario" "$server")"
        echo "running $scenario against $server"
        # Exit 1 means the run finished with some failed requests: report them, go on, fail at the end.
        "$bench_bin" "$scenario" --base-url "http://127.0.0.1:$port" --json "$WORK/$server-$scenario.json" \
            "${registration_args[@]}" "${default_args[@]}" "${bench_args[@]}" >"$WORK/$server-$scenario.txt" || {
            code=$?
            ((code == 1)) || exit "$code"
            status=1
        }
        stop_server
    done
done

echo
echo "machine: $machine"
for scenario in "${scenarios[@]}"; do
    reports=()
    for server in $(servers_of "$scenario"); do reports+=("$server=$WORK/$server-$scenario.json"); done
    ((${#reports[@]} > 0)) || continue
    echo
    echo "=== $scenario ==="
    "$bench_bin" compare "${reports[@]}" --machine "$machine" --json "$WORK/results-$scenario.json"
    echo "results: $WORK/results-$scenario.json"
done
exit "$status"
