package webui

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/boxfleet/boxfleet/controller/api"
)

func gz(t *testing.T, s string) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.Bytes()
}

func testHandler(t *testing.T) http.Handler {
	files := fstest.MapFS{
		"index.html":                {Data: []byte(`<!doctype html><html><head><script type="module" src="./assets/index-abc.js"></script></head></html>`)},
		"assets/index-abc.js.gz":    {Data: gz(t, "console.log('app')")},
		"assets/logo-123.png":       {Data: []byte("\x89PNG\r\n\x1a\nxxxx")},
		"favicon.svg.gz":            {Data: gz(t, "<svg/>")},
		"assets/notcompressed.woff": {Data: []byte("font")},
	}
	h := newHandler(files)
	if !h.Built() {
		t.Fatal("a directory with index.html must count as built")
	}
	return h.Mount(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Next", "api")
		w.WriteHeader(http.StatusTeapot)
	}))
}

func do(h http.Handler, method, target string, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestRedirectsAreRelative(t *testing.T) {
	h := testHandler(t)
	for _, p := range []string{"/", "/ui"} {
		w := do(h, "GET", p)
		// An absolute /ui/ would escape a path prefix a proxy strips.
		if w.Code != http.StatusFound || w.Header().Get("Location") != "ui/" {
			t.Errorf("GET %s: %d Location %q, want 302 ui/", p, w.Code, w.Header().Get("Location"))
		}
	}
}

func TestOtherPathsGoToTheAPI(t *testing.T) {
	h := testHandler(t)
	for _, p := range []string{"/api/v1/users", "/sub/x", "/metrics", "/uix"} {
		if w := do(h, "GET", p); w.Code != http.StatusTeapot {
			t.Errorf("GET %s answered %d, not by the next handler", p, w.Code)
		}
	}
}

func TestIndexBaseClimbsToUI(t *testing.T) {
	h := testHandler(t)
	for path, base := range map[string]string{
		"/ui/":                "./",
		"/ui/index.html":      "./",
		"/ui/users":           "./",
		"/ui/users/":          "../",
		"/ui/users/alice":     "../",
		"/ui/users/a/b":       "../../",
		"/ui/users/alice?x=1": "../",
	} {
		w := do(h, "GET", path)
		body := w.Body.String()
		if w.Code != 200 || !strings.Contains(body, `<head><base href="`+base+`">`) {
			t.Errorf("GET %s: %d, want base %q in %s", path, w.Code, base, body)
		}
		if cc := w.Header().Get("Cache-Control"); cc != "no-cache" {
			t.Errorf("GET %s: Cache-Control %q, want no-cache", path, cc)
		}
		if csp := w.Header().Get("Content-Security-Policy"); csp != api.UICSP {
			t.Errorf("GET %s: CSP %q, want the API's UI policy", path, csp)
		}
		if w.Header().Get("X-Frame-Options") != "DENY" || w.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: missing security headers: %v", path, w.Header())
		}
	}
}

