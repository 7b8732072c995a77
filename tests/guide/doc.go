// Package guide holds the tests that run the hardened-images guides' commands as written:
// the cmd/baseline, cmd/scanner and goldproxy binaries built from this module, the image
// lists under tests/baseline and docs/image-sources.md. It has no code of its own.
package guide
