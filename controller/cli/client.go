// Package cli is boxfleet's admin command line: each subcommand is one call
// to the REST API, printed as a table or, with -o json, as the API's JSON.
package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Client calls the controller's API with an admin token.
type Client struct {
	URL   string
	Token string
	HTTP  *http.Client
}

// apiError is the controller's error body.
type apiError struct {
	Status int
	Error  struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Field   string `json:"field"`
	} `json:"error"`
}

func (e *apiError) String() string {
	msg := fmt.Sprintf("%s (HTTP %d): %s", e.Error.Code, e.Status, e.Error.Message)
	return strings.TrimSpace(msg)
}

// ReadToken reads an admin token file.
func ReadToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the admin token (--token-file or BOXFLEET_TOKEN_FILE): %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Do sends method path with body (JSON-encoded when not nil) and decodes the
// answer into out (when not nil). The raw body is returned for -o json.
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, body, out any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	u := strings.TrimSuffix(c.URL, "/") + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the controller at %s: %w", c.URL, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		e := &apiError{Status: resp.StatusCode}
		if json.Unmarshal(raw, e) != nil || e.Error.Code == "" {
			return nil, fmt.Errorf("HTTP %d from %s", resp.StatusCode, path)
		}
		return nil, fmt.Errorf("%s", e)
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return nil, fmt.Errorf("decoding the answer from %s: %w", path, err)
		}
	}
	return raw, nil
}
