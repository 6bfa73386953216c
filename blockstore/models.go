package blockstore

import (
	"errors"

	"github.com/dgraph-io/badger/v4"

	"lmfs/model/modelid"
)

// The store keeps a copy of every model file it has coded blocks with, keyed by the file's id
// (modelid: its SHA-256), so its LM blocks decode after the shipped default model changes.

// PutModel stores a model file if the store does not hold an intact copy yet (a damaged
// copy is replaced).
func (s *Store) PutModel(data []byte) error {
	id := modelid.Of(data)
	return s.update(func(txn *badger.Txn) error {
		item, err := txn.Get(modelKey(id))
		if err == nil {
			intact := false
			item.Value(func(v []byte) error { intact = modelid.Of(v) == id; return nil })
			if intact {
				return nil
			}
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		return txn.Set(modelKey(id), data)
	})
}

// Models returns every intact model file the store keeps, and the ids of copies that no
// longer match their id (damaged on disk): blocks of those models cannot decode until an
// intact copy is put back (PutModel of the same file).
func (s *Store) Models() (models [][]byte, damaged [][32]byte, err error) {
	err = s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{tagModel}, PrefetchValues: false})
		defer it.Close()
		for it.Seek([]byte{tagModel}); it.ValidForPrefix([]byte{tagModel}); it.Next() {
			var id [32]byte
			copy(id[:], it.Item().Key()[1:])
			v, err := it.Item().ValueCopy(nil)
			if err != nil || modelid.Of(v) != modelid.ID(id) {
				damaged = append(damaged, id)
				continue
			}
			models = append(models, v)
		}
		return nil
	})
	return models, damaged, err
}
