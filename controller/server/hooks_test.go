package server

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/controller/actions"
	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
)

// The built controller delivers hooks only once its lease is held.
func TestHooksFollowTheLease(t *testing.T) {
	st := storetest.SQLite(t)
	ctx := context.Background()
	log := logrus.New()
	log.SetOutput(io.Discard)
	ctl, err := Build(st, Config{PrometheusURL: "http://127.0.0.1:1", ID: "t", AccountingInterval: time.Hour,
		LeaseTTL: 3 * time.Second, Actions: actions.Config{MaxDrainedRatio: 0.5}}, log)
	if err != nil {
		t.Fatal(err)
	}
	var got atomic.Int32
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got.Add(1) }))
	defer rcv.Close()
	if _, err := st.PutHook(ctx, "t", "h", store.HookSpec{URL: rcv.URL, Secret: "0123456789abcdef", Events: []string{"user.suspend"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateUser(ctx, "t", "alice", "", store.UserSpec{}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.SuspendUser(ctx, "t", "alice", ""); err != nil {
		t.Fatal(err)
	}
	if err := ctl.Hooks.Cycle(ctx); err != nil || got.Load() != 0 {
		t.Fatalf("delivered %d without the lease (%v)", got.Load(), err)
	}
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { ctl.Leader.Run(lctx); close(done) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(10 * time.Second); !ctl.Leader.IsLeader(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the lease was not taken")
		}
	}
	if err := ctl.Hooks.Cycle(ctx); err != nil || got.Load() != 1 {
		t.Fatalf("delivered %d with the lease (%v), want 1", got.Load(), err)
	}
}
