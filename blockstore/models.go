package blockstore

import (
	"errors"

	"lmfs/blockstore/kv"

	"lmfs/model/modelid"
)

// The store keeps a copy of every model file it has coded blocks with, keyed by the file's id
// (modelid: its SHA-256), so its LM blocks decode after the shipped default model changes.

// PutModel stores a model file if the store does not hold an intact copy yet (a damaged
// copy is replaced).
func (s *Store) PutModel(data []byte) error {
	id := modelid.Of(data)
	return s.update(func(txn kv.Txn) error {
		v, err := txn.Get(modelKey(id), nil)
		if err == nil && modelid.Of(v) == id {
			return nil
		}
		if err != nil && !errors.Is(err, kv.ErrNotFound) {
			return err
		}
		return txn.Set(modelKey(id), data)
	})
}

// Models returns every intact model file the store keeps, and the ids of copies that no
// longer match their id (damaged on disk): blocks of those models cannot decode until an
// intact copy is put back (PutModel of the same file).
func (s *Store) Models() (models [][]byte, damaged [][32]byte, err error) {
	err = s.view(func(txn kv.Txn) error {
		// Keys first, then each value on its own: a value that cannot be read marks its model
		// damaged instead of ending the listing.
		var ids [][32]byte
		err := kv.ScanKeys(txn, []byte{tagModel}, nil, func(k []byte) (bool, error) {
			var id [32]byte
			copy(id[:], k[1:])
			ids = append(ids, id)
			return true, nil
		})
		if err != nil {
			return err
		}
		for _, id := range ids {
			v, err := txn.Get(append([]byte{tagModel}, id[:]...), nil)
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
