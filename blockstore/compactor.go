package blockstore

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"lmfs/codec"
)

// The compactor: writes land with a fast codec and a pending mark ('p' key); the compactor
// recodes pending blocks in large batches with the best codecs it has (the classical ones and
// the language model), keeps the smallest, and swaps it in only if the block is still what it
// read. A write that happened meanwhile wins: nothing it wrote is ever replaced by older data.

// LMEncoder codes batches of blocks with a model and verifies every payload by decoding it.
type LMEncoder interface {
	EncodeVerified(blocks [][]byte) ([][]byte, error)
}

// CompactOptions configure the compactor.
type CompactOptions struct {
	// Classic are the classical candidates (default gzip-9, zstd-19, brotli-11).
	Classic []codec.Codec
	// LM is the model codec; nil compacts with the classical codecs only.
	LM LMEncoder
	// Batch is the number of blocks recoded together (default 256).
	Batch int
	// Idle is how long the compactor sleeps when nothing is pending (default 2s).
	Idle time.Duration
}

// CompactorStats describe the compactor's work since the store was opened.
type CompactorStats struct {
	Running     bool    `json:"running"`
	Blocks      int64   `json:"blocks_done"`
	RawBytes    int64   `json:"raw_bytes_done"`
	Saved       int64   `json:"bytes_saved"`
	Skipped     int64   `json:"blocks_skipped"` // overwritten while being recoded
	LMBlocks    int64   `json:"lm_blocks"`
	BusySeconds float64 `json:"busy_seconds"`
	BytesPerSec float64 `json:"raw_bytes_per_second"`
	LastError   string  `json:"last_error,omitempty"`
}

type compactor struct {
	opts    CompactOptions
	kick    chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}
	mu      sync.Mutex
	stats   CompactorStats
	busyNs  atomic.Int64
	running atomic.Bool
}

