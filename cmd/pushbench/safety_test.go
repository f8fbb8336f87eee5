package main

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestCheckTarget(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		host   string
		remote bool // -allow-remote
		ok     bool
	}{
		{"127.0.0.1", false, true},
		{"127.8.9.10", false, true},
		{"::1", false, true},
		{"[::1]", false, true},
		{"::ffff:127.0.0.1", false, true},
		{"localhost", false, true},
		{"10.0.0.1", false, false},
		{"192.168.1.20", false, false},
		{"0.0.0.0", false, false},
		{"::", false, false},
		{"2001:db8::1", false, false},
		{"", false, false},
		{"10.0.0.1", true, true},
	} {
		err := checkTarget(ctx, tc.host, tc.remote)
		if (err == nil) != tc.ok {
			t.Errorf("checkTarget(%q, remote %v) = %v, want ok %v", tc.host, tc.remote, err, tc.ok)
		}
		if err != nil && !errors.Is(err, errRemote) {
			t.Errorf("checkTarget(%q): %v does not wrap errRemote", tc.host, err)
		}
	}
}

func TestDialerRefusesRemote(t *testing.T) {
	// The check runs before connecting: no packet leaves for 192.0.2.1
	// (TEST-NET-1).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := newDialer(false, netip.Addr{}).DialContext(ctx, "tcp", "192.0.2.1:80")
	if !errors.Is(err, errRemote) {
		t.Fatalf("dial 192.0.2.1: %v, want errRemote", err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	src := netip.MustParseAddr("127.0.0.3")
	c, err := newDialer(false, src).DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial loopback from %s: %v", src, err)
	}
	defer c.Close()
	if got := c.LocalAddr().(*net.TCPAddr).AddrPort().Addr(); got != src {
		t.Errorf("local address %s, want %s", got, src)
	}
}

func TestSourceAddrs(t *testing.T) {
	for _, tc := range []struct {
		host        string
		n, conns    int
		want        int
		first, last string
		err         bool
	}{
		{host: "127.0.0.1", conns: 1000, want: 20, first: "127.0.0.1", last: "127.0.0.20"},
		{host: "127.0.0.1", conns: 1, want: 1, first: "127.0.0.1", last: "127.0.0.1"},
		{host: "127.0.0.1", n: 300, conns: 10, want: 300, first: "127.0.0.1", last: "127.0.1.44"},
		{host: "::1", conns: 1000, want: 0},
		{host: "localhost", conns: 1000, want: 0},
		{host: "::1", n: 3, err: true},
	} {
		got, err := sourceAddrs(tc.host, tc.n, tc.conns)
		if (err != nil) != tc.err || len(got) != tc.want {
			t.Errorf("sourceAddrs(%s, %d, %d) = %v, %v", tc.host, tc.n, tc.conns, len(got), err)
			continue
		}
		if tc.want > 0 && (got[0].String() != tc.first || got[len(got)-1].String() != tc.last) {
			t.Errorf("sourceAddrs(%s, %d, %d): %s .. %s", tc.host, tc.n, tc.conns, got[0], got[len(got)-1])
		}
	}
}
