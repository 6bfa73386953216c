// Group I/O: building and storing block-group values (group.go has their format) and reading
// them back wherever they live, inline in Badger or in a data segment.
//
// Contract: a group value is rewritten whole, in the transaction of the change that made it;
// the records of slots the change does not touch are copied verbatim, never decoded. A value
// larger than inlineMax is appended to a data segment through the transaction's segBatch,
// which writes its entries before the transaction commits and keeps them from segment GC until
// it has finished (updateData), so a committed reference always names bytes that were
// written. A read of a group that segment GC moved meanwhile fails with errMoved and is
// retried on a fresh snapshot (view). Callers hold the inode's lock, except the compactor,
// which swaps values in by compare-and-swap.

package blockstore

import (
	"encoding/binary"
	"errors"
	"sync"

	"lmfs/blockstore/kv"
	"lmfs/blockstore/segment"
	"lmfs/codec"
)

// putBlocks stores new records (sorted by block) into their groups, keeping the other
// records of each group as they are, and sets or clears the groups' compactor marks. oldSize
// is the file's size before the change: no block lies past a file's end, so groups wholly
// past it are not looked up.
//
// full holds the values of the groups the blocks cover whole, already built (by group
// number; see fullGroups).
func (s *Store) putBlocks(txn kv.Txn, sb *segBatch, ino uint64, blocks []newBlock, oldSize uint64, d *Delta, full map[uint64][]byte) error {
	for i := 0; i < len(blocks); {
		g, _ := groupOf(blocks[i].blk)
		j := i
		for j < len(blocks) && blocks[j].blk/GroupBlocks == g {
			j++
		}
		val, ok := full[g]
		if err := s.putGroup(txn, sb, ino, g, blocks[i:j], oldSize, d, val, ok); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// buildGroup fills blocks (the 16 of group g) with fresh records of data (32 KiB) built inside
// one group value, which every block points to.
func buildGroup(blocks []newBlock, data []byte, g uint64) {
	val := make([]byte, groupHeader, groupHeader+GroupBlocks*(codec.HeaderSize+bs))
	val[0] = groupFormat
	for k := range GroupBlocks {
		raw := data[k*bs : (k+1)*bs]
		blocks[k] = newBlock{blk: g*GroupBlocks + uint64(k), group: &val}
		if codec.IsZero(raw) {
			continue // a hole: length 0
		}
		start := len(val)
		val = codec.AppendFresh(val, raw) // within capacity: no move
		binary.LittleEndian.PutUint16(val[1+2*k:], uint16(len(val)-start))
		blocks[k].rec = val[start:len(val):len(val)]
	}
	if len(val) == groupHeader {
		val = nil // all holes
	}
}

// fullGroups builds the values of the groups that blocks (sorted) cover whole: they do not
// depend on what the store holds, so the committer builds them before its transaction. A
// group whose 16 blocks all come from the value one write built (buildGroup) is that value.
func fullGroups(blocks []newBlock) map[uint64][]byte {
	full := map[uint64][]byte{}
	for i := 0; i+GroupBlocks <= len(blocks); {
		g, slot := groupOf(blocks[i].blk)
		if slot != 0 || blocks[i+GroupBlocks-1].blk != blocks[i].blk+GroupBlocks-1 {
			i++
			continue
		}
		if built := blocks[i].group; built != nil && sameGroup(blocks[i:i+GroupBlocks], built) {
			full[g] = *built
			i += GroupBlocks
			continue
		}
		var grp group
		for k := range GroupBlocks {
			grp[k] = blocks[i+k].rec
		}
		if grp.empty() {
			full[g] = nil
		} else {
			full[g] = grp.marshal()
		}
		i += GroupBlocks
	}
	return full
}

// sameGroup reports whether every block is from the group value built.
func sameGroup(blocks []newBlock, built *[]byte) bool {
	for _, nb := range blocks {
		if nb.group != built {
			return false
		}
	}
	return true
}

// putGroup stores the new records of blocks (all in group g) into the group; built (with
// isBuilt) is the whole new value when blocks cover the group whole (nil: all holes). A value
// larger than inlineMax goes to a data segment through sb.
func (s *Store) putGroup(txn kv.Txn, sb *segBatch, ino, g uint64, blocks []newBlock, oldSize uint64, d *Delta, built []byte, isBuilt bool) error {
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
		bp := valueBufs.Get().(*[]byte)
		defer valueBufs.Put(bp)
		stored, err := readPooled(txn, key, bp)
		switch {
		case err == nil:
			existed = true
			d.addFileGroup(ino, stored, -1)
			if isBuilt {
				break // nothing of the old value is kept (a reference's summary did the accounting)
			}
			err = s.withGroup(stored, ino, g, func(v []byte) error {
				old, err := parseGroup(v)
				if err != nil && len(blocks) < GroupBlocks {
					return s.blockError(ino, g*GroupBlocks, err) // the other slots cannot be kept
				}
				grp = old
				apply()
				if !grp.empty() {
					val = grp.marshal() // inside the callback: kept records alias the value read
					grp, _ = parseGroup(val)
				} else {
					grp = group{}
				}
				return nil
			})
			if err != nil {
				return err
			}
		case !errors.Is(err, kv.ErrNotFound):
			return err
		}
	}
	switch {
	case isBuilt:
		apply()
		val = built
	case !existed:
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
	d.addFileGroup(ino, val, 1)
	stored, err := s.storedValue(sb, ino, g, val)
	if err != nil {
		return err
	}
	if err := txn.Set(key, stored); err != nil {
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
		if codec.RecordStage(nb.rec) == codec.StageFresh {
			return txn.Set(freshKey(ino, g), nil) // the compactor's fast pass codes it soon
		}
	}
	return nil
}

// withGroup calls fn with the group value that stored (the stored value of group g of ino)
// stands for: stored itself, or the bytes it refers to in a data segment. v is valid only
// during fn.
func (s *Store) withGroup(stored []byte, ino, g uint64, fn func(v []byte) error) error {
	var buf []byte
	if isRef(stored) {
		bp := groupBufs.Get().(*[]byte)
		defer groupBufs.Put(bp)
		buf = *bp
	}
	v, err := s.groupValueInto(buf, ino, g, stored)
	if errors.Is(err, errMoved) {
		return err
	}
	if err != nil {
		return s.blockError(ino, g*GroupBlocks, err)
	}
	return fn(v)
}

// valueBufs holds buffers for values read on hot paths and decoded at once: stored group
// values (an inline group, up to inlineMax bytes, or a segment reference), inodes, directory
// entries. A format-2 group, which can be larger, grows its buffer (readPooled keeps the
// larger one).
var valueBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, 2*inlineMax)
	return &b
}}

