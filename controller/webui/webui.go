// Package webui serves the admin web UI (web/, a Vue app built by Vite) from
// assets embedded in the binary, at /ui/, with / redirecting there.
//
// The Vite build writes into dist/ before `go build` (make build does both),
// and compresses every text asset to a .gz file that replaces the original.
// A clean clone has only dist/.gitkeep, so a plain `go build ./...` still
// compiles; such a binary answers /ui/ with a page saying how to build the
// UI (Built reports which case this is).
//
// The UI works under any path prefix that a reverse proxy strips: index.html
// gets a relative <base href> per request, every asset URL in the build is
// relative, and the app finds the API relative to its base.
package webui

import (
	"bytes"
	"compress/gzip"
	"embed"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"

	"github.com/boxfleet/boxfleet/controller/api"
)

//go:embed all:dist
var dist embed.FS

//go:embed placeholder.html
var placeholder []byte

// Prefix is where the UI answers.
const Prefix = "/ui/"

// Handler serves the UI.
type Handler struct {
	files fs.FS
	index []byte // dist/index.html, or the placeholder
	built bool
}

// New reads the embedded build.
func New() *Handler {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // dist is embedded; cannot happen
	}
	return newHandler(sub)
}

func newHandler(files fs.FS) *Handler {
	h := &Handler{files: files, index: placeholder}
	if b, err := fs.ReadFile(files, "index.html"); err == nil {
		h.index, h.built = b, true
	}
	return h
}

// Built reports whether the binary carries a real UI build.
func (h *Handler) Built() bool { return h.built }

// Mount returns a handler that serves the UI at /ui/, redirects / there,
// and passes everything else to next (the API).
func (h *Handler) Mount(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/" || r.URL.Path == "/ui":
			// Relative ("ui/" from both / and /ui), so that it stays under
			// a prefix that a proxy strips.
			// (http.Redirect would make it absolute.)
			setSecurityHeaders(w)
			w.Header().Set("Location", "ui/")
			w.WriteHeader(http.StatusFound)
		case strings.HasPrefix(r.URL.Path, Prefix):
			h.ServeHTTP(w, r)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// setSecurityHeaders matches what the API sets for /ui/ (api.UICSP): a
// Vite build has no inline script, so script-src 'self' holds; the
// component kit injects styles at run time, which UICSP allows.
func setSecurityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", api.UICSP)
}

// ServeHTTP serves one request under /ui/.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	setSecurityHeaders(w)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	rest := strings.TrimPrefix(r.URL.Path, Prefix)
	if rest != "" && rest != "index.html" && h.built {
		clean := path.Clean(rest)
		if h.serveFile(w, r, clean) {
			return
		}
		// A missing asset is a 404, never the app's page: a browser that
		// asked for a script must not get HTML (and cache it).
		if strings.HasPrefix(clean, "assets/") || path.Ext(clean) != "" {
			http.NotFound(w, r)
			return
		}
	}
	h.serveIndex(w, r, rest)
}

// serveIndex answers the app's page for any client-side route. Its
// <base href> climbs back to /ui/ from the requested depth, relatively, so
// that /prefix/ui/users/alice loads /prefix/ui/assets/… whatever the prefix.
func (h *Handler) serveIndex(w http.ResponseWriter, r *http.Request, rest string) {
	base := "./"
	if n := strings.Count(rest, "/"); n > 0 {
		base = strings.Repeat("../", n)
	}
	page := h.index
	if h.built {
		page = bytes.Replace(page, []byte("<head>"), []byte(`<head><base href="`+base+`">`), 1)
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	// Always revalidate: a new binary's page names new hashed assets.
	hd.Set("Cache-Control", "no-cache")
	if !h.built {
		// Tell monitoring and tests plainly that this binary has no UI.
		hd.Set("X-Boxfleet-UI", "not-built")
	}
	w.Write(page)
}

// serveFile serves an embedded asset, from its .gz when the build stored it
// compressed: as is to clients that take gzip, inflated for the rest.
// Hashed assets never change under their name, so they are cached for good.
func (h *Handler) serveFile(w http.ResponseWriter, r *http.Request, name string) bool {
	if name == "." || strings.HasPrefix(name, "../") || strings.HasSuffix(name, ".gz") {
		return false
	}
	body, err := fs.ReadFile(h.files, name)
	gz := false
	if err != nil {
		if body, err = fs.ReadFile(h.files, name+".gz"); err != nil {
			return false
		}
		gz = true
	}
	hd := w.Header()
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		ctype = http.DetectContentType(body)
	}
	hd.Set("Content-Type", ctype)
	if strings.HasPrefix(name, "assets/") {
		hd.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		hd.Set("Cache-Control", "no-cache")
	}
	hd.Add("Vary", "Accept-Encoding")
	if gz {
		if acceptsGzip(r) {
			hd.Set("Content-Encoding", "gzip")
			w.Write(body)
			return true
		}
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			http.Error(w, "corrupt embedded asset", http.StatusInternalServerError)
			return true
		}
		io.Copy(w, zr)
		return true
	}
	w.Write(body)
	return true
}

func acceptsGzip(r *http.Request) bool {
	for part := range strings.SplitSeq(r.Header.Get("Accept-Encoding"), ",") {
		enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(enc), "gzip") {
			continue
		}
		// "gzip;q=0" refuses it; any other weight accepts.
		q := strings.TrimPrefix(strings.ReplaceAll(params, " ", ""), "q=")
		if q != params && strings.Trim(q, "0.") == "" && q != "" {
			return false
		}
		return true
	}
	return false
}
