package blockstore

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"

	"lmfs/codec"
)

// FindingKind names what kind of problem a Finding is; lmfs fsck prints it and its JSON
// carries it as "kind".
type FindingKind string

// The kinds of findings. Repair fixes those that can be fixed without guessing data (see
// FsckOptions.Repair); the others stay for a person to judge.
const (
	// FindingBadInode: an inode record that cannot be decoded.
	FindingBadInode FindingKind = "bad-inode"
	// FindingBadEntry: a directory entry or readdir slot that cannot be decoded or disagrees
	// with its counterpart.
	FindingBadEntry FindingKind = "bad-entry"
	// FindingOrphanEntry: an entry in a missing directory, or a readdir slot without its
	// entry (repair deletes it).
	FindingOrphanEntry FindingKind = "orphan-entry"
	// FindingDanglingEntry: an entry naming a missing inode (repair deletes it).
	FindingDanglingEntry FindingKind = "dangling-entry"
	// FindingOrphanKey: a key of a missing inode or block group, or a malformed key (repair
	// deletes it).
	FindingOrphanKey FindingKind = "orphan-key"
	// FindingUnreachable: an inode no path from the root reaches (repair links it into
	// /lost+found).
	FindingUnreachable FindingKind = "unreachable"
	// FindingNlink: a link count other than the entries found (repair sets it).
	FindingNlink FindingKind = "nlink"
	// FindingDamagedModel: a stored model whose bytes no longer match its id.
	FindingDamagedModel FindingKind = "damaged-model"
	// FindingBadBlock: a block or block group that does not decode to bytes matching its
	// CRC32C (reported, never zeroed).
	FindingBadBlock FindingKind = "bad-block"
	// FindingBlockPastEOF: a block past its file's end (repair drops it).
	FindingBlockPastEOF FindingKind = "block-past-eof"
	// FindingMissingModel: a block coded by a model the store does not hold.
	FindingMissingModel FindingKind = "missing-model"
	// FindingOrphanBlock: a block group of a missing or non-regular inode (repair deletes it).
	FindingOrphanBlock FindingKind = "orphan-block"
	// FindingPendingMark: a group with pending blocks but no compactor mark (repair sets it).
	FindingPendingMark FindingKind = "pending-mark"
	// FindingCounters: stats counters other than what is stored (repair recomputes them).
	FindingCounters FindingKind = "counters"
	// FindingMarker: the LMFS marker file is missing or damaged (lmfs fsck reports it before
	// Fsck runs; repair writes it anew from the format record).
	FindingMarker FindingKind = "marker"
	// FindingDamagedLog: Badger's value log is damaged; lmfs fsck checked the store read-only.
	FindingDamagedLog FindingKind = "damaged-log"
)

// HasBlock reports whether findings of kind k name a block (Finding.Block).
func (k FindingKind) HasBlock() bool {
	switch k {
	case FindingBadBlock, FindingBlockPastEOF, FindingMissingModel, FindingOrphanBlock, FindingPendingMark:
		return true
	}
	return false
}

// Finding is one problem fsck found.
type Finding struct {
	Kind     FindingKind `json:"kind"`
	Path     string      `json:"path,omitempty"`
	Ino      uint64      `json:"ino,omitempty"`
	Block    int64       `json:"block,omitempty"`
	Detail   string      `json:"detail"`
	Repaired bool        `json:"repaired"`
}

// FsckReport is what Fsck found (and, with repair, fixed).
type FsckReport struct {
	Inodes   int64     `json:"inodes"`
	Entries  int64     `json:"entries"`
	Blocks   int64     `json:"blocks"`
	Findings []Finding `json:"findings"`
	Clean    bool      `json:"clean"`
}

// FsckOptions configure Fsck.
type FsckOptions struct {
	// Repair fixes what can be fixed without guessing data: orphaned keys are dropped, link
	// counts and counters recomputed, unreachable inodes moved to /lost+found. Bad blocks are
	// reported, never zeroed.
	Repair bool
	// Progress is called now and then with blocks checked so far and the total.
	Progress func(done, total int64)
}

type fsckInode struct {
	n       Inode
	links   uint32 // entries pointing at it
	subdirs uint32
	kids    []uint64 // inodes its entries point to (directories)
	parent  uint64   // parent of the first entry seen
	name    string
	reached bool
}

