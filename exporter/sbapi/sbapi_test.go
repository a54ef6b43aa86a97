package sbapi

import (
	"reflect"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/boxfleet/boxfleet/exporter/attribution"
)

// The encoders below write messages the way sing-box's generated code lays
// them out (daemon/started_service.proto), field numbers included.

func connection(id, inbound, user string, up, down uint64, closedAt int64) []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, id)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, inbound)
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendString(b, "vless")
	b = protowire.AppendTag(b, 6, protowire.BytesType)
	b = protowire.AppendString(b, "203.0.113.7:40000")
	b = protowire.AppendTag(b, 10, protowire.BytesType)
	b = protowire.AppendString(b, user)
	b = protowire.AppendTag(b, 12, protowire.VarintType)
	b = protowire.AppendVarint(b, 1767225600000)
	if closedAt != 0 {
		b = protowire.AppendTag(b, 13, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(closedAt))
	}
	b = protowire.AppendTag(b, 16, protowire.VarintType)
	b = protowire.AppendVarint(b, up)
	b = protowire.AppendTag(b, 17, protowire.VarintType)
	b = protowire.AppendVarint(b, down)
	b = protowire.AppendTag(b, 21, protowire.BytesType) // chainList: skipped
	b = protowire.AppendString(b, "direct")
	return b
}

func event(kind Kind, id string, conn []byte, dUp, dDown uint64) []byte {
	var b []byte
	if kind != New { // proto3 leaves the zero value out
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(kind))
	}
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, id)
	if conn != nil {
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendBytes(b, conn)
	}
	if dUp != 0 {
		b = protowire.AppendTag(b, 4, protowire.VarintType)
		b = protowire.AppendVarint(b, dUp)
	}
	if dDown != 0 {
		b = protowire.AppendTag(b, 5, protowire.VarintType)
		b = protowire.AppendVarint(b, dDown)
	}
	return b
}

func batch(reset bool, events ...[]byte) []byte {
	var b []byte
	for _, e := range events {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, e)
	}
	if reset {
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	return b
}

