package api_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"testing"
)

// The owner's profiles are real pprof files (gzipped protocol buffers), a
// CPU profile honours ?seconds, and a name the runtime does not know is
// the API's usual 404 rather than net/http/pprof's plain-text one.
func TestDebugProfiles(t *testing.T) {
	e := sqliteEnv(t)
	for _, path := range []string{"/debug/pprof/heap", "/debug/pprof/goroutine", "/debug/pprof/profile?seconds=1"} {
		r := e.admin("GET", path, nil, http.StatusOK, nil)
		zr, err := gzip.NewReader(bytes.NewReader(r.body))
		if err != nil {
			t.Fatalf("%s: not gzip: %v (%d bytes)", path, err, len(r.body))
		}
		b, err := io.ReadAll(zr)
		if err != nil || len(b) == 0 {
			t.Fatalf("%s: %d bytes unzipped, %v", path, len(b), err)
		}
	}
	wantError(t, "unknown profile", e.call("GET", "/debug/pprof/nosuch", adminToken, nil), http.StatusNotFound, "not_found")
}
