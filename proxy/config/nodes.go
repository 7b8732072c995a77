package config

import (
	"fmt"
	"net/url"
	"path"
	"sort"
	"strings"
)

// NodeFiles are the client configurations that make goldproxy, at proxyURL, the only
// source of every configured upstream, keyed by path (relative): containerd's
// certs.d/<host>/hosts.toml (server and [host] both goldproxy: containerd 1.6 rejects a
// file with only server, and a server that is the real registry is where it falls back to
// after a denial), containers' registries.conf (location is goldproxy, with the upstream
// host in the path: no mirror to fall back from) and k3s/RKE2's registries.yaml. caFile,
// when set, is the CA clients trust goldproxy's certificate with.
func (c *Config) NodeFiles(proxyURL, caFile string) (map[string]string, error) {
	u, err := url.Parse(proxyURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("node config: %q is not an http(s)://host[:port] URL of goldproxy", proxyURL)
	}
	base := strings.TrimSuffix(u.Scheme+"://"+u.Host, "/")
	var hosts []string
	for _, up := range c.Upstreams {
		hosts = append(hosts, append([]string{up.Name}, up.Aliases...)...)
	}
	sort.Strings(hosts)
	files := map[string]string{}
	for _, h := range hosts {
		var b strings.Builder
		fmt.Fprintf(&b, "# goldproxy is the only source of %s: it is the server and the host, so a denial\n", h)
		b.WriteString("# is final (containerd never falls back to the registry itself). Written by goldproxy node-config.\n")
		fmt.Fprintf(&b, "server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", base, base)
		if caFile != "" {
			fmt.Fprintf(&b, "  ca = %q\n", caFile)
		}
		dir := h
		if h == "docker.io" {
			dir = "docker.io" // containerd looks up docker.io (and registry-1.docker.io maps to it)
		}
		files[path.Join("containerd", "certs.d", dir, "hosts.toml")] = b.String()
	}

	var rc strings.Builder
	rc.WriteString("# containers/image (podman, CRI-O, skopeo, buildah): goldproxy is each registry's location,\n")
	rc.WriteString("# with the upstream host in the path; there is no mirror entry to fall back from.\n")
	rc.WriteString("# Written by goldproxy node-config. Install as /etc/containers/registries.conf.\n")
	rc.WriteString("unqualified-search-registries = [\"docker.io\"]\nshort-name-mode = \"enforcing\"\n")
	for _, up := range c.Upstreams {
		// The location names the upstream by its name (an alias such as host:port is no
		// valid path component); every spelling of it is a prefix.
		for _, h := range append([]string{up.Name}, up.Aliases...) {
			fmt.Fprintf(&rc, "\n[[registry]]\nprefix = %q\nlocation = %q\n", h, u.Host+"/"+up.Name)
			if u.Scheme == "http" {
				rc.WriteString("insecure = true\n")
			}
		}
	}
	files[path.Join("containers", "registries.conf")] = rc.String()

	var k3s strings.Builder
	k3s.WriteString("# k3s / RKE2: /etc/rancher/k3s/registries.yaml (or /etc/rancher/rke2/registries.yaml).\n")
	k3s.WriteString("# Start k3s/rke2 with --disable-default-registry-endpoint so containerd never falls back to\n")
	k3s.WriteString("# the registry itself. Written by goldproxy node-config.\nmirrors:\n")
	for _, h := range append([]string{"*"}, hosts...) {
		fmt.Fprintf(&k3s, "  %q:\n    endpoint:\n      - %q\n", h, base)
	}
	if caFile != "" || u.Scheme == "http" {
		fmt.Fprintf(&k3s, "configs:\n  %q:\n    tls:\n", u.Host)
		if caFile != "" {
			fmt.Fprintf(&k3s, "      ca_file: %q\n", caFile)
		} else {
			k3s.WriteString("      insecure_skip_verify: true\n")
		}
	}
	files[path.Join("k3s", "registries.yaml")] = k3s.String()
	return files, nil
}
