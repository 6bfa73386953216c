package blockstore

import (
	"sync"
	"time"
)

// Value-log garbage collection (the loop below also runs segment GC, segment_gc.go, for the
// groups in data segments): small block groups live in Badger's value log, so the space of
// deleted and overwritten blocks comes back only when a value-log file with enough garbage is
// rewritten (its live records copied to the current file, the old file deleted). A background
// loop does that, so the store's size on disk follows its data.
//
// How Badger decides what to rewrite, and why that alone is not enough: RunValueLogGC picks
// the file with the most garbage according to its discard statistics, and only when at least
// gcRatio of the file is garbage and it is not the file being written. Discard statistics are
// updated only by LSM compactions, when a compaction drops the old version of a key whose
// value lives in the value log. A deletion is a tombstone in the memtable: until the memtable
// is flushed to level 0 and level 0 is compacted into the level holding the old versions, no
// discard is counted and GC finds nothing, however much was deleted. A memtable flushes only
// when full (32 MiB, some 300,000 keys), so a store that deletes a few hundred MB and then
// goes quiet would keep all of it on disk indefinitely.
//
// So the loop also forces that path after large deletions (gcFlushBytes of records freed since
// the last time, or any amount while the free-space guard of space.go is refusing writes):
//
//  1. flush the memtables and compact level 0 into the levels below: Badger's only public
//     way is DropPrefix, here of a marker key written for the purpose (gcMarker). DropPrefix
//     blocks Badger's writes while it runs, and commits would fail with ErrBlockedWrites, so
//     every write transaction of the store holds s.gate for reading and the flush holds it
//     for writing: writers wait (typically well under a second) instead of failing;
//  2. Flatten: compact the remaining levels into one, so tombstones meet the versions they
//     delete and their value-log bytes are counted as discarded;
//  3. RunValueLogGC until no file is worth rewriting.
//
// The file being written is never rewritten, so up to one value-log file of garbage
// (ValueLogFileSize, 16 MiB: store.go keeps the files small for that reason) stays until the
// file fills up with new writes.
//
// This is engine-level code: the three steps are Badger's maintenance, called through
// s.engine (kv.Badger: FlushMemtables, Flatten, CollectValueLog), not through the kv seam,
// which another engine would implement without them. s.gate is the store's side of step 1.

// gcInterval is how often the loop looks for value-log files worth rewriting anyway.
const gcInterval = 30 * time.Second

// gcPoll is how often the loop checks whether a forced flush is due.
const gcPoll = 2 * time.Second

// gcFlushBytes: records freed (deleted or replaced) since the last forced flush that make
// another one worth its cost.
const gcFlushBytes = 32 << 20

// gcFlushSpacing is the least time between two forced flushes, unless the free-space guard is
// refusing writes (a flush blocks writers briefly and Flatten rewrites the LSM tree).
const gcFlushSpacing = 10 * time.Second

// gcRatio: a file is rewritten when at least this fraction of it is garbage; gcRatioLow
// while the free-space guard refuses writes: then any file that gives back a quarter of itself
// is worth the copy (deleting every other file leaves files exactly half garbage).
const (
	gcRatio    = 0.5
	gcRatioLow = 0.25
)

// gcMarker is the key DropPrefix drops to flush the memtables (a counter name no one uses).
var gcMarker = counterKey("gc-flush")

func (s *Store) startGC() {
	s.gcStop = make(chan struct{})
	s.gcDone = make(chan struct{})
	if s.gcKick == nil {
		// Made once, at open: kickGC reads it without a lock, also while fsck stops and
		// restarts this loop.
		s.gcKick = make(chan struct{}, 1)
	}
	go func() {
		defer close(s.gcDone)
		poll := time.NewTicker(gcPoll)
		defer poll.Stop()
		last := time.Now()
		pacer := segPacer{last: time.Now(), first: true}
		progress := &s.space.gc
		progress.setRunning(true)
		defer progress.setRunning(false)
		var spaced <-chan time.Time // a due segment pass waits out its spacing
		for {
			select {
			case <-s.gcStop:
				return
			case <-poll.C:
			case <-s.gcKick:
			case <-spaced:
			}
			spaced = nil
			progress.begin()
			busy := false // reclaimed something, or work is left that is due
			spaceLow := s.spaceLow()
			freed := s.counters.freedSince()
			low := freed > 0 && spaceLow
			pacer.freed += s.counters.takeSegFreed()
			due, wait := pacer.due(time.Now(), spaceLow, s.segGCAgain.Load())
			if due && wait <= 0 {
				s.segGCAgain.Store(false)
				start := time.Now()
				n, scans, err := s.collectSegments(s.gcStop, spaceLow)
				if err != nil {
					s.log.Warn("segment GC", "err", err)
				} else if n > 0 {
					s.log.Debug("segment GC", "segments_removed", n, "took", time.Since(start))
				}
				pacer.ran(time.Now(), scans, spaceLow)
				busy = n > 0 || s.segGCAgain.Load()
			} else if due {
				busy = true // spaced out: runs when the spacing has passed
				spaced = time.After(wait)
			}
			if low || (freed >= gcFlushBytes && time.Since(last) >= gcFlushSpacing) {
				busy = s.reclaim(s.gcStop, low) > 0 || busy
				last = time.Now()
			} else if time.Since(last) >= gcInterval {
				busy = s.collectGarbage(s.gcStop, spaceLow) > 0 || busy
				last = time.Now()
			}
			progress.end(busy)
			if busy && spaced == nil {
				s.kickGC() // look again at once: the first look that finds nothing ends it
			}
		}
	}()
}

