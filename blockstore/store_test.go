package blockstore

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"lmfs/codec"
)

func TestBlockRange(t *testing.T) {
	cases := []struct{ off, n, first, last uint64 }{
		{0, 1, 0, 0},
		{0, 2048, 0, 0},
		{0, 2049, 0, 1},
		{2047, 2, 0, 1},
		{2048, 2048, 1, 1},
		{4095, 1, 1, 1},
		{4096, 1 << 20, 2, 2 + 512 - 1},
	}
	for _, c := range cases {
		f, l := blockRange(c.off, c.n)
		if f != c.first || l != c.last {
			t.Errorf("blockRange(%d,%d) = %d,%d want %d,%d", c.off, c.n, f, l, c.first, c.last)
		}
	}
	for size, want := range map[uint64]uint64{0: 0, 1: 1, 2048: 1, 2049: 2, 4096: 2} {
		if got := blocksFor(size); got != want {
			t.Errorf("blocksFor(%d) = %d want %d", size, got, want)
		}
	}
}

func openTest(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir, Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newFile(t *testing.T, s *Store, name string) uint64 {
	t.Helper()
	n, err := s.Create(RootIno, name, NewNode{Mode: syscall.S_IFREG | 0o644})
	if err != nil {
		t.Fatal(err)
	}
	return n.Ino
}

func readAll(t *testing.T, s *Store, ino uint64) []byte {
	t.Helper()
	n, err := s.GetInode(ino)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, n.Size+100)
	k, err := s.ReadAt(ino, buf, 0)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:k]
}

// TestRandomOpsAgainstModel applies random writes and truncates to a store file and to a
// byte slice, comparing after each and across a reopen.
func TestRandomOpsAgainstModel(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	ino := newFile(t, s, "f")
	rng := rand.New(rand.NewSource(1))
	var model []byte
	text := bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog. "), 200)
	for i := 0; i < 600; i++ {
		switch op := rng.Intn(10); {
		case op < 7:
			off := rng.Intn(40000)
			n := 1 + rng.Intn(6000)
			if rng.Intn(4) == 0 {
				off = (off / 2048) * 2048
			}
			data := make([]byte, n)
			switch rng.Intn(3) {
			case 0:
				rng.Read(data)
			case 1:
				copy(data, text[rng.Intn(1000):])
			}
			if err := s.WriteAt(ino, data, uint64(off)); err != nil {
				t.Fatal(err)
			}
			if off+n > len(model) {
				model = append(model, make([]byte, off+n-len(model))...)
			}
			copy(model[off:], data)
		case op < 9:
			size := rng.Intn(45000)
			if _, err := s.Truncate(ino, uint64(size)); err != nil {
				t.Fatal(err)
			}
			if size < len(model) {
				model = model[:size]
			} else {
				model = append(model, make([]byte, size-len(model))...)
			}
		default:
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openTest(t, dir)
		}
		if got := readAll(t, s, ino); !bytes.Equal(got, model) {
			t.Fatalf("op %d: content differs (len %d vs %d)", i, len(got), len(model))
		}
		// Random partial reads.
		if len(model) > 0 {
			off := rng.Intn(len(model))
			buf := make([]byte, rng.Intn(5000)+1)
			k, err := s.ReadAt(ino, buf, uint64(off))
			if err != nil {
				t.Fatal(err)
			}
			if want := model[off:min(len(model), off+len(buf))]; !bytes.Equal(buf[:k], want) {
				t.Fatalf("op %d: partial read at %d differs", i, off)
			}
		}
	}
	c := s.Counters()
	if c.Logical != int64(len(model)) {
		t.Errorf("logical bytes %d, file size %d", c.Logical, len(model))
	}
	s.Close()
}

// TestCountersAfterUncleanClose: counters of a store that was not closed are recomputed.
func TestCountersAfterUncleanClose(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	ino := newFile(t, s, "f")
	data := bytes.Repeat([]byte("lmfs "), 3000)
	if err := s.WriteAt(ino, data, 0); err != nil {
		t.Fatal(err)
	}
	want := s.Counters()
	s.db.Close() // no saveCounters(clean): like a crash after the last sync
	s2 := openTest(t, dir)
	defer s2.Close()
	got := s2.Counters()
	if got.Logical != want.Logical || got.Files != want.Files {
		t.Fatalf("recomputed counters %+v, want %+v", got, want)
	}
	_, _, ws := want.Stored()
	_, _, gs := got.Stored()
	if ws != gs {
		t.Fatalf("stored %d after recovery, %d before", gs, ws)
	}
}

