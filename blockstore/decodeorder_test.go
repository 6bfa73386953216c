package blockstore

import (
	"context"
	"testing"
	"time"
)

// waitWaiting waits until n decodes wait at g (a deadline that only bounds a broken test).
func waitWaiting(t *testing.T, g *decodeGate, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		g.mu.Lock()
		k := len(g.waiting)
		g.mu.Unlock()
		if k == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d decodes waiting, want %d", k, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestDecodeGateOrder: decodes waiting at a gate get their turns lowest offset first, whatever
// order they arrived in; between chunks the holder lets a lower offset that arrived meanwhile
// go first; a waiter whose context ends leaves the queue with its error and takes no turn.
func TestDecodeGateOrder(t *testing.T) {
	var g decodeGate
	ctx := context.Background()
	if err := g.acquire(ctx, 1000); err != nil {
		t.Fatal(err)
	}
	order := make(chan uint64, 8)
	take := func(off uint64) {
		if err := g.acquire(ctx, off); err != nil {
			t.Error(err)
			return
		}
		order <- off
		g.release()
	}
	go take(3000)
	waitWaiting(t, &g, 1)
	go take(2000)
	waitWaiting(t, &g, 2)
	// A waiter that gives up.
	cctx, cancel := context.WithCancel(ctx)
	gaveUp := make(chan error)
	go func() { gaveUp <- g.acquire(cctx, 1500) }()
	waitWaiting(t, &g, 3)
	cancel()
	if err := <-gaveUp; err == nil {
		t.Fatal("acquire with a cancelled context took a turn")
	}
	waitWaiting(t, &g, 2)
	// Between chunks: a lower offset waiting goes first, a higher one does not.
	go take(500)
	waitWaiting(t, &g, 3)
	if err := g.next(ctx, 1000); err != nil {
		t.Fatal(err)
	}
	if got := <-order; got != 500 {
		t.Fatalf("first turn after the holder's chunk went to offset %d, want 500", got)
	}
	if err := g.next(ctx, 1000); err != nil { // 2000 and 3000 wait: keep the turn
		t.Fatal(err)
	}
	select {
	case got := <-order:
		t.Fatalf("offset %d took the turn from the lower offset holding it", got)
	default:
	}
	g.release()
	for _, want := range []uint64{2000, 3000} {
		if got := <-order; got != want {
			t.Fatalf("turn went to offset %d, want %d", got, want)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.busy || len(g.waiting) != 0 {
		t.Fatalf("gate busy %v with %d waiting after every turn ended", g.busy, len(g.waiting))
	}
}
