#!/usr/bin/env bash
# A gated cold pull through goldproxy (ingest + scan + judge + client pull) against what
# it replaces: `crane pull` from the upstream followed by `trivy image --input` (the CLI,
# v0.74.0) on the same DB, per image, on images built from real content:
#   debian12    a debootstrapped Debian 12 rootfs (debootstrap --variant=minbase bookworm)
#   distroless  a distroless-style image from real .debs (apt-get download; status.d)
#   npm         an npm app from real `npm pack`ed packages
#   gobinary    a Go binary built against old modules
# Prints seconds for each and the ratio goldproxy / (crane + trivy) (target <= 0.7 each,
# median <= 0.5), and goldproxy's peak RSS. Needs root (debootstrap), apt, npm and the Go
# module proxy. The trivy CLI build takes minutes; it is kept in $BIN between runs.
#   bench/scanbench.sh
cd "$(dirname "$0")/.."
source bench/lib.sh
build_tools
echo "installing crane and trivy v0.74.0 into $BIN..." >&2
[ -x "$BIN/crane" ] || (cd / && GOFLAGS= GOBIN="$BIN" go install github.com/google/go-containerregistry/cmd/crane@v0.22.1)
[ -x "$BIN/trivy" ] || (cd / && GOFLAGS= GOBIN="$BIN" go install github.com/aquasecurity/trivy/cmd/trivy@v0.74.0)
command -v debootstrap >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }

# The content (debootstrap, apt-get download, npm pack, go build) is kept in
# $SCANBENCH_CONTENT when it is set, and reused by the next run.
content=${SCANBENCH_CONTENT:-$work/content}
if [ ! -e "$content/.built" ]; then
echo "building the images' content in $content..." >&2
rm -rf "$content"; mkdir -p "$content"
# debian12: a real minbase bootstrap.
debootstrap --variant=minbase bookworm "$content/debian12" http://deb.debian.org/debian >/dev/null
# distroless: real .debs unpacked, one status.d file per package, as distroless does.
mkdir -p "$content/debs" "$content/distroless/var/lib/dpkg/status.d"
(cd "$content/debs" && apt-get download -qq base-files netbase tzdata libc6 libssl3 ca-certificates openssl libgcc-s1 libstdc++6 zlib1g >/dev/null)
for deb in "$content"/debs/*.deb; do
  dpkg-deb -x "$deb" "$content/distroless"
  pkg=$(dpkg-deb -f "$deb" Package)
  { dpkg-deb -f "$deb"; echo "Status: install ok installed"; } > "$content/distroless/var/lib/dpkg/status.d/$pkg"
done
# npm: an app with real packages, old versions with known advisories among them.
mkdir -p "$content/npm/app/node_modules"
(cd "$content/npm" && for p in express@4.17.1 lodash@4.17.15 minimist@1.2.0 axios@0.21.0 moment@2.29.1 jsonwebtoken@8.5.1 qs@6.7.0 body-parser@1.19.0 debug@2.6.9 ms@2.0.0; do
  npm pack --silent "$p" >/dev/null; done
  for t in *.tgz; do d=$(mktemp -d); tar xzf "$t" -C "$d"; name=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['name'])" "$d/package/package.json"); mkdir -p "app/node_modules/$name"; cp -r "$d/package/." "app/node_modules/$name/"; rm -rf "$d"; done
  printf '{"name":"app","version":"1.0.0"}\n' > app/package.json; rm -f ./*.tgz)
# gobinary: a Go program built against old modules.
mkdir -p "$content/gosrc" "$content/gobinary/app"
cat > "$content/gosrc/main.go" <<'GO'
package main

import (
	"fmt"

	"golang.org/x/text/language"
)

func main() { fmt.Println(language.English) }
GO
(cd "$content/gosrc" && go mod init example.com/app >/dev/null 2>&1 && go get golang.org/x/text@v0.3.5 >/dev/null 2>&1 && CGO_ENABLED=0 go build -o "$content/gobinary/app/app" .)

touch "$content/.built"
fi
up=127.0.0.1:5120 gold=127.0.0.1:5121
mkdir -p "$work/trivy-cache/db" && cp "$work/trivy-db/trivy.db" "$work/trivy-db/metadata.json" "$work/trivy-cache/db/"
start_upstream $up
images=(debian12 distroless npm gobinary)
# Each round pushes every image anew (a file etc/bench-salt holding the round number in
# its layer): never seen by goldproxy or by Trivy's cache, which is emptied before each
# CLI run. The figures are the medians over the rounds.
rounds=${ROUNDS:-3}
for r in $(seq "$rounds"); do
  for i in "${images[@]}"; do "$work/pullbench" pushdir --dir "$content/$i" --ref "$up/bench/$i:$r" --salt "round $r"; done
done
start_gold $gold "http://$up"

median() { python3 -c "import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }
metric() { curl -fsS "http://${GOLD_METRICS:-127.0.0.1:5199}/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
ratios=()
printf '%-11s %10s %10s %10s %7s %14s\n' image goldproxy crane+trivy size ratio scan/layer
for i in "${images[@]}"; do
  gss=() css=() sps=()
  for r in $(seq "$rounds"); do
    s0=$(metric goldproxy_scan_duration_seconds_sum)
    g=$("$work/pullbench" gated --mirror "http://$gold" --ns bench.local --repo "bench/$i" --tag "$r")
    s1=$(metric goldproxy_scan_duration_seconds_sum)
    gss+=("$(python3 -c "import json,sys;print(json.loads(sys.argv[1])['seconds'])" "$g")")
    sps+=("$(python3 -c "print(${s1:-0}-${s0:-0})")") # one layer per image
    rm -rf "$work/trivy-cache/fanal" "$work/pull.tar"
    t0=$(date +%s.%N)
    "$BIN/crane" pull --insecure "$up/bench/$i:$r" "$work/pull.tar"
    "$BIN/trivy" image --input "$work/pull.tar" --cache-dir "$work/trivy-cache" --skip-db-update --skip-java-db-update --offline-scan --scanners vuln --format json --quiet >/dev/null
    t1=$(date +%s.%N)
    css+=("$(python3 -c "print($t1-$t0)")")
  done
  gs=$(median "${gss[@]}") cs=$(median "${css[@]}") sp=$(median "${sps[@]}")
  size=$(du -h "$work/pull.tar" | cut -f1)
  r=$(python3 -c "print(round($gs/$cs,2))")
  ratios+=("$r")
  printf '%-11s %9.2fs %9.2fs %10s %6sx %13.2fs\n' "$i" "$gs" "$cs" "$size" "$r" "$sp"
done
python3 -c "import statistics,sys; r=[float(x) for x in sys.argv[1:]]; print(f'median ratio {statistics.median(r):.2f}x (target <= 0.5), worst {max(r):.2f}x (target <= 0.7); medians of $rounds rounds')" "${ratios[@]}"
echo "goldproxy VmHWM (peak RSS): $(vmhwm $gold_pid)"
