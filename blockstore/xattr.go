package blockstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"time"

	"lmfs/blockstore/kv"
)

// Xattr flags (XattrCreate and XattrReplace as setxattr(2)).
const (
	XattrCreate  = 1
	XattrReplace = 2
	// XattrACLKillSGID, when setting XattrACLAccess, clears the set-group-ID bit: the caller
	// is not in the file's group and lacks CAP_FSETID (the kernel says so; only it knows the
	// caller's groups and capabilities).
	XattrACLKillSGID = 1 << 16
)

const maxXattrSize = 64 << 10

// The kernel asks for security.capability before every write(2) (to drop file capabilities
// when a file changes). A Badger read waits for the writes still being committed, which would
// put a commit's whole latency between two writes of one file; so the store keeps in memory
// which inodes have security.* attributes at all (rare) and answers the others at once.
const securityPrefix = "security."

// secXattrs counts the security.* attributes of the inodes that have any.
type secXattrs struct {
	mu sync.Mutex
	n  map[uint64]int
}

func (x *secXattrs) has(ino uint64) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.n[ino] > 0
}

func (x *secXattrs) add(ino uint64, d int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.n == nil {
		x.n = map[uint64]int{}
	}
	if x.n[ino] += d; x.n[ino] <= 0 {
		delete(x.n, ino)
	}
}

func (x *secXattrs) forget(ino uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.n, ino)
}

// loadSecXattrs finds the inodes with security.* attributes (keys only: cheap at open).
func (s *Store) loadSecXattrs() error {
	return s.view(func(txn kv.Txn) error {
		return kv.ScanKeys(txn, []byte{tagXattr}, nil, func(k []byte) (bool, error) {
			if len(k) > 9 && strings.HasPrefix(string(k[9:]), securityPrefix) {
				s.secX.add(binary.BigEndian.Uint64(k[1:9]), 1)
			}
			return true, nil
		})
	})
}

// GetXattr returns the value of attribute name of ino (ENODATA if absent).
func (s *Store) GetXattr(ino uint64, name string) ([]byte, error) {
	if strings.HasPrefix(name, securityPrefix) && !s.secX.has(ino) {
		return nil, syscall.ENODATA
	}
	var v []byte
	err := s.view(func(txn kv.Txn) error {
		if _, err := loadInode(txn, ino); err != nil {
			return err
		}
		var err error
		v, err = txn.Get(xattrKey(ino, name), nil)
		if errors.Is(err, kv.ErrNotFound) {
			return syscall.ENODATA
		}
		return err
	})
	return v, err
}

// SetXattr sets attribute name of ino (flags: XattrCreate, XattrReplace, XattrACLKillSGID).
//
// The ACL attributes are not opaque (acl.go): a malformed value is EINVAL, and setting the
// access ACL sets the mode's permission bits in the same transaction, storing the ACL only
// when the mode cannot say it all (as posix_acl_update_mode). A default ACL is for
// directories only.
func (s *Store) SetXattr(ino uint64, name string, value []byte, flags uint32) error {
	if len(name) == 0 || len(name) > 255 {
		return syscall.ERANGE
	}
	if len(value) > maxXattrSize {
		return syscall.E2BIG
	}
	var parsed acl
	if isACLXattr(name) {
		var err error
		if parsed, err = parseACL(value); err != nil {
			return err
		}
		value = parsed.marshal()
	}
	if err := s.reserveSpace(int64(len(name) + len(value) + 64)); err != nil {
		return err
	}
	exists := false
	err := s.update(func(txn kv.Txn) error {
		n, err := loadInode(txn, ino)
		if err != nil {
			return err
		}
		store := true
		switch {
		case parsed == nil:
		case n.Mode&syscall.S_IFMT == syscall.S_IFLNK:
			return syscall.EOPNOTSUPP // symlinks have no ACLs (their mode is not checked)
		case name == XattrACLDefault && !n.IsDir():
			return syscall.EACCES // as ext4: only directories have default ACLs
		case name == XattrACLAccess:
			var equiv bool
			n.Mode, equiv = parsed.equivMode(n.Mode)
			store = !equiv
			if flags&XattrACLKillSGID != 0 {
				n.Mode &^= syscall.S_ISGID
			}
		}
		if exists, err = txn.Has(xattrKey(ino, name)); err != nil {
			return err
		}
		if flags&XattrCreate != 0 && exists {
			return syscall.EEXIST
		}
		if flags&XattrReplace != 0 && !exists {
			return syscall.ENODATA
		}
		n.Ctime = time.Now().UnixNano()
		if err := saveInode(txn, &n); err != nil {
			return err
		}
		if !store {
			// The mode now says what the ACL said; an older ACL would contradict it.
			return txn.Delete(xattrKey(ino, name))
		}
		return txn.Set(xattrKey(ino, name), append([]byte(nil), value...))
	})
	if err == nil && !exists && strings.HasPrefix(name, securityPrefix) {
		s.secX.add(ino, 1)
	}
	return err
}

