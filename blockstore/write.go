// Write path: WriteAt turns the bytes of a write into block records (fresh, uncoded; the
// compactor codes them later) and hands them to the write-behind queue (writebehind.go).
//
// Contract: WriteAt returns once the write is queued, not landed; every later read, stat,
// truncate or fsync of the file waits for it first (settle). Writes of whole blocks need
// nothing from the store and run side by side under the inode's shared lock; a write covering
// part of a block takes the exclusive lock, settles, and reads the block's current bytes, so
// two partial writes never build on the same old bytes and a damaged block fails this write
// (EIO). On a crash, a write that was not followed by a successful fsync may be lost, whole
// blocks at a time: each block holds its old or its new bytes, never a mix.

package blockstore

import (
	"time"

	"lmfs/blockstore/kv"
	"lmfs/codec"
)

// WriteAt writes data to file ino at off, growing the file as needed.
//
// Writes are committed behind, as a page cache writes back: WriteAt builds the new block
// records, queues them and returns; a committer per inode-lock stripe commits everything
// queued in one transaction (group commit), then the next batch. Every operation that reads
// a file's data or attributes first waits until the writes queued before it have landed
// (settle), so readers see each write that returned. A commit that fails after WriteAt
// returned is reported by the file's next WriteAt, FlushFile (close) or SyncFile (fsync).
//
// Why: a Badger commit of 1 MiB takes a millisecond or two (value-log copy, memtable, the
// round trips through its write goroutine). Committing each FUSE request before answering it
// left the writer waiting for every one; behind, the next requests arrive while one lands and
// go into the next commit together.
func (s *Store) WriteAt(ino uint64, data []byte, off uint64) error {
	if err := s.writeErr(ino, false); err != nil {
		return err
	}
	for len(data) > 0 {
		if err := s.reserveSpace(int64(min(len(data), maxWriteChunk))); err != nil {
			return err // disk (nearly) full: see space.go
		}
		k := min(len(data), maxWriteChunk-int(off%bs))
		if err := s.writeChunk(ino, data[:k], off); err != nil {
			return err
		}
		data, off = data[k:], off+uint64(k)
	}
	return nil
}

// newBlock is one block's new record (nil: the block is a hole). group, when set, is the
// whole value of the block's group, built by the write that covered the group whole, the
// record inside it (see buildGroup).
type newBlock struct {
	blk   uint64
	rec   []byte
	group *[]byte
}

// writeChunk builds the records of a write of up to maxWriteChunk bytes and queues them.
// Writes of whole blocks need nothing from the store and queue under the inode's shared lock
// (they may run side by side). A write that covers part of a block needs the block's current
// bytes: it takes the lock exclusively, waits for the queued writes to land, reads, and only
// then queues, so two partial writes of one block never build on the same old bytes, and a
// damaged block fails this write (EIO), not a later one.
func (s *Store) writeChunk(ino uint64, data []byte, off uint64) error {
	first, last := blockRange(off, uint64(len(data)))
	end := off + uint64(len(data))
	req := &writeReq{ino: ino, end: end, blocks: make([]newBlock, last-first+1), mtime: time.Now().UnixNano(), bytes: len(data)}
	for b := first; b <= last; b++ {
		req.blocks[b-first].blk = b
		if g, slot := groupOf(b); slot == 0 && off <= b*bs && (b+GroupBlocks)*bs <= end {
			// The write covers the whole group: its value is built at once, each record
			// copied once, straight into it.
			buildGroup(req.blocks[b-first:b-first+GroupBlocks], data[b*bs-off:(b+GroupBlocks)*bs-off], g)
			b += GroupBlocks - 1
			continue
		}
		if bstart := b * bs; off <= bstart && bstart+bs <= end {
			rec := make([]byte, codec.HeaderSize+bs)
			copy(rec[codec.HeaderSize:], data[bstart-off:])
			req.blocks[b-first] = newBlock{blk: b, rec: s.encodeNew(rec)}
		}
	}
	l := s.locks.of(ino)
	if off%bs == 0 && end%bs == 0 {
		l.RLock()
		defer l.RUnlock()
		s.enqueue(req)
		return nil
	}
	l.Lock()
	defer l.Unlock()
	s.settle(ino)
	gen := s.cache.generation()
	err := s.view(func(txn kv.Txn) error {
		n, err := getFile(txn, ino)
		if err != nil {
			return err
		}
		for i := range req.blocks {
			nb := &req.blocks[i]
			bstart := nb.blk * bs
			lo, hi := max(off, bstart), min(end, bstart+bs)
			if lo == bstart && hi == bstart+bs {
				continue
			}
			var old []byte
			if (lo > bstart && bstart < n.Size) || (hi < bstart+bs && hi < n.Size) {
				if old, err = s.blockAt(txn, ino, nb.blk, gen); err != nil {
					return err
				}
			}
			// The block ends at the later of the write's end and the old data's end.
			blen := max(hi-bstart, uint64(len(old)))
			if n.Size > bstart {
				blen = max(blen, min(n.Size-bstart, bs))
			}
			rec := make([]byte, codec.HeaderSize+blen)
			raw := rec[codec.HeaderSize:]
			copy(raw, old)
			copy(raw[lo-bstart:], data[lo-off:hi-off])
			*nb = newBlock{blk: nb.blk, rec: s.encodeNew(rec)}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.enqueue(req)
	return nil
}

// encodeNew turns rec (HeaderSize free bytes, then the block's bytes) into the block's record
// for the write path, or nil for an all-zero block (a hole). The write path stores blocks as
// codec.FreshRecord makes them, uncoded: coding happens off the write path, in the compactor's
// fast pass (hundreds of MB/s in the background) and then its full recode (codec.Policy).
func (s *Store) encodeNew(rec []byte) []byte {
	raw := rec[codec.HeaderSize:]
	if codec.IsZero(raw) {
		return nil
	}
	return codec.FreshRecord(rec)
}
