package clashapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"
)

const realisticSnapshot = `{
  "downloadTotal": 987654321,
  "uploadTotal": 123456789,
  "memory": 41943040,
  "connections": [
    {
      "id": "8d0b4c64-3a5e-4f5c-9a57-7f4d3f3b2a10",
      "metadata": {
        "network": "tcp",
        "type": "vless/vless-in",
        "sourceIP": "203.0.113.7",
        "sourcePort": "52144",
        "destinationIP": "",
        "destinationPort": "443",
        "host": "example.com",
        "dnsMode": "normal",
        "processPath": ""
      },
      "upload": 1024,
      "download": 65536,
      "start": "2026-01-01T00:00:00Z",
      "chains": ["direct"],
      "rule": "final",
      "rulePayload": ""
    },
    {
      "id": "0f4e2b1a-9c8d-4e7f-8a6b-5c4d3e2f1a0b",
      "metadata": {
        "network": "udp",
        "type": "hysteria2",
        "sourceIP": "2001:db8::1",
        "sourcePort": "61000",
        "destinationIP": "8.8.8.8",
        "destinationPort": "53",
        "host": "",
        "dnsMode": "normal",
        "processPath": ""
      },
      "upload": 18446744073709551615,
      "download": 0,
      "start": "2026-01-01T00:00:01.5Z",
      "chains": ["direct"],
      "rule": "final",
      "rulePayload": ""
    }
  ]
}`

func TestDecodeSnapshot(t *testing.T) {
	s, err := DecodeSnapshot(strings.NewReader(realisticSnapshot))
	if err != nil {
		t.Fatal(err)
	}
	if s.UploadTotal != 123456789 || s.DownloadTotal != 987654321 || s.Memory != 41943040 {
		t.Errorf("totals = up %d down %d mem %d", s.UploadTotal, s.DownloadTotal, s.Memory)
	}
	want := []Connection{
		{
			ID:       "8d0b4c64-3a5e-4f5c-9a57-7f4d3f3b2a10",
			Network:  "tcp",
			Inbound:  "vless-in",
			Source:   net.JoinHostPort("203.0.113.7", "52144"),
			SourceIP: "203.0.113.7",
			Upload:   1024,
			Download: 65536,
			Start:    time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		},
		{
			ID:       "0f4e2b1a-9c8d-4e7f-8a6b-5c4d3e2f1a0b",
			Network:  "udp",
			Inbound:  "hysteria2", // an untagged inbound: "type" holds no "/"
			Source:   net.JoinHostPort("2001:db8::1", "61000"),
			SourceIP: "2001:db8::1",
			Upload:   18446744073709551615,
			Download: 0,
			Start:    time.Date(2026, 1, 1, 0, 0, 1, 500_000_000, time.UTC),
		},
	}
	if !reflect.DeepEqual(s.Connections, want) {
		t.Errorf("connections\n got %+v\nwant %+v", s.Connections, want)
	}
	// The log stream writes the source the same way; the engine joins on it.
	if s.Connections[0].Source != "203.0.113.7:52144" {
		t.Errorf("IPv4 Source = %q", s.Connections[0].Source)
	}
	if s.Connections[1].Source != "[2001:db8::1]:61000" {
		t.Errorf("IPv6 Source = %q", s.Connections[1].Source)
	}
}

