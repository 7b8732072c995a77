package config

import (
	"bytes"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/goldproxy/goldproxy/configs"
)

// FuzzConfigParse: Parse never panics; a config it accepts validates again, and written
// back out and parsed again it is the same config. The seeds are in
// testdata/fuzz/FuzzConfigParse.
func FuzzConfigParse(f *testing.F) {
	f.Add(configs.DefaultConfig)
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := Parse(b, "")
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("accepted then invalid: %v", err)
		}
		out, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatalf("accepted config does not marshal: %v", err)
		}
		again, err := Parse(out, "")
		if err != nil {
			t.Fatalf("accepted config written out does not parse: %v\n%s", err, out)
		}
		out2, err := yaml.Marshal(again)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, out2) {
			t.Fatalf("parse is not stable:\n%s\nthen\n%s", out, out2)
		}
	})
}
