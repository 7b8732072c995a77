#!/usr/bin/env bash
# Checks the gate against the trivy CLI v0.74.0 on the same images and the same DB: for
# each image family of TestParity (scanner/parity_test.go) it compares the
# (VulnerabilityID, PkgName, InstalledVersion) sets the gate found with those
# `trivy image --input` finds, and prints the differences. Not in CI: building the CLI
# takes ~8 minutes. Exits 1 when any family differs.
#   bench/parity.sh [work-dir]      TRIVY=/path/to/trivy to reuse a built CLI
set -euo pipefail
export GOEXPERIMENT=jsonv2
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d)}
mkdir -p "$work"
lock=/tmp/trivy-build.lock # builds that link Trivy share the machine's cores

trivy=${TRIVY:-$work/bin/trivy}
if [[ ! -x $trivy ]]; then
  echo "building trivy v0.74.0 (outside the module)..." >&2
  mkdir -p "$work/bin"
  (cd / && GOFLAGS= GOBIN="$work/bin" flock "$lock" nice go install github.com/aquasecurity/trivy/cmd/trivy@v0.74.0)
fi
# A go-installed CLI reports "Version: dev"; its module version says what it is.
go version -m "$trivy" | awk '$1 == "mod" {print "trivy CLI:", $2, $3}' >&2

echo "building the parity images, the test DB and the gate's findings..." >&2
rm -rf "$work/export" && mkdir -p "$work/export"
flock "$lock" go test -count=1 -timeout 20m -run '^TestParity$' ./scanner/ -args -export "$work/export" >&2

# What is compared: the (VulnerabilityID, PkgName, InstalledVersion) set, which TestParity
# also pins; and, as a note, each finding's fixed version, severity and status.
triples='.Results[]?.Vulnerabilities[]? | "\(.VulnerabilityID) \(.PkgName) \(.InstalledVersion)"'
details='.Results[]?.Vulnerabilities[]? | "\(.VulnerabilityID) \(.PkgName) \(.InstalledVersion) fixed=\(.FixedVersion // "") \(.Severity) \(.Status // "")"'
differ=0
for tar in "$work"/export/*.tar; do
  family=$(basename "$tar" .tar)
  cache="$work/cli-cache-$family" # the DB shared, the layer cache not
  rm -rf "$cache" && mkdir -p "$cache" && cp -r "$work/export/cache/db" "$work/export/cache/java-db" "$cache/"
  "$trivy" image --quiet --input "$tar" --cache-dir "$cache" --skip-db-update --skip-java-db-update \
    --offline-scan --scanners vuln --format json --output "$work/$family.cli.json"
  for side in gate cli; do
    in="$work/$family.$side.json"
    [[ $side == gate ]] && in="$work/export/$family.gate.json"
    jq -r "$triples" "$in" | LC_ALL=C sort -u > "$work/$family.$side"
    jq -r "$details" "$in" | LC_ALL=C sort -u > "$work/$family.$side.details"
  done
  if cmp -s "$work/$family.gate" "$work/$family.cli"; then
    note=""
    cmp -s "$work/$family.gate.details" "$work/$family.cli.details" || note=" (fixed version, severity or status differ: diff $work/$family.{gate,cli}.details)"
    printf '%-28s same (%d findings)%s\n' "$family" "$(wc -l < "$work/$family.cli")" "$note"
  else
    differ=1
    printf '%-28s DIFFERS (< gate only, > trivy only)\n' "$family"
    diff "$work/$family.gate" "$work/$family.cli" | grep '^[<>]' | sed 's/^/    /' || true
  fi
done
echo "outputs in $work" >&2
exit $differ
