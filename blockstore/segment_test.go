package blockstore

import (
	"bytes"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"lmfs/blockstore/kv"
	"lmfs/blockstore/segment"
	"lmfs/codec"
)

// smallSegments makes segments 1 MiB for the test, so GC has sealed segments to work on.
func smallSegments(t *testing.T) {
	old := segment.Size
	segment.Size = 1 << 20
	t.Cleanup(func() { segment.Size = old })
}

// segSubdir is the store's segment directory, for the tests that plant or damage files in it.
const segSubdir = segment.Subdir

func writeFile(t *testing.T, s *Store, ino uint64, data []byte) {
	t.Helper()
	for off := 0; off < len(data); off += 1 << 20 {
		if err := s.WriteAt(ino, data[off:min(len(data), off+1<<20)], uint64(off)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.FlushFile(ino); err != nil {
		t.Fatal(err)
	}
}

func mixedData(seed int64, n int) []byte {
	rng := rand.New(rand.NewSource(seed))
	data := make([]byte, n)
	for i := range data {
		if (i/4096)%2 == 0 {
			data[i] = byte(rng.Intn(256))
		} else {
			data[i] = "lmfs stores files "[rng.Intn(18)]
		}
	}
	return data
}

func storedValue(t *testing.T, s *Store, ino, g uint64) []byte {
	t.Helper()
	var v []byte
	err := kv.View(s.db, func(txn kv.Txn) error {
		var err error
		v, err = txn.Get(groupKey(ino, g), nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, segSubdir, "*.seg"))
	return m
}

// TestSegmentsRoundTrip: big groups go to data segments, small ones stay Badger values, and
// everything reads back after a reopen; counters and fsck agree.
func TestSegmentsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	big, small := newFile(t, s, "big"), newFile(t, s, "small")
	data := mixedData(1, 3<<20+1234)
	writeFile(t, s, big, data)
	writeFile(t, s, small, []byte("a small file"))
	if v := storedValue(t, s, big, 0); !isRef(v) {
		t.Fatalf("group 0 of a big file is stored inline (%d bytes)", len(v))
	}
	if v := storedValue(t, s, small, 0); isRef(v) {
		t.Fatal("a small file's group went to a segment")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if len(segFiles(t, dir)) == 0 {
		t.Fatal("no data segment files")
	}
	s = openTest(t, dir)
	defer s.Close()
	if got := readAll(t, s, big); !bytes.Equal(got, data) {
		t.Fatal("big file differs after reopen")
	}
	if got := readAll(t, s, small); string(got) != "a small file" {
		t.Fatalf("small file: %q", got)
	}
	mustFsckClean(t, s, "fsck")
}

// TestSegmentDamage: a damaged payload or a reference that points at another group's entry
// reads as EIO (never as data), and fsck names it.
func TestSegmentDamage(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	ino := newFile(t, s, "f")
	data := mixedData(2, 256<<10)
	writeFile(t, s, ino, data)
	// Group 1's key now holds group 2's reference: same sizes, valid entry, wrong group.
	v2 := storedValue(t, s, ino, 2)
	if err := kv.UpdateOnce(s.db, func(txn kv.Txn) error { return txn.Set(groupKey(ino, 1), v2) }); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	var be *BlockError
	if _, err := s.ReadAt(ino, buf, GroupBlocks*bs); !errors.As(err, &be) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("read through a misdirected reference: %v", err)
	}
	// Flip a payload byte of group 3 inside its segment.
	r, err := parseRef(storedValue(t, s, ino, 3))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	p := filepath.Join(dir, segSubdir, segment.FileName(r.seg))
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	at := int64(r.off) + segment.EntryHeader + int64(r.n)/2
	b := []byte{0}
	f.ReadAt(b, at)
	b[0] ^= 0x10
	f.WriteAt(b, at)
	f.Close()
	s = openTest(t, dir)
	defer s.Close()
	if _, err := s.ReadAt(ino, make([]byte, GroupBlocks*bs), 3*GroupBlocks*bs); !errors.Is(err, syscall.EIO) {
		t.Fatalf("read of a damaged segment payload: %v", err)
	}
	if _, err := s.ReadAt(ino, buf, 0); err != nil || !bytes.Equal(buf, data[:4096]) {
		t.Fatalf("intact group 0: %v", err)
	}
	rep, err := s.Fsck(FsckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bad := 0
	for _, f := range rep.Findings {
		if f.Kind == "bad-block" {
			bad++
		}
	}
	if bad != 2 {
		t.Fatalf("fsck: %d bad-block findings, want 2: %+v", bad, rep.Findings)
	}
}

// TestSegmentGC: overwritten and deleted data comes back from sealed segments; live data is
// moved and reads back, during GC (concurrent readers) and after a reopen.
func TestSegmentGC(t *testing.T) {
	smallSegments(t)
	dir := t.TempDir()
	s := openTest(t, dir)
	keep, gone := newFile(t, s, "keep"), newFile(t, s, "gone")
	kd := mixedData(3, 3<<20)
	writeFile(t, s, keep, kd)
	writeFile(t, s, gone, mixedData(4, 3<<20))
	kd2 := mixedData(5, 3<<20) // keep is overwritten whole: its first version is garbage
	writeFile(t, s, keep, kd2)
	if err := s.Unlink(RootIno, "gone"); err != nil {
		t.Fatal(err)
	}
	before := len(segFiles(t, dir))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var readErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 256<<10)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			off := (i * 256 << 10) % len(kd2)
			if _, err := s.ReadAt(keep, buf, uint64(off)); err != nil || !bytes.Equal(buf, kd2[off:off+len(buf)]) {
				readErr = errors.Join(err, errors.New("read during GC differs"))
				return
			}
		}
	}()
	n, _, err := s.collectSegments(nil, false)
	close(stop)
	wg.Wait()
	if err != nil || readErr != nil {
		t.Fatalf("GC: %v; reader: %v", err, readErr)
	}
	after := len(segFiles(t, dir))
	t.Logf("segments: %d before, %d removed, %d after", before, n, after)
	if n < 4 || after > before-3 {
		t.Fatalf("GC removed %d segments (%d -> %d files), want most of 6 MiB of garbage back", n, before, after)
	}
	if got := readAll(t, s, keep); !bytes.Equal(got, kd2) {
		t.Fatal("live file differs after GC")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	defer s.Close()
	if got := readAll(t, s, keep); !bytes.Equal(got, kd2) {
		t.Fatal("live file differs after GC and reopen")
	}
	mustFsckClean(t, s, "fsck")
}

// TestSegmentFault: a segment that loses its bytes under a live mapping (here truncated
// behind the store's back; on a real disk, an I/O error) fails the read with EIO: the fault
// does not kill the process.
func TestSegmentFault(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	defer s.Close()
	ino := newFile(t, s, "f")
	data := mixedData(6, 1<<20)
	writeFile(t, s, ino, data)
	if got := readAll(t, s, ino); !bytes.Equal(got, data) { // maps the segment
		t.Fatal("file differs")
	}
	for _, p := range segFiles(t, dir) {
		if err := os.Truncate(p, 4096); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 64<<10)
	_, err := s.ReadAt(ino, buf, 512<<10)
	var be *BlockError
	if !errors.As(err, &be) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("read of a segment cut short under its mapping: %v", err)
	}
}

