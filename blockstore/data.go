package blockstore

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
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

// ReadAt reads up to len(dst) bytes of file ino at off; it returns fewer at the end of the file.
func (s *Store) ReadAt(ino uint64, dst []byte, off uint64) (int, error) {
	l := s.locks.of(ino)
	l.RLock()
	defer l.RUnlock()
	var size uint64
	var blocks map[uint64][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		n, err := getFile(txn, ino)
		if err != nil {
			return err
		}
		size = n.Size
		if off >= size || len(dst) == 0 {
			return nil
		}
		end := min(size, off+uint64(len(dst)))
		first, last := blockRange(off, end-off)
		blocks, err = s.loadBlocks(txn, ino, first, last)
		return err
	})
	if err != nil || off >= size || len(dst) == 0 {
		return 0, err
	}
	end := min(size, off+uint64(len(dst)))
	dst = dst[:end-off]
	first, last := blockRange(off, end-off)
	for b := first; b <= last; b++ {
		bstart := b * bs
		lo := max(off, bstart)
		hi := min(end, bstart+bs)
		out := dst[lo-off : hi-off]
		data := blocks[b]
		k := 0
		if lo-bstart < uint64(len(data)) {
			k = copy(out, data[lo-bstart:min(uint64(len(data)), hi-bstart)])
		}
		clear(out[k:])
	}
	return len(dst), nil
}

// loadBlocks returns the decoded blocks first..last of ino (holes absent), from the cache or
// decoded in one batch (all LM blocks of the range share the model calls). Call with the
// inode's lock held.
func (s *Store) loadBlocks(txn *badger.Txn, ino, first, last uint64) (map[uint64][]byte, error) {
	out := make(map[uint64][]byte, last-first+1)
	var missIdx []uint64
	var recs [][]byte
	cached := func(b uint64) bool {
		data, ok := s.cache.get(ino, b)
		if ok && data != nil {
			out[b] = data
		}
		return ok
	}
	miss := func(b uint64, item *badger.Item) error {
		rec, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		missIdx = append(missIdx, b)
		recs = append(recs, rec)
		return nil
	}
	if last-first < 4 {
		for b := first; b <= last; b++ {
			if cached(b) {
				continue
			}
			item, err := txn.Get(blockKey(ino, b))
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			if err := miss(b, item); err != nil {
				return nil, err
			}
		}
	} else {
		// Long ranges: one seek and a scan beat a lookup per block.
		o := badger.DefaultIteratorOptions
		prefix := inoPrefix(tagBlock, ino)
		o.Prefix = prefix
		o.PrefetchValues = false
		it := txn.NewIterator(o)
		for it.Seek(blockKey(ino, first)); it.ValidForPrefix(prefix); it.Next() {
			_, b := decodeU64U64(it.Item().Key())
			if b > last {
				break
			}
			if cached(b) {
				continue
			}
			if err := miss(b, it.Item()); err != nil {
				it.Close()
				return nil, err
			}
		}
		it.Close()
	}
	if len(recs) == 0 {
		return out, nil
	}
	dec, errs := codec.DecodeRecords(recs, s.lm())
	for i, b := range missIdx {
		if errs[i] != nil {
			e := &BlockError{Ino: ino, Block: b, Err: errs[i]}
			s.log.Error("block failed its check: read refused", "inode", ino, "block", b, "err", errs[i])
			return nil, e
		}
		out[b] = dec[i]
		s.cache.put(ino, b, dec[i])
	}
	return out, nil
}

// WriteAt writes data to file ino at off, growing the file as needed.
func (s *Store) WriteAt(ino uint64, data []byte, off uint64) (Inode, error) {
	l := s.locks.of(ino)
	l.Lock()
	defer l.Unlock()
	var n Inode
	for len(data) > 0 {
		if err := s.reserveSpace(int64(min(len(data), maxWriteChunk))); err != nil {
			return n, err // disk (nearly) full: see space.go
		}
		k := min(len(data), maxWriteChunk-int(off%bs))
		var err error
		if n, err = s.writeChunk(ino, data[:k], off); err != nil {
			return n, err
		}
		data, off = data[k:], off+uint64(k)
	}
	return n, nil
}

// newBlock is one block's new content and record, nil record for a hole.
type newBlock struct {
	blk uint64
	raw []byte
	rec []byte
}

