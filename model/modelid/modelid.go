// Package modelid names model files. A model's id is the SHA-256 of its whole file; its short
// id, the first 4 bytes of that id read big endian, is what every LM block records to name the
// model that decodes it. The store keeps model files under their id and fsck checks the short
// ids of LM blocks against them, so the definition sits here, in a package of its own that
// imports nothing of lmfs: package model (which uses it too) links ONNX Runtime and embeds the
// default model, neither of which the store needs.
package modelid

import (
	"crypto/sha256"
	"encoding/binary"
)

// ID is a model's id: the SHA-256 of its file.
type ID [32]byte

// Of returns the id of a model file.
func Of(file []byte) ID { return sha256.Sum256(file) }

// Short returns the short id: the first 4 bytes of the id, big endian.
func (id ID) Short() uint32 { return binary.BigEndian.Uint32(id[:4]) }

// Short returns the short id of a model file.
func Short(file []byte) uint32 { return Of(file).Short() }
