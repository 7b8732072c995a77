#!/usr/bin/env bash
# Installs the real cosign CLI (v2.6.5) and runs `cosign verify --key` through goldproxy
# for a key-signed test image (proxy/cosign_test.go: a test upstream, a generated key,
# cosign's legacy .sig layout); an unsigned image must fail to verify and be denied. Then
# cosign itself signs and attests images (legacy layout, and --new-bundle-format) that
# goldproxy's own verification must accept.
# Not part of CI: building cosign takes minutes.
#   bench/cosign-verify.sh            # installs cosign into /tmp/bin once, then runs
#   COSIGN=/path/to/cosign bench/cosign-verify.sh
set -euo pipefail
export GOEXPERIMENT=jsonv2
cd "$(dirname "$0")/.."
cosign=${COSIGN:-/tmp/bin/cosign}
if [ ! -x "$cosign" ]; then
	echo "installing cosign v2.6.5 into $(dirname "$cosign") (slow)..." >&2
	(cd / && GOFLAGS= GOBIN="$(dirname "$cosign")" go install github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5)
fi
"$cosign" version 2>/dev/null | grep -i gitversion || true
GOLDPROXY_COSIGN="$cosign" go test -count=1 -timeout 15m -run 'TestCosignVerifyThroughProxy' -v ./proxy/
