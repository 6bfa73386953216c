package blockstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"lmfs/blockstore/kv"

	"lmfs/model/modelid"
)

// The store keeps a copy of every model file it has coded blocks with, keyed by the file's id
// (modelid: its SHA-256), so its LM blocks decode after the shipped default model changes.
//
// A model file of at most modelPartSize bytes is the value of its key 'M'+id. A larger one (a
// single value may not exceed Badger's value-log file size, 16 MiB here) is kept in parts:
// 'M'+id holds a parts header ("LMFSPRT1", the file's length and its part count, big endian)
// and 'M'+id+part (part a 4-byte big-endian index) the parts, all written in one transaction.
// Either way the assembled file must hash to its id, or the copy counts as damaged.

const modelPartSize = 8 << 20

var modelPartsMagic = []byte("LMFSPRT1")

const modelPartsHeader = 8 + 8 + 4

func modelPartKey(id [32]byte, part uint32) []byte {
	return binary.BigEndian.AppendUint32(modelKey(id), part)
}

// PutModel stores a model file if the store does not hold an intact copy yet (a damaged
// copy is replaced).
func (s *Store) PutModel(data []byte) error {
	id := modelid.Of(data)
	return s.update(func(txn kv.Txn) error {
		have, err := readModel(txn, id)
		if err == nil && modelid.Of(have) == id {
			return nil
		}
		if err != nil && !errors.Is(err, kv.ErrNotFound) && !errors.Is(err, errModelParts) {
			return err
		}
		if len(data) <= modelPartSize {
			return txn.Set(modelKey(id), data)
		}
		n := (len(data) + modelPartSize - 1) / modelPartSize
		hdr := append([]byte(nil), modelPartsMagic...)
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(len(data)))
		hdr = binary.BigEndian.AppendUint32(hdr, uint32(n))
		for i := 0; i < n; i++ {
			part := data[i*modelPartSize : min(len(data), (i+1)*modelPartSize)]
			if err := txn.Set(modelPartKey(id, uint32(i)), part); err != nil {
				return err
			}
		}
		return txn.Set(modelKey(id), hdr)
	})
}

// errModelParts: a parted model's header or parts are malformed or missing.
var errModelParts = errors.New("model parts damaged")

// readModel returns the model file kept under id: the value itself, or its parts assembled.
func readModel(txn kv.Txn, id [32]byte) ([]byte, error) {
	v, err := txn.Get(modelKey(id), nil)
	if err != nil || !bytes.HasPrefix(v, modelPartsMagic) {
		return v, err
	}
	if len(v) != modelPartsHeader {
		return nil, fmt.Errorf("%w: header of %d bytes", errModelParts, len(v))
	}
	size := binary.BigEndian.Uint64(v[8:])
	n := binary.BigEndian.Uint32(v[16:])
	if n == 0 || size > uint64(n)*modelPartSize || size <= uint64(n-1)*modelPartSize {
		return nil, fmt.Errorf("%w: %d bytes in %d parts", errModelParts, size, n)
	}
	out := make([]byte, 0, size)
	for i := uint32(0); i < n; i++ {
		part, err := txn.Get(modelPartKey(id, i), nil)
		if errors.Is(err, kv.ErrNotFound) {
			return nil, fmt.Errorf("%w: part %d of %d missing", errModelParts, i, n)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, part...)
	}
	if uint64(len(out)) != size {
		return nil, fmt.Errorf("%w: parts hold %d bytes, want %d", errModelParts, len(out), size)
	}
	return out, nil
}

// Models returns every intact model file the store keeps, and the ids of copies that no
// longer match their id (damaged on disk): blocks of those models cannot decode until an
// intact copy is put back (PutModel of the same file).
func (s *Store) Models() (models [][]byte, damaged [][32]byte, err error) {
	err = s.view(func(txn kv.Txn) error {
		models, damaged = nil, nil
		// Keys first, then each model on its own: a value that cannot be read marks its model
		// damaged instead of ending the listing. Part keys (longer) are read with their model.
		var ids [][32]byte
		err := kv.ScanKeys(txn, []byte{tagModel}, nil, func(k []byte) (bool, error) {
			if len(k) == 33 {
				var id [32]byte
				copy(id[:], k[1:])
				ids = append(ids, id)
			}
			return true, nil
		})
		if err != nil {
			return err
		}
		for _, id := range ids {
			v, err := readModel(txn, id)
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
