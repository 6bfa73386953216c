// Decode order: the LM decodes of reads of one file run one batch at a time, the read at the
// lowest offset first, so the pages a reader waits for come back before the read-ahead
// behind them.
//
// Why: a FUSE read is answered whole, and an LM batch finishes all its blocks at the same
// model step. The kernel sends a cold sequential reader's read-ahead as several requests at
// once (when the reader reaches the request it waits for, the next window is asked for too:
// 512 KiB, then 1, 2 and 4 MiB); decoded side by side they share the cores and all finish
// together, so the reader waited for the whole window (measured: a 2 MB LM file read in
// 128 KiB reads sat at 512 KiB until every later request was decoded as well). In offset
// order (not arrival: go-fuse serves requests that arrive together in goroutines, in any
// order) the request the reader waits for has the cores to itself; the requests behind it
// keep the cores busy after it (each batch still uses every core), so a whole sequential
// read takes as long as before. A request's blocks are decoded in chunks; between chunks an
// earlier request that arrived meanwhile goes first.
// Reads of files whose gates differ decode side by side as before.

package blockstore

import (
	"context"
	"slices"
	"sync"
)

// decodeChunk is the most LM blocks of one read decoded per turn (two waves of 128 on two
// cores: large enough that a batch keeps the model calls efficient).
const decodeChunk = 256

// decodeGates orders the LM decodes of reads, one gate per slot of inode numbers (two files
// that share a slot only share an order). The zero value is ready.
type decodeGates struct {
	gates [64]decodeGate
}

// of returns the gate of ino.
func (d *decodeGates) of(ino uint64) *decodeGate { return &d.gates[ino%uint64(len(d.gates))] }

// decodeGate lets one decode run at a time, the lowest ticket waiting next (a ticket is the
// read's file offset; equal tickets go in arrival order).
type decodeGate struct {
	mu      sync.Mutex
	busy    bool
	waiting []*gateWaiter // by ticket
}

type gateWaiter struct {
	ticket uint64
	ready  chan struct{}
}

// acquire waits for the gate's turn of ticket t; it gives up with ctx's error when ctx is
// done first (a read the kernel interrupted, or a server shutting down).
func (g *decodeGate) acquire(ctx context.Context, t uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	g.mu.Lock()
	if !g.busy {
		g.busy = true
		g.mu.Unlock()
		return nil
	}
	w := &gateWaiter{ticket: t, ready: make(chan struct{})}
	i, _ := slices.BinarySearchFunc(g.waiting, t, func(w *gateWaiter, t uint64) int {
		if w.ticket <= t {
			return -1
		}
		return 1
	})
	g.waiting = slices.Insert(g.waiting, i, w)
	g.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		g.mu.Lock()
		if i := slices.Index(g.waiting, w); i >= 0 {
			g.waiting = slices.Delete(g.waiting, i, i+1)
			g.mu.Unlock()
			return ctx.Err()
		}
		g.mu.Unlock()
		g.release() // the turn came as ctx ended: pass it on
		return ctx.Err()
	}
}

// next is called between chunks by the holder of ticket t's turn: it gives the turn up when
// ctx is done (the error: t then holds no turn and must not release) or, when a lower ticket
// waits, lets that go first and waits in order again.
func (g *decodeGate) next(ctx context.Context, t uint64) error {
	g.mu.Lock()
	keep := len(g.waiting) == 0 || g.waiting[0].ticket > t
	g.mu.Unlock()
	if keep && ctx.Err() == nil {
		return nil
	}
	g.release()
	return g.acquire(ctx, t)
}

// release ends a turn: the lowest ticket waiting goes next.
func (g *decodeGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.waiting) == 0 {
		g.busy = false
		return
	}
	w := g.waiting[0]
	g.waiting = slices.Delete(g.waiting, 0, 1)
	close(w.ready)
}