func TestDecodeBatch(t *testing.T) {
	msg := batch(true,
		event(New, "a", connection("a", "vless-in", "ana", 10, 20, 0), 0, 0),
		event(Update, "a", nil, 5, 1<<40),
		event(Closed, "b", connection("b", "ss-in", "алиса\n", 7, 8, 1767225601000), 0, 0),
	)
	got, err := DecodeBatch(msg)
	if err != nil {
		t.Fatal(err)
	}
	want := Batch{Reset: true, Events: []Event{
		{Kind: New, ID: "a", User: "ana", Inbound: "vless-in", Source: "203.0.113.7:40000", HasTotals: true, Up: 10, Down: 20},
		{Kind: Update, ID: "a", DeltaUp: 5, DeltaDown: 1 << 40},
		{Kind: Closed, ID: "b", User: "алиса\n", Inbound: "ss-in", Source: "203.0.113.7:40000", HasTotals: true, Up: 7, Down: 8, ClosedAt: 1767225601000},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("DecodeBatch =\n %+v\nwant\n %+v", got, want)
	}
	if _, err := DecodeBatch(msg[:len(msg)-3]); err == nil {
		t.Error("a truncated message decoded without error")
	}
}

func owner(u, in string) attribution.Owner { return attribution.Owner{User: u, Inbound: in} }

// A ledger's life: baseline, connections opening, moving and closing,
// a connection that opens and closes between two updates, one without a
// user, a duplicate close, an exporter restart from saved state, and a
// sing-box restart.
func TestLedger(t *testing.T) {
	l := NewLedger(nil)
	apply := func(b Batch) map[attribution.Owner]attribution.Traffic {
		t.Helper()
		return l.Apply(b)
	}
	// Events before the first Reset are ignored: the baseline comes first.
	if got := apply(Batch{Events: []Event{{Kind: Update, ID: "x", DeltaUp: 99}}}); len(got) != 0 {
		t.Fatalf("before the baseline: %v", got)
	}
	// Baseline: what sing-box moved before is not counted, closed ones
	// are remembered so a later Reset does not count them.
	got := apply(Batch{Reset: true, Events: []Event{
		{Kind: New, ID: "old", User: "ana", Inbound: "in", HasTotals: true, Up: 100, Down: 1000},
		{Kind: New, ID: "gone", User: "bo", Inbound: "in", HasTotals: true, Up: 5, Down: 5, ClosedAt: 1},
	}})
	if len(got) != 0 {
		t.Fatalf("baseline credited %v", got)
	}
	got = apply(Batch{Events: []Event{
		{Kind: Update, ID: "old", DeltaUp: 1, DeltaDown: 10},
		{Kind: New, ID: "c1", User: "bo", Inbound: "in", HasTotals: true, Up: 3, Down: 0},
		{Kind: Update, ID: "c1", DeltaUp: 0, DeltaDown: 500},
		// Opened and closed between updates: only its close, with totals.
		{Kind: Closed, ID: "c2", User: "cy", Inbound: "ss", HasTotals: true, Up: 40, Down: 4000, ClosedAt: 2},
		{Kind: New, ID: "dns", User: "", Inbound: "", HasTotals: true, Up: 60, Down: 120},
	}})
	want := map[attribution.Owner]attribution.Traffic{
		owner("ana", "in"): {Up: 1, Down: 10},
		owner("bo", "in"):  {Up: 3, Down: 500},
		owner("cy", "ss"):  {Up: 40, Down: 4000},
		owner("", ""):      {Up: 60, Down: 120},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("first batch %v, want %v", got, want)
	}
	// Whose each open connection is: the users online come from this.
	for id, want := range map[string]attribution.Owner{"old": owner("ana", "in"), "c1": owner("bo", "in"), "dns": {}} {
		if o, ok := l.Owner(id); !ok || o != want {
			t.Errorf("Owner(%q) = %v %v, want %v", id, o, ok, want)
		}
	}
	for _, id := range []string{"c2", "gone", "stranger"} { // closed, closed before the baseline, never seen
		if o, ok := l.Owner(id); ok {
			t.Errorf("Owner(%q) = %v for a connection not open", id, o)
		}
	}
	// c1 closes with final totals beyond what updates said; c2's close
	// comes again (a Reset would list it): counted once.
	got = apply(Batch{Events: []Event{
		{Kind: Closed, ID: "c1", User: "bo", Inbound: "in", HasTotals: true, Up: 3, Down: 800, ClosedAt: 3},
		{Kind: Closed, ID: "c2", User: "cy", Inbound: "ss", HasTotals: true, Up: 40, Down: 4000, ClosedAt: 2},
	}})
	if want := map[attribution.Owner]attribution.Traffic{owner("bo", "in"): {Up: 0, Down: 300}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("closes %v, want %v", got, want)
	}

	// The exporter restarts from saved state; meanwhile "old" moved on,
	// and "c3" opened and closed. The Reset lists both, and c2 again.
	l = NewLedger(l.Export())
	got = apply(Batch{Reset: true, Events: []Event{
		{Kind: New, ID: "old", User: "ana", Inbound: "in", HasTotals: true, Up: 150, Down: 1100},
		{Kind: New, ID: "c2", User: "cy", Inbound: "ss", HasTotals: true, Up: 40, Down: 4000, ClosedAt: 2},
		{Kind: New, ID: "c3", User: "cy", Inbound: "ss", HasTotals: true, Up: 1, Down: 2, ClosedAt: 4},
	}})
	want = map[attribution.Owner]attribution.Traffic{
		owner("ana", "in"): {Up: 49, Down: 90},
		owner("cy", "ss"):  {Up: 1, Down: 2},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after an exporter restart %v, want %v", got, want)
	}
	if l.Open() != 1 { // old; dns was not listed, so it closed and was forgotten
		t.Fatalf("%d open, want 1", l.Open())
	}

	// A flush reads "old" from /connections before sing-box stops.
	o, d, ok := l.Observe("old", 150, 1500)
	if !ok || o != owner("ana", "in") || d != (attribution.Traffic{Up: 0, Down: 400}) {
		t.Fatalf("Observe = %v %v %v", o, d, ok)
	}
	// sing-box restarts: a Reset that lists only its new connections.
	got = apply(Batch{Reset: true, Events: []Event{
		{Kind: New, ID: "n1", User: "ana", Inbound: "in", HasTotals: true, Up: 7, Down: 70},
	}})
	if want := map[attribution.Owner]attribution.Traffic{owner("ana", "in"): {Up: 7, Down: 70}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after a sing-box restart %v, want %v", got, want)
	}
	if l.Open() != 1 {
		t.Fatalf("connections of the old instance kept: %d open, want 1", l.Open())
	}
	// An update of a connection never seen new is ignored rather than
	// guessed at.
	if got := apply(Batch{Events: []Event{{Kind: Update, ID: "stranger", DeltaUp: 5}}}); len(got) != 0 {
		t.Fatalf("update of an unknown connection credited %v", got)
	}
}

func TestLedgerInFlight(t *testing.T) {
	l := NewLedger(&State{Conns: map[string]Conn{"a": {User: "ana", Up: 10, Down: 100}}})
	got := l.InFlight(func(yield func(string, attribution.Traffic) bool) {
		_ = yield("a", attribution.Traffic{Up: 15, Down: 90}) && // behind: never negative
			yield("new", attribution.Traffic{Up: 1, Down: 2})
	})
	if want := (attribution.Traffic{Up: 6, Down: 2}); got != want {
		t.Fatalf("InFlight = %v, want %v", got, want)
	}
}

func TestClosedMemoryIsBounded(t *testing.T) {
	l := NewLedger(&State{})
	for i := range closedMemory + 10 {
		l.Apply(Batch{Events: []Event{{Kind: Closed, ID: string(rune(i + 1)), User: "u", HasTotals: true, Up: 1, ClosedAt: 1}}})
	}
	if len(l.closed) != closedMemory || len(l.order) != closedMemory {
		t.Fatalf("remembers %d (%d in order), want %d", len(l.closed), len(l.order), closedMemory)
	}
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add(batch(true, event(New, "a", connection("a", "in", "u", 1, 2, 0), 0, 0)))
	f.Add(batch(false, event(Update, "a", nil, 3, 4), event(Closed, "a", connection("a", "in", "u", 4, 6, 9), 0, 0)))
	f.Add([]byte{0x0a, 0xff})
	f.Fuzz(func(t *testing.T, msg []byte) {
		b, err := DecodeBatch(msg)
		if err != nil {
			return
		}
		// Whatever decodes must fold into a ledger without panicking.
		l := NewLedger(&State{})
		l.Apply(b)
		b.Reset = true
		l.Apply(b)
	})
}
