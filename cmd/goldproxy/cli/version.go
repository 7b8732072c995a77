package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/goldproxy/goldproxy/scanner"
)

// Set with -ldflags "-X github.com/goldproxy/goldproxy/cmd/goldproxy/cli.version=…" (and
// commit, date) by the image builder (cmd/goldproxy-image) and release builds. When left
// empty, the values come from the build info the Go toolchain embeds (module version,
// vcs.revision, vcs.time), which `go install …@v1.2.3` and builds in a git checkout have.
var (
	version string
	commit  string
	date    string
)

// trivyModule is the module whose version `goldproxy version` reports as Trivy's.
const trivyModule = "github.com/aquasecurity/trivy"

// BuildInfo says what a goldproxy binary is: the proxy serves it at /api/v1/version and
// as the labels of the goldproxy_build_info metric (see Labels).
type BuildInfo struct {
	Version   string `json:"version"`         // module version or the -X override; "(devel)" for a plain go build
	Commit    string `json:"commit"`          // vcs.revision, "+dirty" appended when the tree was modified
	Date      string `json:"date"`            // vcs.time (commit time, RFC 3339) or the -X override
	Trivy     string `json:"trivyVersion"`    // version of the embedded Trivy library
	GoVersion string `json:"goVersion"`       // toolchain that built the binary
	Platform  string `json:"platform"`        // GOOS/GOARCH
	DB        string `json:"dbVersion"`       // loaded vulnerability DB (DBInfo.ID), "" when none is known
	DBSource  string `json:"dbSource"`        // where the loaded DB came from
	DBUpdated string `json:"dbUpdatedAt"`     // when the DB was built (RFC 3339)
	Module    string `json:"module,omitzero"` // main module path
}

// Build returns this binary's build information, without the DB fields.
func Build() BuildInfo {
	bi := BuildInfo{Version: version, Commit: commit, Date: date, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return fill(bi)
	}
	bi.Module = info.Main.Path
	if bi.Version == "" {
		bi.Version = info.Main.Version
	}
	modified := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			if bi.Commit == "" {
				bi.Commit = s.Value
			}
		case "vcs.time":
			if bi.Date == "" {
				bi.Date = s.Value
			}
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if modified && commit == "" && bi.Commit != "" {
		bi.Commit += "+dirty"
	}
	for _, d := range info.Deps {
		if d.Path == trivyModule {
			bi.Trivy = d.Version
			if d.Replace != nil {
				bi.Trivy = d.Replace.Version
			}
		}
	}
	return fill(bi)
}

func fill(bi BuildInfo) BuildInfo {
	for _, p := range []*string{&bi.Version, &bi.Commit, &bi.Date, &bi.Trivy} {
		if *p == "" {
			*p = "unknown"
		}
	}
	return bi
}

// WithDB returns bi with the DB fields set from the loaded DB's info.
func (bi BuildInfo) WithDB(info scanner.DBInfo) BuildInfo {
	bi.DB = info.ID()
	bi.DBSource = info.Source
	bi.DBUpdated = info.UpdatedAt.UTC().Format("2006-01-02T15:04:05Z07:00")
	return bi
}

// Labels are the goldproxy_build_info metric's labels (the metric's value is 1): version,
// commit, date, trivy_version and goversion. The DB is not a label here: it changes at
// run time and has its own goldproxy_vulnerability_db_info metric.
func (bi BuildInfo) Labels() map[string]string {
	return map[string]string{"version": bi.Version, "commit": bi.Commit, "date": bi.Date, "trivy_version": bi.Trivy, "goversion": bi.GoVersion}
}

// Write prints bi as `goldproxy version` does: one "key: value" line each.
func (bi BuildInfo) Write(w io.Writer) {
	fmt.Fprintf(w, "goldproxy %s\n", bi.Version)
	fmt.Fprintf(w, "commit:     %s\n", bi.Commit)
	fmt.Fprintf(w, "built:      %s\n", bi.Date)
	fmt.Fprintf(w, "trivy:      %s\n", bi.Trivy)
	fmt.Fprintf(w, "go:         %s %s\n", bi.GoVersion, bi.Platform)
	db := bi.DB
	if db == "" {
		db = "none loaded"
	} else {
		db += " from " + bi.DBSource
	}
	fmt.Fprintf(w, "db:         %s\n", db)
}

// NewVersionCmd is `version`: the binary's build information and the DB it would use.
func NewVersionCmd() *cobra.Command {
	var configPath, dbDir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print goldproxy's version, commit, build date, Trivy version and DB version",
		Long: `Print what this binary is: the goldproxy module version, the git commit and date it
was built from, the embedded Trivy library's version and the Go toolchain; and the
vulnerability DB a proxy or scan run with the same config would load (db.dir, else the
last download under data_dir/trivy-db). Nothing is downloaded. A running proxy reports
the same at /api/v1/version and in the goldproxy_build_info metric.

Example:
  goldproxy version
  goldproxy version --config /etc/goldproxy/goldproxy.yaml --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bi := Build()
			cfg, err := LoadConfig(configPath)
			if err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			if dbDir != "" {
				cfg.DB.Dir = dbDir
			}
			db := scanner.NewDB()
			defer db.Close()
			if LoadDBLocal(cfg, db) == nil {
				if info, err := db.Info(); err == nil {
					bi = bi.WithDB(info)
				}
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), bi)
			}
			bi.Write(cmd.OutOrStdout())
			return nil
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "config file whose db.dir and data_dir locate the DB (default: the embedded one)")
	cmd.Flags().StringVar(&dbDir, "db-dir", "", "vulnerability DB directory (config: db.dir)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the /api/v1/version JSON document instead")
	return cmd
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
