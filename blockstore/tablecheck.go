package blockstore

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/fb"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/pb"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/badger/v4/y"
	"google.golang.org/protobuf/proto"
)

// Checking Badger's index files before Badger opens them.
//
// Badger opens its tables (*.sst) in goroutines of its own and trusts their footers: a table
// whose tail was zeroed, cut short, extended or overwritten makes it index outside the file
// and panic there, where no recover of ours reaches (measured on v4.9.6: a zeroed, truncated,
// extended or random table, and one with a byte of its footer changed, each crashed lmfs
// fsck and mount with a stack trace; a changed byte inside a block or the index was caught by
// Badger's checksums, an error). Its checksum options do not help: the footer is parsed, and
// the table's last block read, before any checksum is looked at (a zeroed footer even passes
// the index checksum: an empty index, CRC 0). And when its MANIFEST is cut short or missing,
// Badger deletes every table file the manifest does not list (read-only opens too): the
// store's whole index, names and references to every file's data.
//
// So Open first reads what Badger is about to trust, under a shared lock on the directory
// (the lock Badger takes; a running server cannot change the files meanwhile): the MANIFEST,
// record by record with its checksums, and every table it lists: footer, index checksum, the
// index's list of blocks, and every block's checksum. In a cleanly closed store a manifest
// that ends in a partial record or a table it does not list is damage (Badger would delete
// the table); after a crash they are what an interrupted flush or compaction leaves, which
// Badger cleans up as it should. Damage is ErrDamagedIndex naming the file; nothing is changed.
// Cost: one read of the tables (the LSM tree holds keys, metadata and references, not file
// data: 40 MB for 524 MiB of small files, less for big files).

// ErrDamagedIndex reports a Badger index file (MANIFEST or a table) that Badger cannot open
// safely; the store was left as it was.
var ErrDamagedIndex = errors.New("damaged index file")

// damagedIndex is the error for file (a name in the store directory) with what is wrong.
func damagedIndex(file, why string) error {
	return fmt.Errorf("%w %s (%s): the store was left as it is; restore it from a backup (lmfs cannot open it)", ErrDamagedIndex, file, why)
}

// tableInfo is what the MANIFEST says about one table.
type tableInfo struct {
	level       uint32
	keyID       uint64 // data key of an encrypted table (lmfs never encrypts)
	compression uint32 // options.CompressionType (lmfs never compresses)
}

// maxLevels is the number of LSM levels Badger opens (tables of other levels make it index
// outside its level list).
var maxLevels = uint32(badger.DefaultOptions("").MaxLevels)

// checkIndex checks the MANIFEST and tables of the store in dir before Badger opens them (see
// the top of this file).
func checkIndex(dir string) error {
	release, err := lockStoreDir(dir, false)
	if errors.Is(err, ErrLocked) {
		return err
	}
	if err != nil {
		return fmt.Errorf("check index: %w", err)
	}
	defer release()
	if err := checkKeyRegistry(dir); err != nil {
		return err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("check index: %w", err)
	}
	var onDisk []uint64
	for _, e := range ents {
		if id, ok := table.ParseFileID(e.Name()); ok && !e.IsDir() {
			onDisk = append(onDisk, id)
		}
		if strings.HasSuffix(e.Name(), ".vlog") && !e.IsDir() {
			if err := checkValueLogHeader(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("damaged value-log file %s (%v): the store was left as it is; restore it from a backup", e.Name(), err)
			}
		}
	}
	slices.Sort(onDisk)
	mb, err := readStoreFile(dir, badger.ManifestFilename, 64<<20)
	if errors.Is(err, os.ErrNotExist) {
		if len(onDisk) > 0 {
			return damagedIndex(badger.ManifestFilename, fmt.Sprintf("it is missing; Badger would delete the %d tables it lists", len(onDisk)))
		}
		return nil // a store Badger has not written yet
	}
	if err != nil {
		return damagedIndex(badger.ManifestFilename, err.Error())
	}
	tables, partial, err := parseManifest(mb)
	if err != nil {
		return damagedIndex(badger.ManifestFilename, err.Error())
	}
	clean := false
	if st, err := os.Lstat(filepath.Join(dir, closedMarker)); err == nil && st.Mode().IsRegular() {
		clean = true
	}
	for _, id := range onDisk {
		if _, ok := tables[id]; ok || !clean {
			continue
		}
		why := fmt.Sprintf("it does not list table %s, which opening the store would delete", table.IDToFilename(id))
		if partial >= 0 {
			why = fmt.Sprintf("it ends in a partial record at offset %d and does not list table %s, which opening the store would delete", partial, table.IDToFilename(id))
		}
		return damagedIndex(badger.ManifestFilename, why)
	}
	ids := make([]uint64, 0, len(tables))
	for id := range tables {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		name := table.IDToFilename(id)
		if _, found := slices.BinarySearch(onDisk, id); !found {
			return damagedIndex(name, "listed in MANIFEST but missing")
		}
		if err := checkTableFile(filepath.Join(dir, name), tables[id]); err != nil {
			return damagedIndex(name, err.Error())
		}
	}
	return nil
}

