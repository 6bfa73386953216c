package blockstore

import (
	"bytes"
	"cmp"
	"errors"
	"slices"
	"time"

	"lmfs/blockstore/kv"
	"lmfs/blockstore/segment"
)

// Segment GC: a data segment is never written again once sealed, so the space of the groups
// in it that were overwritten or deleted comes back only when the segment is rewritten: its
// live entries appended to the current segment (references updated, each in a transaction
// that rereads the reference, so a concurrent write wins), then the file deleted.
//
// Which entries are live is what the index says: one scan of the group keys (references are
// small LSM values) sums the live bytes per segment; a sealed segment whose garbage is at
// least gcRatio of it (gcRatioLow while free space is short) and segGCMin is rewritten. Only
// sealed segments without unfinished reservations are looked at: no new reference into them
// can appear after that, so the references a second scan collects are all there are, and
// once each is moved (or found replaced) the file can go. The moved entries and the new
// references are made durable before the file is deleted. A reader whose snapshot still has
// an old reference gets errMoved and retries (segref.go).

// segGCMin: garbage below this is not worth a rewrite.
const segGCMin = 4 << 20

// segGCEvery is how often the GC loop looks at segments without being asked; segGCFreed of
// records freed makes it look at the next poll.
const (
	segGCEvery = time.Minute
	segGCFreed = 32 << 20
)

// segMoveBatch bounds the payload bytes one move transaction carries.
const segMoveBatch = 4 << 20

