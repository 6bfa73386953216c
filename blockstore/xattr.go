package blockstore

import (
	"errors"
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

// GetXattr returns the value of attribute name of ino (ENODATA if absent).
func (s *Store) GetXattr(ino uint64, name string) ([]byte, error) {
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
	return s.update(func(txn *badger.Txn) error {
		n, err := getInode(txn, ino)
		if err != nil {
			return err
		}
		_, err = txn.Get(xattrKey(ino, name))
		exists := err == nil
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
	return s.update(func(txn *badger.Txn) error {
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
}
