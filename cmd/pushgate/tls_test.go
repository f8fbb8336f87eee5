package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// testCert is a self-signed certificate for 127.0.0.1 and localhost.
type testCert struct {
	certPEM, keyPEM []byte
	x509            *x509.Certificate
}

func newTestCert(t *testing.T, cn string) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return testCert{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		x509:    cert,
	}
}

// write puts the pair in dir as cert.pem and key.pem, each replaced in one
// rename, as a renewal tool does.
func (c testCert) write(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for name, data := range map[string][]byte{keyFile: c.keyPEM, certFile: c.certPEM} {
		if err := os.WriteFile(name+".new", data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(name+".new", name); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}

// clientFor trusts only certs, speaks HTTP/2 when the server offers it,
// and counts the connections it dials.
func clientFor(certs ...testCert) (*http.Client, *atomic.Int32) {
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c.x509)
	}
	dials := new(atomic.Int32)
	var d net.Dialer
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return d.DialContext(ctx, network, addr)
		}}
	return &http.Client{Transport: tr}, dials
}

// servedSerial is the serial number of the certificate the server presents
// to a new connection.
func servedSerial(t *testing.T, addr string) *big.Int {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the test inspects what is served
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}

// waitServed waits until new connections get want, or fails after timeout.
func waitServed(t *testing.T, addr string, want *big.Int, trigger func()) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for servedSerial(t, addr).Cmp(want) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the served certificate is not the new one after %v", timeout)
		}
		trigger()
		time.Sleep(20 * time.Millisecond) // polling a condition, not a timing oracle
	}
}

// TestTLS: with --tls-cert and --tls-key pushgate serves HTTPS over
// HTTP/2: a query, a send, a long-poll and a graphql-sse subscription, all
// on one HTTP/2 connection; healthcheck probes it over TLS.
func TestTLS(t *testing.T) {
	cert := newTestCert(t, "pushgate-tls-test")
	certFile, keyFile := cert.write(t, t.TempDir())
	p := start(t, "--tls-cert", certFile, "--tls-key", keyFile, "--allow-anonymous")
	base := strings.Replace(p.url, "http://", "https://", 1)
	client, dials := clientFor(cert)

	post := func(t *testing.T, body string, accept string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, base+"/graphql", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+key)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if res.ProtoMajor != 2 {
			t.Fatalf("POST /graphql over %s, want HTTP/2", res.Proto)
		}
		return res
	}

	// graphql-sse over HTTP/2: subscribe, then send, then read the event.
	sub := post(t, `{"query":"subscription { feed(channels: [\"tls\"]) { ... on Message { id data } } }"}`, "text/event-stream")
	defer sub.Body.Close()
	if sub.StatusCode != http.StatusOK || !strings.HasPrefix(sub.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("graphql-sse: %s %s", sub.Status, sub.Header.Get("Content-Type"))
	}
	events := make(chan string, 8)
	go func() {
		sc := bufio.NewScanner(sub.Body)
		for sc.Scan() {
			if line, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				events <- line
			}
		}
		close(events)
	}()

	// A send is retried until the subscription has it: the graphql-sse
	// stream has no "subscribed" event to wait for.
	deadline := time.After(timeout)
	var got string
	for got == "" {
		res := post(t, `{"query":"mutation { send(input: {channel: \"tls\", data: {over: \"h2\"}}) { message { id } } }"}`, "")
		var out gqlResult
		if err := json.NewDecoder(res.Body).Decode(&out); err != nil || len(out.Errors) > 0 {
			t.Fatalf("send: %v %+v", err, out.Errors)
		}
		res.Body.Close()
		select {
		case got = <-events:
		case <-time.After(200 * time.Millisecond):
		case <-deadline:
			t.Fatal("no graphql-sse event over HTTP/2")
		}
	}
	if !strings.Contains(got, `"over":"h2"`) {
		t.Fatalf("graphql-sse event %s", got)
	}

	// Long-poll over HTTP/2: the first answers at once with the channel's
	// position, the second, from it, with the message sent after.
	type pollAnswer struct {
		Messages []struct {
			Data json.RawMessage `json:"data"`
		} `json:"messages"`
		Cursor string `json:"cursor"`
	}
	poll := func(t *testing.T, query string) pollAnswer {
		t.Helper()
		res, err := client.Get(base + "/poll?" + query)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var a pollAnswer
		if err := json.NewDecoder(res.Body).Decode(&a); err != nil || res.ProtoMajor != 2 {
			t.Fatalf("GET /poll over %s: %s %v", res.Proto, res.Status, err)
		}
		return a
	}
	start := poll(t, "channel=tls-poll&timeout=0")
	res := post(t, `{"query":"mutation { send(input: {channel: \"tls-poll\", data: {polled: \"h2\"}}) { message { id } } }"}`, "")
	res.Body.Close()
	if a := poll(t, "channel=tls-poll&timeout=5&cursor="+start.Cursor); len(a.Messages) != 1 || !strings.Contains(string(a.Messages[0].Data), `"polled":"h2"`) {
		t.Fatalf("long-poll over HTTP/2: %+v", a)
	}
	if n := dials.Load(); n != 1 {
		t.Fatalf("%d connections dialled, want the one HTTP/2 connection", n)
	}

	// The Docker HEALTHCHECK's probe speaks TLS when the server does.
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(p.url, "http://"))
	if err := healthcheck(context.Background(), config{Addr: "127.0.0.1:" + port, TLSCert: certFile, TLSKey: keyFile}); err != nil {
		t.Fatalf("healthcheck over TLS: %v", err)
	}
	// Plain HTTP to the TLS port is not served.
	if res, err := http.Get(p.url + "/healthz"); err == nil {
		res.Body.Close()
		if res.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP served on the TLS port")
		}
	}
}

