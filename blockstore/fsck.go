// Fsck: the check of a whole store, run as passes like e2fsck's (the order and what each
// checks are at fsck below; the passes are in fsck_namespace.go and fsck_blocks.go, repair in
// fsck_repair.go), and the report it returns: findings of exported kinds that lmfs fsck
// prints and emits as JSON.
//
// Contract: the passes only read; the store is changed only by repair, when asked. Fsck
// stops the compactor and segment GC while it runs (GC restarts after), so the references
// it reads stay valid; nothing else may use the store meanwhile (lmfs fsck refuses a mounted
// store). Whatever the store holds, Fsck returns a report or an error, never panics.

package blockstore

import (
	"fmt"
	"path"
	"sort"
	"time"

	"lmfs/blockstore/kv"
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
	Inodes  int64 `json:"inodes"`
	Entries int64 `json:"entries"`
	Blocks  int64 `json:"blocks"`
	// Full: every block was decoded (FsckOptions.Full). Otherwise LMUndecoded LM blocks were
	// checked without running the model (header, model, the segment entry's checksum).
	Full        bool      `json:"full"`
	LMUndecoded int64     `json:"lm_undecoded"`
	Findings    []Finding `json:"findings"`
	Clean       bool      `json:"clean"`
}

// FsckOptions configure Fsck.
type FsckOptions struct {
	// Repair fixes what can be fixed without guessing data: orphaned keys are dropped, link
	// counts and counters recomputed, unreachable inodes moved to /lost+found. Bad blocks are
	// reported, never zeroed.
	Repair bool
	// Full decodes every block, LM blocks too (one model step per byte: about 100 KB/s per
	// core). Without it LM blocks are checked without the model: their record header and
	// model, and the checksum of the segment entry holding them (a group stored in Badger is
	// covered by Badger's table checksums, checked at every open); blocks of the classical
	// codecs are decoded either way (hundreds of MB/s) and checked against their CRC32C.
	Full bool
	// Progress is called now and then (at most every 200 ms, and once at the end) with
	// blocks checked so far and the total; with Full, LM blocks decoded and their total
	// (they take the time).
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

// Fsck checks every block (decoded and checked against its CRC; LM blocks only with
// FsckOptions.Full) and the metadata: entries
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

// fsckRun is one check: what the passes have found so far and what repair is to change.
type fsckRun struct {
	s      *Store
	o      FsckOptions
	r      *FsckReport
	inodes map[uint64]*fsckInode // every inode record that decodes (pass 1)

	dels     [][]byte   // keys repair deletes
	sets     []keyValue // keys repair rewrites
	lost     []uint64   // unreachable inodes repair links into /lost+found
	nlinkFix []uint64   // inodes whose link count repair sets
	computed Delta      // the counters as the stored records make them (passes 4 and 5)

	// The block pass's state: the models the store holds, records waiting to be decoded in
	// one batch, and progress.
	models       map[uint32]bool
	batch        []fsckRecord
	lmDecoded    int64 // LM blocks decoded (Full)
	totalBlocks  int64
	lastProgress time.Time
}

// fsck runs the passes in order, like e2fsck's: each relies on what the ones before found.
//
//  1. inodes (fsck_namespace.go): every inode record decodes.
//  2. entries: directory entries and readdir slots agree and name inodes that exist; xattrs
//     and markers belong to inodes that exist.
//  3. links: every inode is reachable from the root and its link count matches its entries.
//  4. blocks (fsck_blocks.go): every block decodes to bytes matching its CRC32C (LM blocks
//     only with Full; without it their headers and segment checksums are checked), lies within
//     its file, names a model the store holds; compactor marks match their groups.
//  5. counters: the stats counters equal what the records add up to.
//
// Then repair (fsck_repair.go), when asked. Findings are sorted by kind, stably: within a kind
// they stay in the order the passes found them.
func (s *Store) fsck(o FsckOptions) (*FsckReport, error) {
	s.StopCompactor()
	if s.gcStop != nil {
		// GC moves groups between segments: the check reads one snapshot, whose references
		// must stay valid to the end (a moved segment would read as damage).
		s.stopGC()
		defer s.startGC()
	}
	c := &fsckRun{s: s, o: o, r: &FsckReport{Full: o.Full}, inodes: map[uint64]*fsckInode{}}
	// Passes 1 and 2 read one snapshot.
	err := s.view(func(txn kv.Txn) error {
		if err := c.passInodes(txn); err != nil {
			return err
		}
		if err := c.passEntries(txn); err != nil {
			return err
		}
		return c.passInodeKeys(txn)
	})
	if err != nil {
		return c.r, err
	}
	c.passLinks()
	if err := c.passBlocks(); err != nil {
		return c.r, err
	}
	c.passCounters()
	if o.Repair {
		if err := c.repair(); err != nil {
			return c.r, err
		}
	}
	r := c.r
	sort.SliceStable(r.Findings, func(i, j int) bool { return r.Findings[i].Kind < r.Findings[j].Kind })
	r.Clean = true
	for _, f := range r.Findings {
		if !f.Repaired {
			r.Clean = false
		}
	}
	return r, nil
}

// add records a finding.
func (c *fsckRun) add(f Finding) { c.r.Findings = append(c.r.Findings, f) }

// malformedKey records a key whose length its table does not allow: only damage or a hostile
// store makes one, no record of it can be read, and repair drops it.
func (c *fsckRun) malformedKey(k []byte) {
	c.add(Finding{Kind: FindingOrphanKey, Detail: fmt.Sprintf("malformed %q key (%d bytes)", k[0], len(k))})
	c.dels = append(c.dels, k)
}

// pathOf is a path of ino for messages (through the first entry seen of each inode; "?/..."
// where the way to the root is lost).
func (c *fsckRun) pathOf(ino uint64) string {
	var parts []string
	for i := 0; i < 4096 && ino != RootIno; i++ {
		n := c.inodes[ino]
		if n == nil || n.parent == 0 {
			return "?/" + path.Join(parts...)
		}
		parts = append([]string{n.name}, parts...)
		ino = n.parent
	}
	return "/" + path.Join(parts...)
}

// keyValue is a key and the value repair writes to it.
type keyValue struct{ k, v []byte }

func (s *Store) hasKey(k []byte) bool {
	found := false
	s.view(func(txn kv.Txn) error {
		found, _ = txn.Has(k)
		return nil
	})
	return found
}
