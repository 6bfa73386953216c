// Fsck passes 4 and 5: the data and the counters. Every block group is read (from Badger or
// its data segment, whose entry checksum is checked) and every block in it decoded and
// checked against its CRC32C, in batches (LM blocks take one model call per step for the
// batch, so they are decoded only with FsckOptions.Full); the counters are compared with
// what the stored records add up to. They only read; what repair is to change goes into the
// fsckRun.

package blockstore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"lmfs/blockstore/kv"
	"lmfs/codec"
	"lmfs/model/modelid"
)

// fsckRecord is a block record waiting to be decoded in the block pass's next batch.
type fsckRecord struct {
	key []byte
	rec []byte
	ino uint64
	blk uint64
}

// passBlocks (pass 4) checks the models the store holds, then every block group: it belongs
// to a regular file, reads and parses, holds no block past the file's end, its blocks decode
// and name models the store holds, and its compactor mark is there when it has pending
// blocks; marks of missing groups are orphans. It adds what is stored to c.computed.
func (c *fsckRun) passBlocks() error {
	s := c.s
	c.models = map[uint32]bool{}
	stored, damagedModels, err := s.Models()
	if err != nil {
		return err
	}
	for _, m := range stored {
		c.models[modelid.Short(m)] = true
	}
	for _, id := range damagedModels {
		c.add(Finding{Kind: FindingDamagedModel, Detail: fmt.Sprintf("stored model %x does not match its id (remounting with that model file puts an intact copy back)", id)})
	}
	total := s.Counters()
	c.totalBlocks, _, _ = total.Stored()
	if c.o.Full {
		// The LM blocks take the time (one model step per byte): progress counts them.
		c.totalBlocks = 0
		for name, u := range total.Codecs {
			if codec.NameNeedsModel(name) {
				c.totalBlocks += u.Blocks
			}
		}
	}
	for _, n := range c.inodes {
		c.computed.addInode(&n.n, 1)
	}
	c.lastProgress = time.Now()
	err = s.viewOnce(func(txn kv.Txn) error {
		it := txn.Iterate(kv.IterOptions{Prefix: []byte{tagGroup}, Prefetch: true})
		defer it.Close()
		for it.Seek(nil); it.Valid(); it.Next() {
			k := bytes.Clone(it.Key())
			if len(k) != 17 {
				c.malformedKey(k)
				continue
			}
			v, err := it.Value(nil) // kept: the records queued for decoding alias it
			if err != nil {
				return err
			}
			c.checkGroup(k, v)
			if len(c.batch) >= 256 {
				c.decodeBatch()
			} else {
				c.progress()
			}
		}
		if len(c.batch) > 0 {
			c.decodeBatch()
		}
		for _, tag := range []byte{tagPending, tagFresh} {
			marks := txn.Iterate(kv.IterOptions{Prefix: []byte{tag}})
			defer marks.Close()
			for marks.Seek(nil); marks.Valid(); marks.Next() {
				k := bytes.Clone(marks.Key())
				if len(k) != 17 {
					c.malformedKey(k)
					continue
				}
				ino, g := decodeU64U64(k)
				if !s.hasKey(groupKey(ino, g)) {
					c.add(Finding{Kind: FindingOrphanKey, Ino: ino, Block: int64(g * GroupBlocks), Detail: fmt.Sprintf("pending mark (%c) of missing block group %d (block %d on)", tag, g, g*GroupBlocks)})
					c.dels = append(c.dels, k)
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if c.o.Progress != nil {
		c.o.Progress(c.progressDone(), c.totalBlocks)
	}
	return nil
}

// checkGroup checks the group stored under key k with value v and queues its records for
// decoding.
func (c *fsckRun) checkGroup(k, v []byte) {
	s := c.s
	ino, g := decodeU64U64(k)
	n := c.inodes[ino]
	switch {
	case n == nil || !n.n.IsReg():
		c.add(Finding{Kind: FindingOrphanBlock, Ino: ino, Block: int64(g * GroupBlocks), Detail: "block group of a missing or non-regular inode"})
		c.dels = append(c.dels, k, pendingKey(ino, g), freshKey(ino, g))
		return
	}
	gv, err := s.groupValue(ino, g, v)
	if err == nil && isRef(v) {
		err = checkPayload(v, gv) // ordinary reads leave this to the records' checksums
	}
	var grp group
	if err == nil {
		grp, err = parseGroup(gv)
	}
	if err != nil {
		c.add(Finding{Kind: FindingBadBlock, Ino: ino, Block: int64(g * GroupBlocks), Path: c.pathOf(ino), Detail: fmt.Sprintf("blocks %d-%d: %v", g*GroupBlocks, g*GroupBlocks+GroupBlocks-1, err)})
		c.computed.addGroup(v, 1)
		return
	}
	pastEOF := false
	for slot, rec := range grp {
		blk := g*GroupBlocks + uint64(slot)
		if rec == nil {
			continue
		}
		if blk >= blocksFor(n.n.Size) && !s.hasKey(trimKey(ino)) {
			c.add(Finding{Kind: FindingBlockPastEOF, Ino: ino, Block: int64(blk), Path: c.pathOf(ino), Detail: fmt.Sprintf("block %d past the end of a %d-byte file", blk, n.n.Size)})
			grp[slot] = nil
			pastEOF = true
			continue
		}
		if id, ok := codec.ModelOf(rec); ok && !c.models[id] {
			c.add(Finding{Kind: FindingMissingModel, Ino: ino, Block: int64(blk), Path: c.pathOf(ino), Detail: fmt.Sprintf("model %08x is not in the store", id)})
		}
		if codec.NeedsModel(rec) && !c.o.Full {
			c.checkUndecoded(rec, ino, blk)
			continue
		}
		c.batch = append(c.batch, fsckRecord{k, rec, ino, blk})
	}
	if grp.pending() && !s.hasKey(pendingKey(ino, g)) {
		c.add(Finding{Kind: FindingPendingMark, Ino: ino, Block: int64(g * GroupBlocks), Detail: "pending blocks without their group's marker"})
		c.sets = append(c.sets, keyValue{pendingKey(ino, g), nil})
	}
	if pastEOF {
		// Repair keeps the group without the blocks past the end.
		kept := grp.marshal()
		if grp.empty() {
			c.dels = append(c.dels, k, pendingKey(ino, g), freshKey(ino, g))
		} else {
			c.sets = append(c.sets, keyValue{k, kept})
		}
		c.computed.addGroup(kept, 1)
	} else {
		c.computed.addGroup(v, 1)
	}
}

// checkUndecoded checks an LM record without running the model (the default; Full decodes
// it): its header parses and its payload is long enough to name a model. Its bytes are
// covered by the checksum of the segment entry holding them (checkGroup) or, in a group
// stored in Badger, by Badger's table checksums (checked when the store opens).
func (c *fsckRun) checkUndecoded(rec []byte, ino, blk uint64) {
	c.r.Blocks++
	c.r.LMUndecoded++
	if _, ok := codec.ModelOf(rec); !ok {
		detail := "lm record too short to name its model"
		if _, _, err := codec.ParseHeader(rec); err != nil {
			detail = err.Error()
		}
		c.add(Finding{Kind: FindingBadBlock, Ino: ino, Block: int64(blk), Path: c.pathOf(ino), Detail: detail})
	}
}

// progress reports progress when the last report is 200 ms old.
func (c *fsckRun) progress() {
	if c.o.Progress != nil && time.Since(c.lastProgress) > 200*time.Millisecond {
		c.o.Progress(c.progressDone(), c.totalBlocks)
		c.lastProgress = time.Now()
	}
}

// progressDone is the blocks checked so far, or with Full the LM blocks decoded.
func (c *fsckRun) progressDone() int64 {
	if c.o.Full {
		return c.lmDecoded
	}
	return c.r.Blocks
}

// decodeBatch decodes the queued records (checking each against its CRC32C) and reports
// progress now and then.
func (c *fsckRun) decodeBatch() {
	r := c.r
	recs := make([][]byte, len(c.batch))
	for i, b := range c.batch {
		recs[i] = b.rec
	}
	_, errs := codec.DecodeRecords(recs, c.s.lm())
	for i, b := range c.batch {
		r.Blocks++
		if codec.NeedsModel(b.rec) {
			c.lmDecoded++
		}
		if errs[i] != nil {
			c.add(Finding{Kind: FindingBadBlock, Ino: b.ino, Block: int64(b.blk), Path: c.pathOf(b.ino), Detail: errs[i].Error()})
		}
	}
	c.batch = c.batch[:0]
	c.progress()
}

// passCounters (pass 5) compares the stats counters with what pass 4 added up.
func (c *fsckRun) passCounters() {
	if got := c.s.Counters(); !countersEqual(got, c.computed) {
		a, _ := json.Marshal(got)
		c.add(Finding{Kind: FindingCounters, Detail: fmt.Sprintf("stats counters %s differ from what is stored", a)})
	}
}

func countersEqual(c Counters, d Delta) bool {
	if c.Files != d.Files || c.Dirs != d.Dirs || c.Symlinks != d.Symlinks || c.Others != d.Others ||
		c.Logical != d.Logical || c.Pending != d.Pending || c.PendingRaw != d.PendingRaw {
		return false
	}
	for i, u := range d.codec {
		if u != (CodecUse{}) || c.Codecs[codec.ID(i).String()] != (CodecUse{}) {
			if c.Codecs[codec.ID(i).String()] != u {
				return false
			}
		}
	}
	return true
}
