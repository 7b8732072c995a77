#!/usr/bin/env bash
# The data path under a slow link and load, on loopback: one upstream registry holds a
# 1 MiB image and an image with one 2 GiB layer; goldproxy reaches it through a link
# throttled to 20 MB/s. While 50 clients pull the (warm) small image over and over,
# a client pulls the 2 GiB image cold (ingest + scan + judge + client pull). Prints the
# cold pull's time, the warm clients' errors and p50/p99, and goldproxy's peak RSS
# (VmHWM; target <= 300 MiB).
#   bench/reliability.sh [layer-bytes] [rate-bytes-per-s]
cd "$(dirname "$0")/.."
source bench/lib.sh
size=${1:-2147483648}
rate=${2:-20000000}
build_tools
up=127.0.0.1:5110 slow=127.0.0.1:5111 gold=127.0.0.1:5112
start_upstream $up
echo "pushing a 1 MiB image and a $size-byte image to the upstream..." >&2
"$work/pullbench" push --registry $up --repo bench/small --tag 1 --size 1048576
"$work/pullbench" push --registry $up --repo bench/big --tag 1 --size "$size"
"$work/pullbench" throttle --listen $slow --target "http://$up" --rate "$rate" & pids+=($!)
start_gold $gold "http://$slow"
"$work/pullbench" pull --mirror "http://$gold" --ns bench.local --repo bench/small --tag 1 --runs 1 --manifest-runs 10 >/dev/null
echo "goldproxy VmHWM before: $(vmhwm $gold_pid)"

"$work/pullbench" load --mirror "http://$gold" --ns bench.local --repo bench/small --tag 1 --clients 50 --duration 30m --until "$work/done" >"$work/load.json" & load_pid=$!
echo "cold pull of the $size-byte image through a $rate B/s link, under 50 warm clients..." >&2
cold=$("$work/pullbench" pull --mirror "http://$gold" --ns bench.local --repo bench/big --tag 1 --runs 1 --manifest-runs 10)
touch "$work/done"
wait $load_pid
echo "cold pull:    $cold"
echo "warm clients: $(cat "$work/load.json")"
echo "goldproxy VmHWM (peak RSS): $(vmhwm $gold_pid) (target <= 307200 kB)"
grep -i '"level":"error"\|level=ERROR' "$work/gold.log" | head -5 || true
