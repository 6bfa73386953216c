// Package segment stores opaque payloads in append-only data segment files (STORE/data/
// NNNNNNNN.seg) and reads them back by location. It is the data half of the store: the store
// hands it bytes and an owner (two numbers: the store uses inode and group), gets back a Loc,
// and keeps that Loc in its index; this package knows nothing of what the bytes mean, of
// codecs, or of which entries are still live (GC's choice of what to move stays with the
// store, which offers the file-level operations it needs: seal, list sealed, delete).
//
// Why files and not Badger values: Badger copies every value twice (into its write buffer,
// then into a mmapped value-log file) in its single write goroutine, faults in each fresh
// page of the mapping and msyncs it at every file rotation; measured here, 256 MiB of 32 KiB
// values committed at 1.65 ms/MiB (620 MB/s, less than a third of what a FUSE passthrough
// writes), while the same bytes appended with pwrite and only small references committed to
// Badger took 0.2-0.6 ms/MiB.
//
// Segment file: a FileHeader-byte file header (fileMagic), then entries:
//
//	bytes 0-3    entryMagic "lmd1"
//	bytes 4-7    payload length, uint32 LE
//	bytes 8-15   owner a (the store's inode), uint64 LE
//	bytes 16-23  owner b (the store's group number), uint64 LE
//	bytes 24-27  CRC32C of the payload
//	bytes 28-31  CRC32C of bytes 0-27
//	then         the payload, byte for byte
//
// A Loc is checked against the entry header it points to (owner, length and payload checksum
// must all match) before the payload is used, so a Loc can never return another owner's
// bytes: after a power loss that kept the index's Loc but not the segment's bytes, the read
// fails with ErrCorrupt instead. Reads do not checksum the payload (the store's records carry
// their own checksums); CheckPayload does, for fsck and GC.
//
// Crash guarantees: an Appender's entries are written by Flush, which the caller runs before
// the transaction that stores their Locs commits; Sync fdatasyncs every segment written since
// the last Sync (and the data directory when a segment was made), so a caller that syncs
// segments before its index never has a durable Loc to bytes that are not. Each Open starts
// new segments, so the torn tail a crash may leave is never written over. A segment is only
// deleted when the caller says so (Delete), after it has made the moved entries and their new
// Locs durable.
//
// Concurrency: every method of Dir and of its Appenders may be called from any goroutine; one
// Appender is used by one goroutine at a time (one transaction). A reader that holds a span
// from ReadRange keeps its file open even if the segment is deleted meanwhile; a read that
// starts after Delete gets ErrDeleted (the caller retries on a newer snapshot of its index).
package segment

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"

	"lmfs/internal/crc32c"
)

// Size: a segment is sealed once an append would pass this (a variable for tests).
var Size int64 = 64 << 20

const (
	// FileHeader is the size of a segment's file header; the first entry starts here.
	FileHeader = 32
	// EntryHeader is the size of an entry's header, before its payload.
	EntryHeader = 32
	// Subdir is the directory of a store that holds its segments.
	Subdir = "data"
)

var fileMagic = []byte("lmfs data segment 1\n\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")

var entryMagic = []byte("lmd1")

var (
	// ErrCorrupt: a segment does not hold the entry a Loc says, or cannot be read.
	ErrCorrupt = errors.New("corrupt data segment")
	// ErrDeleted: the segment a Loc points to was deleted (its entries moved) after the
	// caller's snapshot of its index was taken.
	ErrDeleted = errors.New("data segment deleted meanwhile")
)

// Loc is where an entry lies: segment, offset of its header, payload length and checksum.
type Loc struct {
	Seg, Off, N, CRC uint32
}

// End is the offset just past the entry.
func (l Loc) End() int64 { return int64(l.Off) + EntrySize(l.N) }

// State is a current segment's length and appends so far, and whether an Appender that
// reserved room in it has not been released.
type State struct {
	N       int64
	Appends uint64
	Busy    bool
}

