package clashapi

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
)

// Client talks to one sing-box Clash API endpoint.
type Client struct {
	base   *url.URL
	secret string
	http   *http.Client
}

// NewClient returns a client for base (http://127.0.0.1:9090). The secret is
// sent as a bearer token and never logged.
func NewClient(base, secret string) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("clash API URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("clash API URL %q: scheme must be http or https", base)
	}
	// No client-wide timeout: the log stream is long-lived; requests carry
	// their own deadlines through their contexts instead.
	return &Client{base: u, secret: secret, http: &http.Client{}}, nil
}

func (c *Client) get(ctx context.Context, path string, query url.Values) (*http.Response, error) {
	u := c.base.JoinPath(path)
	u.RawQuery = query.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	if c.secret != "" {
		req.Header.Set("Authorization", "Bearer "+c.secret)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return resp, nil
}

// Connections fetches and decodes one /connections snapshot.
func (c *Client) Connections(ctx context.Context) (*Snapshot, error) {
	resp, err := c.get(ctx, "/connections", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return DecodeSnapshot(resp.Body)
}

// Version returns sing-box's version, without the "sing-box " prefix.
func (c *Client) Version(ctx context.Context) (string, error) {
	resp, err := c.get(ctx, "/version", nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var v struct {
		Version string `json:"version"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&v); err != nil {
		return "", fmt.Errorf("decoding version: %w", err)
	}
	return strings.TrimPrefix(v.Version, "sing-box "), nil
}

// StreamLogs follows /logs at the given level and calls fn for each message
// until ctx ends or the stream breaks. connected is called once the stream
// is open, so that callers know from when on no line can have been missed.
func (c *Client) StreamLogs(ctx context.Context, level string, connected func(), fn func(payload string)) error {
	// sing-box sends no headers before its first log line, so "connected"
	// means the request reached it: it subscribes on receipt.
	// The transport writes the request again when a reused connection
	// turns out dead, so the trace can fire twice; callers get one call.
	var once sync.Once
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil {
				once.Do(connected)
			}
		},
	})
	resp, err := c.get(ctx, "/logs", url.Values{"level": {level}})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(bufio.NewReaderSize(resp.Body, 64<<10))
	for {
		var entry struct {
			Payload string `json:"payload"`
		}
		if err := dec.Decode(&entry); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("log stream: %w", err)
		}
		fn(entry.Payload)
	}
}
