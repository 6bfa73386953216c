package blockstore

import (
	"encoding/binary"
	"fmt"

	"lmfs/codec"
)

// Block groups. A file's blocks are stored GroupBlocks to a Badger value, key 'g' ino group:
// one Badger entry per 32 KiB of file instead of one per 2 KiB block. Badger's cost is mostly
// per entry (value-log entry header and checksum, memtable insert, index key), so sequential
// writes and reads run several times faster than with a key per block, while every block
// inside stays its own record (codec header, payload, CRC32C), coded and decoded on its own.
//
// Group value:
//
//	byte 0        group format (1)
//	bytes 1-32    16 record lengths, uint16 little endian; 0 = hole (reads as zeros)
//	bytes 33-     the records of the non-hole slots, in slot order
//
// A write that changes some blocks of a group rewrites the group value: the records of the
// other slots are copied verbatim (never decoded and recoded).

// GroupBlocks is the number of blocks one group value holds.
const GroupBlocks = 16

const (
	groupFormat = 1
	groupHeader = 1 + 2*GroupBlocks
)

// group is a parsed group value: the record of each slot, nil for a hole.
type group [GroupBlocks][]byte

// groupOf returns the group holding block blk and the block's slot in it.
func groupOf(blk uint64) (uint64, int) { return blk / GroupBlocks, int(blk % GroupBlocks) }

// parseGroup splits a group value into its records (which alias v). It never panics.
func parseGroup(v []byte) (group, error) {
	var g group
	if len(v) < groupHeader || v[0] != groupFormat {
		return g, fmt.Errorf("%w: malformed block group (%d bytes)", codec.ErrCorrupt, len(v))
	}
	off := groupHeader
	for i := range g {
		n := int(binary.LittleEndian.Uint16(v[1+2*i:]))
		if n == 0 {
			continue
		}
		if n < codec.HeaderSize || off+n > len(v) {
			return group{}, fmt.Errorf("%w: block group slot %d overruns the value", codec.ErrCorrupt, i)
		}
		g[i] = v[off : off+n : off+n]
		off += n
	}
	if off != len(v) {
		return group{}, fmt.Errorf("%w: block group has %d trailing bytes", codec.ErrCorrupt, len(v)-off)
	}
	return g, nil
}

// empty reports whether every slot is a hole (such a group is not stored).
func (g *group) empty() bool {
	for _, r := range g {
		if r != nil {
			return false
		}
	}
	return true
}

// pending reports whether some record still awaits the compactor.
func (g *group) pending() bool {
	for _, r := range g {
		if len(r) > 1 && r[1]&codec.FlagPending != 0 {
			return true
		}
	}
	return false
}

// marshal returns the group value.
func (g *group) marshal() []byte {
	n := groupHeader
	for _, r := range g {
		n += len(r)
	}
	v := make([]byte, groupHeader, n)
	v[0] = groupFormat
	for i, r := range g {
		binary.LittleEndian.PutUint16(v[1+2*i:], uint16(len(r)))
		v = append(v, r...)
	}
	return v
}

// addGroup accounts for every record of a group value appearing (sign 1) or going away (-1).
// An unparsable value counts as stored bytes of an unknown codec, so the totals still add up.
func (d *Delta) addGroup(v []byte, sign int64) {
	if isRef(v) {
		r, err := parseRef(v)
		if err == nil {
			for i := range GroupBlocks {
				if si := r.slot(i); si.stored > 0 {
					d.addRecord(si.codec, si.flags, si.raw, si.stored, sign)
				}
			}
			return
		}
	}
	g, err := parseGroup(v)
	if err != nil {
		d.codec[0].Stored += sign * int64(len(v))
		if sign < 0 {
			d.freed += int64(len(v))
		}
		return
	}
	for _, r := range g {
		if r != nil {
			d.addBlock(r, sign)
		}
	}
}

// holes reports which slots of the group stored as v (inline or a reference) are holes.
func holes(v []byte) ([GroupBlocks]bool, error) {
	var h [GroupBlocks]bool
	if isRef(v) {
		r, err := parseRef(v)
		if err != nil {
			return h, err
		}
		for i := range h {
			h[i] = r.slot(i).stored == 0
		}
		return h, nil
	}
	g, err := parseGroup(v)
	for i := range h {
		h[i] = g[i] == nil
	}
	return h, err
}
