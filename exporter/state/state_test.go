package state

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/exporter/attribution"
	"github.com/boxfleet/boxfleet/exporter/sbapi"
)

var hostileUsers = []string{
	`"quoted"`,
	"new\nline",
	"tab\there",
	`back\slash`,
	"алиса",
	"😀 emoji",
	"user>>>with>>>v2ray>>>separators",
	"",
	"{}",
	"<script>",
}

func sampleFile() *File {
	f := New()
	f.SavedAt = time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
	f.Counters.Node = attribution.Traffic{Up: 1 << 40, Down: 1<<63 + 5}
	f.Counters.Unattributed = attribution.Traffic{Up: 3, Down: 4}
	f.Counters.Estimated = attribution.Traffic{Up: 5, Down: 6}
	for i, u := range hostileUsers {
		f.Counters.Users[u] = attribution.Traffic{Up: uint64(i) + 1, Down: uint64(i)*1000 + 7}
	}
	f.Counters.Inbounds["vless-in"] = attribution.Traffic{Up: 11, Down: 12}
	f.Counters.Inbounds["hy2 \"in\""] = attribution.Traffic{Up: 13, Down: 14}
	f.Engine = &attribution.State{
		Total: attribution.Traffic{Up: 100, Down: 200},
		Conns: map[string]attribution.ConnState{
			"8d0b4c64-3a5e-4f5c-9a57-7f4d3f3b2a10": {User: "new\nline", Inbound: "vless-in", Source: "[::1]:5678", SourceIP: "::1", Up: 9, Down: 10, Pending: attribution.Traffic{Up: 1}},
			"0f4e2b1a-9c8d-4e7f-8a6b-5c4d3e2f1a0b": {Inbound: "hy2 \"in\"", Source: "203.0.113.7:4444", SourceIP: "203.0.113.7", Last: [2]uint64{5, 6},
				Seen: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), Interval: time.Second, Born: time.Date(2026, 1, 2, 3, 4, 4, 0, time.UTC)},
			`id "with" quotes`: {User: "😀 emoji", Inbound: "ss-in", Source: "198.51.100.1:1"},
		},
		Pool:    [2]int64{-3, 4},
		Average: map[string][2]float64{`"quoted"`: {0.5, 1.25}},
	}
	f.Stats = map[string]attribution.Traffic{"алиса": {Up: 77, Down: 88}}
	f.Events = &sbapi.State{
		Conns: map[string]sbapi.Conn{
			"c1":            {User: `"quoted"`, Inbound: "vless-in", Up: 1, Down: 2},
			"c2 \"odd\" id": {User: "", Inbound: "", Up: 1 << 40, Down: 3},
		},
		Closed: []string{"a", "b\nc"},
	}
	return f
}

func TestSaveLoadRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	want := sampleFile()
	want.Version = 0 // Save must stamp the version itself
	if err := Save(path, want); err != nil {
		t.Fatal(err)
	}
	if want.Version != version {
		t.Errorf("Save left Version %d, want %d", want.Version, version)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !got.SavedAt.Equal(want.SavedAt) {
		t.Errorf("SavedAt = %v, want %v", got.SavedAt, want.SavedAt)
	}
	got.SavedAt, want.SavedAt = time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, want) {
		gb, _ := json.MarshalIndent(got, "", " ")
		wb, _ := json.MarshalIndent(want, "", " ")
		t.Errorf("round trip differs\n got %s\nwant %s", gb, wb)
	}
	for _, u := range hostileUsers {
		if _, ok := got.Counters.Users[u]; !ok {
			t.Errorf("user %q lost", u)
		}
	}
}

func TestStatsBaselineSurvivesRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name  string
		stats map[string]attribution.Traffic
	}{
		{"nil means no baseline", nil},
		{"empty is a baseline", map[string]attribution.Traffic{}},
		{"filled", map[string]attribution.Traffic{"a": {Up: 1, Down: 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "state.json")
			f := New()
			f.Stats = tc.stats
			if err := Save(path, f); err != nil {
				t.Fatal(err)
			}
			got, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if (got.Stats == nil) != (tc.stats == nil) {
				t.Fatalf("Stats nil = %v after round trip, want %v", got.Stats == nil, tc.stats == nil)
			}
			if tc.stats != nil && !reflect.DeepEqual(got.Stats, tc.stats) {
				t.Errorf("Stats = %v, want %v", got.Stats, tc.stats)
			}
		})
	}
}

func TestEngineOmittedWhenNil(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	if err := Save(path, New()); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Engine != nil {
		t.Errorf("Engine = %+v, want nil", got.Engine)
	}
}

// checkEmpty asserts f is a fresh, usable state.
func checkEmpty(t *testing.T, f *File) {
	t.Helper()
	if f == nil {
		t.Fatal("nil state")
	}
	if f.Version != version {
		t.Errorf("Version = %d, want %d", f.Version, version)
	}
	if f.Counters.Users == nil || f.Counters.Inbounds == nil {
		t.Fatalf("nil maps: users %v inbounds %v", f.Counters.Users == nil, f.Counters.Inbounds == nil)
	}
	if len(f.Counters.Users) != 0 || len(f.Counters.Inbounds) != 0 {
		t.Errorf("not empty: %+v", f.Counters)
	}
	var zero attribution.Traffic
	if f.Counters.Node != zero || f.Counters.Unattributed != zero || f.Counters.Estimated != zero {
		t.Errorf("non-zero totals: %+v", f.Counters)
	}
	if f.Engine != nil {
		t.Errorf("Engine = %+v, want nil", f.Engine)
	}
	if f.Stats != nil {
		t.Errorf("Stats = %v, want nil (no baseline)", f.Stats)
	}
	// Usable: writable maps.
	f.Counters.Users["x"] = attribution.Traffic{Up: 1}
	f.Counters.Inbounds["y"] = attribution.Traffic{Down: 1}
}

