package blockstore

import (
	"encoding/binary"
	"errors"
	"fmt"

	"lmfs/blockstore/kv"
	"lmfs/blockstore/segment"
	"lmfs/codec"
)

// Group values in data segments (format 3). Block group values larger than inlineMax are not
// Badger values: they are appended to data segments (package segment, which stores them as
// opaque payloads owned by (inode, group)) with one pwritev per commit, and the group key
// holds a reference: the entry's segment.Loc and a summary of the group's records for the
// counters.
//
// The reference encoding lives here, not in package segment: besides the Loc it carries the
// per-slot summary (stored length, codec, flags, raw length of each record), which is what
// the store knows of its records and what picks an entry's stream; the segment package only
// ever sees a Loc and bytes.
//
// Crash safety: entries are written (Appender.Flush) before the transaction that references
// them commits, and Store.Sync syncs the segments before Badger. Space of overwritten and
// deleted groups comes back through segment GC (segment_gc.go).

const inlineMax = 2048 // group values up to this stay Badger values (small files: one key, no segment)

// errMoved: the segment a reference points to was rewritten by GC after the reader's
// transaction started. It wraps ErrConflict, so the operation is retried on a new snapshot,
// which has the new reference.
var errMoved = fmt.Errorf("%w: data segment rewritten meanwhile", kv.ErrConflict)

// segErr turns the segment package's errors into the store's: a deleted segment is errMoved
// (retry on a new snapshot), a damaged one codec.ErrCorrupt (EIO).
func segErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, segment.ErrDeleted):
		return errMoved
	case errors.Is(err, segment.ErrCorrupt):
		return fmt.Errorf("%w: %w", codec.ErrCorrupt, err)
	}
	return err
}

// Reference value ('g' key value when the group lives in a segment):
//
//	byte 0       refFormat (2; an inline group value starts with groupFormat, 1)
//	bytes 1-4    segment number, uint32 LE
//	bytes 5-8    offset of the entry in the segment, uint32 LE
//	bytes 9-12   payload length, uint32 LE
//	bytes 13-16  CRC32C of the payload
//	bytes 17-    per slot (16): stored length uint16, codec uint8, flags uint8, raw length
//	             uint16 (0xFFFF: header unreadable); stored length 0 is a hole
const (
	refFormat = 2
	refFixed  = 17
	refSlot   = 6
	refSize   = refFixed + GroupBlocks*refSlot
)

type groupRef struct {
	seg     uint32
	off     uint32
	n       uint32
	crc     uint32
	summary []byte // the per-slot part, GroupBlocks*refSlot bytes
}

// loc is where the referenced entry lies.
func (r groupRef) loc() segment.Loc { return segment.Loc{Seg: r.seg, Off: r.off, N: r.n, CRC: r.crc} }

func isRef(v []byte) bool { return len(v) > 0 && v[0] == refFormat }

func parseRef(v []byte) (groupRef, error) {
	if len(v) != refSize || v[0] != refFormat {
		return groupRef{}, fmt.Errorf("%w: malformed segment reference (%d bytes)", codec.ErrCorrupt, len(v))
	}
	le := binary.LittleEndian
	r := groupRef{seg: le.Uint32(v[1:]), off: le.Uint32(v[5:]), n: le.Uint32(v[9:]), crc: le.Uint32(v[13:]), summary: v[refFixed:]}
	if r.n < groupHeader || r.n > maxGroupValue || int64(r.off) < segment.FileHeader {
		// Damage must not become a huge allocation or a read before the first entry.
		return groupRef{}, fmt.Errorf("%w: segment reference with offset %d, length %d", codec.ErrCorrupt, r.off, r.n)
	}
	return r, nil
}

// maxGroupValue bounds a group value: 16 records of at most a header and a raw block (a codec
// whose output is not smaller is not used).
const maxGroupValue = groupHeader + GroupBlocks*(codec.HeaderSize+bs)

