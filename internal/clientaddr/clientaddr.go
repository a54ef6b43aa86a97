// Package clientaddr decides who a request came from and whether it came
// over TLS, believing X-Forwarded-For and X-Forwarded-Proto only when the
// connection itself comes from a trusted proxy. Every part of the
// controller that needs a client's address (login limiter, subscription
// miss limiter, audit log, the Secure flag of cookies) asks this one place,
// so that a CDN in front of subscriptions does not make every client one
// address, and a client cannot pick its own address by sending a header.
//
// X-Forwarded-For is read from the right: each trusted proxy appends the
// address it saw, so the rightmost address that is not a trusted proxy is
// the client. Anything to the left of it was written by the client itself.
package clientaddr

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
)

// Resolver holds the trusted proxy networks; the zero value trusts none.
type Resolver struct {
	trusted []netip.Prefix
}

// New parses CIDRs (or single addresses) of trusted proxies.
func New(cidrs []string) (*Resolver, error) {
	r := &Resolver{}
	for _, c := range cidrs {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		p, err := netip.ParsePrefix(c)
		if err != nil {
			a, aerr := netip.ParseAddr(c)
			if aerr != nil {
				return nil, fmt.Errorf("trusted proxy %q: not a CIDR or address", c)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		r.trusted = append(r.trusted, p.Masked())
	}
	return r, nil
}

func (r *Resolver) isTrusted(a netip.Addr) bool {
	if r == nil {
		return false
	}
	a = a.Unmap()
	for _, p := range r.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// peer is the address of the connection, or an invalid Addr when
// RemoteAddr is not an IP (a Unix socket, a test).
func peer(req *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(req.RemoteAddr)
	if err != nil {
		host = req.RemoteAddr
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

// Client returns the client's address as text: the connection's peer, or,
// when the peer is a trusted proxy, the rightmost untrusted address of
// X-Forwarded-For.
func (r *Resolver) Client(req *http.Request) string {
	p := peer(req)
	if !p.IsValid() {
		return req.RemoteAddr
	}
	if !r.isTrusted(p) {
		return p.String()
	}
	client := p
	hops := forwarded(req)
	for _, hop := range slices.Backward(hops) {
		a, err := netip.ParseAddr(hop)
		if err != nil {
			break // a malformed hop: stop at the last address we could check
		}
		client = a.Unmap()
		if !r.isTrusted(client) {
			break
		}
	}
	return client.String()
}

// forwarded lists the X-Forwarded-For hops, over every header line, in
// order.
func forwarded(req *http.Request) []string {
	var hops []string
	for _, line := range req.Header.Values("X-Forwarded-For") {
		for h := range strings.SplitSeq(line, ",") {
			h = strings.TrimSpace(h)
			// Some proxies add a port or brackets; keep the address.
			if a, err := netip.ParseAddrPort(h); err == nil {
				h = a.Addr().String()
			}
			hops = append(hops, strings.Trim(h, "[]"))
		}
	}
	return hops
}

// Secure reports whether the client's request came over TLS: to us
// directly, or to a trusted proxy that says so in X-Forwarded-Proto.
func (r *Resolver) Secure(req *http.Request) bool {
	if req.TLS != nil {
		return true
	}
	if !r.isTrusted(peer(req)) {
		return false
	}
	// The last value is the one the nearest proxy set.
	vals := strings.Split(strings.Join(req.Header.Values("X-Forwarded-Proto"), ","), ",")
	return strings.EqualFold(strings.TrimSpace(vals[len(vals)-1]), "https")
}
