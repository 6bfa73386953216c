// Truncate: setting a file's size (allocate.go grows it without writing, punch.go makes
// ranges holes; they share the purge below).
//
// Contract: a truncate holds the inode's exclusive lock and settles the queued writes first,
// so it is ordered after every write that returned and before every later one. The new size,
// the cut last block and a trim marker for the groups past the new end commit in one
// transaction; those groups are then deleted in bounded transactions, each group whole, and
// the marker removed. A crash in between leaves the marker, and the next open finishes the
// deletion (orphan.go): bytes once cut off never come back when the file grows again.

package blockstore

import (
	"bytes"
	"time"

	"lmfs/blockstore/kv"
	"lmfs/codec"
)

// Truncate sets the size of file ino.
func (s *Store) Truncate(ino uint64, size uint64) (Inode, error) {
	l := s.locks.of(ino)
	l.Lock()
	defer l.Unlock()
	s.settle(ino)
	var n Inode
	var tail []byte // the new last block's record when the cut falls inside a block
	gen := s.cache.generation()
	err := s.view(func(txn kv.Txn) error {
		var err error
		if n, err = getFile(txn, ino); err != nil {
			return err
		}
		if size < n.Size && size%bs != 0 {
			old, err := s.blockAt(txn, ino, size/bs, gen)
			if err != nil {
				return err
			}
			if uint64(len(old)) > size%bs {
				rec := make([]byte, codec.HeaderSize+size%bs)
				copy(rec[codec.HeaderSize:], old)
				tail = s.encodeNew(rec)
				if tail == nil {
					tail = []byte{} // all zeros now: the block becomes a hole
				}
			}
		}
		return nil
	})
	if err != nil {
		return n, err
	}
	keep := blocksFor(size)                        // blocks that remain
	from := (keep + GroupBlocks - 1) / GroupBlocks // first group wholly past the new end
	now := time.Now().UnixNano()
	var d Delta
	purge := false
	err = s.updateData(func(txn kv.Txn, sb *segBatch) error {
		d = Delta{}
		cur, err := loadInode(txn, ino)
		if err != nil {
			return err
		}
		if size < cur.Size && keep%GroupBlocks != 0 || tail != nil {
			// The group holding the new last block loses the slots past it (and gets the cut
			// tail block).
			var cut []newBlock
			for b := keep; b%GroupBlocks != 0; b++ {
				cut = append(cut, newBlock{blk: b})
			}
			if tail != nil {
				rec := tail
				if len(rec) == 0 {
					rec = nil
				}
				cut = append([]newBlock{{blk: keep - 1, rec: rec}}, cut...)
			}
			if err := s.putGroup(txn, sb, ino, (keep-1)/GroupBlocks, cut, cur.Size, &d, nil, false); err != nil {
				return err
			}
		}
		if purge = from < groupsFor(cur.Size); purge {
			// Groups past the new end are deleted after this commit, in chunks; the marker
			// finishes the job at the next open if we crash before.
			if err := txn.Set(trimKey(ino), u64bytes(from)); err != nil {
				return err
			}
		}
		d.Logical += int64(size) - int64(cur.Size)
		cur.Size = size
		cur.Mtime, cur.Ctime = now, now
		n = cur
		return saveInode(txn, &cur)
	})
	s.cache.dropFrom(ino, size/bs)
	if err != nil {
		return n, err
	}
	s.counters.add(d)
	if purge {
		if err := s.purgeGroups(ino, from); err != nil {
			return n, err
		}
		if err := s.update(func(txn kv.Txn) error { return txn.Delete(trimKey(ino)) }); err != nil {
			return n, err
		}
	}
	return n, nil
}

// purgeGroups deletes the block groups of ino from group from on, in bounded transactions.
func (s *Store) purgeGroups(ino, from uint64) error { return s.purgeGroupRange(ino, from, ^uint64(0)) }

// purgeGroupRange deletes the block groups from..to-1 of ino, in bounded transactions (each
// group goes whole in one of them: a crash leaves it as it was or gone).
func (s *Store) purgeGroupRange(ino, from, to uint64) error {
	for {
		var d Delta
		done := false
		err := s.update(func(txn kv.Txn) error {
			d = Delta{}
			it := txn.Iterate(kv.IterOptions{Prefix: inoPrefix(tagGroup, ino), Prefetch: true})
			var keys [][]byte
			var v []byte
			for it.Seek(groupKey(ino, from)); it.Valid() && len(keys) < purgeGroups; it.Next() {
				if _, g := decodeU64U64(it.Key()); g >= to {
					break
				}
				var err error
				if v, err = it.Value(v); err != nil {
					it.Close()
					return err
				}
				d.addFileGroup(ino, v, -1)
				keys = append(keys, bytes.Clone(it.Key()))
			}
			it.Close()
			done = len(keys) < purgeGroups
			for _, k := range keys {
				_, g := decodeU64U64(k)
				if err := deleteKeys(txn, k, pendingKey(ino, g), freshKey(ino, g)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		s.counters.add(d)
		if purgeBatchHook != nil {
			purgeBatchHook(ino)
		}
		if done {
			return nil
		}
	}
}

// purgeBatchHook, set by tests only, is called after each committed transaction of
// purgeGroupRange: the crash points between them.
var purgeBatchHook func(ino uint64)
