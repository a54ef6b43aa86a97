// Package cli is boxfleet's admin command line: each subcommand is one call
// to the REST API, printed as a table or, with -o json, as the API's JSON.
package cli

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/boxfleet/boxfleet/internal/apiclient"
)

// ReadToken reads an admin token file.
func ReadToken(path string) (string, error) {
	tok, err := apiclient.ReadTokenFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the admin token (--admin.token-file or BOXFLEET_TOKEN_FILE): %w", err)
	}
	return tok, nil
}

// do sends one request with the admin token and decodes the answer into
// out (when not nil); the raw body is returned for -o json.
func (c *CLI) do(method, path string, query url.Values, body, out any) ([]byte, error) {
	file := c.TokenFile
	if file == "" {
		file = DefaultTokenFile
	}
	tok, err := ReadToken(file)
	if err != nil {
		return nil, err
	}
	// The admin commands give the controller 30 s per call.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := &apiclient.Client{URL: c.URL, Token: func() (string, error) { return tok, nil }}
	return cl.Call(ctx, method, path, query, body, out)
}
