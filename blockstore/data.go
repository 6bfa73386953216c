package blockstore

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"slices"
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

// ReadAt reads up to len(dst) bytes of file ino at off; it returns fewer at the end of the file.
func (s *Store) ReadAt(ino uint64, dst []byte, off uint64) (int, error) {
	l := s.locks.of(ino)
	l.RLock()
	defer l.RUnlock()
	n := 0
	err := s.db.View(func(txn *badger.Txn) error {
		f, err := getFile(txn, ino)
		if err != nil || off >= f.Size || len(dst) == 0 {
			return err
		}
		n = int(min(f.Size, off+uint64(len(dst))) - off)
		return s.readRange(txn, ino, dst[:n], off)
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// readRange fills dst with the file's bytes at off (all inside the file), decoding only the
// blocks it covers: classical records straight from the value log, LM records in one batch
// (one model call per step for all of them) and through the cache. Call with the inode's lock.
func (s *Store) readRange(txn *badger.Txn, ino uint64, dst []byte, off uint64) error {
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
	for g := first / GroupBlocks; g <= last/GroupBlocks; g++ {
		lo, hi := max(first, g*GroupBlocks), min(last, g*GroupBlocks+GroupBlocks-1)
		item, err := txn.Get(groupKey(ino, g))
		if errors.Is(err, badger.ErrKeyNotFound) {
			for b := lo; b <= hi; b++ {
				out, _ := part(b)
				clear(out)
			}
			continue
		}
		if err != nil {
			return err
		}
		err = item.Value(func(v []byte) error {
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
				case rec[0] == byte(codec.LM):
					if data, ok := s.cache.get(ino, b); ok {
						fill(out, data, at)
					} else {
						lm = append(lm, lmRead{b, bytes.Clone(rec)}) // decoded below, outside the value log's lock
					}
				default:
					if scratch, err = codec.Decode(scratch[:0], rec); err != nil {
						return s.blockError(ino, b, err)
					}
					fill(out, scratch, at)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if len(lm) == 0 {
		return nil
	}
	recs := make([][]byte, len(lm))
	for i, r := range lm {
		recs[i] = r.rec
	}
	dec, errs := codec.DecodeRecords(recs, s.lm())
	for i, r := range lm {
		if errs[i] != nil {
			return s.blockError(ino, r.blk, errs[i])
		}
		out, at := part(r.blk)
		fill(out, dec[i], at)
		s.cache.put(ino, r.blk, dec[i])
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
// with the cache: never modify it. Call with the inode's lock.
func (s *Store) blockAt(txn *badger.Txn, ino, blk uint64) ([]byte, error) {
	if data, ok := s.cache.get(ino, blk); ok {
		return data, nil
	}
	g, slot := groupOf(blk)
	item, err := txn.Get(groupKey(ino, g))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var rec []byte
	err = item.Value(func(v []byte) error {
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
	if rec[0] == byte(codec.LM) {
		s.cache.put(ino, blk, dec[0])
	}
	return dec[0], nil
}

// WriteAt writes data to file ino at off, growing the file as needed.
//
// Writes are committed behind: WriteAt returns once its transaction is queued to Badger, and
// the inode's lock stays held until the commit has landed (released by the commit's callback).
// So the next operation on the file waits for it (and any new transaction sees it: Badger
// starts reads only after every queued commit is applied), while the caller already prepares
// its next request: the commit of one write overlaps the transfer of the next. A commit that
// fails after WriteAt returned is reported by the next WriteAt, FlushFile or SyncFile of the
// file (as a page cache reports writeback errors at fsync and close).
func (s *Store) WriteAt(ino uint64, data []byte, off uint64) (Inode, error) {
	var n Inode
	if err := s.writeErr(ino, false); err != nil {
		return n, err
	}
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

// newBlock is one block's new record (nil: the block is a hole) and its bytes.
type newBlock struct {
	blk uint64
	rec []byte
	raw []byte
}

// writeReq is one write waiting to be committed (see writeChunk).
type writeReq struct {
	ino    uint64
	data   []byte
	off    uint64
	blocks []newBlock // one per block covered; whole blocks are built before queueing
	n      Inode      // the inode after the write
	err    error
	done   chan struct{} // closed once the write is accepted (queued to Badger) or failed
}

// writeQueue holds the writes waiting for one stripe of the inode locks.
type writeQueue struct {
	mu     sync.Mutex
	reqs   []*writeReq
	active bool // a committer is running for this stripe
}

// take removes the next batch from the queue.
func (q *writeQueue) take() []*writeReq {
	q.mu.Lock()
	defer q.mu.Unlock()
	var batch []*writeReq
	size := 0
	for len(q.reqs) > 0 && (len(batch) == 0 || size+len(q.reqs[0].data) <= maxBatch) {
		size += len(q.reqs[0].data)
		batch = append(batch, q.reqs[0])
		q.reqs = q.reqs[1:]
	}
	return batch
}

// maxBatch bounds the bytes one commit of queued writes carries.
const maxBatch = 8 << 20

// writeChunk writes up to maxWriteChunk bytes. Writes queue per inode-lock stripe; one
// committer per stripe takes everything queued into one transaction (group commit) and, once
// that commit has landed, the next batch. The kernel sends many writes of one file at once
// (write-back cache, up to MaxBackground), and each Badger commit costs a round trip through
// its write goroutine, so commits of several MiB keep the value log streaming instead of
// waiting on each 1 MiB request. A write returns when its batch is queued to Badger.
func (s *Store) writeChunk(ino uint64, data []byte, off uint64) (Inode, error) {
	first, last := blockRange(off, uint64(len(data)))
	req := &writeReq{ino: ino, data: data, off: off, blocks: make([]newBlock, last-first+1), done: make(chan struct{})}
	end := off + uint64(len(data))
	// Blocks the write covers whole are built before taking the lock (meanwhile the previous
	// commit lands); partly covered ones need the old bytes, read under the lock.
	for b := first; b <= last; b++ {
		req.blocks[b-first].blk = b
		if bstart := b * bs; off <= bstart && bstart+bs <= end {
			rec := make([]byte, codec.HeaderSize+bs)
			raw := rec[codec.HeaderSize:]
			copy(raw, data[bstart-off:])
			req.blocks[b-first] = newBlock{blk: b, rec: s.encodeNew(rec), raw: raw}
		}
	}
	q := &s.queues[ino%uint64(len(s.queues))]
	q.mu.Lock()
	q.reqs = append(q.reqs, req)
	leader := !q.active
	q.active = true
	q.mu.Unlock()
	if leader {
		l := s.locks.of(ino)
		l.Lock()
		s.commitWrites(q, l, q.take())
	}
	<-req.done
	return req.n, req.err
}

// nextBatch runs after a batch of q has landed (or failed): it releases the lock and, if
// more writes are queued, takes the lock again and commits them; otherwise the stripe has
// no committer until the next write.
func (s *Store) nextBatch(q *writeQueue, l *sync.RWMutex) {
	l.Unlock() // readers, truncates and fsyncs waiting for the lock get their turn
	q.mu.Lock()
	if len(q.reqs) == 0 {
		q.active = false
		q.mu.Unlock()
		return
	}
	q.mu.Unlock()
	l.Lock()
	s.commitWrites(q, l, q.take())
}

// commitWrites commits a batch of queued writes (in queue order) in one transaction; l is
// held until the commit has landed (then nextBatch). Each write's done channel is closed when
// it is accepted or has failed.

func (s *Store) commitWrites(q *writeQueue, l *sync.RWMutex, batch []*writeReq) {
	type key struct{ ino, blk uint64 }
	overlay := map[key][]byte{} // bytes of blocks written earlier in the batch (nil: hole)
	final := map[key]newBlock{}
	inodes := map[uint64]*Inode{}
	var inos []uint64
	var accepted []*writeReq
	finish := func() {
		for _, r := range batch {
			close(r.done)
		}
	}
	// Each write's partly covered blocks, against the store and the writes before it.
	err := s.db.View(func(txn *badger.Txn) error {
		for _, r := range batch {
			n := inodes[r.ino]
			if n == nil {
				cur, err := getFile(txn, r.ino)
				if err != nil {
					r.err = err
					continue
				}
				n = &cur
				inodes[r.ino] = n
				inos = append(inos, r.ino)
			}
			end := r.off + uint64(len(r.data))
			for i := range r.blocks {
				nb := &r.blocks[i]
				bstart := nb.blk * bs
				lo, hi := max(r.off, bstart), min(end, bstart+bs)
				if lo == bstart && hi == bstart+bs {
					continue
				}
				var old []byte
				if (lo > bstart && bstart < n.Size) || (hi < bstart+bs && hi < n.Size) {
					var err error
					if prev, ok := overlay[key{r.ino, nb.blk}]; ok {
						old = prev
					} else if old, err = s.blockAt(txn, r.ino, nb.blk); err != nil {
						r.err = err
						break
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
				copy(raw[lo-bstart:], r.data[lo-r.off:hi-r.off])
				*nb = newBlock{blk: nb.blk, rec: s.encodeNew(rec), raw: raw}
			}
			if r.err != nil {
				continue
			}
			for _, nb := range r.blocks {
				k := key{r.ino, nb.blk}
				final[k] = nb
				if nb.rec == nil {
					overlay[k] = nil
				} else {
					overlay[k] = nb.raw
				}
			}
			n.Size = max(n.Size, end)
			accepted = append(accepted, r)
		}
		return nil
	})
	if err != nil || len(accepted) == 0 {
		for _, r := range batch {
			if r.err == nil {
				r.err = err
			}
		}
		finish()
		s.nextBatch(q, l)
		return
	}
	blocksOf := map[uint64][]newBlock{}
	for k, nb := range final {
		blocksOf[k.ino] = append(blocksOf[k.ino], nb)
	}
	for _, bl := range blocksOf {
		slices.SortFunc(bl, func(a, b newBlock) int { return cmp.Compare(a.blk, b.blk) })
	}
	now := time.Now().UnixNano()
	var d Delta
	fn := func(txn *badger.Txn) error {
		d = Delta{}
		for _, ino := range inos {
			cur, err := getInode(txn, ino)
			if err != nil {
				return err
			}
			if err := s.putBlocks(txn, ino, blocksOf[ino], cur.Size, &d); err != nil {
				return err
			}
			if size := inodes[ino].Size; size > cur.Size {
				d.Logical += int64(size - cur.Size)
				cur.Size = size
			}
			cur.Mtime, cur.Ctime = now, now
			// A write by anyone clears set-user-ID and set-group-ID (as local file systems do).
			cur.Mode &^= syscall.S_ISUID
			if cur.Mode&syscall.S_IXGRP != 0 {
				cur.Mode &^= syscall.S_ISGID
			}
			*inodes[ino] = cur
			if err := putInode(txn, &cur); err != nil {
				return err
			}
		}
		return nil
	}
	for k := range final {
		s.cache.dropRange(k.ino, k.blk, k.blk)
	}
	fail := func(err error) {
		for _, r := range accepted {
			r.err = err
		}
		finish()
		s.nextBatch(q, l)
	}
	if s.opts.ReadOnly {
		fail(syscall.EROFS)
		return
	}
	txn := s.db.NewTransaction(true)
	if err := fn(txn); err != nil {
		txn.Discard()
		if errors.Is(err, badger.ErrTxnTooBig) {
			err = fmt.Errorf("%w: %v", syscall.EFBIG, err)
		}
		fail(err)
		return
	}
	for _, r := range accepted {
		r.n = *inodes[r.ino]
	}
	landed := func(err error) {
		if errors.Is(err, badger.ErrConflict) {
			err = s.update(fn) // raced with another transaction: redo it, still under the lock
		}
		if err != nil {
			s.log.Error("write failed after it was accepted: reported at the next fsync or close", "inodes", inos, "err", err)
			for _, ino := range inos {
				s.setWriteErr(ino, err)
			}
		} else {
			s.counters.add(d)
			s.kickCompactor()
		}
		s.nextBatch(q, l)
	}
	s.gate.RLock() // see gc.go: no commit is queued while Badger is blocked for a flush
	txn.CommitWith(landed)
	s.gate.RUnlock()
	finish()
}

// writeErr returns the error of a write of ino that failed after WriteAt returned; take
// clears it (it is reported once).
func (s *Store) writeErr(ino uint64, take bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.writeErrs[ino]
	if take {
		delete(s.writeErrs, ino)
	}
	if err != nil {
		return fmt.Errorf("%w: an earlier write failed: %v", syscall.EIO, err)
	}
	return nil
}

func (s *Store) setWriteErr(ino uint64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writeErrs[ino] == nil {
		s.writeErrs[ino] = err
	}
}

// settle waits until every write of ino accepted so far has been committed.
func (s *Store) settle(ino uint64) {
	l := s.locks.of(ino)
	l.Lock()
	l.Unlock()
}

// settleAll waits until every write accepted so far has been committed.
func (s *Store) settleAll() {
	for i := range s.locks.stripes {
		s.locks.stripes[i].Lock()
		s.locks.stripes[i].Unlock()
	}
}

// FlushFile waits for the file's writes to be committed and reports a write that failed
// after it was accepted (close(2) calls it).
func (s *Store) FlushFile(ino uint64) error {
	s.settle(ino)
	return s.writeErr(ino, true)
}

// SyncFile makes the file's writes, and everything committed before, durable (fsync(2)).
func (s *Store) SyncFile(ino uint64) error {
	s.settle(ino)
	if err := s.writeErr(ino, true); err != nil {
		return err
	}
	return s.Sync()
}

// encodeNew turns rec (HeaderSize free bytes, then the block's bytes) into the block's record
// for the write path, or nil for an all-zero block (a hole). The write path stores blocks raw
// and pending: coding happens off the write path, in the compactor's fast pass (S2, hundreds of
// MB/s in the background) and then its full recode. Options.FastCodecs codes them here instead.
func (s *Store) encodeNew(rec []byte) []byte {
	raw := rec[codec.HeaderSize:]
	if codec.IsZero(raw) {
		return nil
	}
	if len(s.opts.FastCodecs) > 0 {
		return codec.Encode(nil, raw, codec.FlagPending, s.opts.FastCodecs...)
	}
	return codec.RawRecord(rec, codec.FlagPending)
}

// putBlocks stores new records (sorted by block) into their groups, keeping the other
// records of each group as they are, and sets or clears the groups' compactor marks. oldSize
// is the file's size before the change: no block lies past a file's end, so groups wholly
// past it are not looked up.
func (s *Store) putBlocks(txn *badger.Txn, ino uint64, blocks []newBlock, oldSize uint64, d *Delta) error {
	for i := 0; i < len(blocks); {
		g, _ := groupOf(blocks[i].blk)
		j := i
		for j < len(blocks) && blocks[j].blk/GroupBlocks == g {
			j++
		}
		if err := s.putGroup(txn, ino, g, blocks[i:j], oldSize, d); err != nil {
			return err
		}
		i = j
	}
	return nil
}

func (s *Store) putGroup(txn *badger.Txn, ino, g uint64, blocks []newBlock, oldSize uint64, d *Delta) error {
	key := groupKey(ino, g)
	var grp group
	existed := false
	apply := func() {
		for _, nb := range blocks {
			grp[nb.blk%GroupBlocks] = nb.rec
		}
	}
	var val []byte
	if g*GroupBlocks*bs < oldSize {
		item, err := txn.Get(key)
		switch {
		case err == nil:
			existed = true
			err = item.Value(func(v []byte) error {
				old, err := parseGroup(v)
				if err != nil && len(blocks) < GroupBlocks {
					return s.blockError(ino, g*GroupBlocks, err) // the other slots cannot be kept
				}
				d.addGroup(v, -1)
				grp = old
				apply()
				if !grp.empty() {
					val = grp.marshal() // inside the callback: kept records alias the value log
				}
				return nil
			})
			if err != nil {
				return err
			}
		case !errors.Is(err, badger.ErrKeyNotFound):
			return err
		}
	}
	if !existed {
		apply()
		if !grp.empty() {
			val = grp.marshal()
		}
	}
	if val == nil {
		if !existed {
			return nil // a hole stays a hole
		}
		return deleteKeys(txn, key, pendingKey(ino, g), freshKey(ino, g))
	}
	d.addGroup(val, 1)
	if err := txn.Set(key, val); err != nil {
		return err
	}
	if !grp.pending() {
		if existed {
			return deleteKeys(txn, pendingKey(ino, g), freshKey(ino, g))
		}
		return nil
	}
	if err := txn.Set(pendingKey(ino, g), nil); err != nil {
		return err
	}
	for _, nb := range blocks {
		if len(nb.rec) > 0 && nb.rec[0] == byte(codec.Raw) {
			return txn.Set(freshKey(ino, g), nil) // the compactor's fast pass codes it soon
		}
	}
	return nil
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
	var n Inode
	var tail []byte // the new last block's record when the cut falls inside a block
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		if n, err = getFile(txn, ino); err != nil {
			return err
		}
		if size < n.Size && size%bs != 0 {
			old, err := s.blockAt(txn, ino, size/bs)
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
	err = s.update(func(txn *badger.Txn) error {
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
			if err := s.putGroup(txn, ino, (keep-1)/GroupBlocks, cut, cur.Size, &d); err != nil {
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
func (s *Store) purgeGroups(ino, from uint64) error {
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
		prefix := inoPrefix(tagGroup, ino)
		o.Prefix = prefix
		it := txn.NewIterator(o)
		defer it.Close()
		b := off / bs // the block being looked at
		for it.Seek(groupKey(ino, b/GroupBlocks)); it.ValidForPrefix(prefix); it.Next() {
			_, g := decodeU64U64(it.Item().Key())
			if g*GroupBlocks > b {
				if hole {
					break // a missing group before this one: b is a hole
				}
				b = g * GroupBlocks
			}
			var grp group
			if err := it.Item().Value(func(v []byte) error {
				grp, err = parseGroup(v)
				return err
			}); err != nil {
				return s.blockError(ino, g*GroupBlocks, err)
			}
			for ; b < (g+1)*GroupBlocks; b++ {
				if (grp[b%GroupBlocks] == nil) == hole {
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
