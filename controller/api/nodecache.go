package api

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/internal/sbconfig"
)

// This file keeps what the node endpoints ask on every request in memory,
// so that a fleet of long-polling nodes costs the database a few reads a
// second, not several per request: the user set's revision (one watcher
// per API), the nodes and their tokens (one read of the nodes table every
// half minute) and the registration heartbeats (last_seen written in
// batches).

// revWatcher follows the users revision for the long polls: while any
// poll waits, one goroutine reads it once a second and wakes every
// waiter when it moves, instead of each waiter reading it.
type revWatcher struct {
	store    *store.Store
	log      logrus.FieldLogger
	onChange func() // called, under the watcher's lock, when the revision moves

	mu      sync.Mutex
	rev     int64
	readAt  time.Time     // when the read that gave rev began; zero: never read
	pokedAt time.Time     // when a local change last made rev suspect
	changed chan struct{} // closed when rev moves, then replaced
	waiters int
	running bool
	poke    chan struct{} // a read now, please
}

func newRevWatcher(s *store.Store, log logrus.FieldLogger, onChange func()) *revWatcher {
	return &revWatcher{store: s, log: log, onChange: onChange, changed: make(chan struct{}), poke: make(chan struct{}, 1)}
}

// watchFresh is how old the watcher's revision may be and still be
// answered without a read: the watcher reads once a second.
const watchFresh = 2 * time.Second

// current returns the users revision: the watcher's while it runs and has
// read since the last local change, else a read of the database.
func (w *revWatcher) current(ctx context.Context) (int64, error) {
	w.mu.Lock()
	if w.running && w.readAt.After(w.pokedAt) && time.Since(w.readAt) < watchFresh {
		rev := w.rev
		w.mu.Unlock()
		return rev, nil
	}
	w.mu.Unlock()
	return w.read(ctx)
}

func (w *revWatcher) read(ctx context.Context) (int64, error) {
	start := time.Now()
	v, err := w.store.UsersRevision(ctx)
	if err != nil {
		return 0, err
	}
	w.observe(v, start)
	return v, nil
}

// observe records a revision read that began at start; a read that began
// before the one recorded answered late and is ignored, so that the
// revision never steps back to an older value.
func (w *revWatcher) observe(v int64, start time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if start.Before(w.readAt) {
		return
	}
	w.readAt = start
	if v == w.rev {
		return
	}
	w.rev = v
	close(w.changed)
	w.changed = make(chan struct{})
	if w.onChange != nil {
		w.onChange()
	}
}

// Poke makes the watcher read at once, and current read the database
// until it has: a change made through this API reaches the waiting
// nodes without waiting for the next tick.
func (w *revWatcher) Poke() {
	w.mu.Lock()
	w.pokedAt = time.Now()
	w.mu.Unlock()
	select {
	case w.poke <- struct{}{}:
	default:
	}
}

// wait returns true when the revision differs from rev before the
// deadline, false when the deadline passes or ctx ends first.
func (w *revWatcher) wait(ctx context.Context, rev int64, deadline time.Time) bool {
	if !time.Now().Before(deadline) {
		return false // ?wait=0: no watcher for a request that does not wait
	}
	w.mu.Lock()
	w.waiters++
	if !w.running {
		w.running = true
		go w.run()
	}
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.waiters--
		w.mu.Unlock()
	}()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		w.mu.Lock()
		cur, known, ch := w.rev, !w.readAt.IsZero(), w.changed
		w.mu.Unlock()
		if known && cur != rev {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		case <-timer.C:
			return false
		}
	}
}

// run reads the revision once a second, or when poked, while anyone
// waits; it ends when the last waiter has gone.
func (w *revWatcher) run() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := w.read(ctx); err != nil {
			w.log.WithError(err).Debug("Reading the users revision failed")
		}
		cancel()
		select {
		case <-t.C:
		case <-w.poke:
		}
		w.mu.Lock()
		if w.waiters == 0 {
			w.running = false
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
	}
}

