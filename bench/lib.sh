# Sourced by the bench scripts (run from the repository root): a work directory removed
# at exit with every server started in it, the tools the benches run (built, or installed
# once into $BIN), a distribution registry as the upstream and goldproxy on the fixture DB.
set -euo pipefail
export GOEXPERIMENT=jsonv2
BIN=${BIN:-$HOME/.cache/goldproxy-bench/bin}
mkdir -p "$BIN"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# wait_for HOST:PORT waits for a registry API there.
wait_for() { for _ in $(seq 200); do curl -fsS "http://$1/v2/" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no registry at $1" >&2; exit 1; }

# build_tools builds goldproxy and pullbench into $work and installs distribution's
# registry v3.1.2 (outside the module) into $BIN. GOLDPROXY_BIN names a goldproxy
# binary to run instead of building one (to compare two builds).
build_tools() {
  echo "building goldproxy and pullbench; distribution registry v3.1.2 in $BIN..." >&2
  if [ -n "${GOLDPROXY_BIN:-}" ]; then cp "$GOLDPROXY_BIN" "$work/goldproxy"; else go build -o "$work/goldproxy" ./cmd/goldproxy; fi
  go build -o "$work/pullbench" ./bench/pullbench
  [ -x "$BIN/registry" ] || (cd / && GOFLAGS= GOBIN="$BIN" go install github.com/distribution/distribution/v3/cmd/registry@v3.1.2)
  "$work/pullbench" mkdb --fixtures scanner/testdata/db --out "$work/trivy-db"
}

# registry_config NAME ADDR [proxy-remote-url] writes $work/NAME.yml for a registry.
registry_config() {
  local proxy=""
  [ -n "${3:-}" ] && proxy="proxy: {remoteurl: $3}"
  cat > "$work/$1.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $work/$1}}
http: {addr: $2}
$proxy
YML
}

# start_upstream ADDR starts the upstream registry and waits for it.
start_upstream() {
  registry_config upstream "$1"
  "$BIN/registry" serve "$work/upstream.yml" 2>"$work/upstream.log" & pids+=($!)
  wait_for "$1"
}

# start_gold ADDR UPSTREAM-URL starts goldproxy (upstream bench.local, every repository
# allowed, the fixture DB) and waits for it; gold_pid is its pid.
start_gold() {
  cat > "$work/goldproxy.yml" <<YML
listen: $1
data_dir: $work/goldproxy-data
log: {level: warn}
metrics: {listen: ${GOLD_METRICS:-127.0.0.1:5199}}
db: {dir: $work/trivy-db}
upstreams:
  - name: bench.local
    url: $2
allow:
  repositories: ["**"]
YML
  "$work/goldproxy" serve --config "$work/goldproxy.yml" 2>"$work/gold.log" & gold_pid=$!; pids+=($gold_pid)
  wait_for "$1"
}

# vmhwm PID is a process's peak RSS.
vmhwm() { awk '/VmHWM/ {print $2, $3}' "/proc/$1/status"; }
