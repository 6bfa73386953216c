// Package codec turns one block of file data (at most BlockSize bytes) into a self-describing
// block record and back. A record is
//
//	byte 0     codec id (Raw, Gzip, Zstd, Brotli, S2, LM)
//	byte 1     flags (FlagPending: the compactor has not yet tried the best codecs on it)
//	bytes 2-3  raw length, uint16 little endian (1..BlockSize)
//	bytes 4-7  CRC32C (Castagnoli) of the raw bytes, little endian
//	bytes 8-   codec payload
//
// Contract for every codec: Decode either returns exactly the bytes that Encode was given or an
// error; it never panics on hostile payloads and never returns more than the raw length. The
// CRC in the header is checked after every decode, so a codec bug or a flipped bit on disk gives
// ErrCorrupt, never wrong data.
//
// Which codec a block ends up in is decided in one place, policy.go: what a write lands as,
// where a record stands (Stage), the compactor's fast pass and full recode (Policy), and the
// rule among candidates (Choice) that codec/bench's lmfs column applies too.
package codec

import (
	"encoding/binary"
	"errors"
	"fmt"

	"lmfs/internal/crc32c"
)

// BlockSize is the size of the fixed blocks files are cut into.
const BlockSize = 2048

// HeaderSize is the size of the record header that precedes every payload.
const HeaderSize = 8

// ID names a block codec. Ids are part of the store format: never renumber.
type ID uint8

const (
	Raw    ID = 1
	Gzip   ID = 2
	Zstd   ID = 3
	Brotli ID = 4
	S2     ID = 5
	LM     ID = 6
)

// FlagPending marks a record the compactor has yet to recode (StageFresh or StagePending).
const FlagPending = 1

var (
	// ErrCorrupt reports a record that cannot be decoded to bytes matching its checksum.
	ErrCorrupt = errors.New("corrupt block")
	// ErrUnknownCodec reports a record whose codec id this build does not know.
	ErrUnknownCodec = errors.New("unknown codec")
)

// Checksum is the CRC32C of record headers (internal/crc32c: the checksum of lmfs's formats).
func Checksum(raw []byte) uint32 { return crc32c.Checksum(raw) }

// String returns the codec's name as shown by stats.
func (id ID) String() string {
	switch id {
	case Raw:
		return "raw"
	case Gzip:
		return "gzip"
	case Zstd:
		return "zstd"
	case Brotli:
		return "brotli"
	case S2:
		return "s2"
	case LM:
		return "lm"
	}
	return fmt.Sprintf("codec%d", uint8(id))
}

// Header is the parsed fixed part of a record.
type Header struct {
	Codec  ID
	Flags  uint8
	RawLen int
	CRC    uint32
}

// ParseHeader validates and parses the header of rec. It never panics.
func ParseHeader(rec []byte) (Header, []byte, error) {
	if len(rec) < HeaderSize {
		return Header{}, nil, fmt.Errorf("%w: record of %d bytes is shorter than its header", ErrCorrupt, len(rec))
	}
	h := Header{
		Codec:  ID(rec[0]),
		Flags:  rec[1],
		RawLen: int(binary.LittleEndian.Uint16(rec[2:4])),
		CRC:    binary.LittleEndian.Uint32(rec[4:8]),
	}
	if h.RawLen == 0 || h.RawLen > BlockSize {
		return Header{}, nil, fmt.Errorf("%w: raw length %d out of range", ErrCorrupt, h.RawLen)
	}
	if h.Flags&^FlagPending != 0 {
		return Header{}, nil, fmt.Errorf("%w: unknown flags %#x", ErrCorrupt, h.Flags)
	}
	return h, rec[HeaderSize:], nil
}

// appendHeader appends a record header for raw coded by id.
func appendHeader(dst []byte, id ID, flags uint8, raw []byte) []byte {
	var h [HeaderSize]byte
	h[0] = byte(id)
	h[1] = flags
	binary.LittleEndian.PutUint16(h[2:4], uint16(len(raw)))
	binary.LittleEndian.PutUint32(h[4:8], Checksum(raw))
	return append(dst, h[:]...)
}

// IsZero reports whether b holds only zero bytes. All-zero blocks are stored as holes.
func IsZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
