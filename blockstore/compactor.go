package blockstore

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"lmfs/blockstore/kv"
	"lmfs/codec"
)

// The compactor: writes land fresh, marked pending (codec.StageFresh records; 'q' and 'w' keys
// per block group). Two passes run in the background:
//   - the fast pass codes fresh ('w') groups' blocks with the policy's fast codec at hundreds
//     of MB/s, so the store's size follows the data within moments of a bulk write;
//   - the full recode takes pending ('q') groups in large batches through the policy's best
//     choice (codec.Policy.Best: the classical candidates and the language model).
//
// Which codec a block gets is the policy's business (codec/policy.go); the compactor finds the
// work, hands it over and swaps the result in only if the block is still what it read: a write
// that happened meanwhile wins, and nothing it wrote is ever replaced by older data.

// CompactOptions configure the compactor.
type CompactOptions struct {
	// Policy chooses the codecs (nil: codec.DefaultPolicy without a model).
	Policy *codec.Policy
	// Batch is the number of blocks recoded together (default 256).
	Batch int
	// Idle is how long the compactor sleeps when nothing is pending (default 2s).
	Idle time.Duration
}

// CompactorStats describe the compactor's work since the store was opened.
type CompactorStats struct {
	Running  bool  `json:"running"`
	Blocks   int64 `json:"blocks_done"`
	RawBytes int64 `json:"raw_bytes_done"`
	Saved    int64 `json:"bytes_saved"`
	Skipped  int64 `json:"blocks_skipped"` // overwritten while being recoded
	// StaleRecoded: blocks of an older model replaced by a smaller record (RecodeStale).
	StaleRecoded int64   `json:"stale_recoded,omitempty"`
	FastBlocks   int64   `json:"fast_blocks"` // raw blocks the fast pass coded
	LMBlocks     int64   `json:"lm_blocks"`
	BusySeconds  float64 `json:"busy_seconds"`
	BytesPerSec  float64 `json:"raw_bytes_per_second"`
	LastError    string  `json:"last_error,omitempty"`
	// The batch being recoded and the rate of the recent ones (compactprogress.go).
	BatchBlocks        int64   `json:"batch_blocks"`
	BatchSeconds       float64 `json:"batch_seconds"`
	RecentBlocksPerSec float64 `json:"recent_blocks_per_second"`
	RecentBytesPerSec  float64 `json:"recent_raw_bytes_per_second"`
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
	recode  recodeProgress
}

// StartCompactor starts recoding pending blocks in the background until Close or StopCompactor.
func (s *Store) StartCompactor(o CompactOptions) {
	if o.Policy == nil {
		o.Policy = codec.DefaultPolicy(nil)
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
	c.recode.fill(&st)
	return st
}

// statsSnapshot returns the compactor's counters.
func (c *compactor) statsSnapshot() CompactorStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
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
		if s.spaceLow() {
			// New records are appended before the old ones become garbage: wait for space
			// (space.go) rather than eat into the reserve.
			sleepCtx(ctx, c.opts.Idle)
			continue
		}
		fresh, err := s.markedGroups(tagFresh, nil, fastGroups)
		if err == nil && len(fresh) > 0 {
			start := time.Now()
			err = s.fastPass(c, fresh)
			c.busyNs.Add(int64(time.Since(start)))
			if err != nil {
				c.fail(s, err)
				sleepCtx(ctx, c.opts.Idle)
			}
			continue
		}
		var keys [][]byte
		if err == nil {
			keys, err = s.markedGroups(tagPending, cursor, max(1, c.opts.Batch/GroupBlocks))
		}
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
		cursor = keys[len(keys)-1]
		start := time.Now()
		if err := s.compactBatch(c, keys); err != nil {
			c.fail(s, err)
			sleepCtx(ctx, c.opts.Idle)
		}
		c.busyNs.Add(int64(time.Since(start)))
	}
}

// fastGroups is the number of fresh groups (up to 512 KiB) the fast pass takes at once.
const fastGroups = 16

