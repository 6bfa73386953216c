package blockstore

import (
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Xattr flags (as setxattr(2)).
const (
	XattrCreate  = 1
	XattrReplace = 2
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
	return s.db.View(func(txn *badger.Txn) error {
		o := badger.DefaultIteratorOptions
		o.PrefetchValues = false
		o.Prefix = []byte{tagXattr}
		it := txn.NewIterator(o)
		defer it.Close()
		for it.Seek(o.Prefix); it.ValidForPrefix(o.Prefix); it.Next() {
			if k := it.Item().Key(); len(k) > 9 && strings.HasPrefix(string(k[9:]), securityPrefix) {
				s.secX.add(binary.BigEndian.Uint64(k[1:9]), 1)
			}
		}
		return nil
	})
}

// GetXattr returns the value of attribute name of ino (ENODATA if absent).
func (s *Store) GetXattr(ino uint64, name string) ([]byte, error) {
	if strings.HasPrefix(name, securityPrefix) && !s.secX.has(ino) {
		return nil, syscall.ENODATA
	}
	var v []byte
	err := s.db.View(func(txn *badger.Txn) error {
		if _, err := getInode(txn, ino); err != nil {
			return err
		}
		item, err := txn.Get(xattrKey(ino, name))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return syscall.ENODATA
		}
		if err != nil {
			return err
		}
		v, err = item.ValueCopy(nil)
		return err
	})
	return v, err
}

// SetXattr sets attribute name of ino (flags: XattrCreate, XattrReplace).
func (s *Store) SetXattr(ino uint64, name string, value []byte, flags uint32) error {
	if len(name) == 0 || len(name) > 255 {
		return syscall.ERANGE
	}
	if len(value) > maxXattrSize {
		return syscall.E2BIG
	}
	if err := s.reserveSpace(int64(len(name) + len(value) + 64)); err != nil {
		return err
	}
	exists := false
	err := s.update(func(txn *badger.Txn) error {
		n, err := getInode(txn, ino)
		if err != nil {
			return err
		}
		_, err = txn.Get(xattrKey(ino, name))
		exists = err == nil
		if err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		if flags&XattrCreate != 0 && exists {
			return syscall.EEXIST
		}
		if flags&XattrReplace != 0 && !exists {
			return syscall.ENODATA
		}
		n.Ctime = time.Now().UnixNano()
		if err := putInode(txn, &n); err != nil {
			return err
		}
		return txn.Set(xattrKey(ino, name), append([]byte(nil), value...))
	})
	if err == nil && !exists && strings.HasPrefix(name, securityPrefix) {
		s.secX.add(ino, 1)
	}
	return err
}

// ListXattr returns the attribute names of ino.
func (s *Store) ListXattr(ino uint64) ([]string, error) {
	var names []string
	err := s.db.View(func(txn *badger.Txn) error {
		if _, err := getInode(txn, ino); err != nil {
			return err
		}
		o := badger.DefaultIteratorOptions
		o.PrefetchValues = false
		prefix := inoPrefix(tagXattr, ino)
		o.Prefix = prefix
		it := txn.NewIterator(o)
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			names = append(names, string(it.Item().Key()[len(prefix):]))
		}
		return nil
	})
	return names, err
}

// RemoveXattr deletes attribute name of ino (ENODATA if absent).
func (s *Store) RemoveXattr(ino uint64, name string) error {
	err := s.update(func(txn *badger.Txn) error {
		n, err := getInode(txn, ino)
		if err != nil {
			return err
		}
		if _, err := txn.Get(xattrKey(ino, name)); errors.Is(err, badger.ErrKeyNotFound) {
			return syscall.ENODATA
		} else if err != nil {
			return err
		}
		n.Ctime = time.Now().UnixNano()
		if err := putInode(txn, &n); err != nil {
			return err
		}
		return txn.Delete(xattrKey(ino, name))
	})
	if err == nil && strings.HasPrefix(name, securityPrefix) {
		s.secX.add(ino, -1)
	}
	return err
}
