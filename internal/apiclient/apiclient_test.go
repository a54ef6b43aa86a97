package apiclient

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

func TestClient(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.EscapedPath() {
		case "/base/ok/a%2Fb":
			if r.Header.Get("Authorization") != "Bearer tok" || r.URL.Query().Get("q") != "1" {
				t.Errorf("request %s %v", r.URL, r.Header)
			}
			var in map[string]string
			json.NewDecoder(r.Body).Decode(&in)
			json.NewEncoder(w).Encode(map[string]string{"echo": in["x"]})
		case "/base/refused":
			w.WriteHeader(http.StatusConflict)
			json.NewEncoder(w).Encode(Envelope{Error: &Error{Code: CodeConflict, Message: "no", Field: "force"}})
		case "/base/cached":
			w.WriteHeader(http.StatusNotModified)
		default:
			w.WriteHeader(http.StatusBadGateway)
			w.Write([]byte("<html>proxy</html>"))
		}
	}))
	defer srv.Close()
	c := &Client{URL: srv.URL + "/base/", Token: func() (string, error) { return "tok", nil }}
	ctx := context.Background()

	var out struct{ Echo string }
	if _, err := c.Call(ctx, http.MethodPost, "/ok/a%2Fb", url.Values{"q": {"1"}}, map[string]string{"x": "y"}, &out); err != nil || out.Echo != "y" {
		t.Fatalf("call: %+v %v", out, err)
	}
	_, err := c.Call(ctx, http.MethodPost, "/refused", nil, nil, nil)
	var e *Error
	if !errors.As(err, &e) || *e != (Error{Status: 409, Code: "conflict", Message: "no", Field: "force"}) {
		t.Errorf("error answer: %#v", err)
	}
	if err == nil || err.Error() != "conflict (HTTP 409): no" {
		t.Errorf("message %v", err)
	}
	_, err = c.Call(ctx, http.MethodGet, "/elsewhere", nil, nil, nil)
	if !errors.As(err, &e) || e.Status != 502 || err.Error() != "HTTP 502 from /elsewhere" {
		t.Errorf("answer without the envelope: %v", err)
	}
	resp, err := c.Send(ctx, http.MethodGet, "/cached", nil, nil, nil)
	if err != nil || resp.StatusCode != http.StatusNotModified {
		t.Fatalf("304: %v %v", resp, err)
	}
	resp.Body.Close()
	bad := &Client{URL: srv.URL, Token: func() (string, error) { return "", errors.New("no token file") }}
	if _, err := bad.Call(ctx, http.MethodGet, "/ok", nil, nil, nil); err == nil || err.Error() != "no token file" {
		t.Errorf("token error %v", err)
	}
}
