package scannertest_test

import (
	"bytes"
	"strings"
	"testing"

	rustaudit "github.com/rust-secure-code/go-rustaudit"

	"github.com/goldproxy/goldproxy/scanner/scannertest"
)

// The generated ELF is read as Trivy reads Rust binaries: go-rustaudit over debug/elf.
func TestAuditableELF(t *testing.T) {
	b := scannertest.AuditableELF(t, []scannertest.Crate{
		{Name: "app", Version: "0.1.0", Source: "local", Dependencies: []int{1}, Root: true},
		{Name: "smallvec", Version: "1.6.0", Source: "crates.io"},
		{Name: "cc", Version: "1.0.73", Source: "crates.io", Kind: "build"},
	})
	info, err := rustaudit.GetDependencyInfo(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range info.Packages {
		got = append(got, p.Name+"@"+p.Version+":"+string(p.Kind))
	}
	if want := "app@0.1.0:runtime smallvec@1.6.0:runtime cc@1.0.73:build"; strings.Join(got, " ") != want {
		t.Fatalf("crates %q, want %q", strings.Join(got, " "), want)
	}
}