// readPooled reads the value of key into *bp's memory (a buffer from valueBufs): no
// allocation per read. The value is valid until *bp is used again or put back.
func readPooled(txn kv.Txn, key []byte, bp *[]byte) ([]byte, error) {
	v, err := txn.Get(key, (*bp)[:0])
	if cap(v) > cap(*bp) {
		*bp = v[:0]
	}
	return v, err
}

// groupBufs holds buffers for group values read from segments and used only inside a
// withGroup callback (a whole group of raw records and its entry header fit).
var groupBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, segment.EntryHeader+maxGroupValue)
	return &b
}}

// groupValue returns the group value that v, the stored value of group g of ino, stands
// for: v itself, or the bytes it refers to in a data segment.
func (s *Store) groupValue(ino, g uint64, v []byte) ([]byte, error) {
	return s.groupValueInto(nil, ino, g, v)
}

// groupValueInto is groupValue reading a segment into buf's memory when it is large enough.
func (s *Store) groupValueInto(buf []byte, ino, g uint64, v []byte) ([]byte, error) {
	if !isRef(v) {
		return v, nil
	}
	r, err := parseRef(v)
	if err != nil {
		return nil, err
	}
	return s.readSegment(buf, ino, g, r)
}

// storedValue is what is stored under group key (ino, g) for group value val: val itself
// when small (or without a batch), else a reference to it appended through sb.
func (s *Store) storedValue(sb *segBatch, ino, g uint64, val []byte) ([]byte, error) {
	if len(val) <= inlineMax || sb == nil {
		return val, nil
	}
	return sb.add(ino, g, val, nil)
}

// updateData is update for transactions that may store group values in data segments: fn
// adds them to sb, whose entries are written before the transaction commits, and whose
// reservations last until it has finished (segment GC waits for them).
func (s *Store) updateData(fn func(txn kv.Txn, sb *segBatch) error) error {
	var batches []*segBatch
	defer func() {
		for _, b := range batches {
			b.release()
		}
	}()
	return s.update(func(txn kv.Txn) error {
		sb := s.segBatch()
		batches = append(batches, sb)
		if err := fn(txn, sb); err != nil {
			return err
		}
		return sb.flush()
	})
}

// view runs fn in a read transaction; again, on a new snapshot, when a data segment it read
// was rewritten by GC meanwhile (errMoved).
func (s *Store) view(fn func(txn kv.Txn) error) error {
	for attempt := 0; ; attempt++ {
		err := s.viewOnce(fn)
		if errors.Is(err, errMoved) && attempt < 100 {
			continue
		}
		return err
	}
}
