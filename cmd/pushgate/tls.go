package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// certificate is the TLS certificate pushgate serves (--tls-cert,
// --tls-key), reloaded without a restart: on SIGHUP, and when either file
// changes (a renewal by certbot or cert-manager, a Kubernetes secret swapped
// under its symlink). A reload that fails (a half-written file, a key that
// does not match) keeps the certificate being served and logs why; new
// connections get the new certificate, open ones keep theirs.
type certificate struct {
	certFile, keyFile string
	log               zerolog.Logger
	current           atomic.Pointer[tls.Certificate]
	seen              fileStamps // of the files last loaded
}

// fileStamps identify the versions of the two files: a change of either's
// size or modification time is a new version.
type fileStamps [2]struct {
	size int64
	mod  time.Time
}

// certPollInterval is how often the files are checked for a change. A
// renewal is due weeks before the old certificate expires: a minute is
// prompt enough, and costs two stat calls.
var certPollInterval = time.Minute

// loadCertificate loads the pair, or says which file is wrong.
func loadCertificate(certFile, keyFile string, log zerolog.Logger) (*certificate, error) {
	c := &certificate{certFile: certFile, keyFile: keyFile, log: log}
	if err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *certificate) load() error {
	stamps, err := c.stamps()
	if err != nil {
		return err
	}
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("--tls-cert %s with --tls-key %s: %w", c.certFile, c.keyFile, err)
	}
	if pair.Leaf == nil { // parsed once here, not on every handshake
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return fmt.Errorf("--tls-cert %s: %w", c.certFile, err)
		}
	}
	c.current.Store(&pair)
	c.seen = stamps
	return nil
}

func (c *certificate) stamps() (fileStamps, error) {
	var s fileStamps
	for i, name := range [2]string{c.certFile, c.keyFile} {
		fi, err := os.Stat(name) // follows a symlink: a swapped secret is a change
		if err != nil {
			flag := "--tls-cert"
			if i == 1 {
				flag = "--tls-key"
			}
			return s, fmt.Errorf("%s: %w", flag, err)
		}
		s[i].size, s[i].mod = fi.Size(), fi.ModTime()
	}
	return s, nil
}

// reload loads the files again, keeping the served certificate when they
// cannot be loaded; why says what asked for it, for the log.
func (c *certificate) reload(why string) {
	if err := c.load(); err != nil {
		c.log.Error().Err(err).Str("trigger", why).Msg("TLS certificate not reloaded: still serving the previous one")
		return
	}
	leaf := c.current.Load().Leaf
	c.log.Info().Str("trigger", why).Str("subject", leaf.Subject.String()).
		Time("not_after", leaf.NotAfter).Msg("TLS certificate loaded")
}

// watch reloads on every value from hup and whenever the files change,
// until ctx ends.
func (c *certificate) watch(ctx context.Context, hup <-chan os.Signal) {
	tick := time.NewTicker(certPollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			c.reload("SIGHUP")
		case <-tick.C:
			if s, err := c.stamps(); err == nil && s != c.seen {
				c.reload("file changed")
			}
		}
	}
}

// tlsConfig serves the current certificate, over HTTP/2 or HTTP/1.1 as the
// client offers (ALPN). WebSocket stays on HTTP/1.1: the server does not
// announce extended CONNECT (RFC 8441), so browsers and wx.connectSocket
// open a WebSocket with an HTTP/1.1 upgrade, as they do everywhere.
func (c *certificate) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if cert := c.current.Load(); cert != nil {
				return cert, nil
			}
			return nil, errors.New("no TLS certificate loaded")
		},
	}
}
