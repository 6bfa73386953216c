package blockstore

import (
	"errors"
	"sync"
	"syscall"

	"lmfs/blockstore/kv"
)

// What a file or a tree takes in the store: st_blocks (du on the mount shows what compression
// saved, as ZFS does) and `lmfs stats PATH` (logical and stored bytes per codec, as compsize).
//
// A file's stored bytes are its block records (codec header and payload), summed from its
// block-group keys: inline group values are parsed, segment references carry a summary of
// their records, so no data segment is read. Holes take nothing; records still pending (raw,
// awaiting the compactor) count as what they take now.
//
// getattr is hot (ls -l, du, a stat after every write), and summing a file's groups is one
// Badger iteration over size/32 KiB keys. Measured (BenchmarkFileStoredScan, 2 cores under a
// load of 7): the iteration costs 0.25-0.4 us per group, 2-2.5 ms for a 256 MiB file (so
// about 10 ms per GiB), where getattr's own inode lookup takes 1-4 us; a file of one group is
// one point lookup (2-5 us). Summing on every getattr would make a stat of a large file cost
// milliseconds, and a writer that stats its file as it grows (tail -f, a progress display)
// pay for the whole file each time.
//
// So a file's figure is computed on demand and then kept in memory (18 ns a getattr after
// that; files of one group are looked up each time, not kept): every change of a group
// value already accounts for itself in a Delta (the store's counters); the change hooks there
// also note the file it belongs to, and when the Delta is applied after its commit, the files
// known here get the change added (usageCache.apply). Nothing is persisted, so nothing can go
// stale across a remount or a crash (a remount computes again), and no transaction gains a
// key: a per-inode figure stored in Badger would be read and written by the writers' commits
// and by the compactor's swaps alike, and they would conflict on it (the compactor's batch
// would be retried whenever a write landed anywhere in the same file).
//
// A computation races with changes committed meanwhile: it registers itself before its
// transaction starts, a change applied while it runs marks it, and a marked result is returned
// but not kept (the next getattr computes again). A change is applied only after its commit,
// so a result that is kept includes every change applied before and none applied after.

// usageCacheMax bounds the files whose stored bytes are kept (about 50 bytes each); a file of
// one group is not kept at all: it is one point lookup.
const usageCacheMax = 1 << 16

// usageCache keeps the stored bytes of files computed recently, kept current by the Deltas of
// later changes.
type usageCache struct {
	mu    sync.Mutex
	known map[uint64]int64
	scans map[uint64]*usageScan
}

// usageScan is a computation in progress for one file.
type usageScan struct {
	n       int  // computations of this file in progress
	changed bool // a change was applied since the first of them started
}

// fileChanges holds the changes of stored bytes by file of one Delta (a pointer there keeps
// Delta comparable).
type fileChanges struct{ m map[uint64]int64 }