// Store is what the block store needs of its data segments. Dir implements it with local
// files; README ("Scaling out") says how an object store would.
type Store interface {
	// Batch starts the appends of one transaction.
	Batch() Appender
	// Read returns the payload of the entry at l, checked against its header, in buf's
	// memory when it is large enough.
	Read(buf []byte, a, b uint64, l Loc) ([]byte, error)
	// ReadRange returns n bytes of segment seg at off (one or more entries, checked by the
	// caller with CheckEntry) and the function that gives them back once used. Read the
	// bytes under ReadMapped.
	ReadRange(seg uint32, off, n int64) ([]byte, func(), error)
	// Seal ends appends to seg (if it is a current segment): the next append makes a new one.
	Seal(seg uint32)
	// Sealed lists the segments no longer appended to, with their sizes.
	Sealed() (map[uint32]int64, error)
	// Current returns the state of the segments being appended to.
	Current() map[uint32]State
	// Idle reports whether no unreleased Appender holds room in seg.
	Idle(seg uint32) bool
	// Delete removes seg; reads of it that start after get ErrDeleted.
	Delete(seg uint32) error
	// Sync makes every entry flushed so far durable.
	Sync() error
	// Close syncs and closes.
	Close() error
}

// Appender collects the appends of one transaction: room is reserved as they are added,
// the entries are written by Flush (before the transaction commits), and Release (after it
// has finished, committed or not) ends the reservations.
type Appender interface {
	// Append adds an entry with payload p owned by (a, b) to the stream's current segment.
	// Streams are the caller's numbers (0 to Options.Streams-1) for entries of like
	// lifetime; stream 0's segment is allocated ahead as it fills.
	Append(stream int, a, b uint64, p []byte) (Loc, error)
	Flush() error
	Release()
}

// checksum is lmfs's format checksum (CRC32C, internal/crc32c).
func checksum(b []byte) uint32 { return crc32c.Checksum(b) }

// EntrySize is the bytes an entry with a payload of n bytes takes in its segment.
func EntrySize(n uint32) int64 { return EntryHeader + int64(n) }

// PutEntryHeader writes the header of an entry owned by (a, b) with payload length n and
// checksum crc into h.
func PutEntryHeader(h []byte, a, b uint64, n int, crc uint32) {
	le := binary.LittleEndian
	copy(h, entryMagic)
	le.PutUint32(h[4:], uint32(n))
	le.PutUint64(h[8:], a)
	le.PutUint64(h[16:], b)
	le.PutUint32(h[24:], crc)
	le.PutUint32(h[28:], checksum(h[:28]))
}

// CheckEntry verifies an entry header against the owner and Loc that lead to it.
func CheckEntry(h []byte, a, b uint64, l Loc) error {
	le := binary.LittleEndian
	switch {
	case len(h) < EntryHeader || string(h[:4]) != string(entryMagic) || le.Uint32(h[28:]) != checksum(h[:28]):
		return fmt.Errorf("%w: segment %d offset %d holds no entry", ErrCorrupt, l.Seg, l.Off)
	case le.Uint64(h[8:]) != a || le.Uint64(h[16:]) != b || le.Uint32(h[4:]) != l.N || le.Uint32(h[24:]) != l.CRC:
		return fmt.Errorf("%w: segment %d offset %d holds another entry than the reference says", ErrCorrupt, l.Seg, l.Off)
	}
	return nil
}

// CheckPayload verifies a payload read through l against l's checksum.
func CheckPayload(l Loc, payload []byte) error {
	if checksum(payload) != l.CRC {
		return fmt.Errorf("%w: data segment %d offset %d: payload checksum mismatch", ErrCorrupt, l.Seg, l.Off)
	}
	return nil
}

// ReadMapped runs fn, which reads spans from ReadRange; a fault there (an I/O error under a
// mapping) becomes an ErrCorrupt error instead of killing the process.
func ReadMapped(fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			// The runtime reports a fault at a bad address as an error with Addr.
			if re, ok := r.(interface {
				runtime.Error
				Addr() uintptr
			}); ok {
				err = fmt.Errorf("%w: unreadable: %v", ErrCorrupt, re)
				return
			}
			panic(r)
		}
	}()
	return fn()
}
