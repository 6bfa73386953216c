package blockstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"

	"github.com/dgraph-io/badger/v4/y"
)

// Guarding the newest value-log file. When Badger opens a store read-write it cuts its newest
// value-log file at the first entry whose checksum fails: right for a half-written tail after
// a crash, but damage in the middle of a cleanly closed file would silently drop every record
// written after it. So a clean Close leaves a marker, and Open of a cleanly closed store first
// reads the newest value-log file itself: if an entry fails its checksum before the end, the
// store is refused (ErrDamagedLog) before Badger touches it, and fsck reads it read-only.
//
// The reader follows Badger v4's value-log layout: a 20-byte file header, then entries of
// {meta, user meta, uvarint key length, uvarint value length, uvarint expiry} + key + value +
// big-endian CRC32C of all before it. A zero entry ends the data (Badger zero-fills the rest).

// ErrDamagedLog reports a cleanly closed store whose newest value-log file fails its checksums.
var ErrDamagedLog = errors.New("value log damaged")

const (
	closedMarker   = "lmfs.closed"
	vlogFileHeader = 20
)

// newestValueLog returns the path of the value-log file with the highest number, or "".
func newestValueLog(dir string) string {
	ms, _ := filepath.Glob(filepath.Join(dir, "*.vlog"))
	if len(ms) == 0 {
		return ""
	}
	sort.Slice(ms, func(i, j int) bool {
		a, b := filepath.Base(ms[i]), filepath.Base(ms[j])
		if len(a) != len(b) {
			return len(a) < len(b)
		}
		return a < b
	})
	return ms[len(ms)-1]
}

// checkValueLog returns the offset of the first damaged entry of a value-log file that has
// data after it, or -1 when every entry up to the end of the data is intact.
func checkValueLog(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	off := vlogFileHeader
	for off < len(data) {
		if allZero(data[off:]) {
			return -1, nil
		}
		n, ok := vlogEntry(data[off:])
		if !ok {
			return int64(off), nil
		}
		if n == 0 {
			// A zero entry before non-zero bytes: the end of the data is not where Badger
			// will see it.
			return int64(off), nil
		}
		off += n
	}
	return -1, nil
}

// vlogEntry checks one entry at the start of b and returns its length (0 for a zero entry).
func vlogEntry(b []byte) (int, bool) {
	if len(b) < 2 {
		return 0, false
	}
	i := 2
	var klen, vlen uint64
	for f := 0; f < 3; f++ {
		v, n := binary.Uvarint(b[i:])
		if n <= 0 {
			return 0, false
		}
		switch f {
		case 0:
			klen = v
		case 1:
			vlen = v
		}
		i += n
	}
	if klen == 0 {
		return 0, true
	}
	if klen > 1<<16 || vlen > 1<<31 || uint64(len(b)) < uint64(i)+klen+vlen+4 {
		return 0, false
	}
	end := i + int(klen) + int(vlen)
	if crc32.Checksum(b[:end], y.CastagnoliCrcTable) != binary.BigEndian.Uint32(b[end:end+4]) {
		return 0, false
	}
	return end + 4, true
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// guardValueLog refuses a cleanly closed store whose newest value-log file is damaged.
func guardValueLog(dir string) error {
	if _, err := os.Lstat(filepath.Join(dir, closedMarker)); err != nil {
		return nil // not closed cleanly: a damaged tail is a torn write Badger may cut
	}
	p := newestValueLog(dir)
	if p == "" {
		return nil
	}
	bad, err := checkValueLog(p)
	if err != nil {
		return fmt.Errorf("check %s: %w", filepath.Base(p), err)
	}
	if bad >= 0 {
		return fmt.Errorf("%w: %s fails its checksum at offset %d with records after it; opening it for writing would drop them, so the store was left untouched (lmfs fsck reads it read-only)", ErrDamagedLog, filepath.Base(p), bad)
	}
	return nil
}
