package store

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"testing"
)

func TestCheckpointsRoundTrip(t *testing.T) {
	for _, m := range []map[string]counter{
		{},
		{"": {user: "", up: 3, down: -1}, "a": {user: "a", up: -1, down: 0}},
		{"user00001": {user: "user00001", up: 1 << 62, down: 7}, "user00002": {user: "user00002", up: 0, down: -1},
			"user1": {user: "user1", up: -5, down: 9}, "пользователь": {user: "пользователь", up: 1, down: 2}},
	} {
		b := encodeCheckpoints(m)
		got, err := decodeCheckpoints(b)
		if err != nil {
			t.Fatalf("%v: %v", m, err)
		}
		if !maps.Equal(got, m) {
			t.Errorf("round trip:\n got %v\nwant %v", got, m)
		}
	}
	// Names share their prefixes: 2,500 users of one node take a few
	// bytes each, not a row each.
	m := map[string]counter{}
	for i := range 2500 {
		u := fmt.Sprintf("user%05d", i)
		m[u] = counter{user: u, up: int64(i) * 1e9, down: int64(i) * 3e9}
	}
	if n := len(encodeCheckpoints(m)); n > 2500*20 {
		t.Errorf("2,500 users' checkpoints take %d bytes", n)
	}
}

// A blob that is not exactly what encodeCheckpoints writes is refused:
// billing from a misread checkpoint would be wrong by its error.
func TestCheckpointsRefuseDamage(t *testing.T) {
	good := encodeCheckpoints(map[string]counter{"alice": {user: "alice", up: 10, down: 20}, "bob": {user: "bob", up: 1, down: -1}})
	cases := map[string][]byte{
		"empty":          {},
		"newer format":   append([]byte{2}, good[1:]...),
		"truncated":      good[:len(good)-1],
		"trailing bytes": append(bytes.Clone(good), 0),
		"count too high": append([]byte{1, 3}, good[2:]...),
		"out of order":   encodeUnordered(),
	}
	for name, b := range cases {
		if _, err := decodeCheckpoints(b); !errors.Is(err, errCheckpoints) {
			t.Errorf("%s: err %v, want errCheckpoints", name, err)
		}
	}
}

// encodeUnordered writes "bob" before "alice", as only a hand-made blob
// would.
func encodeUnordered() []byte {
	return []byte{1, 2, 0, 3, 'b', 'o', 'b', 2, 2, 0, 5, 'a', 'l', 'i', 'c', 'e', 2, 2}
}

func FuzzCheckpoints(f *testing.F) {
	f.Add(encodeCheckpoints(map[string]counter{"alice": {user: "alice", up: 10, down: -1}, "alina": {user: "alina", up: 0, down: 5}}))
	f.Add([]byte{1, 0})
	f.Add(encodeUnordered())
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeCheckpoints(b)
		if err != nil {
			return
		}
		// What decodes, written again, reads back the same.
		again, err := decodeCheckpoints(encodeCheckpoints(m))
		if err != nil || !maps.Equal(again, m) {
			t.Errorf("%x decoded to %v, which reads back as %v (%v)", b, m, again, err)
		}
	})
}