// nodeDir is the nodes as of one read of the nodes table, kept for
// dirTTL, and the node tokens seen lately, so that a node's request
// costs no read to find who sent it and which group it serves.
//
// A node token is looked up in the database once, then trusted for
// tokenTTL while its node is in the directory and is the node it was
// (same creation time). A node deleted through this controller, or whose
// group changes (which moves the users revision), is read anew at once;
// one deleted through another controller keeps its token working until
// the next read, at most dirTTL later.
type nodeDir struct {
	store *store.Store
	ttl   time.Duration // dirTTL; shorter in tests

	loadMu sync.Mutex // one read at a time

	mu     sync.Mutex
	nodes  map[string]*store.Node
	loaded time.Time // zero: read anew
	gen    int       // moves on every invalidation
	tokens map[string]tokenEntry
}

type tokenEntry struct {
	node    string
	created time.Time // the node's creation time when the token was read
	at      time.Time
}

const (
	dirTTL    = 30 * time.Second
	tokenTTL  = 10 * time.Minute
	maxTokens = 100_000 // past this the token cache is emptied: more than any fleet
)

func newNodeDir(s *store.Store) *nodeDir {
	return &nodeDir{store: s, ttl: dirTTL, tokens: map[string]tokenEntry{}}
}

// invalidate makes the next request read the nodes anew.
func (d *nodeDir) invalidate() {
	d.mu.Lock()
	d.gen++
	d.loaded = time.Time{}
	d.mu.Unlock()
}

func (d *nodeDir) fresh() bool { return !d.loaded.IsZero() && time.Since(d.loaded) < d.ttl }

// snapshot returns the nodes by name, read anew when older than dirTTL.
func (d *nodeDir) snapshot(ctx context.Context) (map[string]*store.Node, time.Time, error) {
	d.mu.Lock()
	if d.fresh() {
		m, at := d.nodes, d.loaded
		d.mu.Unlock()
		return m, at, nil
	}
	d.mu.Unlock()
	d.loadMu.Lock()
	defer d.loadMu.Unlock()
	d.mu.Lock()
	if d.fresh() { // read by another request meanwhile
		m, at := d.nodes, d.loaded
		d.mu.Unlock()
		return m, at, nil
	}
	gen := d.gen
	d.mu.Unlock()
	start := time.Now()
	ns, err := d.store.ListNodes(ctx)
	if err != nil {
		return nil, time.Time{}, err
	}
	m := make(map[string]*store.Node, len(ns))
	for _, n := range ns {
		m[n.Name] = n
	}
	d.mu.Lock()
	if d.gen == gen { // an invalidation during the read leaves it for the next request
		d.nodes, d.loaded = m, start
	}
	d.mu.Unlock()
	return m, start, nil
}

// put replaces a node in the directory with what was just written of it.
// The map is copied: requests may hold the old one.
func (d *nodeDir) put(n *store.Node) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.nodes == nil {
		return
	}
	m := maps.Clone(d.nodes)
	m[n.Name] = n
	d.nodes = m
}

// node returns a node as of the directory. A node missing from a
// directory older than a second is read anew once (it may be new); a
// node still missing is the store's to report.
func (d *nodeDir) node(ctx context.Context, name string) (*store.Node, error) {
	m, at, err := d.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	if n, ok := m[name]; ok {
		return n, nil
	}
	if time.Since(at) > time.Second {
		d.invalidate()
		if m, _, err = d.snapshot(ctx); err != nil {
			return nil, err
		}
		if n, ok := m[name]; ok {
			return n, nil
		}
	}
	return d.store.GetNode(ctx, name)
}

// tokenNode returns the node of a node token seen lately, or "".
func (d *nodeDir) tokenNode(ctx context.Context, tok string) string {
	h := store.HashToken(tok)
	d.mu.Lock()
	e, ok := d.tokens[h]
	d.mu.Unlock()
	if !ok || time.Since(e.at) > tokenTTL {
		return ""
	}
	m, _, err := d.snapshot(ctx)
	if err != nil {
		return ""
	}
	if n, ok := m[e.node]; !ok || !n.CreatedAt.Equal(e.created) {
		d.mu.Lock()
		delete(d.tokens, h)
		d.mu.Unlock()
		return ""
	}
	return e.node
}