func TestAssetsGzipAndImmutable(t *testing.T) {
	h := testHandler(t)
	w := do(h, "GET", "/ui/assets/index-abc.js", "Accept-Encoding", "br, gzip")
	if w.Code != 200 || w.Header().Get("Content-Encoding") != "gzip" {
		t.Fatalf("gzip client: %d, encoding %q", w.Code, w.Header().Get("Content-Encoding"))
	}
	if cc := w.Header().Get("Cache-Control"); !strings.Contains(cc, "immutable") || !strings.Contains(cc, "max-age=31536000") {
		t.Errorf("hashed asset Cache-Control %q", cc)
	}
	if !strings.HasPrefix(w.Header().Get("Content-Type"), "text/javascript") {
		t.Errorf("Content-Type %q", w.Header().Get("Content-Type"))
	}
	zr, err := gzip.NewReader(w.Body)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(zr); string(b) != "console.log('app')" {
		t.Errorf("inflated body %q", b)
	}
	// Clients without gzip, or refusing it, get the plain bytes.
	for _, ae := range []string{"", "identity", "gzip;q=0"} {
		w = do(h, "GET", "/ui/assets/index-abc.js", "Accept-Encoding", ae)
		if w.Header().Get("Content-Encoding") != "" || w.Body.String() != "console.log('app')" {
			t.Errorf("Accept-Encoding %q: encoding %q body %q", ae, w.Header().Get("Content-Encoding"), w.Body.String())
		}
	}
	w = do(h, "GET", "/ui/assets/logo-123.png")
	if w.Code != 200 || w.Header().Get("Content-Type") != "image/png" {
		t.Errorf("png: %d %q", w.Code, w.Header().Get("Content-Type"))
	}
	// A file outside assets/ has no hash in its name: revalidate it.
	w = do(h, "GET", "/ui/favicon.svg", "Accept-Encoding", "gzip")
	if w.Code != 200 || w.Header().Get("Cache-Control") != "no-cache" {
		t.Errorf("favicon: %d Cache-Control %q", w.Code, w.Header().Get("Cache-Control"))
	}
}

func TestMissingAssetIs404NotTheApp(t *testing.T) {
	h := testHandler(t)
	for _, p := range []string{"/ui/assets/gone-123.js", "/ui/robots.txt", "/ui/assets/index-abc.js.gz", "/ui/../webui.go"} {
		w := do(h, "GET", p)
		if w.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, w.Code)
		}
	}
	if w := do(h, "POST", "/ui/users"); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /ui/users: %d", w.Code)
	}
}

func TestPlaceholderWhenNotBuilt(t *testing.T) {
	h := newHandler(fstest.MapFS{".gitkeep": {}})
	if h.Built() {
		t.Fatal("an empty dist counts as built")
	}
	w := do(h.Mount(http.NotFoundHandler()), "GET", "/ui/users/alice")
	if w.Code != 200 || w.Header().Get("X-Boxfleet-UI") != "not-built" || !strings.Contains(w.Body.String(), "make build") {
		t.Errorf("placeholder: %d %v %s", w.Code, w.Header(), w.Body.String())
	}
}

// TestBuiltBinaryCarriesUI runs the binary `make build` produced (make test
// passes its path) and checks that it serves the real UI, not the
// placeholder, with its hashed, compressed assets: proof that the Vite
// build landed in the embed directory before the Go build.
func TestBuiltBinaryCarriesUI(t *testing.T) {
	bin := os.Getenv("BOXFLEET_UI_BINARY")
	if bin == "" {
		t.Skip("BOXFLEET_UI_BINARY not set (make test sets it to bin/boxfleet)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "serve", "--data.dir", t.TempDir(), "--web.listen-address", addr,
		"--prometheus.url", "http://127.0.0.1:9")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); cmd.Wait() }()
	base := "http://" + addr
	var resp *http.Response
	for deadline := time.Now().Add(20 * time.Second); ; {
		resp, err = http.Get(base + "/ui/")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer: %v\n%s", bin, err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get("X-Boxfleet-UI") == "not-built" {
		t.Fatalf("%s serves the placeholder: the UI was not embedded", bin)
	}
	m := regexp.MustCompile(`src="\./(assets/index-[^"]+\.js)"`).FindSubmatch(page)
	if m == nil {
		t.Fatalf("no entry script in the page:\n%s", page)
	}
	req, _ := http.NewRequest("GET", fmt.Sprintf("%s/ui/%s", base, m[1]), nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err = (&http.Transport{DisableCompression: true}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "gzip" || !strings.Contains(resp.Header.Get("Cache-Control"), "immutable") {
		t.Fatalf("%s: %d %v", m[1], resp.StatusCode, resp.Header)
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	js, _ := io.ReadAll(zr)
	if len(js) < 10000 {
		t.Errorf("entry script is only %d bytes", len(js))
	}
}
