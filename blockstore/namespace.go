package blockstore

import (
	"encoding/binary"
	"errors"
	"syscall"
	"time"

	"lmfs/blockstore/kv"
)

// Errors are syscall.Errno values (possibly wrapped) so the file system can hand them to the
// kernel as they are; anything else is an I/O error.

const maxNameLen = 255

// Rename flags (as renameat2(2)).
const (
	RenameNoReplace = 1
	RenameExchange  = 2
)

// loadInode reads inode ino (ENOENT if there is none).
func loadInode(txn kv.Txn, ino uint64) (Inode, error) {
	bp := valueBufs.Get().(*[]byte)
	defer valueBufs.Put(bp)
	v, err := readPooled(txn, inodeKey(ino), bp)
	if errors.Is(err, kv.ErrNotFound) {
		return Inode{}, syscall.ENOENT
	}
	if err != nil {
		return Inode{}, err
	}
	return unmarshalInode(ino, v)
}

// saveInode stores n.
func saveInode(txn kv.Txn, n *Inode) error { return txn.Set(inodeKey(n.Ino), n.marshal()) }

func getDirent(txn kv.Txn, parent uint64, name string) (dirent, error) {
	bp := valueBufs.Get().(*[]byte)
	defer valueBufs.Put(bp)
	v, err := readPooled(txn, direntKey(parent, name), bp)
	if errors.Is(err, kv.ErrNotFound) {
		return dirent{}, syscall.ENOENT
	}
	if err != nil {
		return dirent{}, err
	}
	return unmarshalDirent(v)
}

// addEntry links child under parent as name. The caller stores parent afterwards.
func addEntry(txn kv.Txn, parent *Inode, name string, child *Inode, now int64) error {
	d := dirent{Ino: child.Ino, Mode: child.Mode & syscall.S_IFMT, Cookie: parent.NextCookie}
	parent.NextCookie++
	if err := txn.Set(direntKey(parent.Ino, name), d.marshal()); err != nil {
		return err
	}
	if err := txn.Set(dirOrderKey(parent.Ino, d.Cookie), orderValue(d, name)); err != nil {
		return err
	}
	if child.IsDir() {
		parent.Nlink++
	}
	parent.Mtime, parent.Ctime = now, now
	return nil
}

func orderValue(d dirent, name string) []byte {
	b := make([]byte, 12, 12+len(name))
	binary.LittleEndian.PutUint64(b, d.Ino)
	binary.LittleEndian.PutUint32(b[8:], d.Mode)
	return append(b, name...)
}

// removeEntry unlinks name from parent. The caller stores parent afterwards.
func removeEntry(txn kv.Txn, parent *Inode, name string, d dirent, now int64) error {
	if err := txn.Delete(direntKey(parent.Ino, name)); err != nil {
		return err
	}
	if err := txn.Delete(dirOrderKey(parent.Ino, d.Cookie)); err != nil {
		return err
	}
	if d.Mode == syscall.S_IFDIR {
		parent.Nlink--
	}
	parent.Mtime, parent.Ctime = now, now
	return nil
}

func checkName(name string) error {
	switch {
	case len(name) > maxNameLen:
		return syscall.ENAMETOOLONG
	case name == "" || name == "." || name == "..":
		return syscall.EINVAL
	}
	for i := 0; i < len(name); i++ {
		if name[i] == '/' || name[i] == 0 {
			return syscall.EINVAL
		}
	}
	return nil
}

// GetInode returns the attributes of ino.
func (s *Store) GetInode(ino uint64) (Inode, error) {
	var n Inode
	get := func() error {
		return s.view(func(txn kv.Txn) error {
			var err error
			n, err = loadInode(txn, ino)
			return err
		})
	}
	// Checked before reading: writes that had landed by then are in what get reads.
	pending := s.unsettled(ino)
	err := get()
	if err == nil && pending && n.IsReg() {
		// Writes of it were still queued: the size and mtime after them.
		s.settle(ino)
		err = get()
	}
	return n, err
}

// Lookup finds name in directory parent.
func (s *Store) Lookup(parent uint64, name string) (Inode, error) {
	if len(name) > maxNameLen {
		return Inode{}, syscall.ENAMETOOLONG
	}
	var d dirent
	err := s.view(func(txn kv.Txn) error {
		var err error
		d, err = getDirent(txn, parent, name)
		return err
	})
	if err != nil {
		return Inode{}, err
	}
	return s.GetInode(d.Ino) // after the file's queued writes
}

