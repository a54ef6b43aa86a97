package subscribe

import (
	"time"

	"github.com/boxfleet/boxfleet/subscribe/internal/esc"

	"github.com/boxfleet/boxfleet/internal/sbconfig"
	"github.com/boxfleet/boxfleet/subscribe/links"
)

// User statuses, as the controller stores them.
const (
	StatusActive   = "active"
	StatusOnHold   = "on_hold"
	StatusDisabled = "disabled"
	StatusLimited  = "limited"
	StatusExpired  = "expired"
)

// Node is one proxy server as the subscription lists it. The caller passes
// nodes already filtered (no drained nodes, only groups the user may use) and
// ranked best first: the order is kept in every format, so fallback groups
// try the healthiest node first.
type Node struct {
	Name     string
	Address  string // public host clients dial
	Labels   map[string]string
	Inbounds []sbconfig.Inbound
}

// Profile is everything a subscription response says to one user.
type Profile struct {
	User        string
	Credentials sbconfig.Credentials
	Status      string // one of the Status constants; "" counts as active

	// Traffic in bytes for the current period; Total 0 means unlimited.
	Upload, Download, Total int64
	Expire                  time.Time // zero: never

	Title          string        // profile name in clients; the user name when empty
	WebPageURL     string        // profile-web-page-url
	SupportURL     string        // support-url
	SubURL         string        // this subscription's own absolute URL, for import buttons
	UpdateInterval time.Duration // profile-update-interval; 12h when zero

	Nodes []Node
}

// Reason is the short text a placeholder entry and the title carry when the
// user gets no nodes, or "" when the user is served normally.
func (p *Profile) Reason() string {
	switch p.Status {
	case StatusDisabled:
		return "Subscription disabled"
	case StatusLimited:
		return "Traffic limit reached"
	case StatusExpired:
		return "Subscription expired"
	case "", StatusActive, StatusOnHold:
		if !p.hasEndpoints() {
			return "No servers available"
		}
		return ""
	}
	return "Subscription inactive"
}

func (p *Profile) hasEndpoints() bool {
	for i := range p.Nodes {
		for j := range p.Nodes[i].Inbounds {
			if supported(p.Nodes[i].Inbounds[j].Type) {
				return true
			}
		}
	}
	return false
}

func supported(typ string) bool {
	switch typ {
	case sbconfig.TypeVLESS, sbconfig.TypeVMess, sbconfig.TypeTrojan,
		sbconfig.TypeShadowsocks, sbconfig.TypeHysteria2, sbconfig.TypeTUIC:
		return true
	}
	return false
}

// endpoint is one node inbound with the user's secrets filled in: the unit
// every format lists.
//
// Its name, "node tag", is the display name and the sing-box tag. Node names
// are unique in the fleet and tags unique within a node, so names are unique;
// the space keeps them apart from group names (proxy, auto, PROXY, ...). The
// name is written piece by piece (appendJSONName and friends) rather than
// concatenated, which would cost an allocation per entry.
type endpoint struct {
	node *Node
	in   *sbconfig.Inbound
	tag  string // "" for the placeholder, whose name is the node name alone
}

func (e *endpoint) name() string {
	if e.tag == "" {
		return e.node.Name
	}
	return e.node.Name + " " + e.tag
}

func (e *endpoint) appendJSONName(b []byte) []byte {
	b = append(b, '"')
	b = esc.JSONPart(b, e.node.Name)
	if e.tag != "" {
		b = append(b, ' ')
		b = esc.JSONPart(b, e.tag)
	}
	return append(b, '"')
}

func (e *endpoint) appendYAMLName(b []byte) []byte {
	b = append(b, '"')
	b = esc.YAMLPart(b, e.node.Name)
	if e.tag != "" {
		b = append(b, ' ')
		b = esc.YAMLPart(b, e.tag)
	}
	return append(b, '"')
}

func (e *endpoint) appendURIName(b []byte) []byte {
	b = esc.URI(b, e.node.Name)
	if e.tag != "" {
		b = append(b, "%20"...)
		b = esc.URI(b, e.tag)
	}
	return b
}

// placeholderNode is what a user who gets no nodes sees: one entry named
// after the reason, pointing at a port nothing listens on, so clients show
// the reason where node names go and carry no traffic.
var placeholderInbound = sbconfig.Inbound{Tag: "placeholder", Type: sbconfig.TypeVLESS, Port: 1}

