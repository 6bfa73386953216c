package blockstore

import (
	"bytes"
	"context"
	"errors"

	"lmfs/blockstore/kv"
	"lmfs/codec"
)

// Recoding what an older model coded. LM blocks name their model, and a store keeps every model
// its blocks need, so blocks coded by an earlier default model stay readable forever. After an
// upgrade brings a better model, RecodeStale moves them to it: every group holding a block the
// policy calls stale (codec.Policy.Stale: an LM block of another model) goes through the
// compactor's own batch (compactBatch: decode, the policy's best choice, compare-and-swap
// against concurrent writes), and a stale block is replaced only when its new record is smaller.

// RecodeProgress is what RecodeStale reports as it goes.
type RecodeProgress struct {
	Groups       int64 // block groups scanned
	TotalGroups  int64 // block groups in the store when the scan began (an estimate: writes go on)
	StaleBlocks  int64 // blocks of another model found
	Recoded      int64 // of those, replaced by a smaller record
	BytesSaved   int64
	CurrentModel uint32 // short id of the model new blocks get
}

// ErrNoCompactor: RecodeStale needs the compactor (StartCompactor) for its policy and batches.
var ErrNoCompactor = errors.New("the compactor is not running")

// RecodeStale scans every block group and recodes the blocks an older model coded with the
// compactor's policy; progress (optional) is called after every batch. Writes go on meanwhile:
// a block written during its recode keeps the write. It returns when the scan is done or ctx is
// cancelled.
func (s *Store) RecodeStale(ctx context.Context, progress func(RecodeProgress)) (RecodeProgress, error) {
	s.mu.Lock()
	c := s.compactor
	s.mu.Unlock()
	var p RecodeProgress
	if c == nil {
		return p, ErrNoCompactor
	}
	pol := c.opts.Policy
	id, ok := pol.LMShortID()
	if !ok {
		return p, errors.New("recode: no model for new blocks (the classical codecs only)")
	}
	p.CurrentModel = id
	n, err := s.countKeys([]byte{tagGroup})
	if err != nil {
		return p, err
	}
	p.TotalGroups = n
	per := max(1, c.opts.Batch/GroupBlocks)
	var cursor []byte
	for {
		if err := ctx.Err(); err != nil {
			return p, err
		}
		marks, scanned, next, stale, err := s.staleGroups(pol, cursor, per)
		if err != nil {
			return p, err
		}
		p.Groups += scanned
		p.StaleBlocks += stale
		if len(marks) > 0 {
			before := c.statsSnapshot()
			if err := s.compactBatch(c, marks); err != nil {
				return p, err
			}
			after := c.statsSnapshot()
			p.Recoded += after.StaleRecoded - before.StaleRecoded
			p.BytesSaved += after.Saved - before.Saved
		}
		if progress != nil {
			progress(p)
		}
		if next == nil {
			return p, nil
		}
		cursor = next
	}
}

// staleGroups scans groups from cursor on until it has found n holding stale blocks (or scanned
// 4096 groups), returning their compactor marks, the groups scanned, the key to go on from
// (nil at the end) and the stale blocks found.
func (s *Store) staleGroups(pol *codec.Policy, cursor []byte, n int) (marks [][]byte, scanned int64, next []byte, stale int64, err error) {
	err = s.viewOnce(func(txn kv.Txn) error {
		marks, scanned, next, stale = nil, 0, nil, 0
		it := txn.Iterate(kv.IterOptions{Prefix: []byte{tagGroup}, Prefetch: true})
		defer it.Close()
		seek := []byte{tagGroup}
		if cursor != nil {
			seek = cursor
		}
		for it.Seek(seek); it.Valid(); it.Next() {
			k := it.Key()
			if len(k) != 17 {
				continue // fsck names it
			}
			if len(marks) >= n || scanned >= 4096 {
				next = bytes.Clone(k) // the next scan starts here
				return nil
			}
			scanned++
			v, err := it.Value(nil)
			if err != nil {
				return err
			}
			ino, g := decodeU64U64(k)
			gv, err := s.groupValue(ino, g, v)
			if errors.Is(err, errMoved) {
				return err
			}
			if err != nil {
				continue // unreadable: fsck names it; never recoded
			}
			grp, err := parseGroup(gv)
			if err != nil {
				continue
			}
			found := int64(0)
			for _, rec := range grp {
				if pol.Stale(rec) {
					found++
				}
			}
			if found > 0 {
				stale += found
				marks = append(marks, pendingKey(ino, g))
			}
		}
		return nil
	})
	return marks, scanned, next, stale, err
}

// countKeys counts the keys with prefix (keys only: no values read).
func (s *Store) countKeys(prefix []byte) (int64, error) {
	var n int64
	err := s.viewOnce(func(txn kv.Txn) error {
		it := txn.Iterate(kv.IterOptions{Prefix: prefix})
		defer it.Close()
		for it.Seek(prefix); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	return n, err
}