// encodeRef builds a reference; summary is refSummary's result (or an old reference's).
func encodeRef(seg, off, n, crc uint32, summary []byte) []byte {
	v := make([]byte, refFixed, refSize)
	v[0] = refFormat
	le := binary.LittleEndian
	le.PutUint32(v[1:], seg)
	le.PutUint32(v[5:], off)
	le.PutUint32(v[9:], n)
	le.PutUint32(v[13:], crc)
	return append(v, summary...)
}

// refSummary is the per-slot part of a reference to a group value (parsed as grp).
func refSummary(grp *group) []byte {
	out := make([]byte, GroupBlocks*refSlot)
	for i, r := range grp {
		if r == nil {
			continue
		}
		p := out[i*refSlot:]
		binary.LittleEndian.PutUint16(p, uint16(len(r)))
		p[2] = r[0]
		if h, _, err := codec.ParseHeader(r); err == nil {
			p[3] = h.Flags
			binary.LittleEndian.PutUint16(p[4:], uint16(h.RawLen))
		} else {
			binary.LittleEndian.PutUint16(p[4:], 0xFFFF)
		}
	}
	return out
}

// slotInfo is one slot of a reference's summary.
type slotInfo struct {
	stored int  // 0: hole
	codec  byte // codec id
	flags  byte
	raw    int // -1: the record's header was unreadable
}

func (r *groupRef) slot(i int) slotInfo {
	p := r.summary[i*refSlot:]
	si := slotInfo{stored: int(binary.LittleEndian.Uint16(p)), codec: p[2], flags: p[3], raw: int(binary.LittleEndian.Uint16(p[4:]))}
	if si.raw == 0xFFFF {
		si.raw = -1
	}
	return si
}

// Streams: entries are appended to one of three current segments by how long they are
// likely to live, so a segment's entries tend to die together and GC deletes it without
// copying much: fresh (raw records the compactor's fast pass replaces within seconds; stream
// 0, which the segment package allocates ahead), pending (coded, awaiting the full recode),
// final (nothing pending).
const (
	streamFresh = iota
	streamPending
	streamFinal
	segStreams
)

// streamOf picks the stream of a group value from its reference summary.
func streamOf(summary []byte) int {
	r := groupRef{summary: summary}
	st := streamFinal
	for i := range GroupBlocks {
		si := r.slot(i)
		if si.stored == 0 || si.raw < 0 {
			continue
		}
		switch codec.StageOf(codec.ID(si.codec), si.flags) {
		case codec.StageFresh:
			return streamFresh
		case codec.StagePending:
			st = streamPending
		}
	}
	return st
}

// segBatch collects the segment appends of one transaction (segment.Appender): written by
// flush before the transaction commits, released when it has finished.
type segBatch struct {
	app segment.Appender
}

func (s *Store) segBatch() *segBatch { return &segBatch{s.segs.Batch()} }

// add appends group value val of (ino, g) to the batch and returns the reference to store
// under the group key (summary: the reference summary, computed when nil).
func (b *segBatch) add(ino, g uint64, val []byte, summary []byte) ([]byte, error) {
	if summary == nil {
		grp, err := parseGroup(val)
		if err != nil {
			return nil, err
		}
		summary = refSummary(&grp)
	}
	l, err := b.app.Append(streamOf(summary), ino, g, val)
	if err != nil {
		return nil, err
	}
	return encodeRef(l.Seg, l.Off, l.N, l.CRC, summary), nil
}

func (b *segBatch) flush() error { return b.app.Flush() }

func (b *segBatch) release() {
	if b != nil {
		b.app.Release()
	}
}

// readSegment returns the group value reference r of group (ino, g) points to, checked
// against its entry header, in buf's memory when it is large enough.
func (s *Store) readSegment(buf []byte, ino, g uint64, r groupRef) ([]byte, error) {
	v, err := s.segs.Read(buf, ino, g, r.loc())
	return v, segErr(err)
}

// checkPayload verifies a payload read through reference v against the reference's checksum.
func checkPayload(v, payload []byte) error {
	r, err := parseRef(v)
	if err != nil {
		return err
	}
	return segErr(segment.CheckPayload(r.loc(), payload))
}