// TestStreamOf: groups go to the stream of their likely lifetime (fresh records are recoded
// within seconds, coded pending ones at the full recode, final ones stay).
func TestStreamOf(t *testing.T) {
	text := bytes.Repeat([]byte("a block of text that compresses "), 64)
	policy := codec.DefaultPolicy(nil)
	raw := codec.AppendFresh(nil, text)
	s2, err := policy.Fast(raw)
	if err != nil || s2 == nil {
		t.Fatalf("fast pass: %v", err)
	}
	best, err := policy.Best([][]byte{text})
	if err != nil {
		t.Fatal(err)
	}
	final := best[0]
	for _, c := range []struct {
		recs []([]byte)
		want int
	}{
		{[][]byte{final, s2, raw}, streamFresh},
		{[][]byte{final, s2}, streamPending},
		{[][]byte{final, nil, final}, streamFinal},
	} {
		var g group
		copy(g[:], c.recs)
		if got := streamOf(refSummary(&g)); got != c.want {
			t.Errorf("records %v: stream %d, want %d", len(c.recs), got, c.want)
		}
	}
}

// TestRefBounds: a damaged reference (huge length, offset inside the file header) is refused
// as corrupt, never turned into an allocation or a read.
func TestRefBounds(t *testing.T) {
	var g group
	final, err := codec.DefaultPolicy(nil).Best([][]byte{[]byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	g[0] = final[0]
	good := encodeRef(1, segment.FileHeader, groupHeader+uint32(len(g[0])), 0, refSummary(&g))
	if _, err := parseRef(good); err != nil {
		t.Fatalf("valid reference: %v", err)
	}
	for _, r := range [][]byte{
		encodeRef(1, segment.FileHeader, 1<<31, 0, refSummary(&g)),
		encodeRef(1, 0, 100, 0, refSummary(&g)),
		encodeRef(1, segment.FileHeader, 3, 0, refSummary(&g)),
		good[:refSize-1],
	} {
		if _, err := parseRef(r); !errors.Is(err, codec.ErrCorrupt) {
			t.Errorf("damaged reference accepted: %v", err)
		}
	}
}