// Fsck checks every block (decoded and checked against its CRC) and the metadata: entries
// point to inodes, link counts match, no block lies past its file's end, no orphaned blocks,
// xattrs or markers, counters equal what is stored, every model referenced is present.
// Whatever the store holds, it returns a report or an error, never panics (boundary.go).
func (s *Store) Fsck(o FsckOptions) (r *FsckReport, err error) {
	defer func() {
		if p := recover(); p != nil {
			r, err = nil, panicError("fsck", p, s.log)
		}
	}()
	return s.fsck(o)
}

func (s *Store) fsck(o FsckOptions) (*FsckReport, error) {
	s.StopCompactor()
	if s.gcStop != nil {
		// GC moves groups between segments: the check reads one snapshot, whose references
		// must stay valid to the end (a moved segment would read as damage).
		s.stopGC()
		defer s.startGC()
	}
	r := &FsckReport{}
	add := func(f Finding) { r.Findings = append(r.Findings, f) }
	inodes := map[uint64]*fsckInode{}
	var dels [][]byte // keys repair deletes
	var sets []kv     // keys repair rewrites
	// A key whose length its table does not allow is only damage or a hostile store: no
	// record of it can be read, and repair drops it.
	malformedKey := func(k []byte) {
		add(Finding{Kind: FindingOrphanKey, Detail: fmt.Sprintf("malformed %q key (%d bytes)", k[0], len(k))})
		dels = append(dels, k)
	}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Seek([]byte{tagInode}); it.ValidForPrefix([]byte{tagInode}); it.Next() {
			k := it.Item().KeyCopy(nil)
			if len(k) != 9 {
				malformedKey(k)
				continue
			}
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			ino := binary.BigEndian.Uint64(k[1:])
			n, err := unmarshalInode(ino, v)
			if err != nil {
				add(Finding{Kind: FindingBadInode, Ino: ino, Detail: err.Error()})
				continue
			}
			inodes[ino] = &fsckInode{n: n}
			r.Inodes++
		}
		if root := inodes[RootIno]; root == nil || !root.n.IsDir() {
			return fmt.Errorf("the root directory is missing or not a directory: the store cannot be repaired by fsck")
		}
		// Directory entries, both views.
		for it.Seek([]byte{tagDirent}); it.ValidForPrefix([]byte{tagDirent}); it.Next() {
			k := it.Item().KeyCopy(nil)
			if len(k) < 10 {
				malformedKey(k)
				continue
			}
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			parent, name := binary.BigEndian.Uint64(k[1:9]), string(k[9:])
			d, err := unmarshalDirent(v)
			p := inodes[parent]
			switch {
			case err != nil:
				add(Finding{Kind: FindingBadEntry, Ino: parent, Detail: fmt.Sprintf("entry %q: %v", name, err)})
				dels = append(dels, k)
				continue
			case p == nil || !p.n.IsDir():
				add(Finding{Kind: FindingOrphanEntry, Ino: parent, Detail: fmt.Sprintf("entry %q in missing directory %d", name, parent)})
				dels = append(dels, k, dirOrderKey(parent, d.Cookie))
				continue
			}
			c := inodes[d.Ino]
			if c == nil {
				add(Finding{Kind: FindingDanglingEntry, Ino: parent, Detail: fmt.Sprintf("entry %q points to missing inode %d", name, d.Ino)})
				dels = append(dels, k, dirOrderKey(parent, d.Cookie))
				continue
			}
			r.Entries++
			c.links++
			p.kids = append(p.kids, d.Ino)
			if c.parent == 0 {
				c.parent, c.name = parent, name
			}
			if c.n.IsDir() {
				p.subdirs++
			}
			ov, err := txn.Get(dirOrderKey(parent, d.Cookie))
			if err != nil {
				add(Finding{Kind: FindingBadEntry, Ino: parent, Detail: fmt.Sprintf("entry %q has no readdir slot %d", name, d.Cookie)})
				continue
			}
			ok := false
			ov.Value(func(b []byte) error {
				ok = len(b) >= 12 && binary.LittleEndian.Uint64(b) == d.Ino && string(b[12:]) == name
				return nil
			})
			if !ok {
				add(Finding{Kind: FindingBadEntry, Ino: parent, Detail: fmt.Sprintf("entry %q disagrees with its readdir slot", name)})
			}
		}
		for it.Seek([]byte{tagDirOrder}); it.ValidForPrefix([]byte{tagDirOrder}); it.Next() {
			k := it.Item().KeyCopy(nil)
			if len(k) != 17 {
				malformedKey(k)
				continue
			}
			v, _ := it.Item().ValueCopy(nil)
			parent, _ := decodeU64U64(k)
			if len(v) < 12 {
				add(Finding{Kind: FindingBadEntry, Ino: parent, Detail: "short readdir slot"})
				dels = append(dels, k)
				continue
			}
			if _, err := txn.Get(direntKey(parent, string(v[12:]))); err != nil {
				add(Finding{Kind: FindingOrphanEntry, Ino: parent, Detail: fmt.Sprintf("readdir slot %q without entry", v[12:])})
				dels = append(dels, k)
			}
		}
		// Xattrs, markers of missing inodes.
		for _, tag := range []byte{tagXattr, tagOrphan, tagTrim} {
			for it.Seek([]byte{tag}); it.ValidForPrefix([]byte{tag}); it.Next() {
				k := it.Item().KeyCopy(nil)
				if tag == tagXattr && len(k) < 10 || tag != tagXattr && len(k) != 9 {
					malformedKey(k)
					continue
				}
				if inodes[binary.BigEndian.Uint64(k[1:9])] == nil {
					add(Finding{Kind: FindingOrphanKey, Detail: fmt.Sprintf("%c key of missing inode", tag)})
					dels = append(dels, k)
				}
			}
		}
		return nil
	})
	if err != nil {
		return r, err
	}
	// Reachability from the root and paths for messages.
	pathOf := func(ino uint64) string {
		var parts []string
		for i := 0; i < 4096 && ino != RootIno; i++ {
			c := inodes[ino]
			if c == nil || c.parent == 0 {
				return "?/" + path.Join(parts...)
			}
			parts = append([]string{c.name}, parts...)
			ino = c.parent
		}
		return "/" + path.Join(parts...)
	}
	s.markReached(inodes)
	var lost []uint64
	var nlinkFix []uint64
	for ino, c := range inodes {
		want := c.links
		if c.n.IsDir() {
			want = 2 + c.subdirs
			if c.links == 0 && ino != RootIno {
				want = 0
			}
		}
		if ino == RootIno {
			want = 2 + c.subdirs
		}
		orphanMarked := s.hasKey(orphanKey(ino))
		switch {
		case !c.reached && ino != RootIno && c.links == 0 && orphanMarked:
			// unlinked while open: freed at the next open
		case !c.reached && ino != RootIno:
			add(Finding{Kind: FindingUnreachable, Ino: ino, Detail: fmt.Sprintf("inode %d (mode %o) is not reachable from the root", ino, c.n.Mode)})
			lost = append(lost, ino)
		case c.n.Nlink != want:
			add(Finding{Kind: FindingNlink, Ino: ino, Path: pathOf(ino), Detail: fmt.Sprintf("nlink %d, %d links found", c.n.Nlink, want)})
			nlinkFix = append(nlinkFix, ino)
		}
	}
	// Blocks: decode every one.
	models := map[uint32]bool{}
	stored, damagedModels, err := s.Models()
	if err != nil {
		return r, err
	}
	for _, m := range stored {
		models[shortID(m)] = true
	}
	for _, id := range damagedModels {
		add(Finding{Kind: FindingDamagedModel, Detail: fmt.Sprintf("stored model %x does not match its id (remounting with that model file puts an intact copy back)", id)})
	}
	total := s.Counters()
	totalBlocks, _, _ := total.Stored()
	var computed Delta
	for _, c := range inodes {
		computed.addInode(&c.n, 1)
	}
	type pend struct {
		key []byte
		rec []byte
		ino uint64
		blk uint64
	}
	var batch []pend
	lastProgress := time.Now()
	check := func() {
		recs := make([][]byte, len(batch))
		for i, b := range batch {
			recs[i] = b.rec
		}
		_, errs := codec.DecodeRecords(recs, s.lm())
		for i, b := range batch {
			r.Blocks++
			if errs[i] != nil {
				add(Finding{Kind: FindingBadBlock, Ino: b.ino, Block: int64(b.blk), Path: pathOf(b.ino), Detail: errs[i].Error()})
			}
		}
		batch = batch[:0]
		if o.Progress != nil && time.Since(lastProgress) > 200*time.Millisecond {
			o.Progress(r.Blocks, totalBlocks)
			lastProgress = time.Now()
		}
	}
	err = s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Seek([]byte{tagGroup}); it.ValidForPrefix([]byte{tagGroup}); it.Next() {
			k := it.Item().KeyCopy(nil)
			if len(k) != 17 {
				malformedKey(k)
				continue
			}
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			ino, g := decodeU64U64(k)
			c := inodes[ino]
			switch {
			case c == nil || !c.n.IsReg():
				add(Finding{Kind: FindingOrphanBlock, Ino: ino, Block: int64(g * GroupBlocks), Detail: "block group of a missing or non-regular inode"})
				dels = append(dels, k, pendingKey(ino, g), freshKey(ino, g))
				continue
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
				add(Finding{Kind: FindingBadBlock, Ino: ino, Block: int64(g * GroupBlocks), Path: pathOf(ino), Detail: fmt.Sprintf("blocks %d-%d: %v", g*GroupBlocks, g*GroupBlocks+GroupBlocks-1, err)})
				computed.addGroup(v, 1)
				continue
			}
			pastEOF := false
			for slot, rec := range grp {
				blk := g*GroupBlocks + uint64(slot)
				if rec == nil {
					continue
				}
				if blk >= blocksFor(c.n.Size) && !s.hasKey(trimKey(ino)) {
					add(Finding{Kind: FindingBlockPastEOF, Ino: ino, Block: int64(blk), Path: pathOf(ino), Detail: fmt.Sprintf("block %d past the end of a %d-byte file", blk, c.n.Size)})
					grp[slot] = nil
					pastEOF = true
					continue
				}
				if id, ok := codec.ModelOf(rec); ok && !models[id] {
					add(Finding{Kind: FindingMissingModel, Ino: ino, Block: int64(blk), Path: pathOf(ino), Detail: fmt.Sprintf("model %08x is not in the store", id)})
				}
				batch = append(batch, pend{k, rec, ino, blk})
			}
			if grp.pending() && !s.hasKey(pendingKey(ino, g)) {
				add(Finding{Kind: FindingPendingMark, Ino: ino, Block: int64(g * GroupBlocks), Detail: "pending blocks without their group's marker"})
				sets = append(sets, kv{pendingKey(ino, g), nil})
			}
			if pastEOF {
				// Repair keeps the group without the blocks past the end.
				kept := grp.marshal()
				if grp.empty() {
					dels = append(dels, k, pendingKey(ino, g), freshKey(ino, g))
				} else {
					sets = append(sets, kv{k, kept})
				}
				computed.addGroup(kept, 1)
			} else {
				computed.addGroup(v, 1)
			}
			if len(batch) >= 256 {
				check()
			}
		}
		if len(batch) > 0 {
			check()
		}
		for _, tag := range []byte{tagPending, tagFresh} {
			for it.Seek([]byte{tag}); it.ValidForPrefix([]byte{tag}); it.Next() {
				k := it.Item().KeyCopy(nil)
				if len(k) != 17 {
					malformedKey(k)
					continue
				}
				ino, g := decodeU64U64(k)
				if !s.hasKey(groupKey(ino, g)) {
					add(Finding{Kind: FindingOrphanKey, Ino: ino, Block: int64(g * GroupBlocks), Detail: fmt.Sprintf("pending mark (%c) of missing block group %d (block %d on)", tag, g, g*GroupBlocks)})
					dels = append(dels, k)
				}
			}
		}
		return nil
	})
	if err != nil {
		return r, err
	}
	if o.Progress != nil {
		o.Progress(r.Blocks, totalBlocks)
	}
	// Counters.
	if got := s.Counters(); !countersEqual(got, computed) {
		a, _ := json.Marshal(got)
		add(Finding{Kind: FindingCounters, Detail: fmt.Sprintf("stats counters %s differ from what is stored", a)})
	}
	if o.Repair {
		if err := s.repair(r, inodes, dels, sets, nlinkFix, lost, computed); err != nil {
			return r, err
		}
	}
	sort.SliceStable(r.Findings, func(i, j int) bool { return r.Findings[i].Kind < r.Findings[j].Kind })
	r.Clean = true
	for _, f := range r.Findings {
		if !f.Repaired {
			r.Clean = false
		}
	}
	return r, nil
}

