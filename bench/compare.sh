#!/usr/bin/env bash
# Compares goldproxy with the CNCF distribution registry v3.1.2 in proxy mode, on
# loopback: one upstream registry holds images with one 256 MiB layer; each mirror does a
# cold pull, then warm layer GETs and warm manifest GETs. Prints both results and the
# goldproxy/distribution ratios. goldproxy's cold pull includes its gate: the image is
# ingested whole and scanned (with a DB built from the test fixtures) before the
# manifest is served; distribution serves whatever it fetches.
#   bench/compare.sh [layer-bytes]
cd "$(dirname "$0")/.."
source bench/lib.sh
size=${1:-268435456}
build_tools
up=127.0.0.1:5100 dist=127.0.0.1:5101 gold=127.0.0.1:5102
start_upstream $up
rounds=3
echo "pushing $rounds images with a $size-byte layer each to the upstream..." >&2
for i in $(seq $rounds); do "$work/pullbench" push --registry $up --repo bench/big --tag "$i" --size "$size"; done
registry_config dist-proxy $dist "http://$up"
"$BIN/registry" serve "$work/dist-proxy.yml" 2>"$work/dist.log" & pids+=($!)
wait_for $dist
start_gold $gold "http://$up"

# Each round pulls a never-seen image through both mirrors, alternating which goes first.
d=() g=()
for i in $(seq $rounds); do
  if [ $((i % 2)) = 1 ]; then
    d+=("$("$work/pullbench" pull --mirror http://$dist --repo bench/big --tag "$i")")
    g+=("$("$work/pullbench" pull --mirror http://$gold --ns bench.local --repo bench/big --tag "$i")")
  else
    g+=("$("$work/pullbench" pull --mirror http://$gold --ns bench.local --repo bench/big --tag "$i")")
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