func (s *Store) allocIno() uint64 {
	s.nextMu.Lock()
	defer s.nextMu.Unlock()
	n := s.next
	s.next++
	return n
}

// NewNode describes an inode to create.
type NewNode struct {
	Mode     uint32 // type and permission bits
	Uid, Gid uint32
	Rdev     uint32
	Target   string // symlinks
	// Umask is the creating process's umask, applied where the directory has no default ACL
	// (where it has one, the ACL decides; see inheritACL).
	Umask uint32
}

// Create makes a new file, directory, symlink or special file named name in parent.
func (s *Store) Create(parent uint64, name string, nn NewNode) (Inode, error) {
	if err := checkName(name); err != nil {
		return Inode{}, err
	}
	if err := s.reserveSpace(int64(len(name) + len(nn.Target) + 256)); err != nil {
		return Inode{}, err
	}
	ino := s.allocIno()
	var child Inode
	err := s.update(func(txn kv.Txn) error {
		p, err := loadInode(txn, parent)
		if err != nil {
			return err
		}
		if !p.IsDir() {
			return syscall.ENOTDIR
		}
		if p.Nlink == 0 {
			return syscall.ENOENT // directory was removed
		}
		if _, err := getDirent(txn, parent, name); err == nil {
			return syscall.EEXIST
		} else if !errors.Is(err, syscall.ENOENT) {
			return err
		}
		now := time.Now().UnixNano()
		child = Inode{Ino: ino, Mode: nn.Mode, Uid: nn.Uid, Gid: nn.Gid, Rdev: nn.Rdev, Nlink: 1,
			Atime: now, Mtime: now, Ctime: now, Target: nn.Target}
		if child.IsDir() {
			child.Nlink = 2
			child.NextCookie = firstCookie
			child.Parent = parent
		}
		if child.Mode&syscall.S_IFMT == syscall.S_IFLNK {
			child.Size = uint64(len(nn.Target))
		}
		if err := inheritACL(txn, parent, &child, nn.Umask); err != nil {
			return err
		}
		if err := addEntry(txn, &p, name, &child, now); err != nil {
			return err
		}
		if err := saveInode(txn, &p); err != nil {
			return err
		}
		return saveInode(txn, &child)
	})
	if err != nil {
		return Inode{}, err
	}
	var d Delta
	d.addInode(&child, 1)
	s.counters.add(d)
	return child, nil
}

// Link adds a hard link newName in newParent to the non-directory ino.
func (s *Store) Link(ino, newParent uint64, newName string) (Inode, error) {
	if err := checkName(newName); err != nil {
		return Inode{}, err
	}
	if err := s.reserveSpace(int64(len(newName) + 256)); err != nil {
		return Inode{}, err
	}
	s.settle(ino) // the attributes returned include every write that returned
	var child Inode
	err := s.update(func(txn kv.Txn) error {
		var err error
		child, err = loadInode(txn, ino)
		if err != nil {
			return err
		}
		if child.IsDir() {
			return syscall.EPERM
		}
		if child.Nlink == 0 {
			return syscall.ENOENT
		}
		p, err := loadInode(txn, newParent)
		if err != nil {
			return err
		}
		if !p.IsDir() {
			return syscall.ENOTDIR
		}
		if _, err := getDirent(txn, newParent, newName); err == nil {
			return syscall.EEXIST
		} else if !errors.Is(err, syscall.ENOENT) {
			return err
		}
		now := time.Now().UnixNano()
		child.Nlink++
		child.Ctime = now
		if err := addEntry(txn, &p, newName, &child, now); err != nil {
			return err
		}
		if err := saveInode(txn, &p); err != nil {
			return err
		}
		return saveInode(txn, &child)
	})
	return child, err
}

// dropLink decrements child's link count after one of its entries went away; an inode with
// no links left becomes an orphan whose data is purged once no handle has it open.
func (s *Store) dropLink(txn kv.Txn, child *Inode, now int64) error {
	if child.IsDir() {
		child.Nlink = 0
	} else if child.Nlink > 0 {
		child.Nlink--
	}
	child.Ctime = now
	if child.Nlink == 0 {
		if err := txn.Set(orphanKey(child.Ino), nil); err != nil {
			return err
		}
	}
	return saveInode(txn, child)
}

// Unlink removes the non-directory entry name from parent.
func (s *Store) Unlink(parent uint64, name string) error {
	return s.remove(parent, name, false)
}

// Rmdir removes the empty directory name from parent.
func (s *Store) Rmdir(parent uint64, name string) error {
	return s.remove(parent, name, true)
}

