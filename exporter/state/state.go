// Package state keeps the exporter's counters in a file so that they stay
// monotonic across restarts of the exporter: Prometheus sees a counter reset
// only when the file is lost.
package state

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"time"

	"github.com/boxfleet/boxfleet/exporter/attribution"
	"github.com/boxfleet/boxfleet/exporter/sbapi"
	"github.com/boxfleet/boxfleet/internal/atomicfile"
)

// version changes when the layout does in a way old files cannot be read as.
const version = 1

// Counters are the monotonic totals the exporter exposes.
type Counters struct {
	// Since is when these counters started from zero. It changes only when
	// the state is lost, so the controller can tell a reset from a series
	// that merely went missing for a while.
	Since        time.Time                      `json:"since"`
	Node         attribution.Traffic            `json:"node"`
	Users        map[string]attribution.Traffic `json:"users"`
	Inbounds     map[string]attribution.Traffic `json:"inbounds"`
	Unattributed attribution.Traffic            `json:"unattributed"`
	Estimated    attribution.Traffic            `json:"estimated"`
}

// Clone returns a deep copy, for readers that must not race the writer.
func (c Counters) Clone() Counters {
	out := c
	out.Users = cloneMap(c.Users)
	out.Inbounds = cloneMap(c.Inbounds)
	return out
}

func cloneMap(m map[string]attribution.Traffic) map[string]attribution.Traffic {
	out := make(map[string]attribution.Traffic, len(m))
	maps.Copy(out, m)
	return out
}

// File is everything the exporter persists.
type File struct {
	Version  int                            `json:"version"`
	SavedAt  time.Time                      `json:"saved_at"`
	Counters Counters                       `json:"counters"`
	Engine   *attribution.State             `json:"engine,omitempty"`
	Stats    map[string]attribution.Traffic `json:"stats"`            // last raw V2Ray API readings; nil until the first one
	Events   *sbapi.State                   `json:"events,omitempty"` // the API service's ledger
}

// New returns an empty state.
func New() *File {
	return &File{Version: version, Counters: Counters{Since: time.Now().UTC().Truncate(time.Second), Users: map[string]attribution.Traffic{}, Inbounds: map[string]attribution.Traffic{}}}
}

// ErrNotExist is returned by Load when there is no state file yet.
var ErrNotExist = errors.New("no state file")

// Load reads path. On any error it still returns a usable empty state, so a
// missing or corrupt file is reported by the caller and never fatal.
func Load(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return New(), ErrNotExist
	}
	if err != nil {
		return New(), fmt.Errorf("reading state: %w", err)
	}
	f := New()
	f.Version = 0 // a file without a version is not ours
	if err := json.Unmarshal(b, f); err != nil {
		return New(), fmt.Errorf("state file %s is corrupt: %w", path, err)
	}
	if f.Version != version {
		return New(), fmt.Errorf("state file %s has version %d, want %d", path, f.Version, version)
	}
	if f.Counters.Since.IsZero() { // written before the field existed: start the epoch now, once
		f.Counters.Since = time.Now().UTC().Truncate(time.Second)
	}
	if f.Counters.Users == nil {
		f.Counters.Users = map[string]attribution.Traffic{}
	}
	if f.Counters.Inbounds == nil {
		f.Counters.Inbounds = map[string]attribution.Traffic{}
	}
	return f, nil
}

// Save writes f to path atomically: a crash leaves either the old file or
// the new one, never a torn mix.
func Save(path string, f *File) error {
	f.Version = version
	return atomicfile.Write(path, 0o600, func(w *bufio.Writer) error { return encode(w, f) })
}

// encode writes f as json.Marshal would lay it out, except that the
// engine's connections are written one at a time: with 10,000 open
// connections the file is megabytes, and marshalling it whole kept two
// copies of it (and json's pooled buffer) alive, most of the exporter's
// memory. Load reads it with encoding/json like any other JSON.
func encode(w *bufio.Writer, f *File) error {
	head := *f
	head.Engine, head.Events = nil, nil // written below, a connection at a time
	b, err := json.Marshal(&head)
	if err != nil {
		return err
	}
	w.Write(b[:len(b)-1]) // without the closing brace
	enc := json.NewEncoder(w)
	if s := f.Engine; s != nil {
		w.WriteString(`,"engine":{"total":`)
		if err := enc.Encode(s.Total); err != nil {
			return err
		}
		w.WriteString(`,"pool":`)
		if err := enc.Encode(s.Pool); err != nil {
			return err
		}
		if len(s.Average) > 0 {
			w.WriteString(`,"average":`)
			if err := enc.Encode(s.Average); err != nil {
				return err
			}
		}
		w.WriteString(`,"conns":`)
		if err := encodeMap(w, enc, s.Conns); err != nil {
			return err
		}
		w.WriteByte('}')
	}
	if s := f.Events; s != nil {
		w.WriteString(`,"events":{"closed":`)
		if err := enc.Encode(s.Closed); err != nil {
			return err
		}
		w.WriteString(`,"conns":`)
		if err := encodeMap(w, enc, s.Conns); err != nil {
			return err
		}
		w.WriteByte('}')
	}
	w.WriteByte('}')
	return nil
}

// encodeMap writes a map as a JSON object an entry at a time.
func encodeMap[V any](w *bufio.Writer, enc *json.Encoder, m map[string]V) error {
	w.WriteByte('{')
	first := true
	for k, v := range m {
		if !first {
			w.WriteByte(',')
		}
		first = false
		if err := enc.Encode(k); err != nil {
			return err
		}
		w.WriteByte(':')
		if err := enc.Encode(v); err != nil {
			return err
		}
	}
	w.WriteByte('}')
	return nil
}
