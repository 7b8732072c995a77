#!/usr/bin/env bash
# Runs each fuzz target for a while (default 60s; bench/fuzz.sh 5m for longer) and prints
# which found a failure. A failing input is written to the package's testdata/fuzz/<Fuzz>/,
# where plain `go test` replays it from then on: commit it with the fix.
#   bench/fuzz.sh [fuzztime]
set -uo pipefail
export GOEXPERIMENT=jsonv2
cd "$(dirname "$0")/.."
fuzztime=${1:-60s}
targets=(
	"FuzzParsePath ./proxy/registry/"
	"FuzzResolve ./proxy/mirror/"
	"FuzzImageList ./proxy/gate/"
	"FuzzClassify ./proxy/gate/"
	"FuzzConfigParse ./proxy/config/"
	"FuzzParse ./policy/"
)
failed=()
for t in "${targets[@]}"; do
	read -r name pkg <<<"$t"
	echo "== $name ($pkg, $fuzztime)"
	if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -timeout 0 "$pkg" 2>&1 | tail -n 8; then
		failed+=("$name")
	fi
done
echo
if [ ${#failed[@]} -eq 0 ]; then
	echo "no fuzz target found a failure"
else
	echo "found failures: ${failed[*]} (inputs under <package>/testdata/fuzz/<target>/)"
	exit 1
fi
