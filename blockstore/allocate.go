package blockstore

import (
	"syscall"
	"time"

	"lmfs/blockstore/kv"
)

// Allocate grows file ino to at least size bytes (fallocate(2) without KEEP_SIZE). The new
// range reads as zeros and, like any hole, takes no space until it is written; a smaller size
// changes nothing. The check and the change are one step under the inode's lock, so a
// concurrent write past size is never cut off.
func (s *Store) Allocate(ino, size uint64) (Inode, error) {
	l := s.locks.of(ino)
	l.Lock()
	defer l.Unlock()
	s.settle(ino)
	now := time.Now().UnixNano()
	var n Inode
	var d Delta
	err := s.update(func(txn kv.Txn) error {
		d = Delta{}
		cur, err := loadInode(txn, ino)
		if err != nil {
			return err
		}
		if !cur.IsReg() {
			return syscall.ENODEV
		}
		n = cur
		if size <= cur.Size {
			return nil
		}
		d.Logical = int64(size - cur.Size)
		cur.Size = size
		cur.Mtime, cur.Ctime = now, now
		n = cur
		return saveInode(txn, &cur)
	})
	if err != nil {
		return n, err
	}
	s.counters.add(d)
	return n, nil
}