func TestHolesAndZeroBlocks(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ino := newFile(t, s, "sparse")
	if err := s.WriteAt(ino, []byte("end"), 10<<20); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteAt(ino, make([]byte, 8192), 0); err != nil { // zeros: stored as holes
		t.Fatal(err)
	}
	_, _, stored := s.Counters().Stored()
	if stored > 64 {
		t.Fatalf("sparse 10 MiB file stores %d bytes", stored)
	}
	got := readAll(t, s, ino)
	if len(got) != 10<<20+3 || !codec.IsZero(got[:10<<20]) || string(got[10<<20:]) != "end" {
		t.Fatal("sparse file reads back wrong")
	}
	if off, err := s.SeekData(ino, 0, false); err != nil || off != 10<<20-(10<<20)%2048 {
		t.Fatalf("SEEK_DATA = %d, %v", off, err)
	}
	if off, err := s.SeekData(ino, 0, true); err != nil || off != 0 {
		t.Fatalf("SEEK_HOLE = %d, %v", off, err)
	}
}

func TestUnlinkWhileOpen(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ino := newFile(t, s, "f")
	s.WriteAt(ino, []byte("still here"), 0)
	s.OpenFile(ino)
	if err := s.Unlink(RootIno, "f"); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, s, ino); string(got) != "still here" {
		t.Fatalf("open unlinked file reads %q", got)
	}
	s.ReleaseFile(ino)
	if _, err := s.GetInode(ino); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("inode after last close: %v", err)
	}
	if c := s.Counters(); c.Files != 0 || c.Logical != 0 {
		t.Fatalf("counters after purge: %+v", c)
	}
}

func TestOpenRefusesForeignAndNewer(t *testing.T) {
	foreign := t.TempDir()
	os.WriteFile(filepath.Join(foreign, "precious.txt"), []byte("mine"), 0o644)
	if _, err := Open(foreign, Options{Create: true}); !errors.Is(err, ErrNotStore) {
		t.Fatalf("foreign dir: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(foreign, "precious.txt")); string(b) != "mine" {
		t.Fatal("foreign dir touched")
	}
	if ents, _ := os.ReadDir(foreign); len(ents) != 1 {
		t.Fatalf("foreign dir got %d entries", len(ents))
	}
	newer := t.TempDir()
	os.WriteFile(filepath.Join(newer, MarkerFile), []byte("lmfs store format 999\n"), 0o644)
	if _, err := Open(newer, Options{Create: true}); !errors.Is(err, ErrNewerFormat) {
		t.Fatalf("newer store: %v", err)
	}
	file := filepath.Join(t.TempDir(), "f")
	os.WriteFile(file, nil, 0o644)
	if _, err := Open(file, Options{Create: true}); !errors.Is(err, ErrNotStore) {
		t.Fatalf("file as store: %v", err)
	}
	dir := t.TempDir()
	s := openTest(t, dir)
	defer s.Close()
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v", err)
	}
}

func TestCorruptBlockIsEIO(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ino := newFile(t, s, "f")
	data := bytes.Repeat([]byte("abcdefgh"), 1024)
	s.WriteAt(ino, data, 0)
	if err := s.FlushFile(ino); err != nil { // landed: its records are in Badger
		t.Fatal(err)
	}
	// Flip one payload byte of block 1 behind the store's back.
	key, slot := GroupKey(ino, 1)
	txn, err := s.db.Begin(true)
	if err != nil {
		t.Fatal(err)
	}
	v, err := txn.Get(key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v, err = s.groupValue(ino, 0, v); err != nil { // stored back inline below
		t.Fatal(err)
	}
	rec, err := GroupRecord(v, slot)
	if err != nil {
		t.Fatal(err)
	}
	rec[codec.HeaderSize+(len(rec)-codec.HeaderSize)/2] ^= 0x40 // mid-payload: trailing padding bits may not matter
	txn.Set(key, v)
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
	s.cache.dropFrom(ino, 0)
	buf := make([]byte, 2048)
	_, err = s.ReadAt(ino, buf, 2048)
	var be *BlockError
	if !errors.As(err, &be) || !errors.Is(err, syscall.EIO) || be.Block != 1 {
		t.Fatalf("read of corrupt block: %v", err)
	}
	if _, err := s.ReadAt(ino, buf, 0); err != nil || !bytes.Equal(buf, data[:2048]) {
		t.Fatalf("intact block 0: %v", err)
	}
}

func TestRenameExchangeAndNoReplace(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	a := newFile(t, s, "a")
	d, err := s.Create(RootIno, "d", NewNode{Mode: syscall.S_IFDIR | 0o755})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Rename(RootIno, "a", RootIno, "d", RenameNoReplace); !errors.Is(err, syscall.EEXIST) {
		t.Fatalf("noreplace: %v", err)
	}
	if err := s.Rename(RootIno, "a", RootIno, "d", RenameExchange); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Lookup(RootIno, "a"); n.Ino != d.Ino {
		t.Fatal("exchange: a is not the directory")
	}
	if n, _ := s.Lookup(RootIno, "d"); n.Ino != a {
		t.Fatal("exchange: d is not the file")
	}
	root, _ := s.GetInode(RootIno)
	if root.Nlink != 3 {
		t.Fatalf("root nlink %d want 3", root.Nlink)
	}
	if err := s.Rename(RootIno, "a", d.Ino, "x", 0); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("dir into itself: %v", err)
	}
}

