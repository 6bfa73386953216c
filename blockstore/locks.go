// Per-inode locks. Every operation on a file's data or size holds its inode's lock: shared
// for reads, SEEK_DATA/SEEK_HOLE and writes of whole blocks (they may run side by side),
// exclusive for whatever reads blocks to change them or changes the size (a partial write,
// truncate, allocate, punch, the purge of an unlinked file). The exclusive holder first
// settles the inode's queued writes (writebehind.go), so it is ordered after every write that
// returned. The compactor takes no lock: it swaps a recoded record in only if the slot still
// holds the record it read (compactor.go).
//
// The locks are striped: two inodes may share a stripe, so no code path holds two stripes at
// once (there is no lock order to keep). They live in memory and order the operations of one
// process; a crash leaves nothing of them to recover.

package blockstore

import "sync"

// inodeLocks serialize data operations per inode (striped: two inodes may share a stripe, so
// no code path holds two stripes at once).
type inodeLocks struct{ stripes [512]sync.RWMutex }

func (l *inodeLocks) of(ino uint64) *sync.RWMutex { return &l.stripes[ino%uint64(len(l.stripes))] }
