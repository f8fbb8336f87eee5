package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// pushbench opens thousands of connections and sends as fast as it is
// told: pointed at someone else's server that is an attack. So it targets
// loopback only unless -allow-remote says otherwise, and checks every
// connection it dials, not just the name it was given (a name can resolve
// elsewhere later).

var errRemote = errors.New("refusing a non-loopback target (pass -allow-remote to benchmark a server you run elsewhere)")

// checkTarget resolves host and requires every address to be loopback,
// unless allowRemote.
func checkTarget(ctx context.Context, host string, allowRemote bool) error {
	if allowRemote {
		return nil
	}
	if host == "" {
		return fmt.Errorf("%w: an empty host means every interface", errRemote)
	}
	if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		if !ip.Unmap().IsLoopback() {
			return fmt.Errorf("%w: %s", errRemote, host)
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", host, err)
	}
	for _, a := range addrs {
		if !a.Unmap().IsLoopback() {
			return fmt.Errorf("%w: %s resolves to %s", errRemote, host, a)
		}
	}
	if len(addrs) == 0 {
		return fmt.Errorf("resolve %s: no addresses", host)
	}
	return nil
}

// newDialer returns a dialer from source (the system's choice when it is
// the zero Addr) that, unless allowRemote, refuses to connect anywhere but
// loopback.
func newDialer(allowRemote bool, source netip.Addr) *net.Dialer {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: -1}
	if source.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: source.AsSlice()}
	}
	if !allowRemote {
		d.Control = func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: %s", errRemote, address)
			}
			if !ap.Addr().Unmap().IsLoopback() {
				return fmt.Errorf("%w: %s", errRemote, address)
			}
			return nil
		}
	}
	return d
}

// connsPerSource is how many subscribers share a source address when
// -source-addrs is automatic: few enough that one address stays within a
// server's per-IP limits (pushgate's defaults: 1000 open connections and
// 50 new ones a second with a burst of 100).
const connsPerSource = 50

// sourceAddrs returns the local addresses subscribers connect from: n
// loopback addresses 127.0.0.1, 127.0.0.2, ... (all of 127/8 is loopback on
// Linux and Windows), so that many clients look like many clients to a
// server that limits per IP. n = 0 chooses ceil(conns/connsPerSource) for
// an IPv4 loopback target where all of 127/8 is loopback, else the
// system's choice (no addresses): macOS and the BSDs configure 127.0.0.1
// alone, and a dial from 127.0.0.2 fails there unless it was added.
func sourceAddrs(host string, n, conns int) ([]netip.Addr, error) {
	ip, err := netip.ParseAddr(host)
	v4loop := err == nil && ip.Unmap().Is4() && ip.Unmap().IsLoopback()
	switch {
	case n == 0 && (!v4loop || (runtime.GOOS != "linux" && runtime.GOOS != "windows")):
		return nil, nil
	case n == 0:
		n = min((conns+connsPerSource-1)/connsPerSource, maxSourceAddrs)
	case !v4loop:
		return nil, fmt.Errorf("-source-addrs needs an IPv4 loopback target (127.x.x.x), not %s", host)
	}
	addrs := make([]netip.Addr, n)
	for i := range addrs {
		x := uint32(i + 1)
		addrs[i] = netip.AddrFrom4([4]byte{127, byte(x >> 16), byte(x >> 8), byte(x)})
	}
	return addrs, nil
}

// maxSourceAddrs bounds -source-addrs.
const maxSourceAddrs = 4096