func (s *Store) writeChunk(ino uint64, data []byte, off uint64) (Inode, error) {
	first, last := blockRange(off, uint64(len(data)))
	var n Inode
	// Assemble the new contents of the blocks, reading partially overwritten ones first.
	var blocks []newBlock
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		if n, err = getFile(txn, ino); err != nil {
			return err
		}
		var partial []uint64
		if off%bs != 0 || (len(data) < bs && off+uint64(len(data)) < n.Size) {
			partial = append(partial, first)
		}
		if end := off + uint64(len(data)); end%bs != 0 && end < n.Size && last != first {
			partial = append(partial, last)
		}
		old := map[uint64][]byte{}
		for _, b := range partial {
			if b*bs >= n.Size {
				continue
			}
			m, err := s.loadBlocks(txn, ino, b, b)
			if err != nil {
				return err
			}
			old[b] = m[b]
		}
		end := off + uint64(len(data))
		for b := first; b <= last; b++ {
			bstart := b * bs
			lo, hi := max(off, bstart), min(end, bstart+bs)
			// The block ends at the later of the write's end and the old data's end.
			oldData := old[b]
			blen := max(hi-bstart, uint64(len(oldData)))
			if n.Size > bstart {
				blen = max(blen, min(n.Size-bstart, bs))
			}
			raw := make([]byte, blen)
			copy(raw, oldData)
			copy(raw[lo-bstart:], data[lo-off:hi-off])
			blocks = append(blocks, newBlock{blk: b, raw: raw})
		}
		return nil
	})
	if err != nil {
		return n, err
	}
	s.encodeBlocks(blocks)
	now := time.Now().UnixNano()
	var d Delta
	err = s.update(func(txn *badger.Txn) error {
		d = Delta{}
		cur, err := getInode(txn, ino)
		if err != nil {
			return err
		}
		for _, nb := range blocks {
			if err := s.replaceBlock(txn, ino, nb.blk, nb.rec, &d, cur.Size); err != nil {
				return err
			}
		}
		if end := off + uint64(len(data)); end > cur.Size {
			d.Logical += int64(end - cur.Size)
			cur.Size = end
		}
		cur.Mtime, cur.Ctime = now, now
		// A write by anyone clears set-user-ID and set-group-ID (as local file systems do).
		cur.Mode &^= syscall.S_ISUID
		if cur.Mode&syscall.S_IXGRP != 0 {
			cur.Mode &^= syscall.S_ISGID
		}
		n = cur
		return putInode(txn, &cur)
	})
	if err != nil {
		for _, nb := range blocks {
			s.cache.dropFrom(ino, nb.blk)
		}
		return n, err
	}
	s.counters.add(d)
	s.kickCompactor()
	for _, nb := range blocks {
		if nb.rec == nil {
			s.cache.put(ino, nb.blk, nil)
		} else {
			s.cache.put(ino, nb.blk, nb.raw)
		}
	}
	return n, nil
}

// encodeBlocks codes blocks with the fast codecs, in parallel when there are many.
func (s *Store) encodeBlocks(blocks []newBlock) {
	enc := func(i int) {
		nb := &blocks[i]
		if codec.IsZero(nb.raw) {
			nb.rec = nil
			return
		}
		nb.rec = codec.Encode(nil, nb.raw, codec.FlagPending, s.opts.FastCodecs...)
	}
	workers := min(runtime.GOMAXPROCS(0), len(blocks)/8)
	if workers <= 1 {
		for i := range blocks {
			enc(i)
		}
		return
	}
	var wg sync.WaitGroup
	var next sync.Mutex
	idx := 0
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				next.Lock()
				i := idx
				idx++
				next.Unlock()
				if i >= len(blocks) {
					return
				}
				enc(i)
			}
		}()
	}
	wg.Wait()
}

// replaceBlock stores rec as block blk of ino (nil rec: a hole) and accounts for the change.
// oldSize is the file's size before the change: blocks at or past its end cannot exist (no
// block lies past a file's end), so appends skip the lookup of the old record.
func (s *Store) replaceBlock(txn *badger.Txn, ino, blk uint64, rec []byte, d *Delta, oldSize uint64) error {
	key := blockKey(ino, blk)
	var item *badger.Item
	err := badger.ErrKeyNotFound
	if blk*bs < oldSize {
		item, err = txn.Get(key)
	}
	switch {
	case err == nil:
		if err := item.Value(func(v []byte) error { d.addBlock(v, -1); return nil }); err != nil {
			return err
		}
	case !errors.Is(err, badger.ErrKeyNotFound):
		return err
	}
	existed := err == nil
	if rec == nil {
		if !existed {
			return nil // a hole stays a hole
		}
		if err := txn.Delete(key); err != nil {
			return err
		}
		return txn.Delete(pendingKey(ino, blk))
	}
	d.addBlock(rec, 1)
	if err := txn.Set(key, rec); err != nil {
		return err
	}
	if len(rec) > 1 && rec[1]&codec.FlagPending != 0 {
		return txn.Set(pendingKey(ino, blk), nil)
	}
	if !existed {
		return nil
	}
	return txn.Delete(pendingKey(ino, blk))
}

