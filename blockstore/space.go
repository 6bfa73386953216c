package blockstore

import (
	"sync"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"

	"lmfs/blockstore/segment"
)

// Free-space guard: a full disk must give writers ENOSPC, never a dead server.
//
// Badger writes its value log and memtable WAL through shared mmaps of sparse, preallocated
// files (a value-log file is mapped at twice ValueLogFileSize, a WAL at twice MemTableSize),
// and it writes new SSTables through mmaps as well. When the file system under the store runs
// out of space, the kernel cannot back the next page of such a mapping and the server dies of
// SIGBUS in the middle of a memcpy; on tmpfs even reading a hole of a mapped file allocates,
// so such a store cannot be opened again until space is freed outside it. A write error never
// reaches Badger as an error it could return.
//
// So the store refuses new data before that can happen: writes, creates, links and xattrs
// fail with ENOSPC while the free space of the store's file system (statfs, available to
// unprivileged users) is below a reserve. Deletes, truncates, renames and attribute changes
// stay allowed (they free space or take almost none), and the compactor pauses (its recoded
// records are appended before the old ones become garbage). The reserve covers what Badger
// may still write after the last accepted write without asking us:
//
//   - one value-log file (ValueLogFileSize): the rest of the current file, or the live
//     records value-log GC copies into it when it rewrites a file to free space;
//   - the next memtable flush (2 x MemTableSize): the WAL filling up to MemTableSize, and
//     the level-0 SSTable the flush writes (at most the memtable's size) before the WAL is
//     deleted; the forced flush of gc.go writes the same;
//   - data segments: the current segment is allocated ahead in steps (segAllocStep), and
//     segment GC copies a segment's live entries before it deletes the file (segGCRoom: GC
//     skips a segment whose live bytes would take more, see roomFor; a segment with nothing
//     live needs no room and goes however little is free);
//   - spaceSlack: writes already past the check when free space ran out (at most one
//     1 MiB chunk per concurrent writer), MANIFEST/DISCARD updates, small compaction output.
//
// With the options in store.go (16 MiB value-log files, 32 MiB memtables) that is 16 + 64 +
// 8 + 32 + 16 = 136 MiB. Data segments themselves are written with
// pwrite, which reports ENOSPC as an error (a failed write), never a fault.
//
// Space freed by deletes comes back through segment GC and value-log GC (gc.go), which look
// at once, with a lower bar, while the guard is refusing writes; a refused write waits for
// them (reserveSpace), so a write right after a delete gets the space the delete freed.
//
// What segment GC cannot give back: it moves a segment's live entries only while free space
// stays at least reserve-segGCRoom after the copy (below that the copy would eat what
// Badger's mmaps may still need: the SIGBUS above). When the store itself filled the disk,
// writes stop with free space at the reserve, so a segment whose live bytes are at most
// segGCRoom (a full 64 MiB segment at least half garbage) can be moved, and each one deleted
// makes room for the next (fewest live bytes first, statfs asked again for each). When
// something else filled the disk, or Badger's flushes took their part of the reserve after
// the last accepted write, free space can be below reserve-segGCRoom: then no live entry
// moves, and only segments whose every group was deleted (and value-log GC) give space back
// until space is freed outside the store.
//
// statfs is cheap but not free: its result is reused for up to spaceRecheck, with the bytes
// accepted since then subtracted; near the reserve every check asks the kernel again.

const (
	spaceSlack   = 16 << 20
	spaceRecheck = time.Second
	spaceNear    = 64 << 20 // closer than this to the reserve: statfs on every check
)

// spaceReserve is the free space below which new data is refused (see above).
func spaceReserve(o badger.Options) int64 {
	return o.ValueLogFileSize + 2*o.MemTableSize + segment.AllocStep + segGCRoom + spaceSlack
}

// segGCRoom is the part of the reserve segment GC may use for the live entries it moves.
const segGCRoom = 32 << 20

