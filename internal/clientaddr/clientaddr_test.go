package clientaddr

import (
	"crypto/tls"
	"net/http"
	"testing"
)

func req(remote string, hdr ...string) *http.Request {
	r, _ := http.NewRequest("GET", "http://x/", nil)
	r.RemoteAddr = remote
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	return r
}

func TestClient(t *testing.T) {
	res, err := New([]string{"10.0.0.0/8", "2001:db8::1", " "})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		r      *http.Request
		want   string
		secure bool
	}{
		{"untrusted peer's header is ignored", req("203.0.113.9:1234", "X-Forwarded-For", "198.51.100.1", "X-Forwarded-Proto", "https"), "203.0.113.9", false},
		{"trusted peer: the client it saw", req("10.1.2.3:80", "X-Forwarded-For", "198.51.100.1", "X-Forwarded-Proto", "https"), "198.51.100.1", true},
		{"a client-written hop left of the real one is ignored", req("10.1.2.3:80", "X-Forwarded-For", "1.1.1.1, 198.51.100.1"), "198.51.100.1", false},
		{"a chain of trusted proxies is skipped", req("10.1.2.3:80", "X-Forwarded-For", "198.51.100.1, 10.9.9.9", "X-Forwarded-For", "10.8.8.8"), "198.51.100.1", false},
		{"all hops trusted: the leftmost", req("10.1.2.3:80", "X-Forwarded-For", "10.7.7.7"), "10.7.7.7", false},
		{"trusted peer, no header: the peer", req("10.1.2.3:80"), "10.1.2.3", false},
		{"garbage hop: stop at the last good one", req("10.1.2.3:80", "X-Forwarded-For", "198.51.100.1, nonsense"), "10.1.2.3", false},
		{"trusted IPv6 peer, hop with a port", req("[2001:db8::1]:443", "X-Forwarded-For", "[2001:db8::99]:5555"), "2001:db8::99", false},
		{"IPv4-mapped trusted peer", req("[::ffff:10.0.0.1]:80", "X-Forwarded-For", "198.51.100.7"), "198.51.100.7", false},
		{"the nearest proxy's scheme wins", req("10.1.2.3:80", "X-Forwarded-Proto", "https, http"), "10.1.2.3", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := res.Client(c.r); got != c.want {
				t.Errorf("client %q, want %q", got, c.want)
			}
			if got := res.Secure(c.r); got != c.secure {
				t.Errorf("secure %v, want %v", got, c.secure)
			}
		})
	}
	tlsReq := req("203.0.113.9:1")
	tlsReq.TLS = &tls.ConnectionState{}
	if !res.Secure(tlsReq) {
		t.Error("a direct TLS request is not secure")
	}
	var none *Resolver
	if got := none.Client(req("10.1.2.3:80", "X-Forwarded-For", "1.1.1.1")); got != "10.1.2.3" {
		t.Errorf("nil resolver believed a header: %s", got)
	}
	if _, err := New([]string{"10.0.0.0/33"}); err == nil {
		t.Error("a bad CIDR was accepted")
	}
}
