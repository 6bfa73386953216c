// Write-behind: the per-stripe queues of accepted writes and their committers, which land
// them in Badger in group commits, and settle, FlushFile and SyncFile, which wait for them.
//
// Contract: one committer goroutine per inode-lock stripe takes the queued writes in batches
// (at most maxBatch bytes) and commits each batch as one transaction: data segment entries
// first, then the Badger transaction referencing them, so a crash leaves a batch landed whole
// or not at all. Writers block while their stripe holds maxQueued bytes. A commit that fails
// after WriteAt returned is kept and reported once, by the file's next WriteAt, FlushFile
// (close) or SyncFile (fsync); the other files of a failed batch are committed on their own.
// SyncFile returns after the file's writes have landed and everything committed is durable.

package blockstore

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync"
	"syscall"

	"lmfs/blockstore/kv"
)

// writeReq is one write waiting to be committed.
type writeReq struct {
	ino    uint64
	end    uint64     // the file is at least this long after the write
	blocks []newBlock // in block order
	mtime  int64      // when the write was made
	bytes  int
	seq    uint64 // position in its queue
}

// writeQueue holds the writes of one inode-lock stripe not yet landed.
type writeQueue struct {
	mu     sync.Mutex
	cond   sync.Cond // broadcast when a batch is taken or lands
	reqs   []*writeReq
	bytes  int    // bytes queued, not yet taken
	active bool   // the committer goroutine runs
	queued uint64 // sequence number of the last write queued
	landed uint64 // every write up to this sequence number has landed (or failed)
}

// maxBatch bounds the bytes one commit carries; maxQueued the bytes a stripe may hold queued
// before its writers wait (memory written but not yet committed).
const (
	maxBatch  = 8 << 20
	maxQueued = 32 << 20
)

func (s *Store) queueOf(ino uint64) *writeQueue { return &s.queues[ino%uint64(len(s.queues))] }

// enqueue queues req and starts the stripe's committer if it is not running. A stripe with
// maxQueued bytes waiting holds its writers back until its committer catches up.
func (s *Store) enqueue(req *writeReq) {
	q := s.queueOf(req.ino)
	q.mu.Lock()
	for q.bytes >= maxQueued && q.active {
		q.cond.Wait()
	}
	q.queued++
	req.seq = q.queued
	q.reqs = append(q.reqs, req)
	q.bytes += req.bytes
	s.queuedBytes.Add(int64(req.bytes))
	start := !q.active
	q.active = true
	q.mu.Unlock()
	if start {
		go s.committer(q)
	}
}

// committer commits the queue's writes in batches until it is empty. It keeps one commit
// landing while it prepares the next batch (maps, group values): Badger lets a transaction
// start only after every earlier commit has landed, so this is the overlap there is.
func (s *Store) committer(q *writeQueue) {
	var landing *commit
	for {
		q.mu.Lock()
		var batch []*writeReq
		size := 0
		for len(q.reqs) > 0 && (len(batch) == 0 || size+q.reqs[0].bytes <= maxBatch) {
			size += q.reqs[0].bytes
			batch = append(batch, q.reqs[0])
			q.reqs = q.reqs[1:]
		}
		q.bytes -= size
		if len(batch) == 0 && landing == nil {
			q.active = false
			q.cond.Broadcast()
			q.mu.Unlock()
			return
		}
		q.cond.Broadcast() // room for writers held back
		q.mu.Unlock()
		var c *commit
		if len(batch) > 0 {
			c = prepareCommit(batch)
		}
		if landing != nil {
			s.finishCommit(landing)
			for _, r := range landing.batch {
				s.queuedBytes.Add(-int64(r.bytes))
			}
			q.mu.Lock()
			q.landed = landing.batch[len(landing.batch)-1].seq
			q.cond.Broadcast()
			q.mu.Unlock()
		}
		if landing = c; c != nil {
			s.startCommit(c)
		}
	}
}

// commit is one batch of queued writes on its way into the store.
type commit struct {
	batch    []*writeReq
	inos     []uint64
	blocksOf map[uint64][]newBlock        // per file, in block order; a later write of a block wins
	full     map[uint64]map[uint64][]byte // per file: values of the groups covered whole
	ends     map[uint64]uint64
	mtimes   map[uint64]int64
	d        Delta
	sb       *segBatch // the batch's group values bound for a data segment
	done     chan error
}