// roomFor reports whether background work may write n more bytes now: free space stays
// above the reserve less segGCRoom.
func (s *Store) roomFor(n int64) bool {
	g := &s.space
	if g.reserve <= 0 {
		return true
	}
	queued := s.queuedBytes.Load()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.statfs(time.Now())
	return g.free-g.since-queued-n >= g.reserve-segGCRoom
}

type spaceGuard struct {
	dir     string
	reserve int64

	mu      sync.Mutex
	checked time.Time
	free    int64 // available bytes at checked
	since   int64 // bytes accepted since checked
	low     bool  // the last check found free space below the reserve

	gc gcProgress // refused writers wait for the GC loop through it (gc.go)
}

// statfs refreshes the free-space figure; call with g.mu held.
func (g *spaceGuard) statfs(now time.Time) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(g.dir, &st); err != nil {
		// Cannot tell: do not refuse writes because of it.
		g.free, g.since, g.checked = 1<<62, 0, now
		return
	}
	g.free, g.since, g.checked = int64(st.Bavail)*int64(st.Bsize), 0, now
}

// spaceWait bounds how long a refused write waits for GC to give space back (reserveSpace).
const spaceWait = 30 * time.Second

// reserveSpace returns ENOSPC when accepting n more bytes would leave less free space than the
// reserve; otherwise it counts n as taken.
//
// Before it refuses, it waits for the GC loop to have a look, and for as long as GC keeps
// reclaiming (up to spaceWait): as a file system that commits to free space before it reports
// ENOSPC, so a write right after deleting files gets their space, not an error (garbage in
// data segments comes back only when GC rewrites them: a pass takes a fraction of a second on
// a small store). When GC finds nothing to reclaim, the write is refused at once.
func (s *Store) reserveSpace(n int64) error {
	err := s.takeSpace(n)
	if err == nil {
		return nil
	}
	deadline := time.Now().Add(spaceWait)
	kick := s.kickGC
	for {
		busy, ok := s.space.gc.next(kick, deadline)
		if !ok {
			return err
		}
		if err = s.takeSpace(n); err == nil || !busy {
			return err
		}
		// A busy loop comes around by itself (at once, or when a spaced-out pass may run):
		// kicking it again would only spin it.
		kick = nil
	}
}

// takeSpace is reserveSpace without waiting for GC (and without kicking it: reserveSpace does,
// once per refused call).
func (s *Store) takeSpace(n int64) error {
	g := &s.space
	if g.reserve <= 0 {
		return nil // read-only store
	}
	// Writes accepted but still queued (data.go) are not on disk yet: statfs cannot see them.
	queued := s.queuedBytes.Load()
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	if now.Sub(g.checked) > spaceRecheck || g.free-g.since-queued-n < g.reserve+spaceNear {
		g.statfs(now)
	}
	if g.free-g.since-queued-n < g.reserve {
		if !g.low {
			s.log.Warn("store's file system is nearly full: refusing new data (ENOSPC) until space is freed",
				"dir", g.dir, "free", g.free, "reserve", g.reserve)
		}
		g.low = true
		return syscall.ENOSPC
	}
	if g.low {
		s.log.Info("free space is above the reserve again: accepting new data", "free", g.free-g.since, "reserve", g.reserve)
	}
	g.low = false
	g.since += n
	return nil
}

// spaceLow reports whether free space is below the reserve, or so close to it that the next
// write chunk would be refused (fresh enough for background work: at most spaceRecheck old).
// (Close counts: a writer refused for a chunk waits for GC, which must know it is wanted.)
func (s *Store) spaceLow() bool {
	g := &s.space
	if g.reserve <= 0 {
		return false
	}
	queued := s.queuedBytes.Load()
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	if now.Sub(g.checked) > spaceRecheck {
		g.statfs(now)
	}
	return g.free-g.since-queued < g.reserve+maxWriteChunk
}

// SpaceReserve is the free space the store keeps on its file system (0 for a read-only store):
// below it new data gets ENOSPC.
func (s *Store) SpaceReserve() int64 { return s.space.reserve }
