// Package clashapitest serves a recorded-like sing-box Clash API for
// benchmarks and load tests: a node with many users and open connections.
package clashapitest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"
)

// Body returns a /connections answer with conns open connections spread
// over users users and two inbounds, shaped like sing-box 1.14's.
func Body(conns, users int) []byte {
	type meta struct {
		Network         string `json:"network"`
		Type            string `json:"type"`
		SourceIP        string `json:"sourceIP"`
		DestinationIP   string `json:"destinationIP"`
		SourcePort      string `json:"sourcePort"`
		DestinationPort string `json:"destinationPort"`
		Host            string `json:"host"`
		DNSMode         string `json:"dnsMode"`
		ProcessPath     string `json:"processPath"`
	}
	type conn struct {
		ID          string    `json:"id"`
		Metadata    meta      `json:"metadata"`
		Upload      uint64    `json:"upload"`
		Download    uint64    `json:"download"`
		Start       time.Time `json:"start"`
		Chains      []string  `json:"chains"`
		Rule        string    `json:"rule"`
		RulePayload string    `json:"rulePayload"`
	}
	list := make([]conn, conns)
	var up, down uint64
	for i := range list {
		u := i % users
		list[i] = conn{
			ID: fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i),
			Metadata: meta{
				Network: "tcp", Type: []string{"vless/vless-in", "shadowsocks/ss-in"}[u%2],
				SourceIP: fmt.Sprintf("10.%d.%d.%d", u/65536%256, u/256%256, u%256), SourcePort: fmt.Sprint(10000 + i%50000),
				DestinationPort: "443", Host: fmt.Sprintf("cdn%d.example.com", i%97), DNSMode: "normal",
			},
			Upload: uint64(1000 + i), Download: uint64(50000 + 7*i),
			Start: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), Chains: []string{"direct"}, Rule: "final",
		}
		up += list[i].Upload
		down += list[i].Download
	}
	b, _ := json.Marshal(map[string]any{"uploadTotal": up, "downloadTotal": down, "memory": 64 << 20, "connections": list})
	return b
}

// Server is a fake Clash API that answers a fixed body and counts polls.
type Server struct {
	*httptest.Server
	Polls atomic.Int64
}

// NewServer serves body at /connections, a version, and a log stream that
// stays open and silent.
func NewServer(body []byte) *Server {
	s := &Server{}
	mux := http.NewServeMux()
	mux.HandleFunc("/connections", func(w http.ResponseWriter, _ *http.Request) {
		s.Polls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
	mux.HandleFunc("/version", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"version":"sing-box 1.14.1","premium":true,"meta":true}`)
	})
	mux.HandleFunc("/logs", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	s.Server = httptest.NewServer(mux)
	return s
}