// The Source of a snapshot connection must equal the Source the log line of
// the same connection carries, or the engine can never join them.
func TestDecodeSnapshotSourceMatchesLogLine(t *testing.T) {
	for _, c := range []struct{ ip, port string }{
		{"127.0.0.1", "52144"},
		{"::1", "5678"},
		{"2001:db8::1", "443"},
	} {
		body := fmt.Sprintf(`{"uploadTotal":0,"downloadTotal":0,"connections":[{"id":"x","metadata":{"network":"tcp","type":"vless/vless-in","sourceIP":%q,"sourcePort":%q}}]}`, c.ip, c.port)
		s, err := DecodeSnapshot(strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		l, ok := ParseLogLine("[1 0ms] inbound/vless[vless-in]: inbound connection from " + s.Connections[0].Source)
		if !ok {
			t.Fatalf("log line with source %q rejected", s.Connections[0].Source)
		}
		if l.Source != s.Connections[0].Source || l.Inbound != s.Connections[0].Inbound {
			t.Errorf("log %+v does not join snapshot %+v", l, s.Connections[0])
		}
	}
}

func TestInboundTag(t *testing.T) {
	for in, want := range map[string]string{
		"vless/vless-in":   "vless-in",
		"hysteria2":        "hysteria2",
		"":                 "",
		"vless/":           "",
		"/tag":             "tag",
		"mixed/a/b":        "a/b", // only the first "/" separates the type
		"shadowsocks/ss 1": "ss 1",
	} {
		if got := InboundTag(in); got != want {
			t.Errorf("InboundTag(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDecodeSnapshotNoConnections(t *testing.T) {
	for name, body := range map[string]string{
		"empty list":  `{"downloadTotal":5,"uploadTotal":7,"memory":1,"connections":[]}`,
		"null":        `{"downloadTotal":5,"uploadTotal":7,"memory":1,"connections":null}`,
		"absent":      `{"downloadTotal":5,"uploadTotal":7,"memory":1}`,
		"zero totals": `{"downloadTotal":0,"uploadTotal":0,"connections":[]}`,
	} {
		t.Run(name, func(t *testing.T) {
			s, err := DecodeSnapshot(strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Connections) != 0 {
				t.Errorf("got %d connections", len(s.Connections))
			}
			if name != "zero totals" && (s.UploadTotal != 7 || s.DownloadTotal != 5) {
				t.Errorf("totals = up %d down %d, want 7 and 5", s.UploadTotal, s.DownloadTotal)
			}
		})
	}
}

func TestDecodeSnapshotRejects(t *testing.T) {
	for name, body := range map[string]string{
		"empty":              ``,
		"not json":           `connections: none`,
		"html error page":    "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>\n",
		"plain text 401":     `Unauthorized`,
		"json error object":  `{"message":"Unauthorized"}`,
		"empty object":       `{}`,
		"json null":          `null`,
		"json array":         `[]`,
		"json string":        `"ok"`,
		"no uploadTotal":     `{"downloadTotal":1,"memory":2,"connections":[]}`,
		"no downloadTotal":   `{"uploadTotal":1,"memory":2,"connections":[]}`,
		"null uploadTotal":   `{"uploadTotal":null,"downloadTotal":1,"connections":[]}`,
		"negative upTotal":   `{"uploadTotal":-1,"downloadTotal":1,"connections":[]}`,
		"negative downTotal": `{"uploadTotal":1,"downloadTotal":-1,"connections":[]}`,
		"negative memory":    `{"uploadTotal":1,"downloadTotal":1,"memory":-5,"connections":[]}`,
		"negative upload":    `{"uploadTotal":1,"downloadTotal":1,"connections":[{"id":"a","upload":-1,"download":0}]}`,
		"negative download":  `{"uploadTotal":1,"downloadTotal":1,"connections":[{"id":"a","upload":0,"download":-2}]}`,
		"fractional total":   `{"uploadTotal":1.5,"downloadTotal":1,"connections":[]}`,
		"overflowing total":  `{"uploadTotal":18446744073709551616,"downloadTotal":1,"connections":[]}`,
		"string total":       `{"uploadTotal":"1","downloadTotal":1,"connections":[]}`,
		"bool total":         `{"uploadTotal":true,"downloadTotal":1,"connections":[]}`,
		"connections object": `{"uploadTotal":1,"downloadTotal":1,"connections":{}}`,
		"connections string": `{"uploadTotal":1,"downloadTotal":1,"connections":"none"}`,
		"connection number":  `{"uploadTotal":1,"downloadTotal":1,"connections":[1]}`,
		"numeric id":         `{"uploadTotal":1,"downloadTotal":1,"connections":[{"id":1}]}`,
		"string upload":      `{"uploadTotal":1,"downloadTotal":1,"connections":[{"id":"a","upload":"10"}]}`,
		"numeric sourcePort": `{"uploadTotal":1,"downloadTotal":1,"connections":[{"id":"a","metadata":{"sourcePort":443}}]}`,
		"metadata string":    `{"uploadTotal":1,"downloadTotal":1,"connections":[{"id":"a","metadata":"x"}]}`,
		"truncated":          realisticSnapshot[:len(realisticSnapshot)/2],
		"truncated at end":   realisticSnapshot[:len(realisticSnapshot)-1],
	} {
		t.Run(name, func(t *testing.T) {
			s, err := DecodeSnapshot(strings.NewReader(body))
			if err == nil {
				t.Fatalf("DecodeSnapshot(%.60q) = %+v, want an error", body, s)
			}
			if s != nil {
				t.Errorf("got a snapshot %+v along with error %v", s, err)
			}
		})
	}
}

func FuzzDecodeSnapshot(f *testing.F) {
	f.Add([]byte(realisticSnapshot))
	f.Add([]byte(`{"downloadTotal":5,"uploadTotal":7,"memory":1,"connections":[]}`))
	f.Add([]byte(`{"downloadTotal":5,"uploadTotal":7,"connections":null}`))
	f.Add([]byte(`{"uploadTotal":1,"downloadTotal":2,"connections":[{},{"metadata":{}},{"id":"x","metadata":{"type":"a/b/c","sourceIP":"::1","sourcePort":"1"}}]}`))
	f.Add([]byte(`<html>502</html>`))
	f.Add([]byte(`{"uploadTotal":-1,"downloadTotal":1}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := DecodeSnapshot(bytes.NewReader(body))
		if err != nil {
			if s != nil {
				t.Fatalf("snapshot %+v returned with error %v", s, err)
			}
			return
		}
		// An independent reading of the same first JSON value.
		var ref refSnapshot
		if err := json.NewDecoder(bytes.NewReader(body)).Decode(&ref); err != nil {
			t.Fatalf("DecodeSnapshot accepted %q that does not decode: %v", body, err)
		}
		if ref.UploadTotal == nil || ref.DownloadTotal == nil {
			t.Fatalf("DecodeSnapshot accepted %q without totals", body)
		}
		if s.UploadTotal != *ref.UploadTotal || s.DownloadTotal != *ref.DownloadTotal || s.Memory != ref.Memory {
			t.Fatalf("totals up %d down %d mem %d, want %d %d %d", s.UploadTotal, s.DownloadTotal, s.Memory, *ref.UploadTotal, *ref.DownloadTotal, ref.Memory)
		}
		if len(s.Connections) != len(ref.Connections) {
			t.Fatalf("%d connections, want %d", len(s.Connections), len(ref.Connections))
		}
		for i, r := range ref.Connections {
			tag := r.Metadata.Type
			if _, after, ok := strings.Cut(tag, "/"); ok {
				tag = after
			}
			want := Connection{
				ID:       r.ID,
				Network:  r.Metadata.Network,
				Inbound:  tag,
				Source:   net.JoinHostPort(r.Metadata.SourceIP, r.Metadata.SourcePort),
				SourceIP: r.Metadata.SourceIP,
				Upload:   r.Upload,
				Download: r.Download,
				Start:    r.Start,
			}
			if !s.Connections[i].Start.Equal(want.Start) {
				t.Fatalf("connection %d starts %v, want %v", i, s.Connections[i].Start, want.Start)
			}
			want.Start = s.Connections[i].Start
			if s.Connections[i] != want {
				t.Fatalf("connection %d = %+v, want %+v", i, s.Connections[i], want)
			}
		}
	})
}

// refSnapshot is /connections as encoding/json reads it into structs: the
// reference the streaming decoder is fuzzed against, and the "before" of its
// benchmark.
type refSnapshot struct {
	UploadTotal   *uint64 `json:"uploadTotal"`
	DownloadTotal *uint64 `json:"downloadTotal"`
	Memory        uint64  `json:"memory"`
	Connections   []struct {
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
	} `json:"connections"`
}

// snapshotBody returns a /connections body with n connections shaped like
// what sing-box sends.
func snapshotBody(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"downloadTotal":987654321098,"uploadTotal":123456789012,"memory":41943040,"connections":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		network, typ := "tcp", "vless/vless-in"
		if i%4 == 3 {
			network, typ = "udp", "hysteria2/hy2-in"
		}
		fmt.Fprintf(&b, `{"id":"%08x-3a5e-4f5c-9a57-%012x","metadata":{"network":%q,"type":%q,`+
			`"sourceIP":"203.0.%d.%d","sourcePort":"%d","destinationIP":"","destinationPort":"443",`+
			`"host":"www%d.example.com","dnsMode":"normal","processPath":""},`+
			`"upload":%d,"download":%d,"start":"2026-01-01T00:00:00.123456789Z","chains":["direct"],"rule":"final","rulePayload":""}`,
			i, i*7919, network, typ, (i/256)%256, i%256, 1024+i%64000, i%1000, 1000+i*13, 100000+i*977)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

func TestSnapshotBody(t *testing.T) {
	body := snapshotBody(100)
	s, err := DecodeSnapshot(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Connections) != 100 || s.Connections[3].Inbound != "hy2-in" || s.Connections[3].Network != "udp" ||
		s.Connections[99].Source != "203.0.0.99:1123" || s.Connections[99].Download != 100000+99*977 {
		t.Errorf("unexpected decode of generated body: %d conns, %+v, %+v", len(s.Connections), s.Connections[3], s.Connections[99])
	}
}

func BenchmarkDecodeSnapshot10k(b *testing.B) {
	body := snapshotBody(10000)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		s, err := DecodeSnapshot(bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		if len(s.Connections) != 10000 {
			b.Fatalf("%d connections", len(s.Connections))
		}
	}
}

// BenchmarkDecodeSnapshotStdlib10k is the decoder this package had before:
// encoding/json into structs, then converted. Run it beside
// BenchmarkDecodeSnapshot10k.
func BenchmarkDecodeSnapshotStdlib10k(b *testing.B) {
	body := snapshotBody(10000)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var w refSnapshot
		if err := json.NewDecoder(bytes.NewReader(body)).Decode(&w); err != nil {
			b.Fatal(err)
		}
		s := &Snapshot{Connections: make([]Connection, 0, len(w.Connections))}
		for _, c := range w.Connections {
			s.Connections = append(s.Connections, Connection{
				ID: c.ID, Network: c.Metadata.Network, Inbound: InboundTag(c.Metadata.Type),
				Source:   net.JoinHostPort(c.Metadata.SourceIP, c.Metadata.SourcePort),
				SourceIP: c.Metadata.SourceIP, Upload: c.Upload, Download: c.Download, Start: c.Start,
			})
		}
		if len(s.Connections) != 10000 {
			b.Fatalf("%d connections", len(s.Connections))
		}
	}
}
