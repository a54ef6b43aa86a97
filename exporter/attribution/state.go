package attribution

import "time"

// ConnState is what is kept of one open connection.
type ConnState struct {
	User     string  `json:"user,omitempty"`
	Inbound  string  `json:"inbound"`
	Source   string  `json:"source"`
	SourceIP string  `json:"source_ip"`
	Up       uint64  `json:"up"`
	Down     uint64  `json:"down"`
	Pending  Traffic `json:"pending"` // metered bytes waiting for their user
	// Last is what moved in the latest interval: the weight of the
	// connection's unseen tail when it closes, after a restart too.
	Last [2]uint64 `json:"last"`
	// Seen is when the connection was last in a snapshot and Interval how
	// long before that it had been seen: together they give its rate.
	Seen     time.Time     `json:"seen"`
	Interval time.Duration `json:"interval"`
	// Born is when sing-box began tracking the connection: with the bytes
	// of its first snapshot it gives the rate of a connection seen only
	// once.
	Born time.Time `json:"born,omitzero"`
}

// State is the part of the engine that must survive an exporter restart so
// that bytes already counted are not counted again.
type State struct {
	Total   Traffic               `json:"total"`
	Conns   map[string]ConnState  `json:"conns"`
	Pool    [2]int64              `json:"pool"`
	Average map[string][2]float64 `json:"average,omitempty"`
}

// Export returns a copy of the durable state.
func (e *Engine) Export() *State {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.started {
		return nil
	}
	s := &State{Total: e.total, Pool: e.pool, Conns: make(map[string]ConnState, len(e.conns)), Average: map[string][2]float64{}}
	for id, t := range e.conns {
		s.Conns[id] = t.ConnState
	}
	for u, a := range e.avg {
		s.Average[u] = *a
	}
	return s
}

// Import restores state saved by Export; the next snapshot then counts only
// what moved since it was saved.
func (e *Engine) Import(s *State) {
	if s == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.started = true
	// What moved while no exporter ran cannot be told apart by user.
	e.lost = true
	e.total = s.Total
	e.pool = s.Pool
	e.conns = make(map[string]*tracked, len(s.Conns))
	for id, c := range s.Conns {
		e.conns[id] = &tracked{ConnState: c}
	}
	for u, a := range s.Average {
		e.avg[u] = &a
	}
}
