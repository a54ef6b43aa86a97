package api

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/internal/apiclient"
	"github.com/boxfleet/boxfleet/internal/window"
	"github.com/boxfleet/boxfleet/subscribe"
)

// SubOptions configure GET /sub/{token}.
type SubOptions struct {
	Renderer *subscribe.Renderer
	// Ranker orders node names best first; nil keeps name order.
	Ranker                        interface{ Sort([]string) }
	Title, SupportURL, WebPageURL string
	UpdateInterval                time.Duration
	// ExternalURL is the controller's public base URL, for the links a
	// subscription page shows; empty uses the request's Host.
	ExternalURL string
	// MissesPerMinute is how many unknown tokens one IP may try per minute;
	// more get 429 until the oldest leaves the minute. Valid tokens are
	// always served: behind a CDN or a carrier NAT many users share one
	// address, and one client with a rotated token must not lock out the
	// rest. Tokens are 192 random bits, so the limit is there to keep a
	// scanner off the database, not to make guessing possible.
	MissesPerMinute int
	// Now is the miss limiter's clock; nil is time.Now. Tests move it
	// rather than wait out the minute.
	Now func() time.Time
}

type subHandler struct {
	a     *API
	o     SubOptions
	nodes nodeCache

	mu     sync.Mutex
	misses map[string]*window.Counter
}

func (a *API) enableSubscriptions(o *SubOptions) {
	if o == nil {
		notFound := func(w http.ResponseWriter, r *http.Request) {
			writeError(w, http.StatusNotFound, apiclient.CodeNotFound, "no such subscription", "")
		}
		a.Handle("sub", http.MethodGet, "/sub/{token}", public, notFound)
		a.Handle("sub.head", http.MethodHead, "/sub/{token}", public, notFound)
		return
	}
	h := &subHandler{a: a, o: *o, misses: map[string]*window.Counter{}}
	if h.o.Now == nil {
		h.o.Now = time.Now
	}
	h.nodes.store = a.store
	a.Handle("sub", http.MethodGet, "/sub/{token}", public, h.serve)
	// Some clients refresh usage with HEAD: same answer, headers only.
	a.Handle("sub.head", http.MethodHead, "/sub/{token}", public, h.serve)
}

func (h *subHandler) serve(w http.ResponseWriter, r *http.Request) {
	tok := mux.Vars(r)["token"]
	u, err := h.a.store.UserByToken(r.Context(), tok)
	if errors.Is(err, store.ErrNotFound) {
		ip := limitKey(h.a.addr.Client(r))
		if wait := h.wait(ip); wait > 0 {
			secs := int(math.Ceil(wait.Seconds()))
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			writeError(w, http.StatusTooManyRequests, apiclient.CodeRateLimited,
				fmt.Sprintf("too many unknown tokens from this address; retry in %d s", secs), "")
			return
		}
		h.miss(ip)
		// The same answer whether the token never existed or was rotated.
		writeError(w, http.StatusNotFound, apiclient.CodeNotFound, "no such subscription", "")
		return
	}
	if err != nil {
		h.a.fail(w, r, err)
		return
	}
	nodes, err := h.nodes.get(r)
	if err != nil {
		h.a.fail(w, r, err)
		return
	}
	p := h.profile(r, u, nodes)
	w.Header().Set("Cache-Control", "no-store")
	h.o.Renderer.Serve(w, r, p)
}

func (h *subHandler) profile(r *http.Request, u *store.User, nodes []*store.Node) *subscribe.Profile {
	p := &subscribe.Profile{
		User: u.Name, Credentials: u.Credentials, Status: u.Status,
		Upload: u.UsedUp, Download: u.UsedDown, Total: u.TrafficLimit,
		Title: h.o.Title, SupportURL: h.o.SupportURL, WebPageURL: h.o.WebPageURL,
		UpdateInterval: h.o.UpdateInterval, SubURL: h.baseURL(r) + "/sub/" + u.SubToken,
	}
	if u.ExpireAt != nil {
		p.Expire = *u.ExpireAt
	}
	// Sized up front: this runs on every request, and growing them cost a
	// dozen allocations for 50 nodes.
	byName := make(map[string]*store.Node, len(nodes))
	names := make([]string, 0, len(nodes))
	for _, n := range nodes {
		if n.Drained || n.Address == "" || !u.MayUse(n.Group()) {
			continue
		}
		byName[n.Name] = n
		names = append(names, n.Name)
	}
	if h.o.Ranker != nil {
		h.o.Ranker.Sort(names)
	}
	p.Nodes = make([]subscribe.Node, 0, len(names))
	for _, name := range names {
		n := byName[name]
		p.Nodes = append(p.Nodes, subscribe.Node{Name: n.Name, Address: n.Address, Labels: n.Labels, Inbounds: n.Inbounds})
	}
	return p
}

func (h *subHandler) baseURL(r *http.Request) string {
	if h.o.ExternalURL != "" {
		return strings.TrimSuffix(h.o.ExternalURL, "/")
	}
	scheme := "http"
	if h.a.addr.Secure(r) { // TLS here, or at a trusted proxy
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// limitKey is the unit the miss limit counts: an IPv4 address, or the /64
// of an IPv6 one, since any client picks fresh addresses from its /64 at
// will.
func limitKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil || a.Is4() || a.Is4In6() {
		return ip
	}
	p, _ := a.Prefix(64)
	return p.String()
}

func (h *subHandler) limiterFor(ip string) *window.Counter {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := h.misses[ip]
	if l == nil {
		if len(h.misses) > 100_000 { // bound memory under a spray of addresses
			h.misses = map[string]*window.Counter{}
		}
		l = window.New(h.o.MissesPerMinute, time.Minute)
		h.misses[ip] = l
	}
	return l
}

// wait is how long the address must wait before its next miss is answered.
func (h *subHandler) wait(ip string) time.Duration {
	if h.o.MissesPerMinute <= 0 {
		return 0
	}
	return h.limiterFor(ip).Wait(h.o.Now())
}

func (h *subHandler) miss(ip string) {
	if h.o.MissesPerMinute > 0 {
		h.limiterFor(ip).Add(h.o.Now())
	}
}

// nodeCache keeps the node list for a second: every subscription request
// needs it, and it changes rarely.
type nodeCache struct {
	store *store.Store
	mu    sync.Mutex
	at    time.Time
	nodes []*store.Node
}

func (c *nodeCache) get(r *http.Request) ([]*store.Node, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) < time.Second {
		return c.nodes, nil
	}
	ns, err := c.store.ListNodes(r.Context())
	if err != nil {
		if c.nodes != nil {
			return c.nodes, nil // a database blip: serve the last list
		}
		return nil, err
	}
	c.nodes, c.at = ns, time.Now()
	return ns, nil
}
