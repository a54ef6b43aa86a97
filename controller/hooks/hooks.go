// Package hooks delivers audit-log events to the HTTP hooks operators
// register (boxfleet hook put): a user suspended, a node drained or
// restored, anything the audit log records.
//
// The store queues a delivery in the same transaction as the event, so a
// hook hears of every change that was made and of none that was rolled
// back. The lease holder sends them: one POST per event, at least once,
// oldest first per hook, retried with exponential backoff (10 s doubling
// up to 1 h, plus up to 20% jitter) until the receiver answers 2xx, for at
// most 10 attempts (about 85 minutes); then the delivery is marked failed.
// Redirects are not followed; each attempt has 10 s.
//
// The body is the event as GET /api/v1/events shows it. Headers:
//
//	Content-Type: application/json
//	User-Agent: boxfleet
//	X-Boxfleet-Event: user.suspend
//	X-Boxfleet-Delivery: 42            (the same on every retry: deduplicate on it)
//	X-Boxfleet-Timestamp: 1767225600   (Unix seconds of this attempt)
//	X-Boxfleet-Signature: sha256=<hex>
//
// The signature is HMAC-SHA256, keyed with the hook's secret, of the
// timestamp, a dot and the raw body: hex(HMAC(secret, "1767225600." +
// body)). A receiver recomputes it over the bytes it read, compares in
// constant time, and refuses timestamps more than about 5 minutes from
// its own clock, so that a captured request cannot be replayed later.
package hooks

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/controller/store"
)

// Defaults of a Deliverer.
const (
	DefaultInterval    = 2 * time.Second
	DefaultMaxAttempts = 10
	DefaultTimeout     = 10 * time.Second
	FirstBackoff       = 10 * time.Second
	MaxBackoff         = time.Hour
	// claimHold outlasts a cycle's sending time (cycleBudget plus one
	// request), so that a claim lapses only when its controller is gone.
	claimHold   = 2 * time.Minute
	cycleBudget = time.Minute
	batch       = 50
	keep        = 7 * 24 * time.Hour // finished deliveries stay this long
)

// Deliverer sends due deliveries while this controller holds the lease.
type Deliverer struct {
	Store       *store.Store
	Leader      func() bool
	Log         logrus.FieldLogger
	Client      *http.Client
	Interval    time.Duration
	MaxAttempts int
	// Jitter returns how much to add to a backoff; tests make it zero.
	Jitter func(time.Duration) time.Duration

	results   *prometheus.CounterVec
	lastPrune time.Time
}

