// Fsck passes 1 to 3: the namespace. Inode records, directory entries and their readdir
// slots, keys that hang off inodes (xattrs, orphan and trim markers), reachability from the
// root and link counts. They only read; what they find for repair goes into the fsckRun.

package blockstore

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"lmfs/blockstore/kv"
)

// passInodes (pass 1) reads every inode record. A store without a root directory cannot be
// checked further.
func (c *fsckRun) passInodes(txn kv.Txn) error {
	err := kv.Scan(txn, []byte{tagInode}, nil, func(k, v []byte) (bool, error) {
		if len(k) != 9 {
			c.malformedKey(bytes.Clone(k))
			return true, nil
		}
		ino := binary.BigEndian.Uint64(k[1:])
		n, err := unmarshalInode(ino, v)
		if err != nil {
			c.add(Finding{Kind: FindingBadInode, Ino: ino, Detail: err.Error()})
			return true, nil
		}
		c.inodes[ino] = &fsckInode{n: n}
		c.r.Inodes++
		return true, nil
	})
	if err != nil {
		return err
	}
	if root := c.inodes[RootIno]; root == nil || !root.n.IsDir() {
		return fmt.Errorf("the root directory is missing or not a directory: the store cannot be repaired by fsck")
	}
	return nil
}

// passEntries (pass 2) checks directory entries, both views: each entry lies in a directory,
// names an inode that exists and agrees with its readdir slot; each slot has its entry. It
// counts the links and subdirectories of every inode for pass 3.
func (c *fsckRun) passEntries(txn kv.Txn) error {
	err := kv.Scan(txn, []byte{tagDirent}, nil, func(k, v []byte) (bool, error) {
		k = bytes.Clone(k) // kept for repair
		if len(k) < 10 {
			c.malformedKey(k)
			return true, nil
		}
		parent, name := binary.BigEndian.Uint64(k[1:9]), string(k[9:])
		d, err := unmarshalDirent(v)
		p := c.inodes[parent]
		switch {
		case err != nil:
			c.add(Finding{Kind: FindingBadEntry, Ino: parent, Detail: fmt.Sprintf("entry %q: %v", name, err)})
			c.dels = append(c.dels, k)
			return true, nil
		case p == nil || !p.n.IsDir():
			c.add(Finding{Kind: FindingOrphanEntry, Ino: parent, Detail: fmt.Sprintf("entry %q in missing directory %d", name, parent)})
			c.dels = append(c.dels, k, dirOrderKey(parent, d.Cookie))
			return true, nil
		}
		child := c.inodes[d.Ino]
		if child == nil {
			c.add(Finding{Kind: FindingDanglingEntry, Ino: parent, Detail: fmt.Sprintf("entry %q points to missing inode %d", name, d.Ino)})
			c.dels = append(c.dels, k, dirOrderKey(parent, d.Cookie))
			return true, nil
		}
		c.r.Entries++
		child.links++
		p.kids = append(p.kids, d.Ino)
		if child.parent == 0 {
			child.parent, child.name = parent, name
		}
		if child.n.IsDir() {
			p.subdirs++
		}
		b, err := txn.Get(dirOrderKey(parent, d.Cookie), nil)
		ok := len(b) >= 12 && binary.LittleEndian.Uint64(b) == d.Ino && string(b[12:]) == name
		if err != nil {
			c.add(Finding{Kind: FindingBadEntry, Ino: parent, Detail: fmt.Sprintf("entry %q has no readdir slot %d", name, d.Cookie)})
			return true, nil
		}
		if !ok {
			c.add(Finding{Kind: FindingBadEntry, Ino: parent, Detail: fmt.Sprintf("entry %q disagrees with its readdir slot", name)})
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	// Slots are listed by key, each value read on its own: one that cannot be read is a short
	// slot (a finding), not the end of the pass.
	var slots [][]byte
	err = kv.ScanKeys(txn, []byte{tagDirOrder}, nil, func(k []byte) (bool, error) {
		slots = append(slots, bytes.Clone(k))
		return true, nil
	})
	if err != nil {
		return err
	}
	for _, k := range slots {
		if len(k) != 17 {
			c.malformedKey(k)
			continue
		}
		v, _ := txn.Get(k, nil)
		parent, _ := decodeU64U64(k)
		if len(v) < 12 {
			c.add(Finding{Kind: FindingBadEntry, Ino: parent, Detail: "short readdir slot"})
			c.dels = append(c.dels, k)
			continue
		}
		if ok, err := txn.Has(direntKey(parent, string(v[12:]))); err != nil || !ok {
			c.add(Finding{Kind: FindingOrphanEntry, Ino: parent, Detail: fmt.Sprintf("readdir slot %q without entry", v[12:])})
			c.dels = append(c.dels, k)
		}
	}
	return nil
}

// passInodeKeys (the end of pass 2) finds xattrs and markers of missing inodes.
func (c *fsckRun) passInodeKeys(txn kv.Txn) error {
	for _, tag := range []byte{tagXattr, tagOrphan, tagTrim} {
		err := kv.ScanKeys(txn, []byte{tag}, nil, func(k []byte) (bool, error) {
			k = bytes.Clone(k)
			if tag == tagXattr && len(k) < 10 || tag != tagXattr && len(k) != 9 {
				c.malformedKey(k)
				return true, nil
			}
			if c.inodes[binary.BigEndian.Uint64(k[1:9])] == nil {
				c.add(Finding{Kind: FindingOrphanKey, Detail: fmt.Sprintf("%c key of missing inode", tag)})
				c.dels = append(c.dels, k)
			}
			return true, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// passLinks (pass 3) finds inodes the root does not reach (except files unlinked while open,
// which the next open frees) and link counts other than the entries found.
func (c *fsckRun) passLinks() {
	s := c.s
	s.markReached(c.inodes)
	for ino, n := range c.inodes {
		want := n.links
		if n.n.IsDir() {
			want = 2 + n.subdirs
			if n.links == 0 && ino != RootIno {
				want = 0
			}
		}
		if ino == RootIno {
			want = 2 + n.subdirs
		}
		orphanMarked := s.hasKey(orphanKey(ino))
		switch {
		case !n.reached && ino != RootIno && n.links == 0 && orphanMarked:
			// unlinked while open: freed at the next open
		case !n.reached && ino != RootIno:
			c.add(Finding{Kind: FindingUnreachable, Ino: ino, Detail: fmt.Sprintf("inode %d (mode %o) is not reachable from the root", ino, n.n.Mode)})
			c.lost = append(c.lost, ino)
		case n.n.Nlink != want:
			c.add(Finding{Kind: FindingNlink, Ino: ino, Path: c.pathOf(ino), Detail: fmt.Sprintf("nlink %d, %d links found", n.n.Nlink, want)})
			c.nlinkFix = append(c.nlinkFix, ino)
		}
	}
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