// collectSegments rewrites the data segments worth it (low: free space is short) and
// returns how many it removed and how long its index scans took.
func (s *Store) collectSegments(stop <-chan struct{}, low bool) (removed int, scans time.Duration, err error) {
	sizes, err := s.segs.Sealed()
	if err != nil {
		return 0, 0, err
	}
	cur := s.segs.Current()
	if len(sizes) == 0 && len(cur) == 0 {
		return 0, 0, nil
	}
	for id := range sizes {
		for !s.segs.Idle(id) {
			select {
			case <-stop:
				return 0, 0, nil
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	live := map[uint32]int64{}
	scanStart := time.Now()
	err = s.scanRefs(func(_ []byte, v []byte, r groupRef) {
		live[r.seg] += segment.EntrySize(r.n)
	})
	scans = time.Since(scanStart)
	if err != nil {
		return 0, scans, err
	}
	ratio := gcRatio
	if low {
		ratio = gcRatioLow
	}
	worth := func(id uint32, size int64) bool {
		data := max(size-segment.FileHeader, 1)
		garbage := data - live[id]
		return live[id] == 0 || (garbage >= segGCMin && float64(garbage) >= ratio*float64(data))
	}
	var pick []uint32
	for id, size := range sizes {
		if worth(id, size) {
			pick = append(pick, id)
		}
	}
	after := s.segs.Current()
	for id, c := range cur {
		// A segment being appended to that is mostly garbage already (a big file written
		// and deleted) is sealed, so the next pass can rewrite it: only when no append
		// was in flight or made around the scan (its live count is exact then).
		a, ok := after[id]
		if !ok || !(live[id] == 0 || (c.N-segment.FileHeader >= segGCMin && worth(id, c.N))) {
			continue
		}
		if c.Busy || a.Busy || a.Appends != c.Appends {
			if low {
				// Writes are refused, so the appends stop once the ones accepted have
				// landed: look again then (the space may be what a writer waits for).
				s.segGCAgain.Store(true)
			}
			continue
		}
		s.segs.Seal(id)
		s.segGCAgain.Store(true)
		defer s.kickGC()
	}
	if len(pick) == 0 {
		return 0, scans, nil
	}
	// Fewest live bytes first: each costs the least room to move and gives back the most,
	// and the space it gives back may be the room the next one needs.
	slices.SortFunc(pick, func(a, b uint32) int {
		if live[a] != live[b] {
			return cmp.Compare(live[a], live[b])
		}
		return cmp.Compare(a, b)
	})
	moves := map[uint32][]segEntry{}
	for _, id := range pick {
		moves[id] = nil
	}
	scanStart = time.Now()
	err = s.scanRefs(func(k, v []byte, r groupRef) {
		if es, ok := moves[r.seg]; ok {
			v = bytes.Clone(v)
			r, _ = parseRef(v) // its summary must not alias the iterator's buffer
			moves[r.seg] = append(es, segEntry{bytes.Clone(k), v, r})
		}
	})
	scans += time.Since(scanStart)
	if err != nil {
		return 0, scans, err
	}
	skipped := false
	defer func() {
		if skipped && removed > 0 {
			// Space came back after a segment was skipped for want of room: look again.
			s.segGCAgain.Store(true)
		}
	}()
	for _, id := range pick {
		select {
		case <-stop:
			return removed, scans, nil
		default:
		}
		// A segment without live entries moves nothing: it goes however full the disk is
		// (deleting files must give space back even when something else filled it).
		if live[id] > 0 && !s.roomFor(live[id]) {
			s.log.Debug("segment GC: no room to move a segment's live entries now", "segment", id, "live", live[id])
			skipped = true
			continue
		}
		intact, err := s.moveEntries(id, moves[id])
		if err != nil {
			return removed, scans, err
		}
		if !intact {
			continue
		}
		if err := s.segs.Sync(); err != nil {
			return removed, scans, err
		}
		if err := s.db.Sync(); err != nil {
			return removed, scans, err
		}
		if err := s.segs.Delete(id); err != nil {
			return removed, scans, err
		}
		removed++
	}
	return removed, scans, nil
}

// segEntry is a group key that referred to a segment GC is rewriting, with its reference.
type segEntry struct {
	key, stored []byte
	r           groupRef
}

// moveEntries appends the entries of segment id that are still referred to (by the stored
// value the scan saw) to the current segments and updates their references, in transactions
// of up to segMoveBatch. intact is false when an entry failed its check: it is left where it
// is (fsck reports it), and so is its segment.
func (s *Store) moveEntries(id uint32, es []segEntry) (intact bool, err error) {
	slices.SortFunc(es, func(a, b segEntry) int { return int(a.r.off) - int(b.r.off) })
	intact = true
	for i := 0; i < len(es); {
		j, n := i, 0
		for j < len(es) && (j == i || n+int(es[j].r.n) <= segMoveBatch) {
			n += int(es[j].r.n)
			j++
		}
		chunk := es[i:j]
		i = j
		payloads := make([][]byte, len(chunk))
		for k, e := range chunk {
			ino, g := decodeU64U64(e.key)
			p, err := s.readSegment(nil, ino, g, e.r)
			if err == nil {
				err = checkPayload(e.stored, p)
			}
			if err != nil {
				s.log.Error("segment GC: block group fails its check; its segment is kept", "inode", ino, "block", g*GroupBlocks, "segment", id, "err", err)
				intact = false
				continue
			}
			payloads[k] = p
		}
		err := s.updateData(func(txn kv.Txn, sb *segBatch) error {
			var cur []byte
			for k, e := range chunk {
				if payloads[k] == nil {
					continue
				}
				var err error
				cur, err = txn.Get(e.key, cur)
				if errors.Is(err, kv.ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				if !bytes.Equal(cur, e.stored) {
					continue // replaced meanwhile
				}
				ino, g := decodeU64U64(e.key)
				nv, err := sb.add(ino, g, payloads[k], e.r.summary)
				if err != nil {
					return err
				}
				if err := txn.Set(e.key, nv); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return false, err
		}
	}
	return intact, nil
}

// scanRefs calls fn for every group key that holds a segment reference; k and v (and r's
// summary) are valid only during fn.
func (s *Store) scanRefs(fn func(k, v []byte, r groupRef)) error {
	return s.viewOnce(func(txn kv.Txn) error {
		it := txn.Iterate(kv.IterOptions{Prefix: []byte{tagGroup}, Prefetch: true})
		defer it.Close()
		var v []byte
		for it.Seek(nil); it.Valid(); it.Next() {
			var err error
			if v, err = it.Value(v); err != nil {
				return err
			}
			if isRef(v) {
				if r, err := parseRef(v); err == nil {
					fn(it.Key(), v, r)
				}
			}
		}
		return nil
	})
}