func (c *compactor) fail(s *Store, err error) {
	if errors.Is(err, kv.ErrClosed) {
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

// markedGroups returns up to n keys of one marker table ('q' or 'w', ino group) after cursor.
func (s *Store) markedGroups(tag byte, cursor []byte, n int) ([][]byte, error) {
	var out [][]byte
	err := s.viewOnce(func(txn kv.Txn) error {
		it := txn.Iterate(kv.IterOptions{Prefix: []byte{tag}})
		defer it.Close()
		seek := []byte{tag}
		if cursor != nil {
			seek = append(append([]byte(nil), cursor...), 0)
		}
		for it.Seek(seek); it.Valid() && len(out) < n; it.Next() {
			if k := it.Key(); len(k) == 17 {
				out = append(out, bytes.Clone(k))
			}
		}
		return nil
	})
	return out, err
}

// readGroups copies the stored values of the groups the marker keys name (nil where the
// group is gone) and the group values they stand for (nil where unreadable: logged).
func (s *Store) readGroups(marks [][]byte) (stored, vals [][]byte, err error) {
	err = s.view(func(txn kv.Txn) error {
		stored, vals = make([][]byte, len(marks)), make([][]byte, len(marks))
		for i, mk := range marks {
			ino, g := decodeU64U64(mk)
			v, err := txn.Get(groupKey(ino, g), nil)
			if errors.Is(err, kv.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			stored[i] = v
			vals[i], err = s.groupValue(ino, g, stored[i])
			if errors.Is(err, errMoved) {
				return err
			}
			if err != nil {
				s.log.Error("compactor: block group fails its check; left as is", "inode", ino, "block", g*GroupBlocks, "err", err)
			}
		}
		return nil
	})
	return stored, vals, err
}

// parseMarked parses the value of the group a compactor mark names; a damaged one is logged
// and left as it is (fsck names it).
func (s *Store) parseMarked(mark, v []byte) (group, bool) {
	grp, err := parseGroup(v)
	if err != nil {
		ino, g := decodeU64U64(mark)
		s.log.Error("compactor: block group fails its check; left as is", "inode", ino, "block", g*GroupBlocks, "err", err)
	}
	return grp, err == nil
}

// fastPass codes the fresh blocks of fresh groups by the policy's fast pass (they stay pending
// for the full recode) and clears the groups' fresh marks.
func (s *Store) fastPass(c *compactor, marks [][]byte) error {
	olds, vals, err := s.readGroups(marks)
	if err != nil {
		return err
	}
	news := make([][]byte, len(olds))
	coded := int64(0)
	for i, old := range vals {
		if old == nil {
			continue
		}
		grp, ok := s.parseMarked(marks[i], old)
		if !ok {
			continue
		}
		changed := false
		for slot, rec := range grp {
			// A record that fails its check is left as it is (damage is never coded into a
			// new record); the full recode logs it.
			if n, err := c.opts.Policy.Fast(rec); err == nil && n != nil {
				grp[slot] = n
				changed = true
				coded++
			}
		}
		if changed {
			news[i] = grp.marshal()
		}
	}
	var d Delta
	err = s.updateData(func(txn kv.Txn, sb *segBatch) error {
		d = Delta{}
		for i, mk := range marks {
			ino, g := decodeU64U64(mk)
			v, err := txn.Get(groupKey(ino, g), nil)
			if errors.Is(err, kv.ErrNotFound) {
				if err := txn.Delete(mk); err != nil {
					return err
				}
				continue
			}
			if err != nil {
				return err
			}
			if !bytes.Equal(v, olds[i]) {
				continue // rewritten meanwhile (and marked fresh again): the next round takes it
			}
			if news[i] != nil {
				nv, err := s.storedValue(sb, ino, g, news[i])
				if err != nil {
					return err
				}
				if err := txn.Set(groupKey(ino, g), nv); err != nil {
					return err
				}
				d.addFileGroup(ino, olds[i], -1)
				d.addFileGroup(ino, news[i], 1)
			}
			if err := txn.Delete(mk); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.counters.add(d)
	c.mu.Lock()
	c.stats.FastBlocks += coded
	c.mu.Unlock()
	return nil
}

// compactBatch recodes the pending blocks of the groups named by pending marks and swaps in
// what is smaller.
func (s *Store) compactBatch(c *compactor, marks [][]byte) error {
	type item struct {
		gi    int // index into marks
		slot  int
		old   []byte // record as read
		raw   []byte
		rec   []byte // new record
		stale bool   // final, but coded by another model (recode.go): replaced only when smaller
	}
	start := time.Now()
	_, olds, err := s.readGroups(marks)
	if err != nil {
		return err
	}
	var items []*item
	for gi, v := range olds {
		if v == nil {
			continue
		}
		grp, ok := s.parseMarked(marks[gi], v)
		if !ok {
			continue
		}
		for slot, rec := range grp {
			if codec.RecordStage(rec) != codec.StageFinal {
				items = append(items, &item{gi: gi, slot: slot, old: rec})
			} else if c.opts.Policy.Stale(rec) {
				items = append(items, &item{gi: gi, slot: slot, old: rec, stale: true})
			}
		}
	}
	recs := make([][]byte, len(items))
	for i, it := range items {
		recs[i] = it.old
	}
	raws, errs := codec.DecodeRecords(recs, s.lm())
	var good []*item
	for i, it := range items {
		if errs[i] != nil {
			ino, g := decodeU64U64(marks[it.gi])
			s.log.Error("compactor: pending block fails its check; left as is", "inode", ino, "block", g*GroupBlocks+uint64(it.slot), "err", errs[i])
			continue
		}
		it.raw = raws[i]
		good = append(good, it)
	}
	blocks := make([][]byte, len(good))
	for i, it := range good {
		blocks[i] = it.raw
	}
	track := c.recode.begin(start, blocks)
	defer track.end()
	final, err := c.opts.Policy.Best(blocks)
	if err != nil {
		return err
	}
	lmBlocks := 0
	for i, it := range good {
		it.rec = final[i]
		if codec.NeedsModel(it.rec) {
			lmBlocks++
		}
	}
	byGroup := make([][]*item, len(marks))
	for _, it := range good {
		byGroup[it.gi] = append(byGroup[it.gi], it)
	}
	var d Delta
	var done, skipped, rawBytes, saved, staleDone int64
	err = s.updateData(func(txn kv.Txn, sb *segBatch) error {
		d = Delta{}
		done, skipped, rawBytes, saved, staleDone = 0, 0, 0, 0, 0
		for gi, mk := range marks {
			ino, g := decodeU64U64(mk)
			key := groupKey(ino, g)
			v, err := txn.Get(key, nil)
			if errors.Is(err, kv.ErrNotFound) {
				if err := deleteKeys(txn, mk, freshKey(ino, g)); err != nil {
					return err
				}
				continue
			}
			if err != nil {
				return err
			}
			gv, err := s.groupValue(ino, g, v)
			if errors.Is(err, errMoved) {
				return err
			}
			grp, perr := parseGroup(gv)
			if err != nil || perr != nil {
				continue // reported above; fsck names it
			}
			swapped := 0
			for _, it := range byGroup[gi] {
				if !bytes.Equal(grp[it.slot], it.old) {
					skipped++ // overwritten meanwhile: the newer write wins
					continue
				}
				if it.stale {
					if len(it.rec) >= len(it.old) {
						continue // the older model's record stays: it is no larger
					}
					staleDone++
				}
				grp[it.slot] = it.rec
				swapped++
				rawBytes += int64(len(it.raw))
				saved += int64(len(it.old) - len(it.rec))
			}
			done += int64(swapped)
			if swapped > 0 {
				nv := grp.marshal()
				sv, err := s.storedValue(sb, ino, g, nv)
				if err != nil {
					return err
				}
				if err := txn.Set(key, sv); err != nil {
					return err
				}
				d.addFileGroup(ino, v, -1)
				d.addFileGroup(ino, nv, 1)
			}
			if !grp.pending() {
				if err := deleteKeys(txn, mk, freshKey(ino, g)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.counters.add(d)
	track.ok = true
	c.mu.Lock()
	c.stats.Blocks += done
	c.stats.Skipped += skipped
	c.stats.RawBytes += rawBytes
	c.stats.Saved += saved
	c.stats.StaleRecoded += staleDone
	c.stats.LMBlocks += int64(lmBlocks)
	c.mu.Unlock()
	track.end()
	return nil
}
