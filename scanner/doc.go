// Package scanner embeds Trivy as a library: it finds the OS and language packages in an
// image and their known vulnerabilities, and owns the lifecycle of the vulnerability DB.
//
// On the pull path it is handed a v1.Image whose content is already in goldproxy's store
// and reports what it found. It never pulls anything, never makes a network call during
// a scan (no analyzer that calls out is compiled in, none that is compiled in is asked
// to), and knows nothing of HTTP or policy. Layer analysis is cached by layer in Trivy's
// bbolt FS cache, or in the replicas' shared store (WithSharedLayerCache), so a base
// layer shared by many images is analysed once.
//
// The Trivy DB is a package-level global in trivy-db; DB is the one type that opens,
// swaps and closes it, so a swap never races a running scan.
package scanner

// Analyzers named here are the ones the gate needs; Trivy's scan/local links in all of
// them anyway, and disabledAnalyzers (scanner.go) turns off what `trivy image --scanners
// vuln` turns off: lock files, config files, secrets, license files, apk commands, image
// history, executables and RPM archives.
import (
	_ "github.com/aquasecurity/trivy/pkg/fanal/analyzer/buildinfo"
	_ "github.com/aquasecurity/trivy/pkg/fanal/analyzer/language/golang/binary"
	_ "github.com/aquasecurity/trivy/pkg/fanal/analyzer/language/java/jar"
	_ "github.com/aquasecurity/trivy/pkg/fanal/analyzer/language/nodejs/pkg"
	_ "github.com/aquasecurity/trivy/pkg/fanal/analyzer/language/python/packaging"
	_ "github.com/aquasecurity/trivy/pkg/fanal/analyzer/language/rust/binary"
	_ "github.com/aquasecurity/trivy/pkg/fanal/analyzer/os/alpine"
	_ "github.com/aquasecurity/trivy/pkg/fanal/analyzer/os/amazonlinux"
	_ "github.com/aquasecurity/trivy/pkg/fanal/analyzer/os/debian"
	_ "github.com/aquasecurity/trivy/pkg/fanal/analyzer/os/redhatbase"
	_ "github.com/aquasecurity/trivy/pkg/fanal/analyzer/os/release"
	_ "github.com/aquasecurity/trivy/pkg/fanal/analyzer/os/ubuntu"
	_ "github.com/aquasecurity/trivy/pkg/fanal/analyzer/pkg/apk"
	_ "github.com/aquasecurity/trivy/pkg/fanal/analyzer/pkg/dpkg"
	_ "github.com/aquasecurity/trivy/pkg/fanal/analyzer/pkg/rpm"
	_ "github.com/aquasecurity/trivy/pkg/fanal/analyzer/repo/apk"
	_ "github.com/aquasecurity/trivy/pkg/fanal/handler/sysfile"

	// The Java DB is SQLite; Trivy's CLI registers this driver, a library user must.
	_ "modernc.org/sqlite"
)
