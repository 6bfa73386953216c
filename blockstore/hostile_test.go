package blockstore

import (
	"bytes"
	"encoding/binary"
	"strings"
	"syscall"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"lmfs/blockstore/segment"
)

// plant writes raw keys and values into the closed store in dir behind its back, as damage
// or a hostile store would.
func plant(t *testing.T, dir string, kvs map[string][]byte) {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil).WithCompression(options.None).
		WithValueThreshold(128).WithNumVersionsToKeep(1))
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(txn *badger.Txn) error {
		for k, v := range kvs {
			if err := txn.Set([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}

func be64(n uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], n)
	return string(b[:])
}

// TestHostileRecords plants records no lmfs writes (keys too short or too long for their
// table, values of the wrong size or format) next to real ones: opening, listing, reading,
// fsck and repair give errors or findings, never a panic (fsck indexed short keys, and a
// directory listing split short readdir keys, out of range).
func TestHostileRecords(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	d, err := s.Create(RootIno, "dir", NewNode{Mode: syscall.S_IFDIR | 0o755})
	if err != nil {
		t.Fatal(err)
	}
	f, err := s.Create(d.Ino, "file", NewNode{Mode: syscall.S_IFREG | 0o644})
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("hostile records never crash the reader. "), 3000) // 117 KB: segments
	if err := s.WriteAt(f.Ino, data, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.SetXattr(f.Ino, "user.x", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	root, dino, fino := be64(RootIno), be64(d.Ino), be64(f.Ino)
	bad := map[string][]byte{
		// Keys of the wrong length, in every table.
		"i":                         {1},
		"i\x00\x00\x00":             {1, 2, 3},
		"i" + fino + "x":            (&Inode{Mode: syscall.S_IFREG}).marshal(),
		"d":                         dirent{Ino: f.Ino}.marshal(),
		"d\x00\x00":                 nil,
		"d" + dino:                  dirent{Ino: f.Ino}.marshal(),
		"e":                         nil,
		"e" + dino:                  orderValue(dirent{Ino: f.Ino}, "x"),
		"e" + dino + "\x00\x01":     orderValue(dirent{Ino: f.Ino}, "y"),
		"e" + root + "\xff":         {1, 2},
		"x":                         nil,
		"x" + fino:                  []byte("no name"),
		"g":                         nil,
		"g" + fino:                  {1},
		"g" + fino + "\x00\x00\x00": {2},
		"q":                         nil,
		"q" + fino + "\x01":         nil,
		"w" + fino:                  nil,
		"o":                         nil,
		"o" + fino + "\x00":         nil,
		"t":                         {1},
		"t" + fino + "\x00":         {1, 2, 3},
		"t" + be64(f.Ino+100):       {1},
		"M":                         nil,
		// Values of the wrong size or format under well-formed keys.
		"i" + be64(900):                       {inodeVersion, 1, 2},
		"i" + be64(901):                       {99},
		"d" + dino + "short":                  {1, 2, 3},
		"d" + dino + "noslot":                 dirent{Ino: 901, Mode: syscall.S_IFREG, Cookie: 77}.marshal(),
		"e" + dino + be64(500):                {1},
		"g" + fino + be64(40):                 {refFormat, 1, 2, 3},
		"g" + fino + be64(41):                 encodeRef(7, 1<<30, 1<<30, 0, make([]byte, GroupBlocks*refSlot)),
		"g" + fino + be64(42):                 encodeRef(0, segment.FileHeader, groupHeader, 0, make([]byte, GroupBlocks*refSlot)),
		"g" + fino + be64(43):                 append([]byte{groupFormat}, bytes.Repeat([]byte{0xff}, 40)...),
		"C" + counterStats:                    []byte("{not json"),
		"C" + counterClean:                    {1},
		string([]byte{tagFormat}) + "garbage": {1},
	}
	plant(t, dir, bad)

	s, err = Open(dir, Options{})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer s.Close()
	for _, ino := range []uint64{RootIno, d.Ino} {
		if _, err := s.ReadDir(ino, 0, 1000); err != nil && !strings.Contains(err.Error(), "input/output") {
			t.Logf("readdir %d: %v", ino, err)
		}
	}
	for _, ino := range []uint64{f.Ino, 900, 901} {
		s.GetInode(ino)
		s.ListXattr(ino)
		s.GetXattr(ino, "user.x")
		buf := make([]byte, 1<<20)
		s.ReadAt(ino, buf, 0)
		s.ReadAt(ino, buf, 40*GroupBlocks*bs)
	}
	s.Lookup(d.Ino, "noslot")
	s.Lookup(d.Ino, "short")
	r, err := s.Fsck(FsckOptions{})
	if err != nil {
		t.Fatalf("fsck: %v", err)
	}
	if r.Clean {
		t.Fatal("fsck found the planted records clean")
	}
	malformed := 0
	for _, f := range r.Findings {
		if f.Kind == "orphan-key" && strings.Contains(f.Detail, "malformed") {
			malformed++
		}
	}
	if malformed < 15 {
		t.Errorf("fsck reported %d malformed keys; findings: %+v", malformed, r.Findings)
	}
	for _, f := range r.Findings {
		if f.Kind == "unreachable" {
			// A damaged readdir slot must not cut a tree off (repair would link it twice).
			t.Errorf("%+v", f)
		}
	}
	if _, err := s.Fsck(FsckOptions{Repair: true}); err != nil {
		t.Fatalf("fsck --repair: %v", err)
	}
	r, err = s.Fsck(FsckOptions{})
	if err != nil {
		t.Fatalf("fsck after repair: %v", err)
	}
	for _, f := range r.Findings {
		if f.Kind == "orphan-key" && strings.Contains(f.Detail, "malformed") {
			t.Errorf("after repair: %+v", f)
		}
	}
	// The real file is intact.
	if got := readAll(t, s, f.Ino); !bytes.Equal(got, data) {
		t.Errorf("the file changed (%d bytes, want %d)", len(got), len(data))
	}
}