// keyRegistry is Badger's file of encryption keys. lmfs never encrypts: the file is a random
// IV and the plain sanity text, and holds no keys. Badger refuses a damaged one with
// "Encryption key mismatch", which says nothing of the file or the fix; moving it aside is
// the fix (Badger writes a new one; measured on a zeroed one: the store then checks clean).
const keyRegistry = "KEYREGISTRY"

// checkKeyRegistry checks the KEYREGISTRY of a store without encryption keys.
func checkKeyRegistry(dir string) error {
	const sanity = "Hello Badger" // after a 16-byte IV
	b, err := readStoreFile(dir, keyRegistry, 1<<20)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil // Badger makes one
	case err == nil && len(b) == 16+len(sanity) && string(b[16:]) == sanity:
		return nil
	case err == nil && len(b) > 16+len(sanity) && string(b[16:16+len(sanity)]) == sanity:
		err = fmt.Errorf("%d bytes after its sanity text, where only an encrypted store keeps keys", len(b)-16-len(sanity))
	case err == nil && len(b) > 16+len(sanity):
		return nil // an encrypted store's (not lmfs's): Badger decides
	case err == nil:
		err = fmt.Errorf("%d bytes without Badger's sanity text", len(b))
	}
	return fmt.Errorf("damaged Badger file %s (%v): the store was left as it is; lmfs never encrypts, so the file holds no keys: move it aside (mv %s %s.damaged) and the next open writes a new one",
		keyRegistry, err, filepath.Join(dir, keyRegistry), filepath.Join(dir, keyRegistry))
}

// checkValueLogHeader checks the key id in a value-log file's header (8 bytes, then a 12-byte
// IV): lmfs never encrypts, so it is 0; another number made Badger refuse the store with
// "Error for the KEY ID ...: Invalid datakey id". (A file shorter than its header was dealt
// with before: fixShortValueLog, vlogcheck.go.)
func checkValueLogHeader(path string) error {
	f, _, err := openStoreFile(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var h [8]byte
	if n, _ := io.ReadFull(f, h[:]); n < len(h) {
		return nil
	}
	if id := binary.BigEndian.Uint64(h[:]); id != 0 {
		return fmt.Errorf("its header names encryption key %d; lmfs never encrypts", id)
	}
	return nil
}

// openStoreFile opens a file of the store for reading without following a symlink (a store's
// files never are links: one could point anywhere) and checks that it is a regular file.
func openStoreFile(path string) (*os.File, os.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, nil, errors.New("it is a symbolic link")
	}
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = errors.New("it is not a regular file")
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, st, nil
}