// Truncate sets the size of file ino.
func (s *Store) Truncate(ino uint64, size uint64) (Inode, error) {
	l := s.locks.of(ino)
	l.Lock()
	defer l.Unlock()
	var n Inode
	var tail *newBlock
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		if n, err = getFile(txn, ino); err != nil {
			return err
		}
		if size < n.Size && size%bs != 0 {
			// The new last block keeps only the bytes below the new size.
			b := size / bs
			m, err := s.loadBlocks(txn, ino, b, b)
			if err != nil {
				return err
			}
			if old := m[b]; uint64(len(old)) > size%bs {
				tail = &newBlock{blk: b, raw: append([]byte(nil), old[:size%bs]...)}
			}
		}
		return nil
	})
	if err != nil {
		return n, err
	}
	if tail != nil {
		blocks := []newBlock{*tail}
		s.encodeBlocks(blocks)
		tail = &blocks[0]
	}
	oldBlocks := blocksFor(n.Size)
	newBlocks := blocksFor(size)
	now := time.Now().UnixNano()
	var d Delta
	err = s.update(func(txn *badger.Txn) error {
		d = Delta{}
		cur, err := getInode(txn, ino)
		if err != nil {
			return err
		}
		if tail != nil {
			if err := s.replaceBlock(txn, ino, tail.blk, tail.rec, &d, cur.Size); err != nil {
				return err
			}
		}
		if newBlocks < oldBlocks {
			// Blocks past the new end are deleted after this commit, in chunks; the marker
			// finishes the job at the next open if we crash before.
			if err := txn.Set(trimKey(ino), u64bytes(newBlocks)); err != nil {
				return err
			}
		}
		d.Logical += int64(size) - int64(cur.Size)
		cur.Size = size
		cur.Mtime, cur.Ctime = now, now
		n = cur
		return putInode(txn, &cur)
	})
	if err != nil {
		s.cache.dropFrom(ino, 0)
		return n, err
	}
	s.counters.add(d)
	if tail != nil {
		s.cache.put(ino, tail.blk, tail.raw)
	}
	if newBlocks < oldBlocks {
		s.cache.dropFrom(ino, newBlocks)
		if err := s.purgeBlocks(ino, newBlocks); err != nil {
			return n, err
		}
		if err := s.update(func(txn *badger.Txn) error { return txn.Delete(trimKey(ino)) }); err != nil {
			return n, err
		}
	}
	return n, nil
}

// purgeBlocks deletes the blocks of ino from block from on, in bounded transactions.
func (s *Store) purgeBlocks(ino, from uint64) error {
	for {
		var d Delta
		done := false
		err := s.update(func(txn *badger.Txn) error {
			d = Delta{}
			o := badger.DefaultIteratorOptions
			prefix := inoPrefix(tagBlock, ino)
			o.Prefix = prefix
			it := txn.NewIterator(o)
			var keys [][]byte
			for it.Seek(blockKey(ino, from)); it.ValidForPrefix(prefix) && len(keys) < purgeChunk; it.Next() {
				item := it.Item()
				if err := item.Value(func(v []byte) error { d.addBlock(v, -1); return nil }); err != nil {
					it.Close()
					return err
				}
				keys = append(keys, item.KeyCopy(nil))
			}
			it.Close()
			done = len(keys) < purgeChunk
			for _, k := range keys {
				if err := txn.Delete(k); err != nil {
					return err
				}
				_, blk := decodeU64U64(k)
				if err := txn.Delete(pendingKey(ino, blk)); err != nil {
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

// SeekData returns the first offset at or after off that holds data (or, with hole, the first
// hole; the end of the file counts as a hole). ENXIO when off is at or past the end.
func (s *Store) SeekData(ino, off uint64, hole bool) (uint64, error) {
	l := s.locks.of(ino)
	l.RLock()
	defer l.RUnlock()
	var res uint64
	err := s.db.View(func(txn *badger.Txn) error {
		n, err := getInode(txn, ino)
		if err != nil {
			return err
		}
		if off >= n.Size {
			return syscall.ENXIO
		}
		o := badger.DefaultIteratorOptions
		o.PrefetchValues = false
		prefix := inoPrefix(tagBlock, ino)
		o.Prefix = prefix
		it := txn.NewIterator(o)
		defer it.Close()
		b := off / bs
		it.Seek(blockKey(ino, b))
		if !hole {
			if !it.ValidForPrefix(prefix) {
				return syscall.ENXIO
			}
			_, kb := decodeU64U64(it.Item().Key())
			if kb*bs >= n.Size {
				return syscall.ENXIO
			}
			res = max(off, kb*bs)
			return nil
		}
		for ; it.ValidForPrefix(prefix); it.Next() {
			if _, kb := decodeU64U64(it.Item().Key()); kb != b {
				break
			}
			b++
		}
		res = min(max(off, b*bs), n.Size)
		return nil
	})
	return res, err
}
