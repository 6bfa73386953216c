package blockstore

import "encoding/binary"

// Key layout. Every key starts with a one-byte table tag; integers are big endian so that
// Badger's key order is numeric order (a file's blocks are contiguous, in block order).
//
//	'F'                         store format record (JSON)
//	'C' name                    persisted counters and the next inode number
//	'i' ino                     inode attributes (see inode.go)
//	'd' parent name             directory entry: child ino, mode type, cookie
//	'e' parent cookie           readdir order: name (cookies are stable readdir offsets)
//	'x' ino name                extended attribute value
//	'g' ino group               block group: records of blocks 16*group..16*group+15 (group.go)
//	'q' ino group               group with blocks awaiting the compactor's recode (empty value)
//	'w' ino group               group with blocks as written (raw), awaiting the fast pass
//	'o' ino                     orphan: nlink reached 0; data is purged once no handle is open
//	't' ino                     truncation in progress: groups from the value's number on go
//	'M' sha256                  a model file this store has used
const (
	tagFormat   = 'F'
	tagCounter  = 'C'
	tagInode    = 'i'
	tagDirent   = 'd'
	tagDirOrder = 'e'
	tagXattr    = 'x'
	tagGroup    = 'g'
	tagPending  = 'q'
	tagFresh    = 'w'
	tagOrphan   = 'o'
	tagTrim     = 't'
	tagModel    = 'M'
)

func keyU64(tag byte, n uint64) []byte {
	k := make([]byte, 9)
	k[0] = tag
	binary.BigEndian.PutUint64(k[1:], n)
	return k
}

func keyU64U64(tag byte, a, b uint64) []byte {
	k := make([]byte, 17)
	k[0] = tag
	binary.BigEndian.PutUint64(k[1:], a)
	binary.BigEndian.PutUint64(k[9:], b)
	return k
}

func keyU64Str(tag byte, n uint64, s string) []byte {
	k := make([]byte, 9, 9+len(s))
	k[0] = tag
	binary.BigEndian.PutUint64(k[1:], n)
	return append(k, s...)
}

func inodeKey(ino uint64) []byte               { return keyU64(tagInode, ino) }
func direntKey(parent uint64, n string) []byte { return keyU64Str(tagDirent, parent, n) }
func dirOrderKey(parent, cookie uint64) []byte { return keyU64U64(tagDirOrder, parent, cookie) }
func xattrKey(ino uint64, name string) []byte  { return keyU64Str(tagXattr, ino, name) }
func groupKey(ino, g uint64) []byte            { return keyU64U64(tagGroup, ino, g) }
func pendingKey(ino, g uint64) []byte          { return keyU64U64(tagPending, ino, g) }
func freshKey(ino, g uint64) []byte            { return keyU64U64(tagFresh, ino, g) }
func orphanKey(ino uint64) []byte              { return keyU64(tagOrphan, ino) }
func trimKey(ino uint64) []byte                { return keyU64(tagTrim, ino) }
func counterKey(name string) []byte            { return append([]byte{tagCounter}, name...) }
func modelKey(id [32]byte) []byte              { return append([]byte{tagModel}, id[:]...) }

// prefix of all keys of one table for one inode (blocks, xattrs, entries of a directory).
func inoPrefix(tag byte, ino uint64) []byte { return keyU64(tag, ino) }

// decodeU64U64 splits a 17-byte key into its two numbers. Another length (only damage or a
// hostile store makes one) decodes as if cut or padded with zeros to 17 bytes, never a panic;
// padding keeps Badger's key order, so an iteration that seeks by the numbers stays in order.
func decodeU64U64(k []byte) (uint64, uint64) {
	if len(k) < 17 {
		var b [17]byte
		copy(b[:], k)
		k = b[:]
	}
	return binary.BigEndian.Uint64(k[1:9]), binary.BigEndian.Uint64(k[9:17])
}
