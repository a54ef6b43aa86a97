package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

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
	b, err := os.ReadFile(c.tokenFile)
	if err != nil {
		return "", fmt.Errorf("reading controller token: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func (c *controller) do(ctx context.Context, method, path string, query url.Values, body []byte, header http.Header) (*http.Response, error) {
	// The node name is one path segment, whatever it holds.
	u := *c.base
	u.Path = strings.TrimSuffix(c.base.Path, "/") + "/api/v1/nodes/" + c.node
	u.RawPath = strings.TrimSuffix(c.base.EscapedPath(), "/") + "/api/v1/nodes/" + url.PathEscape(c.node)
	if path != "" {
		u.Path += "/" + path
		u.RawPath += "/" + path
	}
	u.RawQuery = query.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if header != nil {
		req.Header = header.Clone()
	}
	tok, err := c.token()
	if err != nil {
		return nil, err
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.http.Do(req)
}

// register sends the node's registration.
func (c *controller) register(ctx context.Context, reg sbconfig.Registration) error {
	body, err := json.Marshal(reg)
	if err != nil {
		return err
	}
	resp, err := c.do(ctx, http.MethodPut, "", nil, body, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return apiError("registering", resp)
	}
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
	resp, err := c.do(ctx, http.MethodGet, "users", q, nil, h)
	if err != nil {
		return set, "", err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return set, etag, errNotModified
	case http.StatusOK:
	default:
		return set, "", apiError("fetching users", resp)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 256<<20)).Decode(&set); err != nil {
		return set, "", fmt.Errorf("decoding user set: %w", err)
	}
	return set, resp.Header.Get("ETag"), nil
}

// apiError turns the controller's JSON error into a Go error; the message
// is the controller's, which never carries secrets.
func apiError(what string, resp *http.Response) error {
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body)
	if body.Error.Message != "" {
		return fmt.Errorf("%s: %s: %s (%s)", what, resp.Status, body.Error.Message, body.Error.Code)
	}
	return fmt.Errorf("%s: %s", what, resp.Status)
}
