package promtest

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// BodyTarget serves an exposition the test renders whole. Scale tests put a
// million series into Prometheus; rendering them from a map of series on
// every scrape, as Target does, would cost more than the code under test.
type BodyTarget struct {
	body atomic.Pointer[[]byte]
	srv  *httptest.Server
}

// NewBodyTarget starts a target on loopback that serves an empty
// exposition until SetBody.
func NewBodyTarget(t testing.TB) *BodyTarget {
	tg := &BodyTarget{}
	tg.body.Store(&[]byte{})
	tg.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		w.Write(*tg.body.Load())
	}))
	t.Cleanup(tg.srv.Close)
	return tg
}

// SetBody replaces the whole exposition (text format) at once, so that a
// scrape sees either all of the old values or all of the new ones.
func (tg *BodyTarget) SetBody(b []byte) { tg.body.Store(&b) }

// Addr is the host:port Prometheus scrapes.
func (tg *BodyTarget) Addr() string { return strings.TrimPrefix(tg.srv.URL, "http://") }