func shortID(model []byte) uint32 {
	id := sha256.Sum256(model)
	return binary.BigEndian.Uint32(id[:4])
}

// markReached marks what the root reaches through directory entries (the entries
// themselves, not the readdir slots: a damaged slot must not make a tree look unreachable,
// which repair would then link into lost+found a second time).
func (s *Store) markReached(inodes map[uint64]*fsckInode) {
	queue := []uint64{RootIno}
	inodes[RootIno].reached = true
	for len(queue) > 0 {
		dir := queue[0]
		queue = queue[1:]
		for _, ino := range inodes[dir].kids {
			if c := inodes[ino]; c != nil && !c.reached {
				c.reached = true
				if c.n.IsDir() {
					queue = append(queue, ino)
				}
			}
		}
	}
}

// kv is a key and the value repair writes to it.
type kv struct{ k, v []byte }

func (s *Store) hasKey(k []byte) bool {
	found := false
	s.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(k)
		found = err == nil
		return nil
	})
	return found
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

// repair applies what Fsck can fix without guessing data.
func (s *Store) repair(r *FsckReport, inodes map[uint64]*fsckInode, dels [][]byte, sets []kv, nlinkFix, lost []uint64, computed Delta) error {
	mark := func(kinds ...FindingKind) {
		for i := range r.Findings {
			for _, k := range kinds {
				if r.Findings[i].Kind == k {
					r.Findings[i].Repaired = true
				}
			}
		}
	}
	for len(dels) > 0 {
		n := min(len(dels), purgeChunk)
		chunk := dels[:n]
		if err := s.update(func(txn *badger.Txn) error {
			for _, k := range chunk {
				if err := txn.Delete(k); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
		dels = dels[n:]
	}
	for len(sets) > 0 {
		n := min(len(sets), 256)
		chunk := sets[:n]
		if err := s.update(func(txn *badger.Txn) error {
			for _, e := range chunk {
				if err := txn.Set(e.k, e.v); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
		sets = sets[n:]
	}
	mark(FindingOrphanEntry, FindingDanglingEntry, FindingOrphanKey, FindingOrphanBlock, FindingBlockPastEOF, FindingPendingMark)
	if len(lost) > 0 {
		lf, err := s.Lookup(RootIno, "lost+found")
		if err != nil {
			if lf, err = s.Create(RootIno, "lost+found", NewNode{Mode: syscall.S_IFDIR | 0o700}); err != nil {
				return fmt.Errorf("create lost+found: %w", err)
			}
		}
		for _, ino := range lost {
			err := s.update(func(txn *badger.Txn) error {
				p, err := getInode(txn, lf.Ino)
				if err != nil {
					return err
				}
				c, err := getInode(txn, ino)
				if err != nil {
					return err
				}
				if c.IsDir() {
					c.Parent = lf.Ino
					c.Nlink = 2 + inodes[ino].subdirs
				} else {
					c.Nlink = 1
				}
				if err := addEntry(txn, &p, fmt.Sprintf("#%d", ino), &c, time.Now().UnixNano()); err != nil {
					return err
				}
				if err := txn.Delete(orphanKey(ino)); err != nil {
					return err
				}
				if err := putInode(txn, &p); err != nil {
					return err
				}
				return putInode(txn, &c)
			})
			if err != nil {
				return err
			}
		}
		mark(FindingUnreachable)
	}
	for _, ino := range nlinkFix {
		c := inodes[ino]
		want := c.links
		if c.n.IsDir() || ino == RootIno {
			want = 2 + c.subdirs
		}
		if err := s.update(func(txn *badger.Txn) error {
			n, err := getInode(txn, ino)
			if err != nil {
				return err
			}
			n.Nlink = want
			return putInode(txn, &n)
		}); err != nil {
			return err
		}
	}
	mark(FindingNlink)
	d, err := s.scanCounters()
	if err != nil {
		return err
	}
	s.counters.mu.Lock()
	s.counters.d = d
	s.counters.mu.Unlock()
	mark(FindingCounters, FindingPendingMark)
	return s.saveCounters(false)
}
