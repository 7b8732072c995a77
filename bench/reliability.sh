#!/usr/bin/env bash
# The data path under a slow link and load, on loopback: one upstream registry holds a
# 1 MiB image and an image with one 2 GiB layer; goldproxy reaches it through a link
# throttled to 20 MB/s. While 50 clients pull the (warm) small image over and over,
# a client pulls the 2 GiB image cold (ingest + scan + judge + client pull). Prints the
# cold pull's time, the warm clients' errors and p50/p99, and goldproxy's peak RSS
# (VmHWM; target <= 300 MiB).
#   bench/reliability.sh [layer-bytes] [rate-bytes-per-s]
set -euo pipefail
export GOEXPERIMENT=jsonv2
cd "$(dirname "$0")/.."
size=${1:-2147483648}
rate=${2:-20000000}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

echo "building goldproxy, pullbench and distribution registry v3.1.2..." >&2
go build -o "$work/goldproxy" ./cmd/goldproxy
go build -o "$work/pullbench" ./bench/pullbench
(cd / && GOFLAGS= GOBIN="$work" go install github.com/distribution/distribution/v3/cmd/registry@v3.1.2)

up=127.0.0.1:5110 slow=127.0.0.1:5111 gold=127.0.0.1:5112
cat > "$work/upstream.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $work/upstream}}
http: {addr: $up}
YML
"$work/pullbench" mkdb --fixtures scanner/testdata/db --out "$work/trivy-db"
cat > "$work/goldproxy.yml" <<YML
listen: $gold
data_dir: $work/goldproxy-data
log: {level: warn}
db: {dir: $work/trivy-db}
upstreams:
  - name: bench.local
    url: http://$slow
allow:
  repositories: ["**"]
YML
wait_for() { for _ in $(seq 200); do curl -fsS "http://$1/v2/" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no registry at $1" >&2; exit 1; }

"$work/registry" serve "$work/upstream.yml" 2>"$work/upstream.log" & pids+=($!)
wait_for $up
echo "pushing a 1 MiB image and a $size-byte image to the upstream..." >&2
"$work/pullbench" push --registry $up --repo bench/small --tag 1 --size 1048576
"$work/pullbench" push --registry $up --repo bench/big --tag 1 --size "$size"
"$work/pullbench" throttle --listen $slow --target "http://$up" --rate "$rate" & pids+=($!)
"$work/goldproxy" serve --config "$work/goldproxy.yml" 2>"$work/gold.log" & gold_pid=$!; pids+=($gold_pid)
wait_for $gold
"$work/pullbench" pull --mirror "http://$gold" --ns bench.local --repo bench/small --tag 1 --runs 1 --manifest-runs 10 >/dev/null
echo "goldproxy VmHWM before: $(awk '/VmHWM/ {print $2, $3}' /proc/$gold_pid/status)"

"$work/pullbench" load --mirror "http://$gold" --ns bench.local --repo bench/small --tag 1 --clients 50 --duration 30m --until "$work/done" >"$work/load.json" & load_pid=$!
echo "cold pull of the $size-byte image through a $rate B/s link, under 50 warm clients..." >&2
cold=$("$work/pullbench" pull --mirror "http://$gold" --ns bench.local --repo bench/big --tag 1 --runs 1 --manifest-runs 10)
touch "$work/done"
wait $load_pid
echo "cold pull:    $cold"
echo "warm clients: $(cat "$work/load.json")"
echo "goldproxy VmHWM (peak RSS): $(awk '/VmHWM/ {print $2, $3}' /proc/$gold_pid/status) (target <= 307200 kB)"
grep -i '"level":"error"\|level=ERROR' "$work/gold.log" | head -5 || true
