package accounting

import (
	"bytes"
	"strconv"
	"unicode/utf8"
)

// scanVector decodes a query answer of the shape Prometheus and
// VictoriaMetrics write when all is well, byte by byte: json-iterator
// spent 1.5 µs a series on it, as much of the controller's CPU in a cycle
// over a million series as the ledger's daily rows. ok is false for
// anything else: a key it does not know at the top (warnings, errors), a
// string with an escape or outside UTF-8, a label that is not a string,
// a key that only differs in case from one nodeVector reads (encoding/json
// would match it), or JSON that is not well formed. The caller then
// decodes the body the slow way, which also reports the errors; what this
// accepts, the slow way decodes the same (FuzzScanVector).
func scanVector(b []byte) (*nodeVector, bool) {
	s := &vectorScanner{b: b}
	v := &nodeVector{}
	ok := s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "status":
			v.Status, ok = s.str()
		case "data":
			ok = s.object(func(key []byte) bool {
				var ok bool
				switch string(key) {
				case "resultType":
					v.Data.ResultType, ok = s.str()
				case "result":
					ok = s.result(v)
				default:
					ok = s.unknown(key, "resultType", "result")
				}
				return ok
			})
		default:
			ok = s.unknown(key, "status", "errorType", "error", "warnings", "data")
		}
		return ok
	})
	s.space()
	return v, ok && s.i == len(s.b)
}

type vectorScanner struct {
	b []byte
	i int
	// The last node, metric name and direction read: most series repeat
	// them, and sharing the string saves an allocation each.
	node, name, dir string
}

func (s *vectorScanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// eat consumes c, after any white space.
func (s *vectorScanner) eat(c byte) bool {
	s.space()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// raw reads a string without escapes as the bytes between its quotes.
func (s *vectorScanner) raw() ([]byte, bool) {
	if !s.eat('"') {
		return nil, false
	}
	b, start, ascii := s.b, s.i, true
	for j := start; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			s.i = j + 1
			return b[start:j], ascii || utf8.Valid(b[start:j])
		case c < 0x20 || c == '\\':
			return nil, false
		case c >= 0x80:
			ascii = false
		}
	}
	return nil, false
}

func (s *vectorScanner) str() (string, bool) {
	r, ok := s.raw()
	return string(r), ok
}

// shared returns r as a string, the last one's when r is the same.
func shared(last *string, r []byte) string {
	if string(r) != *last { // no allocation: the compiler compares in place
		*last = string(r)
	}
	return *last
}

// object reads {"key": value, ...}, each value by field.
func (s *vectorScanner) object(field func(key []byte) bool) bool {
	if !s.eat('{') {
		return false
	}
	if s.eat('}') {
		return true
	}
	for {
		key, ok := s.raw()
		if !ok || !s.eat(':') || !field(key) {
			return false
		}
		if s.eat('}') {
			return true
		}
		if !s.eat(',') {
			return false
		}
	}
}

// unknown skips the value of a key the caller does not read, unless the key
// is one of known (which the slow decoder reads) up to case.
func (s *vectorScanner) unknown(key []byte, known ...string) bool {
	for _, k := range known {
		if bytes.EqualFold(key, []byte(k)) {
			return false
		}
	}
	return s.skip()
}

// skip reads one well-formed value and drops it.
func (s *vectorScanner) skip() bool {
	s.space()
	if s.i >= len(s.b) {
		return false
	}
	switch s.b[s.i] {
	case '"':
		_, ok := s.raw()
		return ok
	case '{':
		return s.object(func([]byte) bool { return s.skip() })
	case '[':
		return s.array(s.skip)
	case 't':
		return s.literal("true")
	case 'f':
		return s.literal("false")
	case 'n':
		return s.literal("null")
	default:
		return s.number()
	}
}

func (s *vectorScanner) literal(w string) bool {
	if bytes.HasPrefix(s.b[s.i:], []byte(w)) {
		s.i += len(w)
		return true
	}
	return false
}

// number reads a JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *vectorScanner) number() bool {
	s.space()
	digits := func() int {
		n := 0
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
			n++
		}
		return n
	}
	if s.i < len(s.b) && s.b[s.i] == '-' {
		s.i++
	}
	if s.i < len(s.b) && s.b[s.i] == '0' {
		s.i++
	} else if digits() == 0 {
		return false
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if digits() == 0 {
			return false
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if digits() == 0 {
			return false
		}
	}
	return true
}

// array reads [value, ...], each value by elem.
func (s *vectorScanner) array(elem func() bool) bool {
	if !s.eat('[') {
		return false
	}
	if s.eat(']') {
		return true
	}
	for {
		if !elem() {
			return false
		}
		if s.eat(']') {
			return true
		}
		if !s.eat(',') {
			return false
		}
	}
}

// result reads the series.
func (s *vectorScanner) result(v *nodeVector) bool {
	if v.Data.Result == nil {
		// One allocation instead of a dozen as the slice grows.
		v.Data.Result = make([]vectorSample, 0, bytes.Count(s.b[s.i:], []byte(`"metric":`)))
	}
	v.Data.Result = v.Data.Result[:0]
	return s.array(func() bool {
		var m vectorSample
		ok := s.object(func(key []byte) bool {
			switch string(key) {
			case "metric":
				// A second "metric" adds to the first, as in encoding/json.
				return s.labels(&m.Metric)
			case "value":
				return s.value(&m.Value)
			}
			return s.unknown(key, "metric", "value")
		})
		v.Data.Result = append(v.Data.Result, m)
		return ok
	})
}

func (s *vectorScanner) labels(l *sampleLabels) bool {
	return s.object(func(key []byte) bool {
		r, ok := s.raw()
		if !ok {
			return false
		}
		switch string(key) {
		case "__name__":
			l.Name = shared(&s.name, r)
		case "node":
			l.Node = shared(&s.node, r)
		case "user":
			l.User = string(r)
		case "direction":
			l.Direction = shared(&s.dir, r)
		case "scraped":
			l.Scraped = string(r)
		case "guard":
			l.Guard = string(r)
		case "gate":
			l.Gate = string(r)
		default:
			for _, k := range [...]string{"__name__", "node", "user", "direction", "scraped", "guard", "gate"} {
				if len(key) == len(k) && bytes.EqualFold(key, []byte(k)) {
					return false
				}
			}
		}
		return true
	})
}

// value reads [time, "value"]; the time is not used.
func (s *vectorScanner) value(p *point) bool {
	if !s.eat('[') || !s.number() || !s.eat(',') {
		return false
	}
	r, ok := s.raw()
	if !ok || !s.eat(']') {
		return false
	}
	f, err := strconv.ParseFloat(string(r), 64)
	if err != nil {
		return false
	}
	*p = point{v: f, ok: true}
	return true
}