// New returns a Deliverer with the defaults and registers its metric.
func New(st *store.Store, leader func() bool, log logrus.FieldLogger, reg prometheus.Registerer) *Deliverer {
	f := promauto.With(reg)
	d := &Deliverer{
		Store: st, Leader: leader, Log: log,
		Client: &http.Client{
			Timeout: DefaultTimeout,
			// A redirect would send the signed body somewhere the
			// operator did not name; it counts as a failed attempt.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		Interval:    DefaultInterval,
		MaxAttempts: DefaultMaxAttempts,
		Jitter:      func(d time.Duration) time.Duration { return time.Duration(rand.Int64N(int64(d)/5 + 1)) },
		results: f.NewCounterVec(prometheus.CounterOpts{
			Name: "boxfleet_hook_deliveries_total",
			Help: "Attempts to deliver events to outgoing hooks, by result (delivered, retry, failed: given up).",
		}, []string{"result"}),
	}
	for _, r := range []string{"delivered", "retry", "failed"} {
		d.results.WithLabelValues(r)
	}
	return d
}

// Sign returns the X-Boxfleet-Signature value for body sent at ts.
func Sign(secret string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte("."))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Backoff is the wait after the given number of failed attempts, before
// jitter.
func Backoff(attempts int) time.Duration {
	if attempts < 1 {
		return FirstBackoff
	}
	if attempts > 20 {
		return MaxBackoff
	}
	return min(FirstBackoff<<(attempts-1), MaxBackoff)
}

// Run delivers until ctx ends.
func (d *Deliverer) Run(ctx context.Context) {
	t := time.NewTicker(d.Interval)
	defer t.Stop()
	for {
		if err := d.Cycle(ctx); err != nil && ctx.Err() == nil {
			d.Log.WithError(err).Warn("hook deliveries: database unreachable; retrying")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Cycle sends what is due now, one goroutine per hook so that a slow
// receiver holds up only its own deliveries.
func (d *Deliverer) Cycle(ctx context.Context) error {
	if !d.Leader() {
		return nil
	}
	d.prune(ctx)
	due, err := d.Store.ClaimDeliveries(ctx, batch, claimHold)
	if err != nil || len(due) == 0 {
		return err
	}
	byHook := map[string][]*store.Outgoing{}
	for _, o := range due {
		byHook[o.Hook] = append(byHook[o.Hook], o)
	}
	deadline := time.Now().Add(cycleBudget)
	var wg sync.WaitGroup
	for _, list := range byHook {
		wg.Go(func() { d.sendAll(ctx, list, deadline) })
	}
	wg.Wait()
	return nil
}

// sendAll sends one hook's deliveries in order and stops at the first
// failure: the receiver is likely down, and the rest are released for the
// next cycle instead of each waiting out a timeout now.
func (d *Deliverer) sendAll(ctx context.Context, list []*store.Outgoing, deadline time.Time) {
	for i, o := range list {
		if ctx.Err() != nil {
			return // the claims lapse; the next leader sends them
		}
		if !d.Leader() || time.Now().After(deadline) {
			d.release(ctx, list[i:])
			return
		}
		if !d.send(ctx, o) {
			d.release(ctx, list[i+1:])
			return
		}
	}
}

func (d *Deliverer) release(ctx context.Context, list []*store.Outgoing) {
	if len(list) == 0 || ctx.Err() != nil {
		return
	}
	ids := make([]int64, len(list))
	for i, o := range list {
		ids[i] = o.ID
	}
	if err := d.Store.ReleaseDeliveries(ctx, ids); err != nil {
		d.Log.WithError(err).Warn("hook deliveries: releasing claims; they are retried in a few minutes")
	}
}

// send makes one attempt and records it; it reports whether the receiver
// accepted the delivery.
func (d *Deliverer) send(ctx context.Context, o *store.Outgoing) bool {
	code, reason := d.post(ctx, o)
	if ctx.Err() != nil {
		return false // shutting down: not the receiver's fault; the claim lapses
	}
	attempts := o.Attempts + 1
	log := d.Log.WithFields(logrus.Fields{"hook": o.Hook, "delivery": o.ID, "event": o.Action, "attempt": attempts})
	if reason == "" {
		d.results.WithLabelValues("delivered").Inc()
		log.Debug("hook delivered")
		if err := d.Store.DeliverySucceeded(ctx, o.ID, attempts, code); err != nil {
			log.WithError(err).Warn("hook delivered but not recorded; it will be sent again")
		}
		return true
	}
	retry := time.Duration(-1)
	if attempts < d.MaxAttempts {
		retry = Backoff(attempts)
		retry += d.Jitter(retry)
		d.results.WithLabelValues("retry").Inc()
		log.WithField("retry_in", retry.Round(time.Second)).WithField("error", reason).Info("hook delivery failed; will retry")
	} else {
		d.results.WithLabelValues("failed").Inc()
		log.WithField("error", reason).Warn("hook delivery failed for the last time; giving up")
	}
	if err := d.Store.DeliveryFailed(ctx, o.ID, attempts, code, reason, retry); err != nil {
		log.WithError(err).Warn("recording a failed hook delivery")
	}
	return false
}

// post sends the delivery and returns the receiver's status code and, when
// it was not accepted, why.
func (d *Deliverer) post(ctx context.Context, o *store.Outgoing) (int, string) {
	body := []byte(o.Body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.URL, bytes.NewReader(body))
	if err != nil {
		return 0, "bad URL"
	}
	ts := d.Store.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "boxfleet")
	req.Header.Set("X-Boxfleet-Event", o.Action)
	req.Header.Set("X-Boxfleet-Delivery", strconv.FormatInt(o.ID, 10))
	req.Header.Set("X-Boxfleet-Timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("X-Boxfleet-Signature", Sign(o.Secret, ts, body))
	resp, err := d.Client.Do(req)
	if err != nil {
		return 0, transportError(err)
	}
	// Drained so the connection is reused; the content is not kept.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return resp.StatusCode, ""
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return resp.StatusCode, fmt.Sprintf("receiver answered %s; redirects are not followed", resp.Status)
	default:
		return resp.StatusCode, "receiver answered " + resp.Status
	}
}

// transportError drops the URL from a client error: receivers often take
// a token in the query string, and the reason is shown by the API.
func transportError(err error) string {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		if ue.Timeout() {
			return "timed out"
		}
		err = ue.Err
	}
	return err.Error()
}

func (d *Deliverer) prune(ctx context.Context) {
	if time.Since(d.lastPrune) < time.Hour {
		return
	}
	d.lastPrune = time.Now()
	if n, err := d.Store.PruneDeliveries(ctx, keep); err != nil {
		d.Log.WithError(err).Warn("pruning old hook deliveries")
	} else if n > 0 {
		d.Log.WithField("deleted", n).Debug("pruned old hook deliveries")
	}
}
