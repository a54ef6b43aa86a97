package subscribe

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
)

// benchProfile is a user with 50 nodes of 3 inbounds each.
func benchProfile() *Profile {
	p := fixtureProfile()
	ins := fixtureInbounds()
	p.Nodes = nil
	for i := range 50 {
		k := i % (len(ins) - 2)
		p.Nodes = append(p.Nodes, Node{
			Name:     "node-" + strconv.Itoa(i),
			Address:  "198.51.100." + strconv.Itoa(i+1),
			Inbounds: ins[k : k+3],
		})
	}
	return p
}

func BenchmarkRender(b *testing.B) {
	r := newRenderer(b)
	p := benchProfile()
	for _, c := range []Client{
		{Format: FormatSingBox, SingBox: Version113},
		{Format: FormatSingBox, SingBox: Version111},
		{Format: FormatMihomo},
		{Format: FormatBase64},
		{Format: FormatLinks},
		{Format: FormatHTML},
	} {
		name := c.Format.String()
		if c.Format == FormatSingBox {
			name += "-" + c.SingBox.String()
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			var n int64
			for b.Loop() {
				w := &countWriter{}
				if err := r.Render(w, c, p); err != nil {
					b.Fatal(err)
				}
				n = w.n
			}
			b.SetBytes(n)
		})
	}
}

// BenchmarkServe is the whole library side of GET /sub/{token}: format
// choice, headers and body.
func BenchmarkServe(b *testing.B) {
	r := newRenderer(b)
	p := benchProfile()
	for _, ua := range []string{"SFA/1.13.0 (1; sing-box 1.13.0)", "clash-verge/v2.2.3", "v2rayNG/1.9.16"} {
		b.Run(Detect(ua).Format.String(), func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "/sub/tok3n", nil)
			req.Header.Set("User-Agent", ua)
			b.ReportAllocs()
			for b.Loop() {
				w := &discardResponse{h: http.Header{}}
				r.Serve(w, req, p)
			}
		})
	}
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

type discardResponse struct{ h http.Header }

func (d *discardResponse) Header() http.Header         { return d.h }
func (d *discardResponse) Write(p []byte) (int, error) { return io.Discard.Write(p) }
func (d *discardResponse) WriteHeader(int)             {}
