package sbconfig

import (
	"encoding/json"
	"errors"
	"fmt"
)

// sing-box reads its config with a JSON reader that allows //, # and /* */
// comments and trailing commas. Operators' files use them, and rewriting
// a file must keep them, so the config is never re-encoded as a whole:
// standardize blanks those extensions out (keeping every byte offset), the
// walker below finds the spans of the values we care about, and edits splice
// new bytes into the original text.

// standardize returns a copy of src that encoding/json accepts, with comments
// and trailing commas replaced by spaces (newlines kept), so offsets into the
// copy are offsets into src.
func standardize(src []byte) ([]byte, error) {
	out := append([]byte(nil), src...)
	lastComma := -1 // a comma not yet followed by a value
	for i := 0; i < len(out); i++ {
		switch c := out[i]; {
		case c == '"':
			end, err := stringEnd(out, i)
			if err != nil {
				return nil, err
			}
			i = end - 1
			lastComma = -1
		case c == '#' || c == '/' && i+1 < len(out) && out[i+1] == '/':
			for ; i < len(out) && out[i] != '\n'; i++ {
				out[i] = ' '
			}
		case c == '/' && i+1 < len(out) && out[i+1] == '*':
			start := i
			for i += 2; i+1 < len(out) && !(out[i] == '*' && out[i+1] == '/'); i++ {
			}
			if i+1 >= len(out) {
				return nil, fmt.Errorf("offset %d: unterminated comment", start)
			}
			blank(out[start : i+2])
			i++
		case c == ',':
			lastComma = i
		case c == '}' || c == ']':
			if lastComma >= 0 {
				out[lastComma] = ' '
			}
			lastComma = -1
		case isSpace(c):
		default:
			lastComma = -1
		}
	}
	return out, nil
}

func blank(b []byte) {
	for i, c := range b {
		if c != '\n' && c != '\r' {
			b[i] = ' '
		}
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// stringEnd returns the offset just past the string that starts at b[i].
func stringEnd(b []byte, i int) (int, error) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("offset %d: unterminated string", i)
}

// span is a value's position in the text: b[start:end].
type span struct{ start, end int }

// member is one key of an object and the span of its value.
type member struct {
	key   string
	value span
}

var errSyntax = errors.New("malformed JSON")

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// valueEnd returns the offset just past the value that starts at b[i]
// (standardized text, no leading space).
func valueEnd(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errSyntax
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, err := stringEnd(b, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, errSyntax
	}
	j := i
	for j < len(b) && !isSpace(b[j]) && b[j] != ',' && b[j] != '}' && b[j] != ']' {
		j++
	}
	if j == i {
		return 0, fmt.Errorf("offset %d: %w", i, errSyntax)
	}
	return j, nil
}

// objectMembers lists the members of the object spanning s.
func objectMembers(b []byte, s span) ([]member, error) {
	if b[s.start] != '{' {
		return nil, fmt.Errorf("offset %d: expected an object", s.start)
	}
	var out []member
	i := skipSpace(b, s.start+1)
	for i < s.end-1 {
		keyEnd, err := stringEnd(b, i)
		if err != nil || b[i] != '"' {
			return nil, fmt.Errorf("offset %d: expected a key", i)
		}
		var key string
		if err := json.Unmarshal(b[i:keyEnd], &key); err != nil {
			return nil, fmt.Errorf("offset %d: %w", i, err)
		}
		i = skipSpace(b, keyEnd)
		if i >= len(b) || b[i] != ':' {
			return nil, fmt.Errorf("offset %d: expected ':'", i)
		}
		i = skipSpace(b, i+1)
		end, err := valueEnd(b, i)
		if err != nil {
			return nil, err
		}
		out = append(out, member{key: key, value: span{i, end}})
		i = skipSpace(b, end)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
	return out, nil
}

// arrayElements lists the elements of the array spanning s.
func arrayElements(b []byte, s span) ([]span, error) {
	if b[s.start] != '[' {
		return nil, fmt.Errorf("offset %d: expected an array", s.start)
	}
	var out []span
	i := skipSpace(b, s.start+1)
	for i < s.end-1 {
		end, err := valueEnd(b, i)
		if err != nil {
			return nil, err
		}
		out = append(out, span{i, end})
		i = skipSpace(b, end)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
	return out, nil
}

func find(members []member, key string) (member, bool) {
	for _, m := range members {
		if m.key == key {
			return m, true
		}
	}
	return member{}, false
}

// document is a config file read for editing: the original text, its
// standardized copy, where each inbound object is, and where the V2Ray
// stats service's object (experimental.v2ray_api.stats) is, if there is one.
type document struct {
	src, std []byte
	inbounds []span
	stats    *span
}

func readDocument(src []byte) (*document, error) {
	std, err := standardize(src)
	if err != nil {
		return nil, err
	}
	// encoding/json validates what the light walker below trusts.
	if !json.Valid(std) {
		var v any
		err := json.Unmarshal(std, &v)
		return nil, fmt.Errorf("sing-box config: %w", err)
	}
	start := skipSpace(std, 0)
	end, err := valueEnd(std, start)
	if err != nil {
		return nil, err
	}
	top, err := objectMembers(std, span{start, end})
	if err != nil {
		return nil, fmt.Errorf("sing-box config: %w", err)
	}
	d := &document{src: src, std: std}
	if m, ok := find(top, "inbounds"); ok {
		if d.inbounds, err = arrayElements(std, m.value); err != nil {
			return nil, fmt.Errorf("sing-box config: inbounds: %w", err)
		}
	}
	d.stats = objectAt(std, top, "experimental", "v2ray_api", "stats")
	return d, nil
}

// objectAt follows keys down from the members of an object and returns
// the span of the object found there, or nil when a key is missing or a
// value on the way is not an object.
func objectAt(b []byte, members []member, keys ...string) *span {
	for i, k := range keys {
		m, ok := find(members, k)
		if !ok || b[m.value.start] != '{' {
			return nil
		}
		if i == len(keys)-1 {
			return &m.value
		}
		var err error
		if members, err = objectMembers(b, m.value); err != nil {
			return nil
		}
	}
	return nil
}