// segPacer decides when segment GC passes run: the GC loop's state between passes.
type segPacer struct {
	last  time.Time     // when the last pass ended
	freed int64         // record bytes freed since then
	first bool          // no pass yet
	took  time.Duration // the last pass's index scans
	low   bool          // the last pass ran while space was low (it looked harder)
}

// due reports whether a pass is due (again: the last pass asked for another), and how long
// it must still wait to keep its spacing: a pass scans the whole index, so passes are spaced
// ten times their scans apart and on a big store GC stays a small share of the machine (the
// copying is bounded by the garbage it gives back); while space is low, writers wait for
// what it gives back, so only once their scans apart.
//
// While space is low, any garbage freed since the last pass makes one due, and so does a
// last pass that ran before space was low. (It used to need the value-log GC's counter
// too, which reclaim resets: files deleted while a pass ran then waited segGCEvery, a
// minute, with every write refused.)
func (p *segPacer) due(now time.Time, spaceLow, again bool) (bool, time.Duration) {
	due := again || p.freed >= segGCFreed || (spaceLow && (p.freed > 0 || !p.low)) ||
		((p.freed > 0 || p.first) && now.Sub(p.last) >= segGCEvery)
	if !due {
		return false, 0
	}
	spacing := 10 * p.took
	if spaceLow {
		spacing = p.took
	}
	return true, max(0, spacing-now.Sub(p.last))
}

// ran records a pass that ended at now.
func (p *segPacer) ran(now time.Time, scans time.Duration, spaceLow bool) {
	p.last, p.freed, p.first, p.took, p.low = now, 0, false, scans, spaceLow
}

// gcProgress tells writers refused for space (space.go) when the GC loop has had a look:
// each iteration that begins after a writer's request ends with whether it reclaimed
// something or has work left that is due (busy): only then can waiting longer help.
type gcProgress struct {
	mu      sync.Mutex
	running bool
	started uint64        // iterations begun
	done    uint64        // iterations ended
	busy    bool          // what the last iteration to end said
	changed chan struct{} // closed and replaced when an iteration ends or the loop stops
}

func (p *gcProgress) setRunning(on bool) {
	p.mu.Lock()
	p.running = on
	p.signal()
	p.mu.Unlock()
}

func (p *gcProgress) begin() {
	p.mu.Lock()
	p.started++
	p.mu.Unlock()
}

func (p *gcProgress) end(busy bool) {
	p.mu.Lock()
	p.done++
	p.busy = busy
	p.signal()
	p.mu.Unlock()
}

// signal wakes the waiters; call with mu.
func (p *gcProgress) signal() {
	if p.changed != nil {
		close(p.changed)
	}
	p.changed = make(chan struct{})
}

// next kicks the loop (kick may be nil: it comes around by itself when it said busy) and
// waits until an iteration that began after the call has ended; it returns that iteration's
// busy, and ok false when the loop is not running or the deadline passed first.
func (p *gcProgress) next(kick func(), deadline time.Time) (busy, ok bool) {
	p.mu.Lock()
	if !p.running {
		p.mu.Unlock()
		return false, false
	}
	target := p.started + 1
	if p.changed == nil {
		p.changed = make(chan struct{})
	}
	ch := p.changed
	p.mu.Unlock()
	if kick != nil {
		kick()
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		select {
		case <-ch:
		case <-timer.C:
			return false, false
		}
		p.mu.Lock()
		switch {
		case !p.running:
			p.mu.Unlock()
			return false, false
		case p.done >= target:
			busy := p.busy
			p.mu.Unlock()
			return busy, true
		}
		ch = p.changed
		p.mu.Unlock()
	}
}

// kickGC asks the GC loop to look now (the free-space guard calls it while refusing writes).
func (s *Store) kickGC() {
	if s.gcKick != nil {
		select {
		case s.gcKick <- struct{}{}:
		default:
		}
	}
}

func (s *Store) stopGC() {
	if s.gcStop != nil {
		close(s.gcStop)
		<-s.gcDone
		s.gcStop = nil
	}
}

// reclaim flushes the memtables, flattens the LSM tree and collects value-log garbage (see
// above; low: free space is short); it returns how many value-log files were rewritten.
func (s *Store) reclaim(stop <-chan struct{}, low bool) int {
	s.counters.resetFreed()
	start := time.Now()
	s.gate.Lock()
	err := s.engine.FlushMemtables(gcMarker)
	s.gate.Unlock()
	if err != nil {
		s.log.Warn("value-log GC: flushing the memtables failed", "err", err)
	}
	if err := s.engine.Flatten(1); err != nil {
		s.log.Warn("value-log GC: flattening the LSM tree failed", "err", err)
	}
	n := s.collectGarbage(stop, low)
	s.log.Debug("value-log GC after deletions", "files_rewritten", n, "took", time.Since(start))
	return n
}

// collectGarbage rewrites value-log files until none is worth it (or stop closes; low: free
// space is short, lower the bar); it returns how many files were rewritten.
func (s *Store) collectGarbage(stop <-chan struct{}, low bool) int {
	ratio := gcRatio
	if low {
		ratio = gcRatioLow
	}
	n := 0
	for {
		select {
		case <-stop:
			return n
		default:
		}
		rewrote, err := s.engine.CollectValueLog(ratio)
		if err != nil {
			s.log.Warn("value-log GC", "err", err)
		}
		if !rewrote {
			return n
		}
		n++
	}
}
