package blockstore

import (
	"crypto/sha256"
	"errors"

	"github.com/dgraph-io/badger/v4"
)

// The store keeps a copy of every model file it has coded blocks with, keyed by the file's
// SHA-256, so its LM blocks decode after the shipped default model changes.

// PutModel stores a model file if the store does not have it yet.
func (s *Store) PutModel(data []byte) error {
	id := sha256.Sum256(data)
	return s.update(func(txn *badger.Txn) error {
		if _, err := txn.Get(modelKey(id)); err == nil {
			return nil
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		return txn.Set(modelKey(id), data)
	})
}

// Models returns every model file the store keeps.
func (s *Store) Models() ([][]byte, error) {
	var out [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{tagModel}, PrefetchValues: true, PrefetchSize: 4})
		defer it.Close()
		for it.Seek([]byte{tagModel}); it.ValidForPrefix([]byte{tagModel}); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out = append(out, v)
		}
		return nil
	})
	return out, err
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }
