package sbconfig

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Per-type user entries, in the field order sing-box documents.
type (
	vlessUser struct {
		Name string `json:"name"`
		UUID string `json:"uuid"`
		Flow string `json:"flow,omitempty"`
	}
	vmessUser struct {
		Name    string `json:"name"`
		UUID    string `json:"uuid"`
		AlterID int    `json:"alterId"`
	}
	passwordUser struct {
		Name     string `json:"name"`
		Password string `json:"password"`
	}
	tuicUser struct {
		Name     string `json:"name"`
		UUID     string `json:"uuid"`
		Password string `json:"password"`
	}
)

// InjectUsers returns config with the users array of every managed inbound
// (tags, or every inbound of a supported type when tags is empty) replaced by
// users, written with the fields each type takes. Nothing else in the text
// changes, comments and formatting included. Users are sorted by name, so the
// same config and set give the same bytes whatever order the set came in; a
// user lacking the secret an inbound needs is left out of that inbound.
//
// When the config has a V2Ray stats service (experimental.v2ray_api.stats),
// its users list is kept in line too (see statsUsersEdit): sing-box counts
// only the users named there.
func InjectUsers(config []byte, tags []string, users []User) ([]byte, error) {
	d, err := readDocument(config)
	if err != nil {
		return nil, err
	}
	managed, err := d.managedInbounds(tags)
	if err != nil {
		return nil, err
	}
	sorted := slices.Clone(users)
	slices.SortStableFunc(sorted, func(a, b User) int { return strings.Compare(a.Name, b.Name) })

	var edits []edit
	var injected []string // names written into some inbound
	for _, m := range managed {
		members, err := objectMembers(d.std, m.span)
		if err != nil {
			return nil, fmt.Errorf("inbound %q: %w", m.raw.Tag, err)
		}
		entries, names, err := userEntries(m.raw, sorted)
		if err != nil {
			return nil, fmt.Errorf("inbound %q: %w", m.raw.Tag, err)
		}
		injected = append(injected, names...)
		edits = append(edits, d.setMember(m.span, members, "users", entries))
	}
	e, ok, err := d.statsUsersEdit(managed, injected)
	if err != nil {
		return nil, err
	}
	if ok {
		edits = append(edits, e)
	}
	return splice(d.src, edits), nil
}

// edit replaces the text at a span (empty for an insertion).
type edit struct {
	at   span
	text []byte
}

// splice applies edits, which must not overlap, to src.
func splice(src []byte, edits []edit) []byte {
	edits = slices.Clone(edits)
	slices.SortFunc(edits, func(a, b edit) int { return a.at.start - b.at.start })
	var out bytes.Buffer
	prev := 0
	for _, e := range edits {
		out.Write(src[prev:e.at.start])
		out.Write(e.text)
		prev = e.at.end
	}
	out.Write(src[prev:])
	return out.Bytes()
}

// setMember returns the edit that makes key of the object at obj (whose
// members are given) the array of entries: the value replaced when the key
// is there, else a member added after the last one, laid out like it.
func (d *document) setMember(obj span, members []member, key string, entries [][]byte) edit {
	if m, ok := find(members, key); ok {
		indent := lineIndent(d.src, m.value.start)
		return edit{m.value, renderArray(entries, indent, indentUnit(d.src, obj, indent))}
	}
	if len(members) == 0 { // {}: the key goes right after the brace
		indent := lineIndent(d.src, obj.start)
		arr := renderArray(entries, indent, indentUnit(d.src, obj, indent))
		return edit{span{obj.start + 1, obj.start + 1}, fmt.Appendf(nil, "\"%s\": %s", key, arr)}
	}
	last := members[len(members)-1]
	indent := lineIndent(d.src, last.value.start)
	arr := renderArray(entries, indent, indentUnit(d.src, obj, indent))
	var text []byte
	if lineStart(d.src, last.value.start) > obj.start {
		text = fmt.Appendf(nil, ",\n%s\"%s\": %s", indent, key, arr)
	} else {
		text = fmt.Appendf(nil, ", \"%s\": %s", key, arr)
	}
	return edit{span{last.value.end, last.value.end}, text}
}

// userEntries encodes users as the given inbound wants them, one JSON
// object each, and returns the names of those it wrote.
func userEntries(r rawInbound, users []User) ([][]byte, []string, error) {
	flow := r.flow()
	out := make([][]byte, 0, len(users))
	names := make([]string, 0, len(users))
	for _, u := range users {
		var v any
		switch r.Type {
		case TypeVLESS:
			v = vlessUser{Name: u.Name, UUID: u.UUID, Flow: flow}
		case TypeVMess:
			v = vmessUser{Name: u.Name, UUID: u.UUID}
		case TypeTrojan, TypeHysteria2:
			v = passwordUser{Name: u.Name, Password: u.Password}
		case TypeShadowsocks:
			v = passwordUser{Name: u.Name, Password: u.SSKey(r.Method)}
		case TypeTUIC:
			v = tuicUser{Name: u.Name, UUID: u.UUID, Password: u.Password}
		}
		if !complete(v) {
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, b)
		names = append(names, u.Name)
	}
	return out, names, nil
}

// complete reports whether every secret an entry needs is there.
func complete(v any) bool {
	switch u := v.(type) {
	case vlessUser:
		return u.UUID != ""
	case vmessUser:
		return u.UUID != ""
	case passwordUser:
		return u.Password != ""
	case tuicUser:
		return u.UUID != "" && u.Password != ""
	}
	return false
}

// renderArray lays out one user per line, indented one unit deeper than
// the line that holds the key.
func renderArray(entries [][]byte, indent, unit string) []byte {
	if len(entries) == 0 {
		return []byte("[]")
	}
	var b bytes.Buffer
	b.WriteString("[\n")
	for i, e := range entries {
		b.WriteString(indent + unit)
		b.Write(e)
		if i < len(entries)-1 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	b.WriteString(indent + "]")
	return b.Bytes()
}

func lineStart(src []byte, at int) int {
	return bytes.LastIndexByte(src[:at], '\n') + 1
}

// lineIndent is the leading whitespace of the line holding src[at].
func lineIndent(src []byte, at int) string {
	start := lineStart(src, at)
	end := start
	for end < at && (src[end] == ' ' || src[end] == '\t') {
		end++
	}
	return string(src[start:end])
}

// indentUnit guesses the file's indentation step from the inbound object's
// opening line and its members' indent; two spaces when it cannot tell.
func indentUnit(src []byte, obj span, memberIndent string) string {
	outer := lineIndent(src, obj.start)
	if len(memberIndent) > len(outer) && strings.HasPrefix(memberIndent, outer) {
		return memberIndent[len(outer):]
	}
	return "  "
}