func TestLoadMissing(t *testing.T) {
	f, err := Load(filepath.Join(t.TempDir(), "nope", "state.json"))
	if !errors.Is(err, ErrNotExist) {
		t.Fatalf("err = %v, want ErrNotExist", err)
	}
	checkEmpty(t, f)
}

func TestLoadCorrupt(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	if err := Save(good, sampleFile()); err != nil {
		t.Fatal(err)
	}
	full, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string][]byte{
		"truncated half":   full[:len(full)/2],
		"truncated by one": full[:len(full)-1],
		"empty":            {},
		"garbage":          []byte("\x00\x01not json"),
		"trailing garbage": append(append([]byte{}, full...), "}"...),
		"json array":       []byte(`[1,2]`),
		"wrong type":       []byte(`{"version":1,"counters":{"users":{"a":{"up":"1"}}}}`),
		"negative counter": []byte(`{"version":1,"counters":{"users":{"a":{"up":-1}}}}`),
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, "state.json")
			if err := os.WriteFile(path, content, 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := Load(path)
			if err == nil {
				t.Fatalf("Load accepted %q", content)
			}
			if errors.Is(err, ErrNotExist) {
				t.Errorf("corrupt file reported as missing: %v", err)
			}
			checkEmpty(t, f)
		})
	}
}

func TestLoadWrongVersion(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, content string
	}{
		{name: "newer", content: `{"version":2,"counters":{"node":{"up":5,"down":6},"users":{"a":{"up":1,"down":2}},"inbounds":{}},"stats":{}}`},
		{name: "negative", content: `{"version":-1,"counters":{"users":{"a":{"up":1,"down":2}}}}`},
		{name: "zero", content: `{"version":0,"counters":{"users":{"a":{"up":1,"down":2}}}}`},
		{name: "missing", content: `{"counters":{"users":{"a":{"up":1,"down":2}}}}`},
		{name: "empty object", content: `{}`},
		{name: "null", content: `null`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "state.json")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := Load(path)
			if err == nil {
				t.Fatalf("Load accepted %s", tc.content)
			}
			if errors.Is(err, ErrNotExist) {
				t.Errorf("wrong version reported as missing: %v", err)
			}
			checkEmpty(t, f)
		})
	}
}

// A version-1 file written without maps still loads with writable maps.
func TestLoadNullMaps(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(path, []byte(`{"version":1,"counters":{"node":{"up":1,"down":2},"users":null}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if f.Counters.Node != (attribution.Traffic{Up: 1, Down: 2}) {
		t.Errorf("Node = %+v", f.Counters.Node)
	}
	if f.Counters.Users == nil || f.Counters.Inbounds == nil {
		t.Fatal("nil maps after Load")
	}
	if f.Stats != nil {
		t.Errorf("Stats = %v, want nil", f.Stats)
	}
}

func TestLoadDirectory(t *testing.T) {
	f, err := Load(t.TempDir())
	if err == nil {
		t.Fatal("Load of a directory succeeded")
	}
	if errors.Is(err, ErrNotExist) {
		t.Errorf("directory reported as missing file: %v", err)
	}
	checkEmpty(t, f)
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestSaveReplacesAndLeavesNoTemporaries(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	if err := os.WriteFile(path, []byte(`{"version":1,"counters":{"users":{"old":{"up":1,"down":1}}}}`+"\n"+`padding that is much longer than the new file will be ........................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................`), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		f := New()
		f.Counters.Users["new"] = attribution.Traffic{Up: uint64(i), Down: 2}
		if err := Save(path, f); err != nil {
			t.Fatal(err)
		}
		got, err := Load(path)
		if err != nil {
			t.Fatalf("save %d: %v", i, err)
		}
		if _, ok := got.Counters.Users["old"]; ok {
			t.Errorf("save %d: old content survived: %+v", i, got.Counters.Users)
		}
		if got.Counters.Users["new"] != (attribution.Traffic{Up: uint64(i), Down: 2}) {
			t.Errorf("save %d: users = %+v", i, got.Counters.Users)
		}
		if names := dirNames(t, dir); !reflect.DeepEqual(names, []string{"state.json"}) {
			t.Errorf("save %d: directory holds %q, want only state.json", i, names)
		}
	}
}

func TestSaveIntoMissingDirectory(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "missing", "state.json")
	if err := Save(path, New()); err == nil {
		t.Fatal("Save into a missing directory succeeded")
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Errorf("Save left %q behind", names)
	}
}

// A failed rename (the target is a non-empty directory) must not leave the
// temporary file behind.
func TestSaveFailedRenameCleansUp(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	if err := os.MkdirAll(filepath.Join(path, "inside"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := Save(path, New()); err == nil {
		t.Fatal("Save over a non-empty directory succeeded")
	}
	if names := dirNames(t, dir); !reflect.DeepEqual(names, []string{"state.json"}) {
		t.Errorf("directory holds %q after a failed Save", names)
	}
}
