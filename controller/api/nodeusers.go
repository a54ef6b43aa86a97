package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/mux"
)

// This file serves a node its user set: rendered once per revision and node
// group, and long-polled by the node agents.

// Long-polls wait at most this long; nodes ask again at once.
const maxWait = 60 * time.Second

// nodeUsers answers the node's desired user set. With If-None-Match equal
// to the current ETag it answers 304, after waiting up to ?wait= seconds
// for a change. Changes made through this API are seen at once, those made
// by another controller on the same database within about a second: the
// revision watcher reads the revision once a second while any poll waits.
func (a *API) nodeUsers(w http.ResponseWriter, r *http.Request) {
	name := mux.Vars(r)["name"]
	wait, err := intParam(r, "wait", 0, int(maxWait/time.Second))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	deadline := time.Now().Add(time.Duration(wait) * time.Second)
	for {
		set, rev, err := a.userSet(r.Context(), name)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		w.Header().Set("ETag", set.etag)
		if r.Header.Get("If-None-Match") != set.etag {
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.Write(set.body)
			return
		}
		if !a.revs.wait(r.Context(), rev, deadline) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
}

// renderedSet is one node group's user set as the endpoint sends it.
type renderedSet struct {
	ready chan struct{} // closed once the fields below are set
	err   error
	rev   int64  // the revision in body, at least the one it is cached under
	body  []byte // sbconfig.NodeUsers as JSON
	etag  string // a hash of the users alone, so that it survives revisions that do not change them
}

type cachedSet struct {
	rev int64 // the revision read before rendering
	set *renderedSet
}

// setCache keeps each node group's rendered set for one revision.
// An entry answers only requests that read exactly its revision: every
// change of the user set bumps the revision in the same transaction, and
// store.GroupUsers reads the revision before the users, so an entry is
// never older than its revision. Requests that miss together wait for one
// rendering.
//
// Rendering a 5,000-user set costs tens of milliseconds, and a change wakes
// every long-polling node at once: so a set is rendered once per revision
// and group, and a request costs a few indexed reads.
// It is emptied when it holds more groups than any real fleet.
type setCache struct {
	sync.Mutex
	m map[string]cachedSet // by node group
}

const maxRenderedSets = 1024

// userSet returns the node's rendered set and the revision it was looked up
// under, which the long poll waits to move. The node's group comes from the
// node directory and the revision from the watcher: a set may be up to a
// second older than one read now, as a poll would have seen anyway.
func (a *API) userSet(ctx context.Context, node string) (*renderedSet, int64, error) {
	n, err := a.nodes.node(ctx, node)
	if err != nil {
		return nil, 0, err
	}
	rev, err := a.revs.current(ctx)
	if err != nil {
		return nil, 0, err
	}
	key, sets := n.Group(), &a.sets
	sets.Lock()
	c, ok := sets.m[key]
	if !ok || c.rev != rev {
		if len(sets.m) >= maxRenderedSets {
			clear(sets.m)
		}
		c = cachedSet{rev: rev, set: &renderedSet{ready: make(chan struct{})}}
		sets.m[key] = c
		sets.Unlock()
		// Not the request's context: the requests waiting for this
		// rendering must not fail because this one's client left.
		a.render(context.WithoutCancel(ctx), key, c.set)
		if c.set.err != nil {
			sets.Lock()
			if sets.m[key].set == c.set {
				delete(sets.m, key)
			}
			sets.Unlock()
		}
	} else {
		sets.Unlock()
	}
	select {
	case <-c.set.ready:
		return c.set, rev, c.set.err
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
}

// render fills rs and closes rs.ready. The body is compact JSON built
// around the users' encoding, which is also what the ETag hashes.
func (a *API) render(ctx context.Context, group string, rs *renderedSet) {
	defer close(rs.ready)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	set, err := a.store.GroupUsers(ctx, group)
	if err != nil {
		rs.err = err
		return
	}
	users, err := json.Marshal(set.Users)
	if err != nil {
		rs.err = err
		return
	}
	sum := sha256.Sum256(users)
	rs.rev, rs.etag = set.Revision, `"`+hex.EncodeToString(sum[:12])+`"`
	rs.body = fmt.Appendf(make([]byte, 0, len(users)+40), `{"revision":%d,"users":%s}`+"\n", set.Revision, users)
}
