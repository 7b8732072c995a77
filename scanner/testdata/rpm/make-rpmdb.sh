#!/usr/bin/env bash
# Regenerates rpmdb.sqlite: an RPM database (sqlite backend, as UBI 9 and RHEL 9 keep it)
# holding three packages with real UBI 9 names, versions and releases. Needs Debian's
# `rpm` package (rpmbuild). The packages are empty: only their headers matter; their
# Vendor is Red Hat's, without which Trivy takes them for third-party packages and
# matches no Red Hat advisory.
set -euo pipefail
out=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/SPECS" "$work/root"
while read -r name epoch version release; do
  cat > "$work/SPECS/$name.spec" <<SPEC
Name: $name
Epoch: $epoch
Version: $version
Release: $release
Summary: $name
License: GPLv3+
Vendor: Red Hat, Inc.
Packager: Red Hat, Inc. <http://bugzilla.redhat.com/bugzilla>
BuildArch: x86_64
%description
$name
%files
SPEC
  rpmbuild --quiet --define "_topdir $work" --define "_rpmdir $work/RPMS" -bb "$work/SPECS/$name.spec"
done <<LIST
openssl-libs 1 3.0.7 24.el9
bash 0 5.1.8 6.el9_1
microdnf 0 3.9.1 3.el9
LIST
rpm --root "$work/root" --dbpath /var/lib/rpm --initdb
rpm --root "$work/root" --dbpath /var/lib/rpm -i --justdb --nodeps --ignorearch --ignoreos "$work"/RPMS/x86_64/*.rpm 2>/dev/null
rpm --root "$work/root" --dbpath /var/lib/rpm -qa
cp "$work/root/var/lib/rpm/rpmdb.sqlite" "$out/rpmdb.sqlite"
