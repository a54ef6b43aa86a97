// Package apiclient calls the controller's REST API. The admin CLI and the
// node agent both use it, and the API writes its errors as the Error this
// package decodes, so that the envelope has one definition.
package apiclient

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
)

// Error is the body of every error answer of the API, inside an Envelope,
// and the error Client returns for one. Code is stable across releases, so
// that scripts branch on it without parsing Message.
type Error struct {
	Status  int    `json:"-"` // the HTTP status, set by the client
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"` // the request field at fault, if one is
}

// Envelope is what an error answer holds: {"error": {...}}.
type Envelope struct {
	Error *Error `json:"error"`
}

func (e *Error) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("HTTP %d", e.Status)
	}
	return strings.TrimSpace(fmt.Sprintf("%s (HTTP %d): %s", e.Code, e.Status, e.Message))
}

// Error codes, stable across releases.
const (
	CodeBadRequest   = "bad_request"
	CodeInvalid      = "invalid"
	CodeUnauthorized = "unauthorized"
	CodeForbidden    = "forbidden"
	CodeNotFound     = "not_found"
	CodeConflict     = "conflict"
	CodeTooLarge     = "too_large"
	CodeInternal     = "internal"
	CodeUnavailable  = "unavailable"
	CodeRateLimited  = "rate_limited"
	CodeOverLimit    = "over_limit" // a reseller's change past its account's limits
)

// Client calls the API under URL.
type Client struct {
	// URL is the controller's base URL; it may carry a path prefix.
	URL string
	// Token gives the bearer token for each request; nil sends none. It
	// is called on every request, so that a rotated token file takes
	// effect without a restart.
	Token func() (string, error)
	// HTTP sends the requests; nil is http.DefaultClient.
	HTTP *http.Client
}

// ReadTokenFile reads a token file, without the surrounding white space an
// editor leaves.
func ReadTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// Send sends method path (already escaped, e.g. "/api/v1/nodes/a%2Fb")
// with body JSON-encoded when it is not nil. It returns the response of a
// 2xx or 304 answer, for the caller to read and close; any other answer is
// an *Error, the body already closed.
func (c *Client) Send(ctx context.Context, method, path string, query url.Values, header http.Header, body any) (*http.Response, error) {
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
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if header != nil {
		req.Header = header.Clone()
	}
	if c.Token != nil {
		tok, err := c.Token()
		if err != nil {
			return nil, err
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
	}
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
	if resp.StatusCode/100 == 2 || resp.StatusCode == http.StatusNotModified {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, decodeError(resp, path)
}

// decodeError reads an error answer. The message is the controller's,
// which never carries secrets.
func decodeError(resp *http.Response, path string) error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var env Envelope
	if json.Unmarshal(raw, &env) != nil || env.Error == nil || env.Error.Code == "" {
		return fmt.Errorf("%w from %s", &Error{Status: resp.StatusCode}, path)
	}
	env.Error.Status = resp.StatusCode
	return env.Error
}

// Call sends a request and decodes a JSON answer into out when out is not
// nil. It returns the raw answer too, for callers that print it as it is.
func (c *Client) Call(ctx context.Context, method, path string, query url.Values, body, out any) ([]byte, error) {
	resp, err := c.Send(ctx, method, path, query, nil, body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return nil, fmt.Errorf("decoding the answer from %s: %w", path, err)
		}
	}
	return raw, nil
}
