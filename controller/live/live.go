// Package live answers the admin UI's live numbers from Prometheus: fixed
// queries written here, never PromQL from a request, each answer kept for
// the UI's refresh interval so that any number of open tabs costs
// Prometheus one query per view and interval.
package live

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// ErrNoPrometheus is the answer when no Prometheus is configured.
var ErrNoPrometheus = errors.New("no Prometheus configured")

// Cache runs queries against Prometheus and keeps each answer for TTL,
// keyed by the query text (and range). Requests that miss together wait
// for one query. A failed query is remembered for TTL too: a Prometheus
// that is down is not asked again by every tab at once.
type Cache struct {
	Prom promv1.API
	TTL  time.Duration
	// Timeout bounds one query; the page answers without live numbers
	// rather than hang on a slow Prometheus.
	Timeout time.Duration

	mu      sync.Mutex
	entries map[string]*entry
	now     func() time.Time
}

type entry struct {
	ready chan struct{}
	at    time.Time
	val   any
	err   error
}

// New returns a cache over prom (nil: every query fails with
// ErrNoPrometheus).
func New(prom promv1.API, ttl time.Duration) *Cache {
	if ttl <= 0 {
		ttl = 10 * time.Second
	}
	return &Cache{Prom: prom, TTL: ttl, Timeout: 5 * time.Second, entries: map[string]*entry{}, now: time.Now}
}

// maxEntries bounds memory: per-user queries are keyed by user, and a
// scripted walk over every user must not grow the map without end.
const maxEntries = 4096

// Memo returns fn's answer for key, computed at most once per TTL.
func (c *Cache) Memo(ctx context.Context, key string, fn func(ctx context.Context) (any, error)) (any, error) {
	c.mu.Lock()
	e, ok := c.entries[key]
	if ok {
		select {
		case <-e.ready:
			if c.now().Sub(e.at) >= c.TTL {
				ok = false
			}
		default: // being computed: wait for it
		}
	}
	if !ok {
		if len(c.entries) >= maxEntries {
			for k, old := range c.entries {
				select {
				case <-old.ready:
					delete(c.entries, k)
				default:
				}
			}
		}
		e = &entry{ready: make(chan struct{})}
		c.entries[key] = e
		c.mu.Unlock()
		// Not the request's context: others wait for this answer, and one
		// client leaving must not fail theirs.
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.Timeout)
		e.val, e.err = fn(qctx)
		cancel()
		e.at = c.now()
		close(e.ready)
	} else {
		c.mu.Unlock()
	}
	select {
	case <-e.ready:
		return e.val, e.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Vector runs an instant query.
func (c *Cache) Vector(ctx context.Context, q string) (model.Vector, error) {
	v, err := c.Memo(ctx, "instant\x00"+q, func(ctx context.Context) (any, error) {
		if c.Prom == nil {
			return nil, ErrNoPrometheus
		}
		res, _, _, err := c.Prom.Query(ctx, q, c.now())
		if err != nil {
			return nil, err
		}
		vec, ok := res.(model.Vector)
		if !ok {
			return nil, fmt.Errorf("query answered a %s, not a vector", res.Type())
		}
		return vec, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(model.Vector), nil
}

// Matrix runs a range query over the last span at step, ending now;
// every tab asking within one TTL gets the same answer.
func (c *Cache) Matrix(ctx context.Context, q string, span, step time.Duration) (model.Matrix, error) {
	key := fmt.Sprintf("range\x00%s\x00%d\x00%d", q, span, step)
	v, err := c.Memo(ctx, key, func(ctx context.Context) (any, error) {
		if c.Prom == nil {
			return nil, ErrNoPrometheus
		}
		end := c.now()
		res, _, _, err := c.Prom.QueryRange(ctx, q, promv1.Range{Start: end.Add(-span), End: end, Step: step})
		if err != nil {
			return nil, err
		}
		m, ok := res.(model.Matrix)
		if !ok {
			return nil, fmt.Errorf("query answered a %s, not a matrix", res.Type())
		}
		return m, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(model.Matrix), nil
}

// Alerts returns Prometheus's active alerts.
func (c *Cache) Alerts(ctx context.Context) ([]promv1.Alert, error) {
	v, err := c.Memo(ctx, "alerts", func(ctx context.Context) (any, error) {
		if c.Prom == nil {
			return nil, ErrNoPrometheus
		}
		res, err := c.Prom.Alerts(ctx)
		if err != nil {
			return nil, err
		}
		return res.Alerts, nil
	})
	if err != nil {
		return nil, err
	}
	return v.([]promv1.Alert), nil
}

// Rules returns the alerting rules Prometheus has loaded, by alert name:
// the rule that acted, as deployed, not as shipped.
func (c *Cache) Rules(ctx context.Context) (map[string]promv1.AlertingRule, error) {
	v, err := c.Memo(ctx, "rules", func(ctx context.Context) (any, error) {
		if c.Prom == nil {
			return nil, ErrNoPrometheus
		}
		res, err := c.Prom.Rules(ctx, nil)
		if err != nil {
			return nil, err
		}
		out := map[string]promv1.AlertingRule{}
		for _, g := range res.Groups {
			for _, r := range g.Rules {
				if ar, ok := r.(promv1.AlertingRule); ok {
					if _, dup := out[ar.Name]; !dup {
						out[ar.Name] = ar
					}
				}
			}
		}
		return out, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(map[string]promv1.AlertingRule), nil
}
