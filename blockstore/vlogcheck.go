package blockstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

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
	ms := valueLogs(dir)
	if len(ms) == 0 {
		return ""
	}
	return ms[len(ms)-1]
}

// valueLogs returns the paths of dir's value-log files, lowest number first.
func valueLogs(dir string) []string {
	ms, _ := filepath.Glob(filepath.Join(dir, "*.vlog"))
	sort.Slice(ms, func(i, j int) bool {
		a, b := filepath.Base(ms[i]), filepath.Base(ms[j])
		if len(a) != len(b) {
			return len(a) < len(b)
		}
		return a < b
	})
	return ms
}

// valueLogNumber is the number in a value-log file's name (Badger's "%06d.vlog"), or -1.
func valueLogNumber(path string) int64 {
	n, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(path), ".vlog"), 10, 32)
	if err != nil {
		return -1
	}
	return int64(n)
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

// A value-log file shorter than its header. Badger makes a value-log file (at every read-write
// open, and whenever the current one is full) by creating it, extending it to twice
// ValueLogFileSize and writing its 20-byte header through a shared mmap; a power loss before
// the size or the header reached the disk leaves the newest file empty (or, on some file
// systems, cut inside the header). Such a file holds nothing the store promised: lmfs does
// not have Badger sync its writes (SyncWrites is off), Sync does, through Badger's db.Sync,
// which msyncs the current value-log file (fdatasync: its size and its bytes), so a file
// that a Sync had covered would have its full size. Badger itself refuses an empty one
// ("Open existing file ...: Create a new file", read-only: "truncate ...: invalid argument")
// and on its way out grows it, so that the next open passes and forgets that anything was
// wrong; and it takes a file cut inside its header, writing zeros over the rest.
//
// So before Badger opens the store, lmfs looks at the sizes itself:
//   - the newest file, after a crash (no lmfs.closed, or lmfs.closed naming an older newest
//     file: a crash during the open that followed a clean close), gets its 20-byte header
//     (key id 0: lmfs never encrypts; the IV is used only for encryption), durably, under
//     Badger's exclusive directory lock, with a log line; Badger then opens it as a file it
//     made and wrote nothing to. A read-only open changes nothing: it is ErrUnclean (a mount or
//     lmfs fsck repairs it);
//   - the newest file of a cleanly closed store, when lmfs.closed names it (a clean close
//     leaves it at least its header) or names no file (written by an older lmfs), and any
//     file that is not the newest (Badger moved on from it, so it had its header), is damage:
//     the records it held are lost, so the store is refused (ErrDamagedLog), untouched.

// closedNewest reads lmfs.closed: whether the store was closed cleanly, and the number of the
// newest value-log file when it was (-1: the marker does not say, as one of an older lmfs).
func closedNewest(dir string) (clean bool, newest int64) {
	b, err := readStoreFile(dir, closedMarker, 4096)
	if err != nil {
		_, lerr := os.Lstat(filepath.Join(dir, closedMarker))
		return lerr == nil, -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if name, ok := strings.CutPrefix(line, closedNewestPrefix); ok {
			return true, valueLogNumber(name)
		}
	}
	return true, -1
}

// closedNewestPrefix starts the line of lmfs.closed that names the newest value-log file.
const closedNewestPrefix = "newest value log: "

// closedText is what markClosed writes into lmfs.closed for the store in dir (Badger closed).
func closedText(dir string) []byte {
	b := []byte("closed cleanly\n")
	if p := newestValueLog(dir); p != "" {
		b = fmt.Appendf(b, "%s%s\n", closedNewestPrefix, filepath.Base(p))
	}
	return b
}

// fixShortValueLog checks the sizes of the value-log files in dir and gives a newest file a
// crash left without its header the header (see above).
func fixShortValueLog(dir string, readOnly bool, log *slog.Logger) error {
	logs := valueLogs(dir)
	for i, p := range logs {
		st, err := os.Lstat(p)
		if err != nil || !st.Mode().IsRegular() || st.Size() >= vlogFileHeader {
			continue // a link or a special file: checkIndex refuses it
		}
		name, size := filepath.Base(p), st.Size()
		if i < len(logs)-1 {
			return fmt.Errorf("%w: %s is %d bytes, shorter than its %d-byte header, and it is not the newest value-log file (a crash cuts only the newest one): the records it held are lost; the store was left as it is; restore it from a backup",
				ErrDamagedLog, name, size, vlogFileHeader)
		}
		if clean, newest := closedNewest(dir); clean && (newest < 0 || valueLogNumber(p) <= newest) {
			return fmt.Errorf("%w: %s is %d bytes, shorter than its %d-byte header, in a store that was closed cleanly: the records it held are lost; the store was left as it is; restore it from a backup",
				ErrDamagedLog, name, size, vlogFileHeader)
		}
		if readOnly {
			return fmt.Errorf("%w (its newest value-log file %s is %d bytes, as a crash right after it was made leaves it: mount the store or run lmfs fsck to repair it)", ErrUnclean, name, size)
		}
		if err := writeValueLogHeader(dir, p); err != nil {
			return err
		}
		log.Warn("newest value-log file was left without its header by a crash right after it was made (it held no data): wrote the header", "file", p, "bytes", size)
	}
	return nil
}

// writeValueLogHeader gives the value-log file at path, shorter than its header, the header
// of a file without encryption, durably, under the exclusive lock Badger takes on dir.
func writeValueLogHeader(dir, path string) error {
	release, err := lockStoreDir(dir, true)
	if errors.Is(err, ErrLocked) {
		return err
	}
	if err != nil {
		return fmt.Errorf("repair %s: %w", filepath.Base(path), err)
	}
	defer release()
	f, err := openNoFollow(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("repair %s: %w", filepath.Base(path), err)
	}
	st, err := f.Stat()
	if err == nil && st.Mode().IsRegular() && st.Size() < vlogFileHeader {
		_, err = f.WriteAt(make([]byte, vlogFileHeader), 0)
		if err == nil {
			err = f.Sync()
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("repair %s: %w", filepath.Base(path), err)
	}
	return nil
}
