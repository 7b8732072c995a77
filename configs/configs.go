// Package configs holds goldproxy's example configuration and image lists. The example
// config is embedded and is the default a bare `goldproxy serve` runs on, so the documented
// file and the real default can never drift apart.
package configs

import _ "embed"

// DefaultConfig is goldproxy.yaml: the documented example and the embedded default.
//
//go:embed goldproxy.yaml
var DefaultConfig []byte
