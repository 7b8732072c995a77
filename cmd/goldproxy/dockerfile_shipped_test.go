package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestShippedDockerfile checks goldproxy's own Dockerfile with its own check-dockerfile
// --require-digest: every base is allowed and pinned by digest (the runtime stage is
// scratch), and it builds through cmd/goldproxy-image, so a Docker build ships the
// files the tested builder assembles.
func TestShippedDockerfile(t *testing.T) {
	df := filepath.Join("..", "..", "Dockerfile")
	if out, code := runCLI(t, "check-dockerfile", "--require-digest", df); code != 0 || strings.Contains(out, "warning") {
		t.Fatalf("check-dockerfile --require-digest Dockerfile: exit %d\n%s", code, out)
	}
	b, err := os.ReadFile(df)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"go run ./cmd/goldproxy-image", "--rootfs /out/rootfs", "\nFROM scratch\n", "\nUSER 65532:65532\n"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}
