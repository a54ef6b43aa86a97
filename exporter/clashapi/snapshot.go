// Package clashapi reads what sing-box's Clash API tells about traffic: the
// /connections snapshot, the /logs stream and /version.
package clashapi

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// Snapshot is one GET /connections answer, reduced to what metering needs.
type Snapshot struct {
	UploadTotal   uint64
	DownloadTotal uint64
	Memory        uint64
	Connections   []Connection
}

// Connection is one open connection as sing-box tracks it.
type Connection struct {
	ID       string
	Network  string // tcp or udp
	Inbound  string // the inbound's tag
	Source   string // host:port of the client, as the log stream writes it
	SourceIP string
	Upload   uint64
	Download uint64
	// Start is when sing-box began tracking the connection (its clock, the
	// node's): with the bytes of a first snapshot it gives the rate of a
	// connection that may never be seen again.
	Start time.Time
}

type wireSnapshot struct {
	UploadTotal   *uint64          `json:"uploadTotal"`
	DownloadTotal *uint64          `json:"downloadTotal"`
	Memory        uint64           `json:"memory"`
	Connections   []wireConnection `json:"connections"`
}

type wireConnection struct {
	ID       string    `json:"id"`
	Upload   uint64    `json:"upload"`
	Download uint64    `json:"download"`
	Start    time.Time `json:"start"`
	Metadata struct {
		Network    string `json:"network"`
		Type       string `json:"type"`
		SourceIP   string `json:"sourceIP"`
		SourcePort string `json:"sourcePort"`
	} `json:"metadata"`
}

// DecodeSnapshot parses a /connections body. It rejects bodies that are not a
// snapshot at all, so that an error page is never taken for "zero traffic".
func DecodeSnapshot(r io.Reader) (*Snapshot, error) {
	var w wireSnapshot
	if err := json.NewDecoder(r).Decode(&w); err != nil {
		return nil, fmt.Errorf("decoding connections: %w", err)
	}
	if w.UploadTotal == nil || w.DownloadTotal == nil {
		return nil, fmt.Errorf("decoding connections: answer has no uploadTotal/downloadTotal")
	}
	s := &Snapshot{
		UploadTotal:   *w.UploadTotal,
		DownloadTotal: *w.DownloadTotal,
		Memory:        w.Memory,
		Connections:   make([]Connection, 0, len(w.Connections)),
	}
	for _, c := range w.Connections {
		s.Connections = append(s.Connections, Connection{
			ID:       c.ID,
			Network:  c.Metadata.Network,
			Inbound:  InboundTag(c.Metadata.Type),
			Source:   net.JoinHostPort(c.Metadata.SourceIP, c.Metadata.SourcePort),
			SourceIP: c.Metadata.SourceIP,
			Upload:   c.Upload,
			Download: c.Download,
			Start:    c.Start,
		})
	}
	return s, nil
}

// InboundTag turns the Clash API's "type" ("vless/vless-in") into the
// inbound's tag. An untagged inbound has only its type there.
func InboundTag(typ string) string {
	if i := strings.IndexByte(typ, '/'); i >= 0 {
		return typ[i+1:]
	}
	return typ
}
