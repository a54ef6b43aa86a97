package api

import "time"

// SetNodeDirTTL shortens how long the node directory is trusted, so that a
// test sees a node deleted elsewhere stop working without waiting 30 s.
func SetNodeDirTTL(a *API, d time.Duration) { a.nodes.ttl = d }
