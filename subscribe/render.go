package subscribe

import (
	"bytes"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"text/template"

	"go.yaml.in/yaml/v3"

	"github.com/boxfleet/boxfleet/internal/sbconfig"
	"github.com/boxfleet/boxfleet/subscribe/links"
)

//go:embed templates
var builtin embed.FS

// Template file names; an operator's directory overrides them one by one.
const (
	singBoxTemplate = "sing-box.json"
	mihomoTemplate  = "mihomo.yaml"
	pageTemplate    = "page.html"
)

// Renderer turns profiles into subscription bodies. It is safe for
// concurrent use.
type Renderer struct {
	singBox *template.Template
	mihomo  *template.Template
	page    *htmltemplate.Template
	bufs    sync.Pool
}

// New loads the templates: the built-in ones, each replaced by the file of
// the same name in templateDir when there is one (templateDir "" uses only
// the built-in ones). Every template is rendered once against a sample
// profile, and the sing-box and mihomo output parsed, so a broken override
// fails here and not on a client.
func New(templateDir string) (*Renderer, error) {
	r := &Renderer{}
	var err error
	if r.singBox, err = loadText(templateDir, singBoxTemplate); err != nil {
		return nil, err
	}
	if r.mihomo, err = loadText(templateDir, mihomoTemplate); err != nil {
		return nil, err
	}
	src, err := readTemplate(templateDir, pageTemplate)
	if err != nil {
		return nil, err
	}
	if r.page, err = htmltemplate.New(pageTemplate).Funcs(pageFuncs).Parse(src); err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	if err := r.selfTest(); err != nil {
		return nil, err
	}
	return r, nil
}

func readTemplate(dir, name string) (string, error) {
	if dir != "" {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err == nil {
			return string(b), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("subscribe: template: %w", err)
		}
	}
	b, err := builtin.ReadFile("templates/" + name)
	return string(b), err
}

func loadText(dir, name string) (*template.Template, error) {
	src, err := readTemplate(dir, name)
	if err != nil {
		return nil, err
	}
	t, err := template.New(name).Option("missingkey=error").Parse(src)
	if err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	return t, nil
}

// selfTest renders a sample profile in every format and version.
func (r *Renderer) selfTest() error {
	p := sampleProfile()
	var buf bytes.Buffer
	for _, v := range []Version{Version111, Version112, Version113} {
		buf.Reset()
		if err := r.Render(&buf, Client{Format: FormatSingBox, SingBox: v}, p); err != nil {
			return err
		}
		if !json.Valid(buf.Bytes()) {
			return fmt.Errorf("subscribe: %s renders invalid JSON for sing-box %s", singBoxTemplate, v)
		}
	}
	buf.Reset()
	if err := r.Render(&buf, Client{Format: FormatMihomo}, p); err != nil {
		return err
	}
	var doc struct {
		Proxies []map[string]any `yaml:"proxies"`
	}
	if err := yaml.Unmarshal(buf.Bytes(), &doc); err != nil {
		return fmt.Errorf("subscribe: %s renders invalid YAML: %w", mihomoTemplate, err)
	}
	if len(doc.Proxies) == 0 {
		return fmt.Errorf("subscribe: %s renders no proxies", mihomoTemplate)
	}
	buf.Reset()
	return r.Render(&buf, Client{Format: FormatHTML}, p)
}

// rawText is pre-rendered output a template prints as it is. Its Format
// method lets text/template write it without copying it into a string.
type rawText []byte

func (t rawText) Format(f fmt.State, _ rune) { _, _ = f.Write(t) }

// templateData is what the sing-box and mihomo templates see: the profile's
// fields, the reason a user gets no nodes, and the pre-rendered lists.
type templateData struct {
	*Profile
	Reason  string
	SingBox Version // profile shape: 1.11, 1.12 or 1.13
	// sing-box: outbound objects, comma-separated; their tags as a JSON list body.
	Outbounds, Tags rawText
	// mihomo: the proxies block sequence; their names as a flow-list body.
	Proxies, Names rawText
}

// scratch is the per-render working memory, pooled so that a steady stream
// of requests reuses its buffers.
type scratch struct {
	a, b []byte
	data templateData
}

func (r *Renderer) scratch() *scratch {
	if s, ok := r.bufs.Get().(*scratch); ok {
		return s
	}
	return &scratch{a: make([]byte, 0, 64<<10), b: make([]byte, 0, 8<<10)}
}

func (r *Renderer) release(s *scratch) {
	s.data = templateData{}
	r.bufs.Put(s)
}

// Render writes p's subscription body in c's format to w.
func (r *Renderer) Render(w io.Writer, c Client, p *Profile) error {
	s := r.scratch()
	defer r.release(s)
	s.data.Profile = p
	s.data.Reason = p.Reason()
	switch c.Format {
	case FormatSingBox:
		s.data.SingBox = profileVersion(c.SingBox)
		s.a, s.b = appendSingBoxOutbounds(s.a[:0], s.b[:0], p, s.data.SingBox)
		s.data.Outbounds, s.data.Tags = s.a, s.b
		return r.singBox.Execute(w, &s.data)
	case FormatMihomo:
		s.a, s.b = appendMihomoProxies(s.a[:0], s.b[:0], p)
		s.data.Proxies, s.data.Names = s.a, s.b
		return r.mihomo.Execute(w, &s.data)
	case FormatLinks:
		s.a = appendLinks(s.a[:0], p)
		_, err := w.Write(s.a)
		return err
	case FormatBase64:
		s.a = appendLinks(s.a[:0], p)
		s.b = base64.StdEncoding.AppendEncode(s.b[:0], s.a)
		_, err := w.Write(s.b)
		return err
	case FormatHTML:
		return r.page.Execute(w, newPage(p, c.Lang))
	}
	return fmt.Errorf("subscribe: unknown format %d", c.Format)
}

// appendLinks writes one share link a line, in rank order.
func appendLinks(dst []byte, p *Profile) []byte {
	p.endpoints(func(e *endpoint, c *sbconfig.Credentials) {
		if e.in.Type == sbconfig.TypeVMess {
			l := e.link(c) // the name is inside the base64 JSON
			dst = links.Append(dst, &l)
		} else {
			l := e.linkNoName(c)
			dst = links.Append(dst, &l)
			dst = append(dst, '#')
			dst = e.appendURIName(dst)
		}
		dst = append(dst, '\n')
	})
	return dst
}
