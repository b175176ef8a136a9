#!/usr/bin/env bash
# Runs `tessera-bench federation` against two Tessera servers federating with each other, then
# against two Synapse servers, on this machine (loopback only), and prints both reports and the
# Tessera/Synapse ratios. Everything it makes lives in bench/work/.
#
# Usage: bench/federation-vs-synapse.sh [--only tessera|synapse]
#                                       [--tessera-members N] [--synapse-members N]
#                                       [-- extra `tessera-bench federation` options, e.g. --messages 200]
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
WORK=$BENCH_DIR/work
TLS_DIR=$WORK/federation-tls
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
# Server A (the rooms' origin) and server B (the remote users), the same ports for either pair.
CLIENT_PORTS=(18201 18202)
FEDERATION_PORTS=(18241 18242)
INSTANCES=(a b)
READY_DEADLINE_SECS=180
# Generous: Synapse may take minutes over a join of a room of thousands of members.
TIMEOUT_SECS=300

only=""
tessera_members=5000
synapse_members=5000
shared_secret=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
bench_args=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --only) only=$2; shift 2 ;;
        --tessera-members) tessera_members=$2; shift 2 ;;
        --synapse-members) synapse_members=$2; shift 2 ;;
        --) shift; bench_args=("$@"); break ;;
        *) echo "unknown option: $1 (see the usage at the top of $0)" >&2; exit 2 ;;
    esac
done
case $only in
    "") servers=(tessera synapse) ;;
    tessera | synapse) servers=("$only") ;;
    *) echo "--only takes tessera or synapse" >&2; exit 2 ;;
esac

machine="$(nproc) cpus, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
echo "machine: $machine"
mkdir -p "$WORK"

# The workspace's feature set, so the build shares artifacts with other release builds of the
# workspace in the same target directory.
(cd "$ROOT" && cargo build --release --workspace --bins)
bench_bin=$CARGO_TARGET_DIR/release/tessera-bench

# A CA of this run's own and one certificate for IP 127.0.0.1, which every server presents on
# its federation listener: the server names are 127.0.0.1:<federation port>, so no DNS.
rm -rf "$TLS_DIR"
mkdir -p "$TLS_DIR"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
    -subj "/CN=tessera-bench federation CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$TLS_DIR/ca.key" -out "$TLS_DIR/ca.pem" 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$TLS_DIR/server.key" -out "$TLS_DIR/server.csr" 2>/dev/null
openssl x509 -req -in "$TLS_DIR/server.csr" -CA "$TLS_DIR/ca.pem" -CAkey "$TLS_DIR/ca.key" \
    -CAcreateserial -days 7 -out "$TLS_DIR/server.pem" -extfile <(printf '%s\n' \
    "subjectAltName=IP:127.0.0.1" "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth") 2>/dev/null

# One pair runs at a time, so neither pays for the other's background work.
server_pids=()
stop_servers() {
    local pid
    for pid in "${server_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${server_pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    server_pids=()
}
trap stop_servers EXIT