// getACL reads ACL attribute name of ino (nil if it has none). A stored ACL that does not
// parse is corruption: the error says which inode.
func getACL(txn kv.Txn, ino uint64, name string) (acl, error) {
	v, err := txn.Get(xattrKey(ino, name), nil)
	if errors.Is(err, kv.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	a, err := parseACL(v)
	if err != nil {
		return nil, fmt.Errorf("inode %d: stored %s: %v", ino, name, err) // not EINVAL: corruption
	}
	return a, nil
}

// ListXattr returns the attribute names of ino.
func (s *Store) ListXattr(ino uint64) ([]string, error) {
	var names []string
	err := s.view(func(txn kv.Txn) error {
		if _, err := loadInode(txn, ino); err != nil {
			return err
		}
		prefix := inoPrefix(tagXattr, ino)
		return kv.ScanKeys(txn, prefix, nil, func(k []byte) (bool, error) {
			names = append(names, string(k[len(prefix):]))
			return true, nil
		})
	})
	return names, err
}

// RemoveXattr deletes attribute name of ino (ENODATA if absent).
func (s *Store) RemoveXattr(ino uint64, name string) error {
	err := s.update(func(txn kv.Txn) error {
		n, err := loadInode(txn, ino)
		if err != nil {
			return err
		}
		if ok, err := txn.Has(xattrKey(ino, name)); err != nil {
			return err
		} else if !ok {
			return syscall.ENODATA
		}
		n.Ctime = time.Now().UnixNano()
		if err := saveInode(txn, &n); err != nil {
			return err
		}
		return txn.Delete(xattrKey(ino, name))
	})
	if err == nil && strings.HasPrefix(name, securityPrefix) {
		s.secX.add(ino, -1)
	}
	return err
}

// chmodACL brings the access ACL of n, if it has one, in line with its new mode (mask:: or
// group:: takes the group bits), in the transaction that stores the mode.
func chmodACL(txn kv.Txn, n *Inode) error {
	if n.Mode&syscall.S_IFMT == syscall.S_IFLNK {
		return nil
	}
	a, err := getACL(txn, n.Ino, XattrACLAccess)
	if err != nil || a == nil {
		return err
	}
	return txn.Set(xattrKey(n.Ino, XattrACLAccess), a.chmod(n.Mode).marshal())
}

// inheritACL gives child, being created in directory parent, its permissions as a local file
// system would (posix_acl_create): where parent has a default ACL, the child's mode and access
// ACL come from it and the requested mode, and a directory inherits the default ACL itself;
// elsewhere the caller's umask clears mode bits. Symlinks take neither (their mode is 0777).
// It runs in the creating transaction, before child is stored.
func inheritACL(txn kv.Txn, parent uint64, child *Inode, umask uint32) error {
	if child.Mode&syscall.S_IFMT == syscall.S_IFLNK {
		return nil
	}
	def, err := getACL(txn, parent, XattrACLDefault)
	if err != nil {
		return err
	}
	if def == nil {
		child.Mode &^= umask & permBits
		return nil
	}
	var access acl
	child.Mode, access = createFromDefault(def, child.Mode)
	if access != nil {
		if err := txn.Set(xattrKey(child.Ino, XattrACLAccess), access.marshal()); err != nil {
			return err
		}
	}
	if child.IsDir() {
		return txn.Set(xattrKey(child.Ino, XattrACLDefault), def.marshal())
	}
	return nil
}