func (s *Store) remove(parent uint64, name string, dir bool) error {
	var child Inode
	err := s.update(func(txn kv.Txn) error {
		p, err := loadInode(txn, parent)
		if err != nil {
			return err
		}
		d, err := getDirent(txn, parent, name)
		if err != nil {
			return err
		}
		child, err = loadInode(txn, d.Ino)
		if err != nil {
			return err
		}
		if dir && !child.IsDir() {
			return syscall.ENOTDIR
		}
		if !dir && child.IsDir() {
			return syscall.EISDIR
		}
		if dir {
			if empty, err := dirEmpty(txn, child.Ino); err != nil {
				return err
			} else if !empty {
				return syscall.ENOTEMPTY
			}
		}
		now := time.Now().UnixNano()
		if err := removeEntry(txn, &p, name, d, now); err != nil {
			return err
		}
		if err := saveInode(txn, &p); err != nil {
			return err
		}
		return s.dropLink(txn, &child, now)
	})
	if err != nil {
		return err
	}
	s.maybePurge(child.Ino)
	return nil
}

func dirEmpty(txn kv.Txn, ino uint64) (bool, error) {
	empty := true
	err := kv.ScanKeys(txn, inoPrefix(tagDirent, ino), nil, func([]byte) (bool, error) {
		empty = false
		return false, nil
	})
	return empty, err
}

// Rename moves oldName in oldParent to newName in newParent (flags: RenameNoReplace,
// RenameExchange).
func (s *Store) Rename(oldParent uint64, oldName string, newParent uint64, newName string, flags uint32) error {
	if err := checkName(newName); err != nil {
		return err
	}
	if flags&^uint32(RenameNoReplace|RenameExchange) != 0 || flags == RenameNoReplace|RenameExchange {
		return syscall.EINVAL
	}
	var replaced uint64
	err := s.update(func(txn kv.Txn) error {
		replaced = 0
		now := time.Now().UnixNano()
		opv, err := loadInode(txn, oldParent)
		if err != nil {
			return err
		}
		if !opv.IsDir() {
			return syscall.ENOTDIR
		}
		op, np := &opv, &opv // one copy when both parents are the same directory
		if newParent != oldParent {
			npv, err := loadInode(txn, newParent)
			if err != nil {
				return err
			}
			if !npv.IsDir() {
				return syscall.ENOTDIR
			}
			np = &npv
		}
		src, err := getDirent(txn, oldParent, oldName)
		if err != nil {
			return err
		}
		srcNode, err := loadInode(txn, src.Ino)
		if err != nil {
			return err
		}
		if srcNode.IsDir() && newParent != oldParent {
			// A directory must not move below itself.
			for a := newParent; a != RootIno; {
				if a == srcNode.Ino {
					return syscall.EINVAL
				}
				an, err := loadInode(txn, a)
				if err != nil {
					return err
				}
				a = an.Parent
			}
		}
		dst, err := getDirent(txn, newParent, newName)
		dstExists := err == nil
		if err != nil && !errors.Is(err, syscall.ENOENT) {
			return err
		}
		if flags&RenameExchange != 0 {
			if !dstExists {
				return syscall.ENOENT
			}
			if dst.Ino == src.Ino {
				return nil
			}
			return s.exchange(txn, op, np, oldName, newName, src, dst, &srcNode, now)
		}
		if dstExists && dst.Ino == src.Ino {
			return nil // both names are links to the same inode: nothing to do
		}
		if dstExists {
			if flags&RenameNoReplace != 0 {
				return syscall.EEXIST
			}
			dstNode, err := loadInode(txn, dst.Ino)
			if err != nil {
				return err
			}
			switch {
			case dstNode.IsDir() && !srcNode.IsDir():
				return syscall.EISDIR
			case !dstNode.IsDir() && srcNode.IsDir():
				return syscall.ENOTDIR
			case dstNode.IsDir():
				if empty, err := dirEmpty(txn, dstNode.Ino); err != nil {
					return err
				} else if !empty {
					return syscall.ENOTEMPTY
				}
			}
			if err := removeEntry(txn, np, newName, dst, now); err != nil {
				return err
			}
			if err := s.dropLink(txn, &dstNode, now); err != nil {
				return err
			}
			replaced = dstNode.Ino
		}
		if err := removeEntry(txn, op, oldName, src, now); err != nil {
			return err
		}
		srcNode.Ctime = now
		if srcNode.IsDir() {
			srcNode.Parent = newParent
		}
		if err := addEntry(txn, np, newName, &srcNode, now); err != nil {
			return err
		}
		if err := saveInode(txn, op); err != nil {
			return err
		}
		if np != op {
			if err := saveInode(txn, np); err != nil {
				return err
			}
		}
		return saveInode(txn, &srcNode)
	})
	if err == nil && replaced != 0 {
		s.maybePurge(replaced)
	}
	return err
}

