package v2rayapi

import (
	"math"
	"reflect"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/boxfleet/boxfleet/exporter/attribution"
)

// stat encodes Stat{string name = 1; int64 value = 2}; extra is appended
// inside the message as is.
func stat(name string, value int64, extra ...byte) []byte {
	var m []byte
	m = protowire.AppendTag(m, 1, protowire.BytesType)
	m = protowire.AppendString(m, name)
	if value != 0 { // proto3 leaves zero values out
		m = protowire.AppendTag(m, 2, protowire.VarintType)
		m = protowire.AppendVarint(m, uint64(value))
	}
	return append(m, extra...)
}

// statField wraps a Stat as field 1 of QueryStatsResponse.
func statField(msg []byte) []byte {
	b := protowire.AppendTag(nil, 1, protowire.BytesType)
	return protowire.AppendBytes(b, msg)
}

// unknownFieldList holds fields of every wire type a newer peer might add.
func unknownFieldList() [][]byte {
	var group []byte
	group = protowire.AppendTag(group, 11, protowire.StartGroupType)
	group = protowire.AppendTag(group, 1, protowire.VarintType)
	group = protowire.AppendVarint(group, 1)
	group = protowire.AppendTag(group, 11, protowire.EndGroupType)
	return [][]byte{
		protowire.AppendVarint(protowire.AppendTag(nil, 7, protowire.VarintType), 12345),
		protowire.AppendFixed32(protowire.AppendTag(nil, 8, protowire.Fixed32Type), 0xdeadbeef),
		protowire.AppendFixed64(protowire.AppendTag(nil, 9, protowire.Fixed64Type), 0xfeedfacecafebeef),
		protowire.AppendString(protowire.AppendTag(nil, 10, protowire.BytesType), "user>>>mallory>>>traffic>>>uplink"),
		group,
	}
}

func unknownFields() []byte {
	var b []byte
	for _, f := range unknownFieldList() {
		b = append(b, f...)
	}
	return b
}

// response builds a QueryStatsResponse as sing-box would send it, with unknown
// fields sprinkled in; it also returns the offsets at which one top-level
// field ends and the next begins.
func response() (b []byte, boundaries []int) {
	fields := [][]byte{
		statField(stat("user>>>alice>>>traffic>>>uplink", 1000)),
		statField(stat("user>>>alice>>>traffic>>>downlink", 20000)),
	}
	fields = append(fields, unknownFieldList()...) // at the top level
	fields = append(fields, [][]byte{
		statField(stat("user>>>bob>>>traffic>>>downlink", 1<<40)),
		statField(stat("inbound>>>vless-in>>>traffic>>>uplink", 999)),
		statField(stat("inbound>>>vless-in>>>traffic>>>downlink", 998)),
		statField(stat("outbound>>>direct>>>traffic>>>uplink", 997)),
		statField(stat("user>>>a>>>b>>>traffic>>>uplink", 7)), // user "a>>>b"
		statField(stat("user>>>a>>>b>>>traffic>>>downlink", 8)),
		statField(stat("user>>>carol>>>traffic>>>uplink", 5, unknownFields()...)), // unknown fields inside a Stat
		statField(stat("user>>>carol>>>traffic>>>downlink", 0)),                   // value left out
		statField(stat("user>>>dave>>>traffic>>>uplink", math.MaxInt64)),
		statField(stat("user>>>neg>>>traffic>>>uplink", -5)), // corrupt: never a negative counter
		statField(stat("user>>>erin>>>online", 3)),           // not a traffic counter
		statField(stat("user>>>frank>>>traffic>>>sideways", 3)),
		statField(stat("userfoo>>>traffic>>>uplink", 3)),
	}...)
	for _, f := range fields {
		b = append(b, f...)
		boundaries = append(boundaries, len(b))
	}
	return b, boundaries
}

