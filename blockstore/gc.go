package blockstore

import (
	"errors"
	"time"

	"github.com/dgraph-io/badger/v4"
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
	s.gcKick = make(chan struct{}, 1)
	go func() {
		defer close(s.gcDone)
		poll := time.NewTicker(gcPoll)
		defer poll.Stop()
		last := time.Now()
		// Segment GC scans the whole index: passes are spaced at least ten times their
		// scans' duration apart, so on a big store it stays a small share of the machine.
		// (The copying it does is bounded by the garbage it gives back.)
		lastSeg, segFreed, segFirst, segTook := time.Now(), int64(0), true, time.Duration(0)
		for {
			select {
			case <-s.gcStop:
				return
			case <-poll.C:
			case <-s.gcKick:
			}
			freed := s.counters.freedSince()
			low := freed > 0 && s.spaceLow()
			segFreed += s.counters.takeSegFreed()
			due := s.segGCAgain.Load() || segFreed >= segGCFreed || (segFreed > 0 && low) || ((segFreed > 0 || segFirst) && time.Since(lastSeg) >= segGCEvery)
			if due && time.Since(lastSeg) >= 10*segTook {
				s.segGCAgain.Store(false)
				start := time.Now()
				n, scans, err := s.collectSegments(s.gcStop, s.spaceLow())
				if err != nil {
					s.log.Warn("segment GC", "err", err)
				} else if n > 0 {
					s.log.Debug("segment GC", "segments_removed", n, "took", time.Since(start))
				}
				lastSeg, segFreed, segFirst, segTook = time.Now(), 0, false, scans
			}
			if low || (freed >= gcFlushBytes && time.Since(last) >= gcFlushSpacing) {
				s.reclaim(s.gcStop, low)
				last = time.Now()
			} else if time.Since(last) >= gcInterval {
				s.CollectGarbage(s.gcStop, s.spaceLow())
				last = time.Now()
			}
		}
	}()
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
	err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(gcMarker, []byte{1}) })
	if err == nil {
		err = s.db.DropPrefix(gcMarker)
	}
	s.gate.Unlock()
	if err != nil {
		s.log.Warn("value-log GC: flushing the memtables failed", "err", err)
	}
	if err := s.db.Flatten(1); err != nil {
		s.log.Warn("value-log GC: flattening the LSM tree failed", "err", err)
	}
	n := s.CollectGarbage(stop, low)
	s.log.Debug("value-log GC after deletions", "files_rewritten", n, "took", time.Since(start))
	return n
}

// CollectGarbage rewrites value-log files until none is worth it (or stop closes; low: free
// space is short, lower the bar); it returns how many files were rewritten.
func (s *Store) CollectGarbage(stop <-chan struct{}, low bool) int {
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
		err := s.db.RunValueLogGC(ratio)
		if err != nil {
			if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
				s.log.Warn("value-log GC", "err", err)
			}
			return n
		}
		n++
	}
}
