// Package crc32c is the checksum of lmfs's own on-disk formats: CRC-32C (Castagnoli), which
// current CPUs compute in hardware. Block records (codec) and data segment entries and the
// references to them (blockstore/segment) carry it; neither format may depend on the other,
// so the choice lives here, once. (The store's checks of Badger's files use Badger's own
// table: that format is Badger's.)
package crc32c

import "hash/crc32"

var table = crc32.MakeTable(crc32.Castagnoli)

// Checksum returns the CRC-32C of b.
func Checksum(b []byte) uint32 { return crc32.Checksum(b, table) }