// StartCompactor starts recoding pending blocks in the background until Close or StopCompactor.
func (s *Store) StartCompactor(o CompactOptions) {
	if o.Classic == nil {
		o.Classic = []codec.Codec{codec.GzipCodec, codec.ZstdCodec, codec.BrotliCodec}
	}
	if o.Batch <= 0 {
		o.Batch = 256
	}
	if o.Idle <= 0 {
		o.Idle = 2 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &compactor{opts: o, kick: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	s.mu.Lock()
	s.compactor = c
	s.mu.Unlock()
	c.running.Store(true)
	go func() {
		defer close(c.done)
		defer c.running.Store(false)
		s.compactLoop(ctx, c)
	}()
}

// StopCompactor stops the compactor and waits for its current batch to finish.
func (s *Store) StopCompactor() {
	s.mu.Lock()
	c := s.compactor
	s.mu.Unlock()
	if c == nil {
		return
	}
	c.cancel()
	<-c.done
}

// Compactor returns the compactor's statistics (zero when none runs).
func (s *Store) Compactor() CompactorStats {
	s.mu.Lock()
	c := s.compactor
	s.mu.Unlock()
	if c == nil {
		return CompactorStats{}
	}
	c.mu.Lock()
	st := c.stats
	c.mu.Unlock()
	st.Running = c.running.Load()
	st.BusySeconds = float64(c.busyNs.Load()) / 1e9
	if st.BusySeconds > 0 {
		st.BytesPerSec = float64(st.RawBytes) / st.BusySeconds
	}
	return st
}

// kickCompactor wakes the compactor after a write.
func (s *Store) kickCompactor() {
	s.mu.Lock()
	c := s.compactor
	s.mu.Unlock()
	if c != nil {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
}

func (s *Store) compactLoop(ctx context.Context, c *compactor) {
	var cursor []byte // last pending key handled; the scan restarts from the start when it runs out
	for ctx.Err() == nil {
		keys, err := s.pendingKeys(cursor, c.opts.Batch)
		if err != nil {
			c.fail(s, err)
			sleepCtx(ctx, c.opts.Idle)
			continue
		}
		if len(keys) == 0 {
			if cursor != nil {
				cursor = nil
				continue
			}
			select {
			case <-ctx.Done():
			case <-c.kick:
			case <-time.After(c.opts.Idle):
			}
			continue
		}
		if s.spaceLow() {
			// Recoded records are appended before the old ones become garbage: wait for
			// space (space.go) rather than eat into the reserve.
			sleepCtx(ctx, c.opts.Idle)
			continue
		}
		cursor = keys[len(keys)-1]
		start := time.Now()
		if err := s.compactBatch(c, keys); err != nil {
			c.fail(s, err)
			sleepCtx(ctx, c.opts.Idle)
		}
		c.busyNs.Add(int64(time.Since(start)))
	}
}

func (c *compactor) fail(s *Store, err error) {
	if errors.Is(err, badger.ErrDBClosed) {
		return
	}
	s.log.Error("compactor", "err", err)
	c.mu.Lock()
	c.stats.LastError = err.Error()
	c.mu.Unlock()
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// pendingKeys returns up to n pending markers after cursor (block keys, 'b' ino blk).
func (s *Store) pendingKeys(cursor []byte, n int) ([][]byte, error) {
	var out [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		o := badger.DefaultIteratorOptions
		o.PrefetchValues = false
		o.Prefix = []byte{tagPending}
		it := txn.NewIterator(o)
		defer it.Close()
		seek := []byte{tagPending}
		if cursor != nil {
			seek = append(append([]byte(nil), cursor...), 0)
		}
		for it.Seek(seek); it.ValidForPrefix([]byte{tagPending}) && len(out) < n; it.Next() {
			if k := it.Item().KeyCopy(nil); len(k) == 17 {
				out = append(out, k)
			}
		}
		return nil
	})
	return out, err
}

// compactBatch recodes the blocks named by pending keys and swaps in what is smaller.
func (s *Store) compactBatch(c *compactor, pkeys [][]byte) error {
	type item struct {
		pkey, bkey []byte
		old        []byte // record as read
		raw        []byte
		rec        []byte // new record
	}
	var items []*item
	var stale [][]byte // pending markers whose block is gone
	err := s.db.View(func(txn *badger.Txn) error {
		for _, pk := range pkeys {
			ino, blk := decodeU64U64(pk)
			bk := blockKey(ino, blk)
			it, err := txn.Get(bk)
			if errors.Is(err, badger.ErrKeyNotFound) {
				stale = append(stale, pk)
				continue
			}
			if err != nil {
				return err
			}
			rec, err := it.ValueCopy(nil)
			if err != nil {
				return err
			}
			items = append(items, &item{pkey: pk, bkey: bk, old: rec})
		}
		return nil
	})
	if err != nil {
		return err
	}
	recs := make([][]byte, len(items))
	for i, it := range items {
		recs[i] = it.old
	}
	raws, errs := codec.DecodeRecords(recs, s.lm())
	var good []*item
	for i, it := range items {
		if errs[i] != nil {
			ino, blk := decodeU64U64(it.pkey)
			s.log.Error("compactor: pending block fails its check; left as is", "inode", ino, "block", blk, "err", errs[i])
			continue
		}
		it.raw = raws[i]
		good = append(good, it)
	}
	// Classical candidates per block, then the model on the whole batch.
	for _, it := range good {
		it.rec = codec.Encode(nil, it.raw, 0, c.opts.Classic...)
	}
	lmBlocks := 0
	if c.opts.LM != nil && len(good) > 0 {
		blocks := make([][]byte, len(good))
		for i, it := range good {
			blocks[i] = it.raw
		}
		payloads, err := c.opts.LM.EncodeVerified(blocks)
		if err != nil {
			return err
		}
		for i, it := range good {
			if p := payloads[i]; p != nil && len(p) < len(it.rec)-codec.HeaderSize && len(p) < len(it.raw) {
				it.rec = codec.EncodeWith(nil, codec.LM, 0, it.raw, p)
				lmBlocks++
			}
		}
	}
	var d Delta
	var done, skipped, rawBytes, saved int64
	err = s.update(func(txn *badger.Txn) error {
		d = Delta{}
		done, skipped, rawBytes, saved = 0, 0, 0, 0
		for _, pk := range stale {
			if _, err := txn.Get(blockKey(decodeU64U64(pk))); errors.Is(err, badger.ErrKeyNotFound) {
				if err := txn.Delete(pk); err != nil {
					return err
				}
			}
		}
		for _, it := range good {
			cur, err := txn.Get(it.bkey)
			if errors.Is(err, badger.ErrKeyNotFound) {
				skipped++
				continue
			}
			if err != nil {
				return err
			}
			same := false
			if err := cur.Value(func(v []byte) error { same = bytes.Equal(v, it.old); return nil }); err != nil {
				return err
			}
			if !same {
				skipped++ // overwritten meanwhile: the newer write wins
				continue
			}
			if err := txn.Set(it.bkey, it.rec); err != nil {
				return err
			}
			if err := txn.Delete(it.pkey); err != nil {
				return err
			}
			d.addBlock(it.old, -1)
			d.addBlock(it.rec, 1)
			done++
			rawBytes += int64(len(it.raw))
			saved += int64(len(it.old) - len(it.rec))
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.counters.add(d)
	c.mu.Lock()
	c.stats.Blocks += done
	c.stats.Skipped += skipped
	c.stats.RawBytes += rawBytes
	c.stats.Saved += saved
	c.stats.LMBlocks += int64(lmBlocks)
	c.mu.Unlock()
	return nil
}