const placeholderUUID = "00000000-0000-0000-0000-000000000000"

// endpoints calls fn for each entry the profile lists, in rank order.
func (p *Profile) endpoints(fn func(e *endpoint, c *sbconfig.Credentials)) {
	if reason := p.Reason(); reason != "" {
		n := Node{Name: reason, Address: "127.0.0.1"}
		fn(&endpoint{node: &n, in: &placeholderInbound},
			&sbconfig.Credentials{UUID: placeholderUUID})
		return
	}
	var e endpoint // one for all entries: fn must not keep it
	var marked sbconfig.Inbound
	var markedTLS sbconfig.TLS
	for i := range p.Nodes {
		n := &p.Nodes[i]
		_, mark := n.Labels[sbconfig.LabelTLSInsecure]
		for j := range n.Inbounds {
			in := &n.Inbounds[j]
			if !supported(in.Type) {
				continue
			}
			if mark && in.TLS != nil && in.TLS.Reality == nil && !in.TLS.Insecure && sbconfig.TLSInsecure(n.Labels, in.Tag) {
				// The operator says this certificate cannot be verified
				// (self-signed): a marked copy, the profile stays as it is.
				marked, markedTLS = *in, *in.TLS
				markedTLS.Insecure = true
				marked.TLS = &markedTLS
				in = &marked
			}
			e = endpoint{node: n, in: in, tag: in.Tag}
			if e.tag == "" {
				e.tag = in.Type
			}
			fn(&e, &p.Credentials)
		}
	}
}

// password is the secret an inbound type authenticates with.
func password(in *sbconfig.Inbound, c *sbconfig.Credentials) string {
	if in.Type != sbconfig.TypeShadowsocks {
		return c.Password
	}
	key := c.SSKey(in.Method)
	if in.ServerPSK != "" && sbconfig.IsSS2022(in.Method) {
		return in.ServerPSK + ":" + key
	}
	return key
}

// link maps an endpoint onto the parameters of its share link.
func (e *endpoint) link(c *sbconfig.Credentials) links.Link {
	l := e.linkNoName(c)
	l.Name = e.name()
	return l
}

var alpnH3 = []string{"h3"}

// linkNoName is link without the name, which appendLinks writes itself.
func (e *endpoint) linkNoName(c *sbconfig.Credentials) links.Link {
	in := e.in
	l := links.Link{Protocol: in.Type, Host: e.node.Address, Port: in.Port}
	switch in.Type {
	case sbconfig.TypeVLESS, sbconfig.TypeVMess:
		l.UUID = c.UUID
		l.Network = "tcp"
	case sbconfig.TypeTrojan:
		l.Password = c.Password
		l.Network = "tcp"
	case sbconfig.TypeShadowsocks:
		l.Method, l.Password = in.Method, password(in, c)
		return l
	case sbconfig.TypeHysteria2:
		l.Password = c.Password
		l.Security = "tls"
		if in.Obfs != nil {
			l.Obfs, l.ObfsPassword = in.Obfs.Type, in.Obfs.Password
		}
	case sbconfig.TypeTUIC:
		l.UUID, l.Password = c.UUID, c.Password
		l.Security = "tls"
		l.CongestionControl = in.CongestionControl
		l.UDPRelayMode = "native"
		l.ALPN = alpnH3
	}
	if t := in.TLS; t != nil {
		l.SNI, l.Insecure = t.ServerName, t.Insecure
		if in.Type == sbconfig.TypeTUIC && len(t.ALPN) > 0 {
			l.ALPN = t.ALPN
		}
		if in.Type != sbconfig.TypeHysteria2 && in.Type != sbconfig.TypeTUIC {
			l.Security, l.Fingerprint, l.ALPN = "tls", "chrome", t.ALPN
			if r := t.Reality; r != nil {
				l.Security, l.PublicKey, l.ShortID = "reality", r.PublicKey, firstShortID(r)
			}
		}
	}
	if in.Type == sbconfig.TypeVLESS && in.Flow != "" && l.Network == "tcp" && in.Transport == nil {
		l.Flow = in.Flow
	}
	if t := in.Transport; t != nil && l.Network != "" {
		l.Network, l.Path, l.HostHeader, l.ServiceName = t.Type, t.Path, t.Host, t.ServiceName
	}
	return l
}

func firstShortID(r *sbconfig.Reality) string {
	if len(r.ShortIDs) == 0 {
		return ""
	}
	return r.ShortIDs[0]
}
