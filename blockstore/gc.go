package blockstore

import (
	"errors"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Value-log garbage collection: block records live in Badger's value log, so the space of
// deleted and overwritten blocks comes back only when a value-log file with enough garbage is
// rewritten. A background loop does that, so the store's size on disk follows its data.

// gcInterval is how often the loop looks for value-log files worth rewriting.
const gcInterval = 30 * time.Second

// gcRatio: a file is rewritten when at least this fraction of it is garbage.
const gcRatio = 0.5

func (s *Store) startGC() {
	s.gcStop = make(chan struct{})
	s.gcDone = make(chan struct{})
	go func() {
		defer close(s.gcDone)
		t := time.NewTicker(gcInterval)
		defer t.Stop()
		for {
			select {
			case <-s.gcStop:
				return
			case <-t.C:
				s.CollectGarbage(s.gcStop)
			}
		}
	}()
}

func (s *Store) stopGC() {
	if s.gcStop != nil {
		close(s.gcStop)
		<-s.gcDone
		s.gcStop = nil
	}
}

// CollectGarbage rewrites value-log files until none is worth it (or stop closes); it returns
// how many files were rewritten.
func (s *Store) CollectGarbage(stop <-chan struct{}) int {
	n := 0
	for {
		select {
		case <-stop:
			return n
		default:
		}
		err := s.db.RunValueLogGC(gcRatio)
		if err != nil {
			if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
				s.log.Warn("value-log GC", "err", err)
			}
			return n
		}
		n++
	}
}
