package blockstore

import (
	"bytes"
	"encoding/json"
	"fmt"

	"lmfs/blockstore/kv"

	"lmfs/codec"
)

// Format 1 stored one Badger key per block ('b' ino block: the record; 'p' ino block: pending
// mark; 't' ino: first block a truncation still had to delete). Format 2 stores block groups
// (group.go). upgradeV1 converts a format-1 store in place when it is opened for writing: every
// record is kept byte for byte, only regrouped. Each group is converted in one transaction
// (its new value written, its old keys deleted), so a crash midway leaves a store that still
// says format 1 and whose next open finishes the job.

const (
	tagBlockV1   = 'b'
	tagPendingV1 = 'p'
)

// upgradeBatch bounds the records one conversion transaction carries.
const upgradeBatch = 1024

func (s *Store) upgradeV1() error {
	s.log.Warn("upgrading store from format 1 (block groups)", "store", s.dir, "to_format", FormatVersion)
	trims, err := s.trimMarks() // ino -> first block a truncation left to delete
	if err != nil {
		return err
	}
	for {
		done, err := s.upgradeSome(trims)
		if err != nil {
			return fmt.Errorf("upgrade from format 1: %w", err)
		}
		if done {
			break
		}
	}
	// Leftovers: pending marks of blocks that are gone, finished truncations; then the format.
	err = s.update(func(txn kv.Txn) error {
		for _, tag := range []byte{tagPendingV1, tagTrim} {
			if err := deletePrefix(txn, []byte{tag}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("upgrade from format 1: %w", err)
	}
	return s.recordFormat()
}

// recordFormat records that the store is now in this build's format (FormatVersion): in
// Badger, durably, then in the marker file.
func (s *Store) recordFormat() error {
	s.format.Version = FormatVersion
	fb, _ := json.Marshal(s.format)
	if err := s.update(func(txn kv.Txn) error { return txn.Set([]byte{tagFormat}, fb) }); err != nil {
		return fmt.Errorf("record store format: %w", err)
	}
	if err := s.db.Sync(); err != nil {
		return err
	}
	return writeFileAtomic(s.dir, MarkerFile, markerText(FormatVersion, s.format.BlockSize))
}

// upgradeSome converts the next whole groups of format-1 records; done when none is left.
func (s *Store) upgradeSome(trims map[uint64]uint64) (bool, error) {
	type gkey struct{ ino, g uint64 }
	var order []gkey
	groups := map[gkey]*group{}
	var olds [][]byte // the format-1 keys converted
	err := s.view(func(txn kv.Txn) error {
		var last gkey
		return kv.Scan(txn, []byte{tagBlockV1}, nil, func(k, v []byte) (bool, error) {
			k = bytes.Clone(k)
			if len(k) != 17 {
				olds = append(olds, k) // malformed: nothing to keep
				return true, nil
			}
			ino, blk := decodeU64U64(k)
			g, slot := groupOf(blk)
			key := gkey{ino, g}
			if len(olds) >= upgradeBatch && key != last {
				return false, nil // whole groups only
			}
			last = key
			olds = append(olds, k, keyU64U64(tagPendingV1, ino, blk))
			if from, ok := trims[ino]; ok && blk >= from {
				return true, nil // a truncation had cut it off
			}
			rec := append([]byte(nil), v...)
			grp := groups[key]
			if grp == nil {
				grp = &group{}
				groups[key] = grp
				order = append(order, key)
			}
			grp[slot] = rec
			return true, nil
		})
	})
	if err != nil || len(olds) == 0 {
		return len(olds) == 0, err
	}
	err = s.update(func(txn kv.Txn) error {
		for _, k := range olds {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		for _, key := range order {
			grp := groups[key]
			if err := txn.Set(groupKey(key.ino, key.g), grp.marshal()); err != nil {
				return err
			}
			if !grp.pending() {
				continue
			}
			if err := txn.Set(pendingKey(key.ino, key.g), nil); err != nil {
				return err
			}
			for _, r := range grp {
				if codec.RecordStage(r) == codec.StageFresh {
					if err := txn.Set(freshKey(key.ino, key.g), nil); err != nil {
						return err
					}
					break
				}
			}
		}
		return nil
	})
	return false, err
}
