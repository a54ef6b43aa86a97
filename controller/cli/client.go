// Package cli is boxfleet's admin command line: each subcommand is one call
// to the REST API, printed as a table or, with -o json, as the API's JSON.
package cli

import (
	"context"
	"fmt"
	"net/http"
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
	return (&Client{URL: c.URL, Token: tok}).Do(context.Background(), method, path, query, body, out)
}

// Client is an apiclient.Client with the token in hand, as the e2e loop
// test uses it; new code should use apiclient.Client.
type Client struct {
	URL   string
	Token string
	HTTP  *http.Client
}

// Do is apiclient.Client.Call with the admin commands' 30 s timeout.
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, body, out any) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cl := &apiclient.Client{URL: c.URL, HTTP: c.HTTP, Token: func() (string, error) { return c.Token, nil }}
	return cl.Call(ctx, method, path, query, body, out)
}