func TestDecodeStats(t *testing.T) {
	b, _ := response()
	got, err := decodeStats(b)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{
		"user>>>alice>>>traffic>>>uplink":         1000,
		"user>>>alice>>>traffic>>>downlink":       20000,
		"user>>>bob>>>traffic>>>downlink":         1 << 40,
		"inbound>>>vless-in>>>traffic>>>uplink":   999,
		"inbound>>>vless-in>>>traffic>>>downlink": 998,
		"outbound>>>direct>>>traffic>>>uplink":    997,
		"user>>>a>>>b>>>traffic>>>uplink":         7,
		"user>>>a>>>b>>>traffic>>>downlink":       8,
		"user>>>carol>>>traffic>>>uplink":         5,
		"user>>>carol>>>traffic>>>downlink":       0,
		"user>>>dave>>>traffic>>>uplink":          math.MaxInt64,
		"user>>>neg>>>traffic>>>uplink":           -5,
		"user>>>erin>>>online":                    3,
		"user>>>frank>>>traffic>>>sideways":       3,
		"userfoo>>>traffic>>>uplink":              3,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decodeStats\n got %v\nwant %v", got, want)
	}

	users := userTraffic(got)
	wantUsers := map[string]attribution.Traffic{
		"alice": {Up: 1000, Down: 20000},
		"bob":   {Down: 1 << 40},
		"a>>>b": {Up: 7, Down: 8},
		"carol": {Up: 5},
		"dave":  {Up: math.MaxInt64},
	}
	if !reflect.DeepEqual(users, wantUsers) {
		t.Errorf("userTraffic\n got %v\nwant %v", users, wantUsers)
	}
}

func TestDecodeStatsEmpty(t *testing.T) {
	for name, b := range map[string][]byte{"nil": nil, "empty": {}} {
		got, err := decodeStats(b)
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if got == nil || len(got) != 0 {
			t.Errorf("%s: got %v, want an empty map", name, got)
		}
		if u := userTraffic(got); u == nil || len(u) != 0 {
			t.Errorf("%s: userTraffic = %v", name, u)
		}
	}
}

