package live

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Ten tabs asking at once cost one query; the answer, and a failure too,
// is kept for the TTL and then asked for again.
func TestMemoOneQueryPerInterval(t *testing.T) {
	c := New(nil, time.Minute)
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }
	var calls atomic.Int32
	fail := errors.New("down")
	fn := func(ctx context.Context) (any, error) {
		n := calls.Add(1)
		time.Sleep(50 * time.Millisecond)
		if n == 2 {
			return nil, fail
		}
		return int(n), nil
	}
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if v, err := c.Memo(context.Background(), "q", fn); err != nil || v.(int) != 1 {
				t.Errorf("got %v %v", v, err)
			}
		})
	}
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Fatalf("10 concurrent requests made %d queries", n)
	}
	now = now.Add(time.Minute)
	if _, err := c.Memo(context.Background(), "q", fn); !errors.Is(err, fail) {
		t.Fatalf("after the TTL: %v, want the new (failed) answer", err)
	}
	if _, err := c.Memo(context.Background(), "q", fn); !errors.Is(err, fail) || calls.Load() != 2 {
		t.Fatalf("a failure is not kept: %v, %d calls", err, calls.Load())
	}
	if v, _ := c.Memo(context.Background(), "other", fn); v.(int) != 3 {
		t.Fatalf("another key shares an answer: %v", v)
	}
	// A caller that leaves does not fail the others waiting.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	now = now.Add(time.Minute)
	if _, err := c.Memo(ctx, "q", fn); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: %v", err)
	}
	if v, err := c.Memo(context.Background(), "q", fn); err != nil || v.(int) != 4 {
		t.Fatalf("after a cancelled caller: %v %v", v, err)
	}
}

func TestNoPrometheus(t *testing.T) {
	c := New(nil, time.Second)
	if _, err := c.Vector(context.Background(), "up"); !errors.Is(err, ErrNoPrometheus) {
		t.Fatalf("%v", err)
	}
}
