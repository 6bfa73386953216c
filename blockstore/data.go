package blockstore

import (
	"fmt"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"

	"lmfs/codec"
)

const bs = codec.BlockSize

// maxWriteChunk bounds the bytes one write transaction carries (Badger limits batch sizes).
const maxWriteChunk = 1 << 20

// purgeChunk bounds the keys one cleanup transaction deletes.
const purgeChunk = 8192

// purgeGroups bounds the block groups one cleanup transaction deletes (3 keys each).
const purgeGroups = purgeChunk / 4

// BlockError reports a block that could not be read back intact. It wraps syscall.EIO.
type BlockError struct {
	Ino, Block uint64
	Err        error
}

func (e *BlockError) Error() string {
	return fmt.Sprintf("inode %d block %d: %v", e.Ino, e.Block, e.Err)
}
func (e *BlockError) Unwrap() []error { return []error{syscall.EIO, e.Err} }

// getFile returns the inode of a regular file (EISDIR for a directory, EINVAL for others).
func getFile(txn *badger.Txn, ino uint64) (Inode, error) {
	n, err := getInode(txn, ino)
	switch {
	case err != nil:
		return n, err
	case n.IsDir():
		return n, syscall.EISDIR
	case !n.IsReg():
		return n, syscall.EINVAL
	}
	return n, nil
}

// blockRange returns the blocks covering [off, off+n).
func blockRange(off, n uint64) (first, last uint64) {
	return off / bs, (off + n - 1) / bs
}

// blocksFor is the number of blocks a file of size bytes spans.
func blocksFor(size uint64) uint64 { return (size + bs - 1) / bs }

// groupsFor is the number of block groups a file of size bytes spans.
func groupsFor(size uint64) uint64 { return (blocksFor(size) + GroupBlocks - 1) / GroupBlocks }

// blockError logs a block that failed its check and returns the error reads report (EIO).
func (s *Store) blockError(ino, blk uint64, err error) error {
	s.log.Error("block failed its check: read refused", "inode", ino, "block", blk, "err", err)
	return &BlockError{Ino: ino, Block: blk, Err: err}
}

func deleteKeys(txn *badger.Txn, keys ...[]byte) error {
	for _, k := range keys {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// Truncate sets the size of file ino.
func (s *Store) Truncate(ino uint64, size uint64) (Inode, error) {
	l := s.locks.of(ino)
	l.Lock()
	defer l.Unlock()
	s.settle(ino)
	var n Inode
	var tail []byte // the new last block's record when the cut falls inside a block
	gen := s.cache.generation()
	err := s.view(func(txn *badger.Txn) error {
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
	err = s.updateData(func(txn *badger.Txn, sb *segBatch) error {
		d = Delta{}
		cur, err := getInode(txn, ino)
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
		return putInode(txn, &cur)
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
		if err := s.update(func(txn *badger.Txn) error { return txn.Delete(trimKey(ino)) }); err != nil {
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
		err := s.update(func(txn *badger.Txn) error {
			d = Delta{}
			o := badger.DefaultIteratorOptions
			prefix := inoPrefix(tagGroup, ino)
			o.Prefix = prefix
			it := txn.NewIterator(o)
			var keys [][]byte
			for it.Seek(groupKey(ino, from)); it.ValidForPrefix(prefix) && len(keys) < purgeGroups; it.Next() {
				item := it.Item()
				if _, g := decodeU64U64(item.Key()); g >= to {
					break
				}
				if err := item.Value(func(v []byte) error { d.addGroup(v, -1); return nil }); err != nil {
					it.Close()
					return err
				}
				keys = append(keys, item.KeyCopy(nil))
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
		if done {
			return nil
		}
	}
}