// exchange swaps two entries (RENAME_EXCHANGE): each name keeps its readdir slot and points to
// the other inode.
func (s *Store) exchange(txn kv.Txn, op, np *Inode, oldName, newName string, src, dst dirent, srcNode *Inode, now int64) error {
	dstNode, err := loadInode(txn, dst.Ino)
	if err != nil {
		return err
	}
	a := dirent{Ino: dst.Ino, Mode: dst.Mode, Cookie: src.Cookie}
	b := dirent{Ino: src.Ino, Mode: src.Mode, Cookie: dst.Cookie}
	if err := txn.Set(direntKey(op.Ino, oldName), a.marshal()); err != nil {
		return err
	}
	if err := txn.Set(dirOrderKey(op.Ino, a.Cookie), orderValue(a, oldName)); err != nil {
		return err
	}
	if err := txn.Set(direntKey(np.Ino, newName), b.marshal()); err != nil {
		return err
	}
	if err := txn.Set(dirOrderKey(np.Ino, b.Cookie), orderValue(b, newName)); err != nil {
		return err
	}
	if op.Ino != np.Ino {
		if srcNode.IsDir() != dstNode.IsDir() {
			if srcNode.IsDir() {
				op.Nlink--
				np.Nlink++
			} else {
				op.Nlink++
				np.Nlink--
			}
		}
		if srcNode.IsDir() {
			srcNode.Parent = np.Ino
		}
		if dstNode.IsDir() {
			dstNode.Parent = op.Ino
		}
	}
	op.Mtime, op.Ctime = now, now
	np.Mtime, np.Ctime = now, now
	srcNode.Ctime, dstNode.Ctime = now, now
	if err := saveInode(txn, op); err != nil {
		return err
	}
	if op.Ino != np.Ino {
		if err := saveInode(txn, np); err != nil {
			return err
		}
	}
	if err := saveInode(txn, srcNode); err != nil {
		return err
	}
	return saveInode(txn, &dstNode)
}

// DirEntry is one entry of a directory listing. Cookie is a stable offset: listing again from
// a cookie continues after that entry, whatever was added or removed meanwhile.
type DirEntry struct {
	Name   string
	Ino    uint64
	Mode   uint32 // type bits
	Cookie uint64
}

// ReadDir returns up to max entries of directory ino with cookies greater than after.
func (s *Store) ReadDir(ino uint64, after uint64, max int) ([]DirEntry, error) {
	var out []DirEntry
	err := s.view(func(txn kv.Txn) error {
		if max <= 0 {
			return nil
		}
		return kv.Scan(txn, inoPrefix(tagDirOrder, ino), dirOrderKey(ino, after+1), func(k, v []byte) (bool, error) {
			if len(k) != 17 {
				return true, nil // not a readdir slot (damage; fsck names it)
			}
			_, cookie := decodeU64U64(k)
			e, err := parseSlot(v)
			if err != nil {
				return false, syscall.EIO
			}
			e.Cookie = cookie
			out = append(out, e)
			return len(out) < max, nil
		})
	})
	return out, err
}

// AttrChange says which attributes SetAttr changes.
type AttrChange struct {
	Mode         *uint32 // permission bits only
	Uid, Gid     *uint32
	Atime, Mtime *int64 // nanoseconds
}

// SetAttr changes ownership, permissions and times of ino (sizes change through Truncate).
func (s *Store) SetAttr(ino uint64, c AttrChange) (Inode, error) {
	s.settle(ino) // a queued write must not land after (and undo) an explicit mtime
	var n Inode
	err := s.update(func(txn kv.Txn) error {
		var err error
		if n, err = loadInode(txn, ino); err != nil {
			return err
		}
		if c.Mode != nil {
			n.Mode = n.Mode&syscall.S_IFMT | *c.Mode&^uint32(syscall.S_IFMT)
			if err := chmodACL(txn, &n); err != nil {
				return err
			}
		}
		if c.Uid != nil {
			n.Uid = *c.Uid
		}
		if c.Gid != nil {
			n.Gid = *c.Gid
		}
		if c.Atime != nil {
			n.Atime = *c.Atime
		}
		if c.Mtime != nil {
			n.Mtime = *c.Mtime
		}
		n.Ctime = time.Now().UnixNano()
		return saveInode(txn, &n)
	})
	return n, err
}
