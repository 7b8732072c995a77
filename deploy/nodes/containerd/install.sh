#!/bin/sh
# Writes /etc/containerd/certs.d/<upstream>/hosts.toml for every upstream, each pointing
# only at goldproxy (fail closed), and checks containerd's config_path. Run as root on
# each node (or from a DaemonSet / your node image build):
#   GOLDPROXY=https://goldproxy.internal:5000 sh install.sh docker.io cgr.dev gcr.io quay.io ghcr.io
set -eu
: "${GOLDPROXY:?set GOLDPROXY to goldproxy's URL, e.g. https://goldproxy.internal:5000}"
dir=${CERTS_D:-/etc/containerd/certs.d}
[ $# -gt 0 ] || set -- docker.io cgr.dev gcr.io quay.io ghcr.io registry.access.redhat.com
here=$(dirname "$0")
for up in "$@"; do
  mkdir -p "$dir/$up"
  sed -e "s#GOLDPROXY#$GOLDPROXY#g" "$here/hosts.toml.tmpl" > "$dir/$up/hosts.toml"
  echo "wrote $dir/$up/hosts.toml"
done
# "_default" catches every registry with no directory of its own: unknown upstreams go to
# goldproxy too, which answers NAME_UNKNOWN instead of letting the node pull directly.
mkdir -p "$dir/_default"
sed -e "s#GOLDPROXY#$GOLDPROXY#g" "$here/hosts.toml.tmpl" > "$dir/_default/hosts.toml"
if ! grep -q 'config_path' /etc/containerd/config.toml 2>/dev/null; then
  echo "set config_path = \"$dir\" in /etc/containerd/config.toml (registry section of the CRI plugin) and restart containerd" >&2
fi