// Protobuf merges repeated occurrences: the last name and value win.
func TestDecodeStatsLastWins(t *testing.T) {
	var m []byte
	m = protowire.AppendTag(m, 2, protowire.VarintType)
	m = protowire.AppendVarint(m, 1)
	m = protowire.AppendTag(m, 1, protowire.BytesType)
	m = protowire.AppendString(m, "first")
	m = protowire.AppendTag(m, 1, protowire.BytesType)
	m = protowire.AppendString(m, "user>>>x>>>traffic>>>uplink")
	m = protowire.AppendTag(m, 2, protowire.VarintType)
	m = protowire.AppendVarint(m, 42)
	b := statField(m)
	b = append(b, statField(stat("user>>>x>>>traffic>>>uplink", 43))...)
	got, err := decodeStats(b)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int64{"user>>>x>>>traffic>>>uplink": 43}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// Fields with a known number but the wrong wire type are skipped, not
// misread.
func TestDecodeStatsWrongWireTypes(t *testing.T) {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType) // a Stat must be bytes
	b = protowire.AppendVarint(b, 5)
	var m []byte
	m = protowire.AppendTag(m, 1, protowire.BytesType)
	m = protowire.AppendString(m, "user>>>x>>>traffic>>>uplink")
	m = protowire.AppendTag(m, 2, protowire.Fixed64Type) // value must be a varint
	m = protowire.AppendFixed64(m, 99)
	b = append(b, statField(m)...)
	got, err := decodeStats(b)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int64{"user>>>x>>>traffic>>>uplink": 0}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestDecodeStatsRejectsTruncated(t *testing.T) {
	b, boundaries := response()
	atBoundary := map[int]bool{0: true}
	for _, n := range boundaries {
		atBoundary[n] = true
	}
	for n := 1; n < len(b); n++ {
		if atBoundary[n] {
			// A prefix ending between top-level fields is a valid, shorter
			// response.
			if _, err := decodeStats(b[:n]); err != nil {
				t.Errorf("prefix of %d bytes at a field boundary: %v", n, err)
			}
			continue
		}
		if got, err := decodeStats(b[:n]); err == nil {
			t.Errorf("prefix of %d/%d bytes decoded without error: %v", n, len(b), got)
		}
	}
}

func TestDecodeStatsRejectsMalformed(t *testing.T) {
	for name, b := range map[string][]byte{
		"field number zero":         {0x00, 0x00},
		"bad varint tag":            {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"stray end group":           protowire.AppendTag(nil, 1, protowire.EndGroupType),
		"unterminated group":        protowire.AppendTag(nil, 3, protowire.StartGroupType),
		"reserved wire type 6":      {0x0e, 0x00},
		"length past the end":       {0x0a, 0x05, 0x0a, 0x01},
		"stat with truncated value": statField([]byte{0x0a, 0x01, 'x', 0x10, 0x80}),
		"stat with bad length":      statField([]byte{0x0a, 0x7f, 'x'}),
		"stat with field zero":      statField([]byte{0x00, 0x01}),
	} {
		t.Run(name, func(t *testing.T) {
			if got, err := decodeStats(b); err == nil {
				t.Errorf("decodeStats(%x) = %v, want an error", b, got)
			}
		})
	}
}

func TestUserTraffic(t *testing.T) {
	got := userTraffic(map[string]int64{
		"user>>>alice>>>traffic>>>uplink":                 1,
		"user>>>alice>>>traffic>>>downlink":               2,
		"user>>>>>>traffic>>>downlink>>>traffic>>>uplink": 3, // user ">>>traffic>>>downlink"
		"inbound>>>alice>>>traffic>>>uplink":              100,
		"user>>>alice>>>traffic>>>uplink>>>x":             100,
		"user>>>bob>>>traffic>>>uplink":                   -1,
		"user>>>bob>>>traffic>>>downlink":                 4,
		"User>>>alice>>>traffic>>>uplink":                 100,
	})
	want := map[string]attribution.Traffic{
		"alice":                 {Up: 1, Down: 2},
		">>>traffic>>>downlink": {Up: 3},
		"bob":                   {Down: 4},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// fields reads a flat message into number → values, failing on anything
// other than bytes and varints.
func fields(t *testing.T, b []byte) map[protowire.Number][]any {
	t.Helper()
	out := map[protowire.Number][]any{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			t.Fatalf("bad tag: %v", protowire.ParseError(n))
		}
		b = b[n:]
		switch typ {
		case protowire.BytesType:
			v, n := protowire.ConsumeString(b)
			if n < 0 {
				t.Fatalf("field %d: %v", num, protowire.ParseError(n))
			}
			out[num] = append(out[num], v)
			b = b[n:]
		case protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				t.Fatalf("field %d: %v", num, protowire.ParseError(n))
			}
			out[num] = append(out[num], v)
			b = b[n:]
		default:
			t.Fatalf("field %d has wire type %d", num, typ)
		}
	}
	return out
}

func TestEncodeQuery(t *testing.T) {
	for _, pattern := range []string{"user>>>", "", "юзер>>>\x00"} {
		got := fields(t, encodeQuery(pattern, false))
		want := map[protowire.Number][]any{1: {pattern}}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("encodeQuery(%q, false) = %v, want %v", pattern, got, want)
		}
		if _, ok := got[2]; ok {
			t.Errorf("encodeQuery(%q, false) asks for a reset", pattern)
		}

		got = fields(t, encodeQuery(pattern, true))
		want = map[protowire.Number][]any{1: {pattern}, 2: {uint64(1)}}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("encodeQuery(%q, true) = %v, want %v", pattern, got, want)
		}
	}
}

// The exact bytes of the query the exporter sends: field 1 "user>>>", no reset.
func TestEncodeQueryBytes(t *testing.T) {
	got := encodeQuery("user>>>", false)
	want := append([]byte{0x0a, 0x07}, "user>>>"...)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("encodeQuery = %x, want %x", got, want)
	}
}

func FuzzDecodeStats(f *testing.F) {
	b, boundaries := response()
	f.Add(b)
	f.Add(b[:boundaries[0]])
	f.Add(b[:len(b)-1])
	f.Add([]byte{})
	f.Add(unknownFields())
	f.Add(encodeQuery("user>>>", true))
	f.Add([]byte{0x0a, 0x05, 0x0a, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		stats, err := decodeStats(b)
		if err != nil {
			return
		}
		users := userTraffic(stats)
		for u := range users {
			if _, up := stats["user>>>"+u+">>>traffic>>>uplink"]; up {
				continue
			}
			if _, down := stats["user>>>"+u+">>>traffic>>>downlink"]; down {
				continue
			}
			t.Fatalf("user %q has no counter in %v", u, stats)
		}
		// What was decoded encodes back to the same map.
		var again []byte
		for name, v := range stats {
			again = append(again, statField(stat(name, v))...)
		}
		round, err := decodeStats(again)
		if err != nil {
			t.Fatalf("re-encoded stats fail to decode: %v", err)
		}
		if !reflect.DeepEqual(round, stats) {
			t.Fatalf("round trip: got %v, want %v", round, stats)
		}
	})
}
