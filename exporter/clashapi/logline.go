package clashapi

import (
	"strconv"
	"strings"
)

// LogKind says which of the two connection log lines a LogLine is.
type LogKind int

const (
	// LogFrom is "inbound connection from ADDR": the client's address.
	LogFrom LogKind = iota + 1
	// LogUser is "[USER] inbound connection to DEST": the authenticated user.
	LogUser
)

// LogLine is what metering needs from one sing-box log line.
type LogLine struct {
	ID      uint32 // sing-box's per-connection log ID, not the Clash API id
	Inbound string // inbound tag
	Kind    LogKind
	Source  string // with LogFrom
	User    string // with LogUser
}

// ParseLogLine reads lines such as
//
//	[3571023 0ms] inbound/vless[vless-in]: inbound connection from 127.0.0.1:52144
//	[3571023 2ms] inbound/vless[vless-in]: [alice] inbound connection to example.com:443
//
// and their "inbound packet connection" twins. Anything else is ignored.
func ParseLogLine(s string) (LogLine, bool) {
	var l LogLine
	id, rest, ok := cutIDPrefix(s)
	if !ok {
		return l, false
	}
	l.ID = id
	if !strings.HasPrefix(rest, "inbound/") {
		return l, false
	}
	tagEnd := strings.Index(rest, "]: ")
	open := strings.IndexByte(rest, '[')
	if tagEnd < 0 || open < 0 || open > tagEnd {
		return l, false
	}
	l.Inbound = rest[open+1 : tagEnd]
	msg := rest[tagEnd+3:]
	if src, ok := cutConnectionPrefix(msg, "from "); ok {
		l.Kind, l.Source = LogFrom, src
		return l, src != ""
	}
	if !strings.HasPrefix(msg, "[") {
		return l, false
	}
	// A user name may itself hold "] ", and the destination after the marker
	// is chosen by the client, so take whichever marker comes first.
	end := -1
	for _, marker := range []string{"] inbound connection to ", "] inbound packet connection to "} {
		if i := strings.Index(msg, marker); i > 0 && (end < 0 || i < end) {
			end = i
		}
	}
	if end < 0 {
		return l, false
	}
	l.Kind, l.User = LogUser, msg[1:end]
	return l, true
}

func cutConnectionPrefix(msg, what string) (string, bool) {
	for _, p := range []string{"inbound connection ", "inbound packet connection "} {
		if rest, ok := strings.CutPrefix(msg, p+what); ok {
			return rest, true
		}
	}
	return "", false
}

// cutIDPrefix splits "[ID DURATION] rest".
func cutIDPrefix(s string) (uint32, string, bool) {
	if !strings.HasPrefix(s, "[") {
		return 0, "", false
	}
	end := strings.Index(s, "] ")
	if end < 0 {
		return 0, "", false
	}
	head := s[1:end]
	before, _, ok := strings.Cut(head, " ")
	if !ok {
		return 0, "", false
	}
	id, err := strconv.ParseUint(before, 10, 32)
	if err != nil {
		return 0, "", false
	}
	return uint32(id), s[end+2:], true
}
