// Read path: ReadAt, SEEK_DATA/SEEK_HOLE, and the block reads partial writes and truncates
// build on (blockAt).
//
// Contract: a read holds the inode's shared lock and first settles the inode's queued writes,
// so it sees every write that returned; it reads one snapshot (kv; view retries on a fresh
// one when segment GC moved a group it read). A block is returned only if its record decodes
// to bytes matching its CRC32C; otherwise the read fails with a BlockError (EIO) naming the
// inode and block, and the rest of the store keeps serving. Reads change nothing on disk; the
// decoded LM blocks they put in the cache are dropped by any write that changes them
// (blockCache.gen). Reads of different inodes, and reads and whole-block writes of one inode,
// run concurrently.

package blockstore

import (
	"bytes"
	"context"
	"errors"
	"syscall"

	"lmfs/blockstore/kv"
	"lmfs/blockstore/segment"
	"lmfs/codec"
)

// ReadAt reads up to len(dst) bytes of file ino at off; it returns fewer at the end of the file.
func (s *Store) ReadAt(ino uint64, dst []byte, off uint64) (int, error) {
	return s.ReadAtContext(context.Background(), ino, dst, off)
}

// ReadAtContext is ReadAt for a request that may be given up: when ctx is done before the
// read's LM blocks have their turn to decode (decodeorder.go), or between chunks of them, it
// fails with EINTR (a decode already running finishes first).
func (s *Store) ReadAtContext(ctx context.Context, ino uint64, dst []byte, off uint64) (int, error) {
	l := s.locks.of(ino)
	l.RLock()
	defer l.RUnlock()
	s.settle(ino)
	n := 0
	gen := s.cache.generation()
	err := s.view(func(txn kv.Txn) error {
		f, err := getFile(txn, ino)
		if err != nil || off >= f.Size || len(dst) == 0 {
			return err
		}
		n = int(min(f.Size, off+uint64(len(dst))) - off)
		return s.readRange(ctx, txn, ino, dst[:n], off, gen)
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// readRange fills dst with the file's bytes at off (all inside the file), decoding only the
// blocks it covers: classical records as they are read, LM records in one batch (one model
// call per step for all of them) and through the cache. Groups stored in data segments are
// read with one pread per run of adjacent entries (a sequential read: one per request). The
// LM batch decodes in chunks, reads at lower offsets first (decodeorder.go). Call with the
// inode's lock.
func (s *Store) readRange(ctx context.Context, txn kv.Txn, ino uint64, dst []byte, off uint64, gen uint64) error {
	end := off + uint64(len(dst))
	first, last := blockRange(off, uint64(len(dst)))
	// part is the piece of dst block b covers and where in the block it starts.
	part := func(b uint64) ([]byte, uint64) {
		bstart := b * bs
		lo, hi := max(off, bstart), min(end, bstart+bs)
		return dst[lo-off : hi-off], lo - bstart
	}
	type lmRead struct {
		blk uint64
		rec []byte
	}
	var lm []lmRead
	scratch := make([]byte, 0, bs)
	// fillGroup fills the part of dst group g covers from its value v.
	fillGroup := func(g uint64, v []byte) error {
		lo, hi := max(first, g*GroupBlocks), min(last, g*GroupBlocks+GroupBlocks-1)
		grp, err := parseGroup(v)
		if err != nil {
			return s.blockError(ino, lo, err)
		}
		for b := lo; b <= hi; b++ {
			out, at := part(b)
			rec := grp[b%GroupBlocks]
			switch {
			case rec == nil:
				clear(out)
			case codec.NeedsModel(rec):
				if data, ok := s.cache.get(ino, b); ok {
					fill(out, data, at)
				} else {
					lm = append(lm, lmRead{b, bytes.Clone(rec)}) // decoded below, in one batch
				}
			case at == 0 && len(out) == bs:
				// A whole block: decoded straight into dst.
				data, err := codec.Decode(out[:0:bs], rec)
				if err != nil {
					return s.blockError(ino, b, err)
				}
				if len(data) > 0 && &data[0] != &out[0] {
					copy(out, data) // a codec that did not decode in place
				}
				clear(out[len(data):])
			default:
				if scratch, err = codec.Decode(scratch[:0], rec); err != nil {
					return s.blockError(ino, b, err)
				}
				fill(out, scratch, at)
			}
		}
		return nil
	}
	type refRead struct {
		g uint64
		r groupRef
	}
	var refs []refRead
	bp := valueBufs.Get().(*[]byte)
	defer valueBufs.Put(bp)
	for g := first / GroupBlocks; g <= last/GroupBlocks; g++ {
		v, err := readPooled(txn, groupKey(ino, g), bp)
		if errors.Is(err, kv.ErrNotFound) {
			lo, hi := max(first, g*GroupBlocks), min(last, g*GroupBlocks+GroupBlocks-1)
			for b := lo; b <= hi; b++ {
				out, _ := part(b)
				clear(out)
			}
			continue
		}
		if err != nil {
			return err
		}
		if !isRef(v) {
			if err := fillGroup(g, v); err != nil {
				return err
			}
			continue
		}
		r, err := parseRef(v)
		if err != nil {
			return s.blockError(ino, g*GroupBlocks, err)
		}
		r.summary = nil // not needed; v's memory is reused for the next group
		refs = append(refs, refRead{g, r})
	}
	for i := 0; i < len(refs); {
		// A run of entries that lie one after the other in one segment.
		j, next := i+1, refs[i].r.loc().End()
		for j < len(refs) && refs[j].r.seg == refs[i].r.seg && int64(refs[j].r.off) == next {
			next += segment.EntrySize(refs[j].r.n)
			j++
		}
		span, done, err := s.segs.ReadRange(refs[i].r.seg, int64(refs[i].r.off), next-int64(refs[i].r.off))
		err = segErr(err)
		if errors.Is(err, errMoved) {
			return err
		}
		if err != nil {
			return s.blockError(ino, refs[i].g*GroupBlocks, err)
		}
		err = segment.ReadMapped(func() error {
			for k := i; k < j; k++ {
				rr := refs[k]
				e := span[int64(rr.r.off)-int64(refs[i].r.off):][:segment.EntrySize(rr.r.n)]
				if err := segment.CheckEntry(e, ino, rr.g, rr.r.loc()); err != nil {
					return s.blockError(ino, rr.g*GroupBlocks, segErr(err))
				}
				if err := fillGroup(rr.g, e[segment.EntryHeader:]); err != nil {
					return err
				}
			}
			return nil
		})
		done()
		var be *BlockError
		if err != nil && !errors.As(err, &be) {
			err = s.blockError(ino, refs[i].g*GroupBlocks, segErr(err)) // a fault under the mapping
		}
		if err != nil {
			return err
		}
		i = j
	}
	if len(lm) == 0 {
		return nil
	}
	gate := s.decodes.of(ino)
	if err := gate.acquire(ctx, off); err != nil {
		return syscall.EINTR
	}
	held := true
	defer func() {
		if held {
			gate.release()
		}
	}()
	for first := true; len(lm) > 0; first = false {
		chunk := lm[:min(len(lm), decodeChunk)]
		lm = lm[len(chunk):]
		if !first {
			if err := gate.next(ctx, off); err != nil {
				held = false
				return syscall.EINTR
			}
		}
		recs := make([][]byte, len(chunk))
		for i, r := range chunk {
			recs[i] = r.rec
		}
		dec, errs := codec.DecodeRecords(recs, s.lm())
		for i, r := range chunk {
			if errs[i] != nil {
				return s.blockError(ino, r.blk, errs[i])
			}
			out, at := part(r.blk)
			fill(out, dec[i], at)
			s.cache.put(ino, r.blk, dec[i], gen)
		}
	}
	return nil
}

// fill copies a block's bytes from at on into out; what the block does not hold reads as zeros.
func fill(out, data []byte, at uint64) {
	k := 0
	if at < uint64(len(data)) {
		k = copy(out, data[at:])
	}
	clear(out[k:])
}

// blockAt returns the content of block blk of ino (nil for a hole). The result may be shared
// with the cache: never modify it. Call with the inode's lock; gen as for blockCache.put.
func (s *Store) blockAt(txn kv.Txn, ino, blk uint64, gen uint64) ([]byte, error) {
	if data, ok := s.cache.get(ino, blk); ok {
		return data, nil
	}
	g, slot := groupOf(blk)
	bp := valueBufs.Get().(*[]byte)
	defer valueBufs.Put(bp)
	stored, err := readPooled(txn, groupKey(ino, g), bp)
	if errors.Is(err, kv.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var rec []byte
	err = s.withGroup(stored, ino, g, func(v []byte) error {
		grp, err := parseGroup(v)
		if err != nil {
			return s.blockError(ino, blk, err)
		}
		rec = bytes.Clone(grp[slot])
		return nil
	})
	if err != nil || rec == nil {
		return nil, err
	}
	dec, errs := codec.DecodeRecords([][]byte{rec}, s.lm())
	if errs[0] != nil {
		return nil, s.blockError(ino, blk, errs[0])
	}
	if codec.NeedsModel(rec) {
		s.cache.put(ino, blk, dec[0], gen)
	}
	return dec[0], nil
}

// SeekData returns the first offset at or after off that holds data (or, with hole, the first
// hole; the end of the file counts as a hole). ENXIO when off is at or past the end.
func (s *Store) SeekData(ino, off uint64, hole bool) (uint64, error) {
	l := s.locks.of(ino)
	l.RLock()
	defer l.RUnlock()
	s.settle(ino)
	var res uint64
	err := s.viewOnce(func(txn kv.Txn) error {
		n, err := loadInode(txn, ino)
		if err != nil {
			return err
		}
		if off >= n.Size {
			return syscall.ENXIO
		}
		it := txn.Iterate(kv.IterOptions{Prefix: inoPrefix(tagGroup, ino), Prefetch: true})
		defer it.Close()
		b := off / bs // the block being looked at
		var v []byte
		for it.Seek(groupKey(ino, b/GroupBlocks)); it.Valid(); it.Next() {
			_, g := decodeU64U64(it.Key())
			if g*GroupBlocks > b {
				if hole {
					break // a missing group before this one: b is a hole
				}
				b = g * GroupBlocks
			}
			if v, err = it.Value(v); err != nil {
				return s.blockError(ino, g*GroupBlocks, err)
			}
			isHole, err := holes(v)
			if err != nil {
				return s.blockError(ino, g*GroupBlocks, err)
			}
			for ; b < (g+1)*GroupBlocks; b++ {
				if isHole[b%GroupBlocks] == hole {
					res = min(max(off, b*bs), n.Size)
					if !hole && res >= n.Size {
						return syscall.ENXIO
					}
					return nil
				}
			}
		}
		if !hole {
			return syscall.ENXIO
		}
		res = min(max(off, b*bs), n.Size)
		return nil
	})
	return res, err
}