// apply adds the changes of stored bytes by file (from one committed Delta).
func (u *usageCache) apply(files *fileChanges) {
	if files == nil {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	for ino, n := range files.m {
		if sc := u.scans[ino]; sc != nil {
			sc.changed = true
		}
		if v, ok := u.known[ino]; ok {
			if v += n; v > 0 {
				u.known[ino] = v
			} else {
				delete(u.known, ino) // gone (or damage made it negative): computed again if asked
			}
		}
	}
}

// get returns the kept figure of ino, or registers a computation (finish ends it).
func (u *usageCache) get(ino uint64) (int64, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if v, ok := u.known[ino]; ok {
		return v, true
	}
	if u.scans == nil {
		u.scans = map[uint64]*usageScan{}
	}
	sc := u.scans[ino]
	if sc == nil {
		sc = &usageScan{}
		u.scans[ino] = sc
	}
	sc.n++
	return 0, false
}

// finish ends a computation registered by get; v is kept unless a change came meanwhile (or
// keep is false: the computation failed).
func (u *usageCache) finish(ino uint64, v int64, keep bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	sc := u.scans[ino]
	if sc == nil {
		return
	}
	changed := sc.changed
	if sc.n--; sc.n == 0 {
		delete(u.scans, ino)
	}
	if !keep || changed {
		return
	}
	if u.known == nil {
		u.known = map[uint64]int64{}
	}
	if len(u.known) >= usageCacheMax {
		for k := range u.known { // drop an arbitrary eighth: recomputed when asked
			delete(u.known, k)
			if len(u.known) < usageCacheMax*7/8 {
				break
			}
		}
	}
	u.known[ino] = v
}

// addFileGroup is addGroup for a group of file ino: it also notes the change of the file's
// stored bytes, which the usage cache gets when the Delta is applied.
func (d *Delta) addFileGroup(ino uint64, v []byte, sign int64) {
	before := d.storedBytes()
	d.addGroup(v, sign)
	if n := d.storedBytes() - before; n != 0 {
		if d.files == nil {
			d.files = &fileChanges{m: map[uint64]int64{}}
		}
		d.files.m[ino] += n
	}
}

// storedBytes is the sum of the record bytes the Delta counts.
func (d *Delta) storedBytes() int64 {
	var n int64
	for i := range d.codec {
		n += d.codec[i].Stored
	}
	return n
}

// FileStored returns the bytes the block records of file ino (of size bytes) take in the
// store. It includes every write that has landed; callers that want writes still queued
// settle first (GetInode does).
func (s *Store) FileStored(ino, size uint64) (int64, error) {
	if size <= GroupBlocks*bs {
		return s.smallFileStored(ino) // one group at most: one point lookup, nothing kept
	}
	u := &s.counters.files
	if v, ok := u.get(ino); ok {
		return v, nil
	}
	var d Delta
	err := s.viewOnce(func(txn kv.Txn) error {
		d = Delta{}
		return fileUsage(txn, ino, &d)
	})
	v := d.storedBytes()
	u.finish(ino, v, err == nil)
	return v, err
}

// smallFileStored is FileStored for a file of one group at most.
func (s *Store) smallFileStored(ino uint64) (int64, error) {
	var d Delta
	err := s.viewOnce(func(txn kv.Txn) error {
		bp := valueBufs.Get().(*[]byte)
		defer valueBufs.Put(bp)
		v, err := readPooled(txn, groupKey(ino, 0), bp)
		if errors.Is(err, kv.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		d.addGroup(v, 1)
		return nil
	})
	return d.storedBytes(), err
}

// fileUsage adds the records of file ino's block groups to d.
func fileUsage(txn kv.Txn, ino uint64, d *Delta) error {
	// Group keys hold inline values (small files) or segment references (113 bytes, kept in
	// the LSM tree): read as the iteration gets there, without prefetch goroutines.
	it := txn.Iterate(kv.IterOptions{Prefix: inoPrefix(tagGroup, ino)})
	defer it.Close()
	var v []byte
	for it.Seek(nil); it.Valid(); it.Next() {
		var err error
		if v, err = it.Value(v); err != nil {
			return err
		}
		d.addGroup(v, 1)
	}
	return nil
}

// Usage is what a file or a directory tree takes in the store: Counters of just that tree
// (Files counts regular files; a file with several links in the tree counts once).
type Usage = Counters

// TreeUsage returns what the file or directory tree at ino takes: the same counters as the
// store's, summed over the tree (walked through the store's directory entries, in one
// snapshot). Writes that have returned are included.
func (s *Store) TreeUsage(ino uint64) (Usage, error) {
	s.settleAll()
	var d Delta
	err := s.viewOnce(func(txn kv.Txn) error {
		d = Delta{}
		seen := map[uint64]bool{}
		stack := []uint64{ino}
		for len(stack) > 0 {
			cur := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if seen[cur] {
				continue
			}
			seen[cur] = true
			n, err := loadInode(txn, cur)
			if err != nil {
				if cur != ino && errors.Is(err, syscall.ENOENT) {
					continue // an entry whose inode is gone (fsck names it)
				}
				return err
			}
			d.addInode(&n, 1)
			switch {
			case n.IsReg():
				if err := fileUsage(txn, cur, &d); err != nil {
					return err
				}
			case n.IsDir():
				kids, err := childInodes(txn, cur)
				if err != nil {
					return err
				}
				stack = append(stack, kids...)
			}
		}
		return nil
	})
	if err != nil {
		return Usage{}, err
	}
	c := counters{d: d}
	return c.snapshot(), nil
}

// childInodes lists the inodes directory ino's entries name.
func childInodes(txn kv.Txn, ino uint64) ([]uint64, error) {
	it := txn.Iterate(kv.IterOptions{Prefix: inoPrefix(tagDirent, ino), Prefetch: true})
	defer it.Close()
	var out []uint64
	var v []byte
	for it.Seek(nil); it.Valid(); it.Next() {
		var err error
		if v, err = it.Value(v); err != nil {
			return nil, err
		}
		if de, err := unmarshalDirent(v); err == nil {
			out = append(out, de.Ino)
		} // a damaged entry is fsck's to name
	}
	return out, nil
}
