package api

import (
	"net/http"
	"strings"
)

// Content security policies. The API answers JSON that no page should run
// or frame. The subscription page has one inline <style> and inline SVG,
// and loads nothing. UICSP is for the embedded admin UI: a Vite build emits
// no inline script; UI kits inject styles at run time.
const (
	apiCSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
	subCSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
	UICSP  = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
		"connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)

// securityHeaders sets the headers every answer carries, before the route
// runs, so that errors, 404s and redirects have them too.
func securityHeaders(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	// The subscription URL is a credential: no link on its page may leak
	// it in a Referer.
	h.Set("Referrer-Policy", "no-referrer")
	switch {
	case strings.HasPrefix(r.URL.Path, "/sub/"):
		h.Set("Content-Security-Policy", subCSP)
	case strings.HasPrefix(r.URL.Path, "/ui/"):
		h.Set("Content-Security-Policy", UICSP)
	default:
		h.Set("Content-Security-Policy", apiCSP)
	}
}
