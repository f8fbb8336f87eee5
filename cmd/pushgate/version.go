package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"time"
)

// version is the release this binary was built as, set by builds without
// VCS information (the container: .dockerignore keeps .git out) with
// -ldflags "-X main.version=v1.2.3". Empty: the main module's version from
// Go's build info ("v1.2.3" under go install ...@v1.2.3, "(devel)" in a
// checkout).
var version string

// buildFacts are what --version prints, the start-up log line carries and
// pushgate_build_info labels.
type buildFacts struct {
	Version   string
	Commit    string // vcs.revision, "-modified" appended for a dirty tree; "unknown" without VCS stamping
	GoVersion string
}

// readBuild reads the facts from Go's build info; ldVersion (main.version)
// wins over the module version when set.
func readBuild(ldVersion string) buildFacts {
	f := buildFacts{Version: "(devel)", Commit: "unknown", GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if ok {
		if v := bi.Main.Version; v != "" {
			f.Version = v
		}
		if bi.GoVersion != "" {
			f.GoVersion = bi.GoVersion
		}
		var modified bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				f.Commit = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if modified && f.Commit != "unknown" {
			f.Commit += "-modified"
		}
	}
	if ldVersion != "" {
		f.Version = ldVersion
	}
	return f
}

func (f buildFacts) String() string {
	return fmt.Sprintf("pushgate %s (commit %s, %s)", f.Version, f.Commit, f.GoVersion)
}

// healthcheckTimeout bounds the whole probe: a container runtime kills a
// HEALTHCHECK command at its own --timeout (3s in the Dockerfile).
const healthcheckTimeout = 2 * time.Second

// healthcheck is `pushgate healthcheck [flags]`, the container's
// HEALTHCHECK (distroless has no curl): it reads the configuration as the
// server does (flags, PUSHGATE_* variables, the config file), GETs /healthz
// on the port of --addr over loopback and returns nil on 200.
func healthcheck(ctx context.Context, cfg config) error {
	host, port, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return fmt.Errorf("healthcheck: --addr %q: %w", cfg.Addr, err)
	}
	// A wildcard (":8080", "0.0.0.0:8080", "[::]:8080") listens on
	// loopback too; a specific address is probed where it listens.
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	scheme, client := "http", http.DefaultClient
	if cfg.TLSCert != "" {
		// The probe asks whether this process serves, over loopback, where
		// the certificate's names do not apply: it checks no certificate.
		scheme = "https"
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec
	}
	url := scheme + "://" + net.JoinHostPort(host, port) + "/healthz"
	ctx, cancel := context.WithTimeout(ctx, healthcheckTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: GET %s: %s", url, resp.Status)
	}
	return nil
}

// errVersion is parseConfig's answer to --version.
var errVersion = errors.New("version requested")
