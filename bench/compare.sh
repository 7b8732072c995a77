#!/usr/bin/env bash
# Compares goldproxy with the CNCF distribution registry v3.1.2 in proxy mode, on
# loopback: one upstream registry holds images with one 256 MiB layer; each mirror does a
# cold pull, then warm layer GETs and warm manifest GETs. Prints both results and the
# goldproxy/distribution ratios. goldproxy's cold pull includes its gate: the image is
# ingested whole and scanned (with a DB built from the test fixtures) before the
# manifest is served; distribution serves whatever it fetches.
#   bench/compare.sh [layer-bytes]
set -euo pipefail
export GOEXPERIMENT=jsonv2
cd "$(dirname "$0")/.."
size=${1:-268435456}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

echo "building goldproxy, pullbench and distribution registry v3.1.2..." >&2
go build -o "$work/goldproxy" ./cmd/goldproxy
go build -o "$work/pullbench" ./bench/pullbench
GOBIN="$work" go install github.com/distribution/distribution/v3/cmd/registry@v3.1.2

up=127.0.0.1:5100 dist=127.0.0.1:5101 gold=127.0.0.1:5102
cat > "$work/upstream.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $work/upstream}}
http: {addr: $up}
YML
cat > "$work/dist-proxy.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $work/dist-proxy}}
http: {addr: $dist}
proxy: {remoteurl: http://$up}
YML
"$work/pullbench" mkdb --fixtures scanner/testdata/db --out "$work/trivy-db"
cat > "$work/goldproxy.yml" <<YML
listen: $gold
data_dir: $work/goldproxy-data
log: {level: error}
db: {dir: $work/trivy-db}
upstreams:
  - name: bench.local
    url: http://$up
    aliases: ["$up"]
allow:
  repositories: ["**"]
YML
wait_for() { for _ in $(seq 100); do curl -fsS "http://$1/v2/" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no registry at $1" >&2; exit 1; }

"$work/registry" serve "$work/upstream.yml" 2>"$work/upstream.log" & pids+=($!)
wait_for $up
rounds=3
echo "pushing $rounds images with a $size-byte layer each to the upstream..." >&2
for i in $(seq $rounds); do "$work/pullbench" push --registry $up --repo bench/big --tag "$i" --size "$size"; done
"$work/registry" serve "$work/dist-proxy.yml" 2>"$work/dist.log" & pids+=($!)
"$work/goldproxy" serve --config "$work/goldproxy.yml" 2>"$work/gold.log" & pids+=($!)
wait_for $dist
wait_for $gold

# Each round pulls a never-seen image through both mirrors, alternating which goes first.
d=() g=()
for i in $(seq $rounds); do
  if [ $((i % 2)) = 1 ]; then
    d+=("$("$work/pullbench" pull --mirror http://$dist --repo bench/big --tag "$i")")
    g+=("$("$work/pullbench" pull --mirror http://$gold --ns $up --repo bench/big --tag "$i")")
  else
    g+=("$("$work/pullbench" pull --mirror http://$gold --ns $up --repo bench/big --tag "$i")")
    d+=("$("$work/pullbench" pull --mirror http://$dist --repo bench/big --tag "$i")")
  fi
  echo "round $i distribution: ${d[-1]}"
  echo "round $i goldproxy:    ${g[-1]}"
done
python3 - "$(IFS=';'; echo "${d[*]}")" "$(IFS=';'; echo "${g[*]}")" <<'PY'
import json, statistics, sys
def med(rows):
    rows = [json.loads(r) for r in rows.split(';')]
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}
d, g = med(sys.argv[1]), med(sys.argv[2])
print(f"medians over rounds: distribution {d}")
print(f"                     goldproxy    {g}")
print(f"warm blob throughput  goldproxy/distribution = {g['warm_blob_mbps']/d['warm_blob_mbps']:.2f}x  (target >= 1.0)")
print(f"cold pull time        goldproxy/distribution = {g['cold_pull_seconds']/d['cold_pull_seconds']:.2f}x  (target <= 1.0)")
print(f"warm manifest latency goldproxy/distribution = {g['warm_manifest_us']/d['warm_manifest_us']:.2f}x")
PY