// TestDamagedNewestValueLog: the value-log reader agrees with Badger on intact files, and a
// cleanly closed store whose newest value-log file is damaged in the middle is refused
// untouched (Badger would cut off every record after the damage).
func TestDamagedNewestValueLog(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	for i := 0; i < 100; i++ { // small files: their groups are Badger values (segref.go)
		ino := newFile(t, s, fmt.Sprintf("f%d", i))
		data := make([]byte, inlineMax-100)
		rand.New(rand.NewSource(int64(i))).Read(data)
		if err := s.WriteAt(ino, data, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	p := newestValueLog(dir)
	if bad, err := checkValueLog(p); err != nil || bad != -1 {
		t.Fatalf("intact %s: bad entry at %d, %v", p, bad, err)
	}
	b, _ := os.ReadFile(p)
	if len(b) < 100000 {
		t.Fatalf("newest value log %s has only %d bytes", p, len(b))
	}
	b[len(b)/2] ^= 0xff
	os.WriteFile(p, b, 0o600)
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrDamagedLog) {
		t.Fatalf("open of a store with a damaged newest value log: %v", err)
	}
	if after, _ := os.ReadFile(p); !bytes.Equal(after, b) {
		t.Fatal("the refused open changed the value log")
	}
	ro, err := Open(dir, Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only open: %v", err)
	}
	ro.Close()
	if after, _ := os.ReadFile(p); !bytes.Equal(after, b) {
		t.Fatal("the read-only open changed the value log")
	}
}

// TestWriteBehind: writes return before they land, yet every later read, stat or truncate of
// the file sees them; writers of whole blocks and of parts of blocks, side by side on one
// file, lose nothing; a write that fails after it was accepted is reported at close.
func TestWriteBehind(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ino := newFile(t, s, "f")
	const size = 4 << 20
	want := make([]byte, size)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(w)))
			// Each writer owns every 4th 64 KiB stripe: whole-block runs and odd-sized pieces.
			for i := 0; i < 200; i++ {
				stripe := (rng.Intn(size/(64<<10)/4)*4 + w) * (64 << 10)
				off := stripe + rng.Intn(64<<10)
				n := 1 + rng.Intn(stripe+64<<10-off)
				if rng.Intn(2) == 0 { // block aligned
					off, n = stripe+rng.Intn(16)*2048, 2048*(1+rng.Intn(16))
					n = min(n, stripe+64<<10-off)
				}
				b := make([]byte, n)
				rng.Read(b)
				if err := s.WriteAt(ino, b, uint64(off)); err != nil {
					t.Error(err)
					return
				}
				copy(want[off:], b) // stripes are disjoint: no lock needed
				if in, err := s.GetInode(ino); err != nil || in.Size < uint64(off+n) {
					t.Errorf("writer %d: stat right after a write ending at %d: size %d, err %v", w, off+n, in.Size, err)
					return
				}
				got := make([]byte, n)
				if k, err := s.ReadAt(ino, got, uint64(off)); err != nil || k != n || !bytes.Equal(got, b) {
					t.Errorf("writer %d: read right after write at %d: %d bytes, err %v", w, off, k, err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	n, err := s.GetInode(ino)
	if err != nil {
		t.Fatal(err)
	}
	got := readAll(t, s, ino)
	if !bytes.Equal(got, want[:n.Size]) {
		t.Fatalf("file differs from what was written (size %d)", n.Size)
	}
	if c := s.Counters(); c.Logical != int64(n.Size) {
		t.Errorf("logical bytes %d, file size %d", c.Logical, n.Size)
	}
	// A write accepted for a file that is gone by the time it lands fails at close.
	if err := s.WriteAt(1<<40, make([]byte, 2048), 0); err != nil {
		t.Fatalf("whole-block write is queued without looking: %v", err)
	}
	if err := s.FlushFile(1 << 40); !errors.Is(err, syscall.EIO) {
		t.Errorf("close after a failed write: %v, want EIO", err)
	}
	if err := s.FlushFile(1 << 40); err != nil {
		t.Errorf("the failure is reported once: %v", err)
	}
}