// readStoreFile reads a small file of the store (up to max bytes) as openStoreFile opens it.
func readStoreFile(dir, name string, max int64) ([]byte, error) {
	f, st, err := openStoreFile(filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st.Size() > max {
		return nil, fmt.Errorf("%d bytes, more than a store keeps there", st.Size())
	}
	b := make([]byte, st.Size())
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	return b, nil
}

// parseManifest replays a MANIFEST as Badger does and returns the tables it lists, and the
// offset of a partial record at its end (-1: none). What makes Badger refuse the file is an
// error here too, said plainly.
//
// Layout (Badger v4): "Bdgr", external magic (2 bytes), version (2 bytes), then records of
// {length, CRC32C of the change set} (big endian uint32s) and a protobuf ManifestChangeSet.
func parseManifest(b []byte) (map[uint64]tableInfo, int64, error) {
	if len(b) < 8 || string(b[:4]) != "Bdgr" {
		return nil, -1, errors.New("no Badger manifest header")
	}
	tables := map[uint64]tableInfo{}
	off := 8
	for off < len(b) {
		if len(b)-off < 8 {
			return tables, int64(off), nil
		}
		n := int64(binary.BigEndian.Uint32(b[off:]))
		sum := binary.BigEndian.Uint32(b[off+4:])
		if n > int64(len(b)) {
			return nil, -1, fmt.Errorf("record at offset %d is longer than the file", off)
		}
		if int64(len(b)-off-8) < n {
			return tables, int64(off), nil
		}
		rec := b[off+8 : off+8+int(n)]
		if crc32.Checksum(rec, y.CastagnoliCrcTable) != sum {
			return nil, -1, fmt.Errorf("record at offset %d fails its checksum", off)
		}
		var cs pb.ManifestChangeSet
		if err := proto.Unmarshal(rec, &cs); err != nil {
			return nil, -1, fmt.Errorf("record at offset %d: %v", off, err)
		}
		for _, c := range cs.Changes {
			switch c.Op {
			case pb.ManifestChange_CREATE:
				if _, ok := tables[c.Id]; ok {
					return nil, -1, fmt.Errorf("record at offset %d creates table %d twice", off, c.Id)
				}
				if c.Level >= maxLevels {
					return nil, -1, fmt.Errorf("record at offset %d puts table %d on level %d (Badger has %d)", off, c.Id, c.Level, maxLevels)
				}
				tables[c.Id] = tableInfo{level: c.Level, keyID: c.KeyId, compression: c.Compression}
			case pb.ManifestChange_DELETE:
				delete(tables, c.Id)
			default:
				return nil, -1, fmt.Errorf("record at offset %d has an unknown change %d", off, c.Op)
			}
		}
		off += 8 + int(n)
	}
	return tables, -1, nil
}

// checkTableFile checks one table file (see checkTable).
func checkTableFile(path string, ti tableInfo) error {
	f, st, err := openStoreFile(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return checkTable(f, st.Size(), ti)
}

// maxChecksumLen bounds the encoded checksum of a table or block (a protobuf of an algorithm
// and a uint64: at most 13 bytes).
const maxChecksumLen = 64

// checkTable checks a Badger v4 table of size bytes: it never panics, and a table it accepts
// is one Badger opens and reads without indexing outside it (unless it was crafted to pass
// the checksums). Layout (table/builder.go):
//
//	blocks                     from offset 0, one after the other
//	index                      flatbuffer TableIndex: one BlockOffset (key, offset, length) per block
//	index length               big endian uint32
//	checksum of the index      protobuf Checksum (algorithm, sum)
//	checksum length            big endian uint32
//
// A block ends in {entry offsets, entry count (uint32), checksum, checksum length}; its
// checksum covers everything before the checksum.
func checkTable(r io.ReaderAt, size int64, ti tableInfo) (err error) {
	defer func() {
		// The flatbuffer accessors trust offsets inside the index; the index passed its
		// checksum, so only a crafted file gets here.
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed index: %v", p)
		}
	}()
	if size < 8 {
		return fmt.Errorf("%d bytes: too short for a table", size)
	}
	u32 := func(off int64) (uint32, error) {
		var b [4]byte
		if _, err := r.ReadAt(b[:], off); err != nil {
			return 0, fmt.Errorf("read at %d: %w", off, err)
		}
		return binary.BigEndian.Uint32(b[:]), nil
	}
	chkLen, err := u32(size - 4)
	if err != nil {
		return err
	}
	if chkLen > maxChecksumLen || int64(chkLen) > size-8 {
		return fmt.Errorf("footer: checksum length %d in a %d-byte file", chkLen, size)
	}
	chkBytes := make([]byte, chkLen)
	if _, err := r.ReadAt(chkBytes, size-4-int64(chkLen)); err != nil {
		return fmt.Errorf("footer: %w", err)
	}
	chk, err := parseChecksum(chkBytes)
	if err != nil {
		return fmt.Errorf("footer: %w", err)
	}
	idxLenAt := size - 8 - int64(chkLen)
	idxLen, err := u32(idxLenAt)
	if err != nil {
		return err
	}
	if idxLen == 0 || int64(idxLen) > idxLenAt {
		return fmt.Errorf("footer: index length %d in a %d-byte file", idxLen, size)
	}
	idxStart := idxLenAt - int64(idxLen)
	idx := make([]byte, idxLen)
	if _, err := r.ReadAt(idx, idxStart); err != nil {
		return fmt.Errorf("index: %w", err)
	}
	if y.CalculateChecksum(idx, chk.Algo) != chk.Sum {
		return errors.New("the index fails its checksum")
	}
	if ti.keyID != 0 {
		return nil // encrypted: the index and blocks cannot be read without the key (checksummed above)
	}
	if len(idx) < 4 {
		return errors.New("malformed index")
	}
	index := fb.GetRootAsTableIndex(idx, 0)
	n := index.OffsetsLength()
	if n == 0 {
		return errors.New("the index lists no blocks")
	}
	type span struct{ off, n int64 }
	blocks := make([]span, n)
	var bo fb.BlockOffset
	for i := range n {
		if !index.Offsets(&bo, i) {
			return errors.New("malformed index")
		}
		_ = bo.KeyBytes() // Badger reads the first block's key at open
		b := span{int64(bo.Offset()), int64(bo.Len())}
		if b.n < 8 || b.off+b.n > idxStart {
			return fmt.Errorf("the index puts block %d at bytes %d-%d; the blocks end at %d", i, b.off, b.off+b.n, idxStart)
		}
		blocks[i] = b
	}
	if options.CompressionType(ti.compression) != options.None {
		return nil // block checksums are inside the compressed bytes (lmfs never compresses)
	}
	slices.SortFunc(blocks, func(a, b span) int { return int(a.off - b.off) })
	br := bufio.NewReaderSize(io.NewSectionReader(r, 0, idxStart), 1<<20)
	pos := int64(0)
	var buf []byte
	for i, b := range blocks {
		if b.off < pos {
			return fmt.Errorf("the index has overlapping blocks at %d", b.off)
		}
		if _, err := br.Discard(int(b.off - pos)); err != nil {
			return fmt.Errorf("block %d: %w", i, err)
		}
		buf = slices.Grow(buf[:0], int(b.n))[:b.n]
		if _, err := io.ReadFull(br, buf); err != nil {
			return fmt.Errorf("block %d: %w", i, err)
		}
		pos = b.off + b.n
		if err := checkBlock(buf); err != nil {
			return fmt.Errorf("block at offset %d: %w", b.off, err)
		}
	}
	return nil
}

// checkBlock checks one uncompressed table block's trailer and checksum.
func checkBlock(b []byte) error {
	end := len(b) - 4
	chkLen := int64(binary.BigEndian.Uint32(b[end:]))
	if chkLen > maxChecksumLen || chkLen > int64(end-4) {
		return fmt.Errorf("checksum length %d in a %d-byte block", chkLen, len(b))
	}
	chkAt := end - int(chkLen)
	chk, err := parseChecksum(b[chkAt:end])
	if err != nil {
		return err
	}
	if y.CalculateChecksum(b[:chkAt], chk.Algo) != chk.Sum {
		return errors.New("it fails its checksum")
	}
	entries := int64(binary.BigEndian.Uint32(b[chkAt-4:]))
	if entries == 0 || entries*4 > int64(chkAt-4) {
		return fmt.Errorf("%d entries in a %d-byte block", entries, len(b))
	}
	return nil
}

// parseChecksum decodes a checksum record of an algorithm Badger knows (it panics on others).
func parseChecksum(b []byte) (*pb.Checksum, error) {
	var c pb.Checksum
	if err := proto.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("checksum record: %v", err)
	}
	if c.Algo != pb.Checksum_CRC32C && c.Algo != pb.Checksum_XXHash64 {
		return nil, fmt.Errorf("checksum algorithm %d", c.Algo)
	}
	return &c, nil
}