port_in_use() { curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$1/"; }

# Polls /versions until it answers, the process dies, or the deadline passes.
wait_ready() {
    local name=$1 port=$2 pid=$3 log=$4 deadline=$((SECONDS + READY_DEADLINE_SECS))
    until curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$port/_matrix/client/versions"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "$name exited during start-up; last lines of $log:" >&2; tail -n 30 "$log" >&2; exit 1
        fi
        if ((SECONDS >= deadline)); then
            echo "$name not ready after ${READY_DEADLINE_SECS}s; last lines of $log:" >&2; tail -n 30 "$log" >&2; exit 1
        fi
        sleep 0.5
    done
    echo "$name ready on 127.0.0.1:$port"
}

# Starts instance $1 (0 for A, 1 for B) and records its PID in server_pids.
start_tessera() {
    local i=$1 instance=${INSTANCES[$1]}
    local dir=$WORK/tessera-federation-$instance log=$WORK/tessera-federation-$instance.log
    rm -rf "$dir/data" # a fresh database each run
    mkdir -p "$dir"
    cat >"$dir/tessera.toml" <<EOF
server_name = "127.0.0.1:${FEDERATION_PORTS[$i]}"
data_dir = "$dir/data"

[[listeners]]
bind = "127.0.0.1"
port = ${CLIENT_PORTS[$i]}
apis = ["client"]

[[listeners]]
bind = "127.0.0.1"
port = ${FEDERATION_PORTS[$i]}
apis = ["federation"]
tls_certificate = "$TLS_DIR/server.pem"
tls_private_key = "$TLS_DIR/server.key"

[registration]
mode = "open"
shared_secret = "$shared_secret"

[rate_limits]
enabled = false

[im]
# Tessera refuses members beyond 2,000 per room by default; the join's room has 5,000.
group_member_limit = 1000000

[federation]
# The other server is on loopback, with a certificate of this run's CA.
allow_private_addresses = true
extra_ca_files = ["$TLS_DIR/ca.pem"]
EOF
    "$CARGO_TARGET_DIR/release/tessera" serve --config "$dir/tessera.toml" >"$log" 2>&1 &
    server_pids+=($!)
    wait_ready "Tessera $instance (127.0.0.1:${FEDERATION_PORTS[$i]})" "${CLIENT_PORTS[$i]}" "$!" "$log"
}

# The Python with Synapse: $TESSERA_SYNAPSE_PYTHON (as in complement-tests), else bench/work/venv,
# installed there on first use.
synapse_python() {
    if [[ -n ${TESSERA_SYNAPSE_PYTHON:-} ]]; then
        echo "$TESSERA_SYNAPSE_PYTHON"
        return
    fi
    if ! "$WORK/venv/bin/python" -c 'import synapse' 2>/dev/null; then
        echo "installing Synapse into $WORK/venv" >&2
        python3 -m venv "$WORK/venv"
        "$WORK/venv/bin/pip" install --quiet matrix-synapse >&2
    fi
    echo "$WORK/venv/bin/python"
}

start_synapse() {
    local i=$1 instance=${INSTANCES[$1]} python
    local dir=$WORK/synapse-federation-$instance log=$WORK/synapse-federation-$instance.log
    local server_name=127.0.0.1:${FEDERATION_PORTS[$i]}
    python=$(synapse_python)
    mkdir -p "$dir"
    # Synapse's own generated config (secrets, signing key, log config, SQLite) is the base;
    # bench.yaml, given second, overrides only what the benchmark needs.
    # Run from $dir: the generated log config puts homeserver.log in the current directory.
    if ! grep -qxF "server_name: \"$server_name\"" "$dir/homeserver.yaml" 2>/dev/null; then
        rm -f "$dir/homeserver.yaml"
        (cd "$dir" && "$python" -m synapse.app.homeserver --server-name "$server_name" \
            --config-path homeserver.yaml --data-directory "$dir" \
            --generate-config --report-stats=no)
    fi
    rm -f "$dir"/homeserver.db* # a fresh database each run
    local unlimited="{ per_second: 1000000, burst_count: 1000000 }"
    cat >"$dir/bench.yaml" <<EOF
listeners:
  - port: ${CLIENT_PORTS[$i]}
    bind_addresses: ["127.0.0.1"]
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
  - port: ${FEDERATION_PORTS[$i]}
    bind_addresses: ["127.0.0.1"]
    type: http
    tls: true
    resources:
      - names: [federation]
        compress: false
# The other server is on loopback, with a certificate of this run's CA.
tls_certificate_path: "$TLS_DIR/server.pem"
tls_private_key_path: "$TLS_DIR/server.key"
federation_custom_ca_list: ["$TLS_DIR/ca.pem"]
federation_verify_certificates: true
ip_range_blacklist: []
ip_range_whitelist: ["127.0.0.1"]
federation_ip_range_blacklist: []
report_stats: false
trusted_key_servers: []
suppress_key_server_warning: true
enable_registration: true
enable_registration_without_verification: true
registration_shared_secret: "$shared_secret"
# Registration is untimed setup; at the default 12 rounds bcrypt would make the 5,000 members
# of the join's room take about an hour to register.
bcrypt_rounds: 4
# Every rate limit lifted, federation's included; everything else stays at Synapse's defaults.
rc_message: $unlimited
rc_registration: $unlimited
rc_login:
  address: $unlimited
  account: $unlimited
  failed_attempts: $unlimited
rc_joins:
  local: $unlimited
  remote: $unlimited
rc_joins_per_room: $unlimited
rc_invites:
  per_room: $unlimited
  per_user: $unlimited
  per_issuer: $unlimited
rc_room_creation: $unlimited
rc_presence:
  per_user: $unlimited
rc_federation:
  window_size: 1000
  sleep_limit: 1000000
  sleep_delay: 0
  reject_limit: 1000000
  concurrent: 1000000
EOF
    (cd "$dir" && exec "$python" -m synapse.app.homeserver -c homeserver.yaml -c bench.yaml) >"$log" 2>&1 &
    server_pids+=($!)
    wait_ready "Synapse $instance ($server_name)" "${CLIENT_PORTS[$i]}" "$!" "$log"
}

status=0
for server in "${servers[@]}"; do
    for port in "${CLIENT_PORTS[@]}" "${FEDERATION_PORTS[@]}"; do
        if port_in_use "$port"; then
            echo "something already answers on 127.0.0.1:$port; stop it first" >&2; exit 1
        fi
    done
    "start_$server" 0
    "start_$server" 1
    members_var=${server}_members
    echo "running federation against $server (A on ${CLIENT_PORTS[0]}, B on ${CLIENT_PORTS[1]})"
    # Exit 1 means the run finished with some failed requests: report them, go on, fail at the end.
    "$bench_bin" federation --base-url "http://127.0.0.1:${CLIENT_PORTS[0]}" \
        --remote-url "http://127.0.0.1:${CLIENT_PORTS[1]}" \
        --origin-server-name "127.0.0.1:${FEDERATION_PORTS[0]}" \
        --timeout-secs "$TIMEOUT_SECS" --members "${!members_var}" \
        --json "$WORK/$server-federation.json" "${bench_args[@]}" >"$WORK/$server-federation.txt" || {
        code=$?
        ((code == 1)) || exit "$code"
        status=1
    }
    stop_servers
done

echo
echo "machine: $machine"
reports=()
for server in "${servers[@]}"; do reports+=("$server=$WORK/$server-federation.json"); done
"$bench_bin" compare "${reports[@]}" --machine "$machine" --json "$WORK/results-federation.json"
echo "results: $WORK/results-federation.json"
exit "$status"
