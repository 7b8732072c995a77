package cli

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/goldproxy/goldproxy/proxy/gate"
)

// sbomPrefix marks a list line that names an SBOM file instead of an image.
const sbomPrefix = "sbom:"

// ListEntry is one line of an image list in the seed format: an image reference, or
// "sbom:PATH", an SBOM file (CycloneDX or SPDX JSON) whose packages stand for an image.
type ListEntry struct {
	Name string // as the list writes it: "cgr.dev/chainguard/static:latest", "sbom:api.cdx.json"
	SBOM string // for an SBOM line, the file: relative paths are relative to the list's directory
}

// ReadList reads an image list file; "" is an empty list.
func ReadList(path string) ([]ListEntry, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	entries, err := ParseList(f, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return entries, nil
}

// ParseList parses a list in the seed format (one reference per line, "#" comments)
// with the proxy's own parser, plus "sbom:PATH" lines resolved against dir. Entries keep
// the list's order.
func ParseList(r io.Reader, dir string) ([]ListEntry, error) {
	var entries []ListEntry
	var images strings.Builder // the list with SBOM lines blanked, so line numbers hold
	var isImage []bool
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		bare := line
		if i := strings.Index(bare, "#"); i >= 0 {
			bare = bare[:i]
		}
		bare = strings.TrimSpace(bare)
		if path, ok := strings.CutPrefix(bare, sbomPrefix); ok {
			path = strings.TrimSpace(path)
			if path == "" {
				return nil, fmt.Errorf("line %d: %q names no SBOM file", n, line)
			}
			if !filepath.IsAbs(path) {
				path = filepath.Join(dir, path)
			}
			entries = append(entries, ListEntry{Name: bare, SBOM: path})
			isImage = append(isImage, false)
			images.WriteString("\n")
			continue
		}
		if bare != "" {
			entries = append(entries, ListEntry{})
			isImage = append(isImage, true)
		}
		images.WriteString(line + "\n")
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	refs, err := gate.ParseImageList(strings.NewReader(images.String()))
	if err != nil {
		return nil, err
	}
	next := 0
	for i := range entries {
		if isImage[i] {
			if next >= len(refs) {
				return nil, fmt.Errorf("list parser disagreement: %d image lines, %d references", next+1, len(refs))
			}
			entries[i].Name = refs[next].String()
			next++
		}
	}
	return entries, nil
}
