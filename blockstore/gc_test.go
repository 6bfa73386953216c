package blockstore

import (
	"testing"
	"time"
)

// TestSegPacer: when segment GC passes are due. The case that matters most: while writes
// are refused for space, garbage freed since the last pass makes one due at once, whatever
// value-log GC has counted (files deleted during a pass used to wait a minute).
func TestSegPacer(t *testing.T) {
	now := time.Now()
	ran := func(ago, took time.Duration, low bool, freed int64) segPacer {
		p := segPacer{}
		p.ran(now.Add(-ago), took, low)
		p.freed = freed
		return p
	}
	cases := []struct {
		name     string
		p        segPacer
		spaceLow bool
		again    bool
		due      bool
		wait     time.Duration
	}{
		{"space low, garbage freed during the last pass", ran(time.Second, 10*time.Millisecond, true, 8<<20), true, false, true, 0},
		{"space low, nothing freed, last pass looked hard", ran(time.Second, 0, true, 0), true, false, false, 0},
		{"space low, last pass ran before it was", ran(time.Second, 0, false, 0), true, false, true, 0},
		{"space low: spaced once its scans", ran(0, time.Second, true, 1), true, false, true, time.Second},
		{"plenty of space, a little garbage", ran(time.Second, 0, false, 8<<20), false, false, false, 0},
		{"plenty of space, enough garbage: spaced ten times its scans", ran(0, time.Second, false, segGCFreed), false, false, true, 10 * time.Second},
		{"plenty of space, a little garbage, a while ago", ran(segGCEvery, 0, false, 1), false, false, true, 0},
		{"asked again", ran(time.Second, 0, false, 0), false, true, true, 0},
		{"first pass after a while", segPacer{first: true, last: now.Add(-segGCEvery)}, false, false, true, 0},
		{"first pass, too soon", segPacer{first: true, last: now}, false, false, false, 0},
	}
	for _, c := range cases {
		due, wait := c.p.due(now, c.spaceLow, c.again)
		if due != c.due || (due && wait != c.wait) {
			t.Errorf("%s: due %v wait %v, want due %v wait %v", c.name, due, wait, c.due, c.wait)
		}
	}
}

// TestGCProgressNext: a writer refused for space hears from an iteration of the GC loop that
// began after it asked, never from one already under way; not at all when the loop is not
// running or its deadline has passed.
func TestGCProgressNext(t *testing.T) {
	var p gcProgress
	far := time.Now().Add(time.Hour)
	if _, ok := p.next(nil, far); ok {
		t.Fatal("next answered while no loop runs")
	}
	p.setRunning(true)
	p.begin() // an iteration under way when the writer asks
	kicked := make(chan struct{}, 1)
	type answer struct{ busy, ok bool }
	answers := make(chan answer, 1)
	go func() {
		busy, ok := p.next(func() { kicked <- struct{}{} }, far)
		answers <- answer{busy, ok}
	}()
	<-kicked
	p.end(true) // the one under way ends: not the writer's
	select {
	case a := <-answers:
		t.Fatalf("next answered %+v from an iteration that began before it asked", a)
	default:
	}
	p.begin()
	p.end(false)
	if a := <-answers; !a.ok || a.busy {
		t.Fatalf("next answered %+v, want the second iteration's (busy false)", a)
	}
	if _, ok := p.next(nil, time.Now().Add(-time.Second)); ok {
		t.Fatal("next answered after its deadline")
	}
	go func() {
		_, ok := p.next(nil, far)
		answers <- answer{ok: ok}
	}()
	p.setRunning(false)
	if a := <-answers; a.ok {
		t.Fatal("next answered ok from a loop that stopped")
	}
}
