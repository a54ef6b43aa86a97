package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/boxfleet/boxfleet/internal/apiclient"
	"github.com/boxfleet/boxfleet/internal/sbconfig"
)

// controller is the node's side of the controller's node endpoints.
type controller struct {
	base      *url.URL
	node      string
	tokenFile string
	http      *http.Client
}

// errNotModified means the user set is the one the node already has.
var errNotModified = errors.New("user set not modified")

// token is read on every request so that a rotated token file takes effect
// without a restart.
func (c *controller) token() (string, error) {
	if c.tokenFile == "" {
		return "", nil
	}
	tok, err := apiclient.ReadTokenFile(c.tokenFile)
	if err != nil {
		return "", fmt.Errorf("reading controller token: %w", err)
	}
	return tok, nil
}

// send sends a request about this node; path is below the node's URL.
func (c *controller) send(ctx context.Context, method, path string, query url.Values, header http.Header, body any) (*http.Response, error) {
	// The node name is one path segment, whatever it holds.
	p := "/api/v1/nodes/" + url.PathEscape(c.node)
	if path != "" {
		p += "/" + path
	}
	cl := &apiclient.Client{URL: strings.TrimSuffix(c.base.String(), "/"), Token: c.token, HTTP: c.http}
	return cl.Send(ctx, method, p, query, header, body)
}

// register sends the node's registration.
func (c *controller) register(ctx context.Context, reg sbconfig.Registration) error {
	resp, err := c.send(ctx, http.MethodPut, "", nil, nil, reg)
	if err != nil {
		return fmt.Errorf("registering: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return nil
}

// users fetches the node's user set unless it still has etag, waiting up to
// wait seconds for a change (long poll).
func (c *controller) users(ctx context.Context, etag string, wait int) (sbconfig.NodeUsers, string, error) {
	var set sbconfig.NodeUsers
	h := http.Header{}
	if etag != "" {
		h.Set("If-None-Match", etag)
	}
	var q url.Values
	if wait > 0 {
		q = url.Values{"wait": {strconv.Itoa(wait)}}
	}
	resp, err := c.send(ctx, http.MethodGet, "users", q, h, nil)
	if err != nil {
		return set, "", fmt.Errorf("fetching users: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified {
		return set, etag, errNotModified
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 256<<20)).Decode(&set); err != nil {
		return set, "", fmt.Errorf("decoding user set: %w", err)
	}
	return set, resp.Header.Get("ETag"), nil
}
