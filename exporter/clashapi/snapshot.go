// Package clashapi reads what sing-box's Clash API tells about traffic: the
// /connections snapshot, the /logs stream and /version.
package clashapi

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strings"
	"time"
	"unicode/utf8"

	jsoniter "github.com/json-iterator/go"
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

// DecodeSnapshot parses a /connections body. It rejects bodies that are not a
// snapshot at all, so that an error page is never taken for "zero traffic".
//
// The body is read as a stream and only the fields metering needs are kept:
// at 10,000 connections a body is several megabytes, and decoding it into
// structs first (encoding/json) held all of it and cost most of a poll. It
// reads what encoding/json would read from the same first JSON value (field
// names case-insensitively, null as absent); FuzzDecodeSnapshot holds it to
// that.
func DecodeSnapshot(r io.Reader) (*Snapshot, error) {
	it := jsoniter.Parse(jsoniter.ConfigCompatibleWithStandardLibrary, r, 32<<10)
	var (
		s        Snapshot
		up, down bool
		// One buffer for every number's text: a snapshot holds two per
		// connection.
		num = make([]byte, 0, 24)
	)
	if it.WhatIsNext() != jsoniter.ObjectValue {
		return nil, errors.New("decoding connections: answer is not a JSON object")
	}
	it.ReadObjectCB(func(it *jsoniter.Iterator, field string) bool {
		switch {
		case strings.EqualFold(field, "uploadTotal"):
			up = readUint(it, &num, &s.UploadTotal)
		case strings.EqualFold(field, "downloadTotal"):
			down = readUint(it, &num, &s.DownloadTotal)
		case strings.EqualFold(field, "memory"):
			readUint(it, &num, &s.Memory)
		case strings.EqualFold(field, "connections"):
			s.Connections = s.Connections[:0]
			it.ReadArrayCB(func(it *jsoniter.Iterator) bool {
				s.Connections = append(s.Connections, readConnection(it, &num))
				return it.Error == nil
			})
		default:
			it.Skip()
		}
		return it.Error == nil
	})
	if it.Error != nil && !errors.Is(it.Error, io.EOF) {
		return nil, fmt.Errorf("decoding connections: %w", it.Error)
	}
	if errors.Is(it.Error, io.EOF) {
		return nil, fmt.Errorf("decoding connections: %w", io.ErrUnexpectedEOF)
	}
	if !up || !down {
		return nil, fmt.Errorf("decoding connections: answer has no uploadTotal/downloadTotal")
	}
	return &s, nil
}

func readConnection(it *jsoniter.Iterator, num *[]byte) Connection {
	var (
		c          Connection
		ip, port   string
		start, typ string
	)
	it.ReadObjectCB(func(it *jsoniter.Iterator, field string) bool {
		switch {
		case strings.EqualFold(field, "id"):
			readString(it, &c.ID)
		case strings.EqualFold(field, "upload"):
			readUint(it, num, &c.Upload)
		case strings.EqualFold(field, "download"):
			readUint(it, num, &c.Download)
		case strings.EqualFold(field, "start"):
			if readString(it, &start) {
				var t time.Time
				if err := t.UnmarshalText([]byte(start)); err != nil {
					it.ReportError("start", err.Error())
				}
				c.Start = t
			}
		case strings.EqualFold(field, "metadata"):
			it.ReadObjectCB(func(it *jsoniter.Iterator, field string) bool {
				switch {
				case strings.EqualFold(field, "network"):
					readString(it, &c.Network)
				case strings.EqualFold(field, "type"):
					readString(it, &typ)
				case strings.EqualFold(field, "sourceIP"):
					readString(it, &ip)
				case strings.EqualFold(field, "sourcePort"):
					readString(it, &port)
				default:
					it.Skip()
				}
				return it.Error == nil
			})
		default:
			it.Skip()
		}
		return it.Error == nil
	})
	c.Inbound = InboundTag(typ)
	c.SourceIP = ip
	c.Source = net.JoinHostPort(ip, port)
	return c
}

// readUint reads an unsigned integer into v; null leaves v as it was, as
// encoding/json does. It reports whether a number was read. The number's
// text is captured into num and parsed here rather than by ReadUint64,
// whose overflow check misses some values past 2^64 and wraps them
// (107000000000000000000 read as a small counter), where encoding/json
// refuses the answer.
func readUint(it *jsoniter.Iterator, num *[]byte, v *uint64) bool {
	switch it.WhatIsNext() {
	case jsoniter.NilValue:
		it.ReadNil()
		return false
	case jsoniter.NumberValue:
		*num = it.SkipAndAppendBytes((*num)[:0])
		if it.Error != nil {
			return false
		}
		n, ok := parseUint(*num)
		if !ok {
			it.ReportError("readUint", "not an unsigned 64-bit integer: "+string(*num))
			return false
		}
		*v = n
		return true
	default:
		it.ReportError("readUint", "expected a number")
		return false
	}
}

// parseUint parses a JSON integer that fits in a uint64: digits only (no
// sign, fraction or exponent, which encoding/json refuses for a uint64) and
// no leading zero.
func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || (b[0] == '0' && len(b) > 1) {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (math.MaxUint64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// readString reads a string into v; null leaves v as it was. Bytes that are
// not UTF-8 become U+FFFD one by one, as encoding/json makes them.
func readString(it *jsoniter.Iterator, v *string) bool {
	switch it.WhatIsNext() {
	case jsoniter.NilValue:
		it.ReadNil()
		return false
	case jsoniter.StringValue:
		s := it.ReadString()
		if !utf8.ValidString(s) {
			s = replaceInvalid(s)
		}
		*v = s
		return it.Error == nil
	default:
		it.ReportError("readString", "expected a string")
		return false
	}
}

func replaceInvalid(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// InboundTag turns the Clash API's "type" ("vless/vless-in") into the
// inbound's tag. An untagged inbound has only its type there.
func InboundTag(typ string) string {
	if _, after, ok := strings.Cut(typ, "/"); ok {
		return after
	}
	return typ
}