// rememberToken records that tok is node's token, just read from the
// database.
func (d *nodeDir) rememberToken(ctx context.Context, tok, node string) {
	m, _, err := d.snapshot(ctx)
	if err != nil {
		return
	}
	n, ok := m[node]
	if !ok {
		return
	}
	d.mu.Lock()
	if len(d.tokens) >= maxTokens {
		clear(d.tokens)
	}
	d.tokens[store.HashToken(tok)] = tokenEntry{node: node, created: n.CreatedAt, at: time.Now()}
	d.mu.Unlock()
}

// beats keeps the nodes' registration heartbeats. A heartbeat that reports
// what the node directory holds changes nothing but last_seen: it is not
// written at once; its time is kept here and written with the others every
// beatFlush in one statement (store.TouchNodes). last_seen in the database
// is so at most beatFlush behind; this controller's node views show the
// newer time at once.
type beats struct {
	log logrus.FieldLogger

	mu       sync.Mutex
	m        map[string]*beat
	flushing bool
}

type beat struct {
	seen    time.Time // the latest heartbeat
	written time.Time // the latest heartbeat written to the database
}

const beatFlush = 30 * time.Second

// record keeps a heartbeat to be written to s by the next flush.
func (b *beats) record(s *store.Store, name string, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.m[name]
	if !ok {
		e = &beat{}
		b.m[name] = e
	}
	e.seen = now
	if !b.flushing {
		b.flushing = true
		time.AfterFunc(beatFlush, func() { b.flush(s) })
	}
}

// forget drops a deleted node's heartbeats.
func (b *beats) forget(name string) {
	b.mu.Lock()
	delete(b.m, name)
	b.mu.Unlock()
}

// wrote records a registration written in full at at.
func (b *beats) wrote(name string, at time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e, ok := b.m[name]; ok && e.seen.After(at) {
		e.written = at
		return
	}
	b.m[name] = &beat{seen: at, written: at}
}

// flush writes the heartbeats kept since the last flush to s, and tries
// again a beatFlush later when that fails.
func (b *beats) flush(s *store.Store) {
	b.mu.Lock()
	b.flushing = false
	due := map[string]time.Time{}
	for name, e := range b.m {
		if e.seen.After(e.written) {
			due[name] = e.seen
		}
	}
	b.mu.Unlock()
	if len(due) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := s.TouchNodes(ctx, due)
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		b.log.WithError(err).Warn("Writing the nodes' last heartbeats failed; retrying")
		if !b.flushing {
			b.flushing = true
			time.AfterFunc(beatFlush, func() { b.flush(s) })
		}
		return
	}
	for name, at := range due {
		if e, ok := b.m[name]; ok && at.After(e.written) {
			e.written = at
		}
	}
}

// overlay shows the heartbeats not yet written in the nodes' last_seen.
func (b *beats) overlay(ns ...*store.Node) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, n := range ns {
		if e, ok := b.m[n.Name]; ok && (n.LastSeen == nil || e.seen.After(*n.LastSeen)) {
			t := e.seen.Truncate(time.Second)
			n.LastSeen = &t
		}
	}
}

// heartbeat answers a registration that repeats what the node directory
// holds without writing it, or returns false.
func (a *API) heartbeat(ctx context.Context, name string, reg sbconfig.Registration) (*store.Node, bool) {
	n, err := a.nodes.node(ctx, name)
	if err != nil || !sameRegistration(n, reg) {
		return nil, false
	}
	a.beats.record(a.store, name, time.Now())
	c := *n
	a.beats.overlay(&c)
	return &c, true
}

// sameRegistration reports whether storing reg would change nothing of n
// but last_seen, as store.RegisterNode decides it.
func sameRegistration(n *store.Node, reg sbconfig.Registration) bool {
	if n.Address != reg.Address || n.Exporter != reg.Exporter || n.Version != reg.Version {
		return false
	}
	labels := maps.Clone(n.Labels)
	maps.Copy(labels, reg.Labels)
	if !maps.Equal(labels, n.Labels) {
		return false
	}
	if reg.Inbounds == nil {
		reg.Inbounds = []sbconfig.Inbound{}
	}
	have, err1 := json.Marshal(n.Inbounds)
	want, err2 := json.Marshal(reg.Inbounds)
	return err1 == nil && err2 == nil && bytes.Equal(have, want)
}
