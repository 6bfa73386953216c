package blockstore

import (
	"syscall"
	"time"

	"lmfs/blockstore/kv"
	"lmfs/codec"
)

// Punching holes and zeroing ranges (fallocate(2) PUNCH_HOLE and ZERO_RANGE). All-zero blocks
// are never stored, so both come down to the same change: the blocks the range covers whole
// become holes (their records leave the index, their bytes become garbage for value-log and
// segment GC), and a block the range covers in part is read, zeroed there and stored again,
// as a partial write would. The difference is the size: a punch never changes it, a zero
// range without KEEP_SIZE grows the file to the range's end (the new bytes are a hole).
//
// Like a truncate it runs under the inode's exclusive lock after the writes queued before it
// have landed, so it is ordered after every write that returned and before every later one.
// The change is committed before it returns, in transactions: the groups at both ends of the
// range (partial blocks, slots cleared) and the inode in one, then the groups wholly inside
// deleted in bounded batches, each group whole. A crash leaves each block with its old or its
// new content; fsync makes what returned durable, as for writes. Unlike a truncate it needs no
// marker: the groups a crash between the batches leaves lie inside the file and hold its old
// bytes, the state a punch of part of the range makes (counters are recomputed after a crash,
// usage and segment liveness are computed from the index: TestPunchCrashMidway). The compactor swaps a
// recoded record in only when the slot still holds the record it read (compactor.go), so a
// block punched while being recoded stays a hole.

// ZeroRange makes [off, off+n) of file ino read as zeros, giving back the space of the blocks
// it covers. With keepSize the size never changes (a range past the end changes nothing
// there); without it the file grows to off+n if that is past its end.
func (s *Store) ZeroRange(ino, off, n uint64, keepSize bool) (Inode, error) {
	end := off + n
	switch {
	case n == 0:
		return Inode{}, syscall.EINVAL // as fallocate(2) says
	case end < off:
		return Inode{}, syscall.EFBIG
	}
	l := s.locks.of(ino)
	l.Lock()
	defer l.Unlock()
	s.settle(ino)

	// The partial blocks at the ends of the range, read before the change (nothing else
	// changes this file's content while the lock is held; the compactor only recodes).
	var f Inode
	var edges []newBlock
	gen := s.cache.generation()
	err := s.view(func(txn kv.Txn) error {
		var err error
		if f, err = getFile(txn, ino); err != nil {
			return err
		}
		edges, err = s.zeroEdges(txn, ino, off, min(end, f.Size), f.Size, gen)
		return err
	})
	if err != nil {
		return f, err
	}
	zend := min(end, f.Size) // the part of the range inside the file
	newSize := f.Size
	if !keepSize {
		newSize = max(newSize, end)
	}
	if off >= zend && newSize == f.Size {
		return f, nil // nothing of the file is in the range
	}

	// Groups at the ends of the range get slot changes; those strictly between go whole.
	var firstG, lastG uint64
	var ends [][]newBlock
	if off < zend {
		first, last := blockRange(off, zend-off)
		firstG, lastG = first/GroupBlocks, last/GroupBlocks
		ends = append(ends, holeSlots(first, last, firstG, off, zend, f.Size, edges))
		if lastG != firstG {
			ends = append(ends, holeSlots(first, last, lastG, off, zend, f.Size, edges))
		}
	}
	now := time.Now().UnixNano()
	var d Delta
	err = s.updateData(func(txn kv.Txn, sb *segBatch) error {
		d = Delta{}
		cur, err := getFile(txn, ino)
		if err != nil {
			return err
		}
		for _, blocks := range ends {
			if len(blocks) == 0 {
				continue
			}
			g := blocks[0].blk / GroupBlocks
			if err := s.putGroup(txn, sb, ino, g, blocks, cur.Size, &d, nil, false); err != nil {
				return err
			}
		}
		if newSize > cur.Size {
			d.Logical += int64(newSize - cur.Size)
			cur.Size = newSize
		}
		cur.Mtime, cur.Ctime = now, now
		cur.clearSetID()
		f = cur
		return saveInode(txn, &cur)
	})
	if off < zend {
		// Decoded blocks the cache holds are stale now (no read fills it while the lock is
		// held, the purge below included).
		first, last := blockRange(off, zend-off)
		s.cache.dropRange(ino, first, last)
	}
	if err != nil {
		return f, err
	}
	s.counters.add(d)
	if off < zend && lastG > firstG+1 {
		return f, s.purgeGroupRange(ino, firstG+1, lastG)
	}
	return f, nil
}

// zeroEdges returns the new records of the blocks that [off, zend) (inside a file of size
// bytes) covers in part: the old bytes with the range zeroed (nil record: the block is all
// zeros now, a hole). A block whose stored bytes end before the range is left out (nothing
// to change). Blocks covered up to the end of the file count as covered whole.
func (s *Store) zeroEdges(txn kv.Txn, ino, off, zend, size uint64, gen uint64) ([]newBlock, error) {
	if off >= zend {
		return nil, nil
	}
	first, last := blockRange(off, zend-off)
	ends := []uint64{first}
	if last != first {
		ends = append(ends, last)
	}
	var out []newBlock
	for _, b := range ends {
		lo, hi, whole := cover(b, off, zend, size)
		if whole {
			continue
		}
		old, err := s.blockAt(txn, ino, b, gen)
		if err != nil {
			return nil, err
		}
		if uint64(len(old)) <= lo {
			continue // the block holds no bytes in the range
		}
		rec := make([]byte, codec.HeaderSize+len(old))
		raw := rec[codec.HeaderSize:]
		copy(raw, old)
		clear(raw[lo:min(hi, uint64(len(old)))])
		out = append(out, newBlock{blk: b, rec: s.encodeNew(rec)})
	}
	return out, nil
}

// cover returns the part [lo, hi) of block b (offsets inside it) that [off, zend) covers,
// and whether that is all of the block's bytes in a file of size bytes.
func cover(b, off, zend, size uint64) (lo, hi uint64, whole bool) {
	bstart := b * bs
	lo = max(off, bstart) - bstart
	hi = min(zend, bstart+bs) - bstart
	return lo, hi, lo == 0 && hi >= min(bs, size-bstart)
}

// holeSlots lists the changes to group g for zeroing [off, zend) (blocks first..last): the
// blocks covered whole become holes, the partial ones take their record from edges.
func holeSlots(first, last, g, off, zend, size uint64, edges []newBlock) []newBlock {
	var out []newBlock
	for b := max(first, g*GroupBlocks); b <= min(last, g*GroupBlocks+GroupBlocks-1); b++ {
		if _, _, whole := cover(b, off, zend, size); whole {
			out = append(out, newBlock{blk: b})
			continue
		}
		for _, e := range edges {
			if e.blk == b {
				out = append(out, e)
			}
		}
	}
	return out
}
