// Fsck repair: what the passes found that can be fixed without guessing data. Keys that
// belong to nothing are deleted and groups cut at their file's end rewritten (in bounded
// transactions), unreachable inodes linked into /lost+found, link counts set, counters
// recomputed from the records. Bad blocks are only reported: repair never invents bytes.
//
// Contract: each step is its own transaction (one inode, or a bounded chunk of keys), so a
// crash during repair leaves a store no worse than before, and running fsck --repair again
// finishes the job. It runs with the compactor and segment GC stopped (Fsck).

package blockstore

import (
	"fmt"
	"syscall"
	"time"

	"lmfs/blockstore/kv"
)

// repair applies what the passes found that can be fixed without guessing data, and marks
// those findings repaired.
func (c *fsckRun) repair() error {
	s, r, inodes, dels, sets, nlinkFix, lost := c.s, c.r, c.inodes, c.dels, c.sets, c.nlinkFix, c.lost
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
		if err := s.update(func(txn kv.Txn) error {
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
		if err := s.update(func(txn kv.Txn) error {
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
			err := s.update(func(txn kv.Txn) error {
				p, err := loadInode(txn, lf.Ino)
				if err != nil {
					return err
				}
				child, err := loadInode(txn, ino)
				if err != nil {
					return err
				}
				if child.IsDir() {
					child.Parent = lf.Ino
					child.Nlink = 2 + inodes[ino].subdirs
				} else {
					child.Nlink = 1
				}
				if err := addEntry(txn, &p, fmt.Sprintf("#%d", ino), &child, time.Now().UnixNano()); err != nil {
					return err
				}
				if err := txn.Delete(orphanKey(ino)); err != nil {
					return err
				}
				if err := saveInode(txn, &p); err != nil {
					return err
				}
				return saveInode(txn, &child)
			})
			if err != nil {
				return err
			}
		}
		mark(FindingUnreachable)
	}
	for _, ino := range nlinkFix {
		fi := inodes[ino]
		want := fi.links
		if fi.n.IsDir() || ino == RootIno {
			want = 2 + fi.subdirs
		}
		if err := s.update(func(txn kv.Txn) error {
			n, err := loadInode(txn, ino)
			if err != nil {
				return err
			}
			n.Nlink = want
			return saveInode(txn, &n)
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
