package blockstore

import (
	"bytes"
	"encoding/binary"

	"lmfs/blockstore/kv"
)

// Open files: the file system tells the store when a handle opens and closes, so an inode
// whose last name goes away keeps its data until its last handle closes (POSIX unlink
// semantics). Orphan and trim markers make that cleanup survive a crash: Open finishes it.

// OpenFile records a new open handle of ino. It takes the inode's lock so that it is ordered
// with purgeOrphan: a purge either sees the handle (and leaves the inode alone) or finishes
// first (and the caller, checking the inode after OpenFile, finds it gone).
func (s *Store) OpenFile(ino uint64) {
	l := s.locks.of(ino)
	l.RLock()
	s.mu.Lock()
	s.opens[ino]++
	s.mu.Unlock()
	l.RUnlock()
}

// ReleaseFile records that a handle of ino closed; the last close of an unlinked file frees it.
func (s *Store) ReleaseFile(ino uint64) {
	s.mu.Lock()
	s.opens[ino]--
	last := s.opens[ino] <= 0
	if last {
		delete(s.opens, ino)
	}
	s.mu.Unlock()
	if last {
		s.maybePurge(ino)
	}
}

// maybePurge frees an orphaned inode that no handle has open.
func (s *Store) maybePurge(ino uint64) {
	s.mu.Lock()
	open := s.opens[ino] > 0
	s.mu.Unlock()
	if open {
		return
	}
	if err := s.purgeOrphan(ino); err != nil {
		s.log.Error("freeing an unlinked file failed (finished at next mount)", "inode", ino, "err", err)
	}
}

// purgeOrphan deletes the data and the inode of ino if it is an orphan (no links left).
func (s *Store) purgeOrphan(ino uint64) error {
	l := s.locks.of(ino)
	l.Lock()
	defer l.Unlock()
	s.settle(ino) // writes still queued land first, not after the purge
	s.mu.Lock()
	open := s.opens[ino] > 0 // opened since maybePurge looked: its last close purges
	s.mu.Unlock()
	if open {
		return nil
	}
	isOrphan := false
	err := s.view(func(txn kv.Txn) error {
		var err error
		isOrphan, err = txn.Has(orphanKey(ino))
		return err
	})
	if err != nil || !isOrphan {
		return err
	}
	if err := s.purgeGroups(ino, 0); err != nil {
		return err
	}
	s.cache.dropFrom(ino, 0)
	var d Delta
	err = s.update(func(txn kv.Txn) error {
		d = Delta{}
		n, err := loadInode(txn, ino)
		if err == nil {
			if n.Nlink != 0 {
				return txn.Delete(orphanKey(ino)) // relinked meanwhile: keep it
			}
			d.addInode(&n, -1)
			if err := txn.Delete(inodeKey(ino)); err != nil {
				return err
			}
		}
		if err := deletePrefix(txn, inoPrefix(tagXattr, ino)); err != nil {
			return err
		}
		if err := deletePrefix(txn, inoPrefix(tagDirOrder, ino)); err != nil {
			return err
		}
		if err := txn.Delete(trimKey(ino)); err != nil {
			return err
		}
		return txn.Delete(orphanKey(ino))
	})
	if err == nil {
		s.counters.add(d)
		s.secX.forget(ino)
	}
	return err
}

func deletePrefix(txn kv.Txn, prefix []byte) error {
	var keys [][]byte
	err := kv.ScanKeys(txn, prefix, nil, func(k []byte) (bool, error) {
		keys = append(keys, bytes.Clone(k))
		return true, nil
	})
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// removeOrphans finishes, at open, the cleanups a crash interrupted: unlinked files whose last
// handle was open, and truncations whose block deletion had not finished.
func (s *Store) removeOrphans() error {
	var orphans []uint64
	err := s.view(func(txn kv.Txn) error {
		return kv.ScanKeys(txn, []byte{tagOrphan}, nil, func(k []byte) (bool, error) {
			if len(k) == 9 {
				orphans = append(orphans, binary.BigEndian.Uint64(k[1:]))
			}
			return true, nil
		})
	})
	if err != nil {
		return err
	}
	trims, err := s.trimMarks()
	if err != nil {
		return err
	}
	for ino, from := range trims {
		if err := s.purgeGroups(ino, from); err != nil {
			return err
		}
		if err := s.update(func(txn kv.Txn) error { return txn.Delete(trimKey(ino)) }); err != nil {
			return err
		}
	}
	for _, ino := range orphans {
		if err := s.purgeOrphan(ino); err != nil {
			return err
		}
	}
	if len(orphans)+len(trims) > 0 {
		s.log.Info("finished interrupted cleanups", "orphans", len(orphans), "truncations", len(trims))
	}
	return nil
}

// trimMarks returns the truncations a crash left unfinished: inode -> the number stored in
// its 't' key (a group; a block in format 1).
func (s *Store) trimMarks() (map[uint64]uint64, error) {
	trims := map[uint64]uint64{}
	err := s.view(func(txn kv.Txn) error {
		return kv.Scan(txn, []byte{tagTrim}, nil, func(k, v []byte) (bool, error) {
			if len(k) == 9 && len(v) == 8 {
				trims[binary.BigEndian.Uint64(k[1:])] = binary.BigEndian.Uint64(v)
			}
			return true, nil
		})
	})
	return trims, err
}