// TestTLSReload: a renewed certificate is served to new connections
// without a restart, after SIGHUP and after the files change; a reload
// from a broken file keeps the certificate being served.
func TestTLSReload(t *testing.T) {
	dir := t.TempDir()
	first := newTestCert(t, "pushgate-first")
	certFile, keyFile := first.write(t, dir)
	p := start(t, "--tls-cert", certFile, "--tls-key", keyFile)
	addr := strings.TrimPrefix(p.url, "http://")
	if got := servedSerial(t, addr); got.Cmp(first.x509.SerialNumber) != 0 {
		t.Fatalf("served serial %v, want %v", got, first.x509.SerialNumber)
	}

	t.Run("SIGHUP", func(t *testing.T) {
		renewed := newTestCert(t, "pushgate-renewed-by-sighup")
		renewed.write(t, dir)
		waitServed(t, addr, renewed.x509.SerialNumber, func() {
			if err := sighup(t); err != nil {
				t.Fatal(err)
			}
		})
		if !strings.Contains(p.log.String(), `"trigger":"SIGHUP"`) {
			t.Fatalf("no reload logged:\n%s", p.log)
		}
	})

	t.Run("a broken file keeps the served certificate", func(t *testing.T) {
		before := servedSerial(t, addr)
		if err := os.WriteFile(certFile, []byte("-----BEGIN CERTIFICATE-----\nnot a certificate\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(timeout)
		for !strings.Contains(p.log.String(), "TLS certificate not reloaded") {
			if time.Now().After(deadline) {
				t.Fatalf("no failed reload logged:\n%s", p.log)
			}
			_ = sighup(t)
			time.Sleep(20 * time.Millisecond)
		}
		if got := servedSerial(t, addr); got.Cmp(before) != 0 {
			t.Fatalf("served %v after a failed reload, want the previous %v", got, before)
		}
	})

	t.Run("file change", func(t *testing.T) {
		// The files are checked every certPollInterval; the test cannot
		// shorten a running server's, so it starts its own.
		old := certPollInterval
		certPollInterval = 10 * time.Millisecond
		t.Cleanup(func() { certPollInterval = old })
		d := t.TempDir()
		a := newTestCert(t, "pushgate-watch-a")
		cf, kf := a.write(t, d)
		q := start(t, "--tls-cert", cf, "--tls-key", kf)
		qaddr := strings.TrimPrefix(q.url, "http://")
		b := newTestCert(t, "pushgate-watch-b-renewed")
		b.write(t, d)
		waitServed(t, qaddr, b.x509.SerialNumber, func() {})
		if !strings.Contains(q.log.String(), `"trigger":"file changed"`) {
			t.Fatalf("no reload logged:\n%s", q.log)
		}
	})
}

// TestTLSFlags: --tls-cert and --tls-key go together, and a pair that
// cannot be loaded stops start-up with the flags named.
func TestTLSFlags(t *testing.T) {
	for _, args := range [][]string{{"--tls-cert", "c.pem"}, {"--tls-key", "k.pem"}} {
		_, err := parseConfig(args, func(string) string { return "" }, new(strings.Builder))
		if err == nil || !strings.Contains(err.Error(), "--tls-cert and --tls-key go together") {
			t.Fatalf("%v: %v", args, err)
		}
	}
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.pem")
	err := run(context.Background(), []string{"--addr", "127.0.0.1:0", "--tls-cert", missing, "--tls-key", missing},
		func(string) string { return "" }, new(strings.Builder), new(strings.Builder))
	if err == nil || !strings.Contains(err.Error(), "--tls-cert") {
		t.Fatalf("missing certificate: %v", err)
	}
	a, b := newTestCert(t, "a"), newTestCert(t, "b")
	certFile, _ := a.write(t, dir)
	otherKey := filepath.Join(dir, "other.pem")
	if err := os.WriteFile(otherKey, b.keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	err = run(context.Background(), []string{"--addr", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", otherKey},
		func(string) string { return "" }, new(strings.Builder), new(strings.Builder))
	if err == nil || !strings.Contains(err.Error(), "--tls-key") {
		t.Fatalf("mismatched key: %v", err)
	}
}
