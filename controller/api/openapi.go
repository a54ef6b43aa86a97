package api

import (
	_ "embed"
	"net/http"
)

// openAPI documents every route; a test walks the router and the document
// and fails when they disagree.
//
//go:embed openapi.json
var openAPI []byte

func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openAPI)
}