func prepareCommit(batch []*writeReq) *commit {
	c := &commit{batch: batch, blocksOf: map[uint64][]newBlock{}, full: map[uint64]map[uint64][]byte{},
		ends: map[uint64]uint64{}, mtimes: map[uint64]int64{}, done: make(chan error, 1)}
	type key struct{ ino, blk uint64 }
	final := map[key]newBlock{}
	for _, r := range batch {
		if _, ok := c.ends[r.ino]; !ok {
			c.inos = append(c.inos, r.ino)
		}
		c.ends[r.ino] = max(c.ends[r.ino], r.end)
		c.mtimes[r.ino] = max(c.mtimes[r.ino], r.mtime)
		for _, nb := range r.blocks {
			final[key{r.ino, nb.blk}] = nb
		}
	}
	for k, nb := range final {
		c.blocksOf[k.ino] = append(c.blocksOf[k.ino], nb)
	}
	for ino, bl := range c.blocksOf {
		slices.SortFunc(bl, func(a, b newBlock) int { return cmp.Compare(a.blk, b.blk) })
		c.full[ino] = fullGroups(bl)
	}
	return c
}

// apply writes the batch into txn (group values bound for a data segment into sb).
func (s *Store) apply(c *commit, txn kv.Txn, sb *segBatch) error {
	c.d = Delta{}
	for _, ino := range c.inos {
		cur, err := getFile(txn, ino)
		if err != nil {
			return err
		}
		if err := s.putBlocks(txn, sb, ino, c.blocksOf[ino], cur.Size, &c.d, c.full[ino]); err != nil {
			return err
		}
		if end := c.ends[ino]; end > cur.Size {
			c.d.Logical += int64(end - cur.Size)
			cur.Size = end
		}
		// The time of the batch's last write of the file (settle orders explicit times after it).
		cur.Mtime, cur.Ctime = c.mtimes[ino], max(cur.Ctime, c.mtimes[ino])
		cur.clearSetID()
		if err := saveInode(txn, &cur); err != nil {
			return err
		}
	}
	return nil
}

// startCommit queues the batch's transaction to Badger; finishCommit waits for it.
func (s *Store) startCommit(c *commit) {
	if s.opts.ReadOnly {
		c.done <- syscall.EROFS
		return
	}
	c.sb = s.segBatch()
	txn, err := s.db.Begin(true)
	if err != nil {
		c.done <- err
		return
	}
	err = s.apply(c, txn, c.sb)
	if err == nil {
		// The segment entries go out before the transaction that references them (here, in
		// the committer, while Badger's write goroutine lands the previous batch).
		err = c.sb.flush()
	}
	if err != nil {
		txn.Discard()
		c.done <- err
		return
	}
	s.gate.RLock() // see gc.go: no commit is queued while Badger is blocked for a flush
	txn.CommitAsync(c.done)
	s.gate.RUnlock()
}

// finishCommit waits until the batch has landed, redoes it if it raced with another
// transaction (nothing later has started: the committer waits here first), and keeps a
// failure for the files' next WriteAt, FlushFile or SyncFile.
func (s *Store) finishCommit(c *commit) {
	err := <-c.done
	c.sb.release()
	if errors.Is(err, kv.ErrConflict) || errors.Is(err, kv.ErrBlocked) {
		err = s.updateData(func(txn kv.Txn, sb *segBatch) error { return s.apply(c, txn, sb) })
	}
	// Decoded LM blocks the cache holds for these blocks are stale now (and reads that
	// started before this commit must not put theirs back: see blockCache.gen).
	for ino, bl := range c.blocksOf {
		s.cache.dropRange(ino, bl[0].blk, bl[len(bl)-1].blk)
	}
	if err != nil && len(c.inos) > 1 {
		// One file's failure (say, deleted meanwhile) must not take the others down.
		for _, ino := range c.inos {
			var own []*writeReq
			for _, r := range c.batch {
				if r.ino == ino {
					own = append(own, r)
				}
			}
			oc := prepareCommit(own)
			s.startCommit(oc)
			s.finishCommit(oc)
		}
		return
	}
	if err != nil {
		if errors.Is(err, kv.ErrTooBig) {
			err = fmt.Errorf("%w: %v", syscall.EFBIG, err)
		}
		s.log.Error("write failed after it was accepted: reported at the next fsync or close", "inode", c.inos[0], "err", err)
		s.setWriteErr(c.inos[0], err)
		return
	}
	s.counters.add(c.d)
	s.kickCompactor()
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

// settle waits until the writes of ino queued so far have landed (writes queued meanwhile
// are not waited for, so a stream of writes cannot starve it).
func (s *Store) settle(ino uint64) { s.settleQueue(s.queueOf(ino)) }

// unsettled reports whether writes of ino's stripe are still queued or landing.
func (s *Store) unsettled(ino uint64) bool {
	q := s.queueOf(ino)
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.landed < q.queued
}

// settleAll waits until every write queued so far has landed.
func (s *Store) settleAll() {
	for i := range s.queues {
		s.settleQueue(&s.queues[i])
	}
}

func (s *Store) settleQueue(q *writeQueue) {
	q.mu.Lock()
	for target := q.queued; q.landed < target; {
		q.cond.Wait()
	}
	q.mu.Unlock()
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
