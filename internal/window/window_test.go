package window

import (
	"testing"
	"time"
)

func TestCounter(t *testing.T) {
	t0 := time.Unix(1000, 0)
	c := New(2, time.Minute)
	if c.Full(t0) {
		t.Fatal("empty counter full")
	}
	c.Add(t0)
	c.Add(t0.Add(10 * time.Second))
	if !c.Full(t0.Add(59 * time.Second)) {
		t.Fatal("two events in a minute did not fill a 2/1m counter")
	}
	if c.Full(t0.Add(60 * time.Second)) {
		t.Fatal("the first event did not leave the window after a minute")
	}
	if New(0, time.Minute).Full(t0) {
		t.Fatal("N 0 must mean unlimited")
	}
}

func TestTakeAllIsAllOrNothing(t *testing.T) {
	t0 := time.Unix(1000, 0)
	global, drains := New(3, time.Minute), New(1, time.Minute)
	if !TakeAll(t0, global, drains) {
		t.Fatal("first take refused")
	}
	for i := range 5 {
		if TakeAll(t0.Add(time.Duration(i)*time.Second), global, drains) {
			t.Fatal("a full per-action counter let an action through")
		}
	}
	// The refusals above must not have used the global room.
	for range 2 {
		if !TakeAll(t0, global) {
			t.Fatal("refused takes used up the global counter")
		}
	}
	if TakeAll(t0, global) {
		t.Fatal("global counter over its limit")
	}
}

func TestWait(t *testing.T) {
	t0 := time.Unix(1000, 0)
	c := New(2, time.Minute)
	if w := c.Wait(t0); w != 0 {
		t.Fatalf("empty counter waits %s", w)
	}
	c.Add(t0)
	c.Add(t0.Add(10 * time.Second))
	if w := c.Wait(t0.Add(20 * time.Second)); w != 40*time.Second {
		t.Fatalf("full counter waits %s, want 40s (until the oldest leaves)", w)
	}
	if w := c.Wait(t0.Add(60 * time.Second)); w != 0 {
		t.Fatalf("after the oldest left: waits %s", w)
	}
	if w := New(0, time.Minute).Wait(t0); w != 0 {
		t.Fatalf("unlimited counter waits %s", w)
	}
}
