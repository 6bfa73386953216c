package blockstore

import (
	"bytes"
	"fmt"
	"math/rand"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"lmfs/codec"
)

// zeroModel applies ZeroRange to the model of a file's bytes.
func zeroModel(model []byte, off, n int, keepSize bool) []byte {
	if !keepSize && off+n > len(model) {
		model = append(model, make([]byte, off+n-len(model))...)
	}
	if off < len(model) {
		clear(model[off:min(off+n, len(model))])
	}
	return model
}

// TestZeroRangeAgainstModel applies random writes, truncates, punches and zero ranges (with
// and without KEEP_SIZE) to a store file and to a byte slice: same content after each, the
// counters equal to a full scan, every block the model holds all zeros a hole (SEEK_DATA
// skips it), and the same across reopens.
func TestZeroRangeAgainstModel(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	defer func() { s.Close() }()
	ino := newFile(t, s, "f")
	rng := rand.New(rand.NewSource(7))
	var model []byte
	text := bytes.Repeat([]byte("a punched hole reads as zeros and takes no space. "), 2000)
	ops := 500
	if testing.Short() {
		ops = 200
	}
	for i := 0; i < ops; i++ {
		op := rng.Intn(20)
		switch {
		case op < 8:
			off := rng.Intn(200000)
			n := 1 + rng.Intn(70000)
			if rng.Intn(3) == 0 {
				off = off / bs * bs
			}
			data := make([]byte, n)
			if rng.Intn(2) == 0 {
				rng.Read(data)
			} else {
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
			size := rng.Intn(250000)
			if _, err := s.Truncate(ino, uint64(size)); err != nil {
				t.Fatal(err)
			}
			if size < len(model) {
				model = model[:size]
			} else {
				model = append(model, make([]byte, size-len(model))...)
			}
		case op < 19:
			off := rng.Intn(len(model) + 10000)
			n := 1 + rng.Intn(100000)
			switch rng.Intn(4) {
			case 0:
				off = off / bs * bs
			case 1:
				off, n = off/bs*bs, (1+rng.Intn(40))*bs
			}
			keep := rng.Intn(3) != 0
			n0 := len(model)
			f, err := s.ZeroRange(ino, uint64(off), uint64(n), keep)
			if err != nil {
				t.Fatalf("op %d: ZeroRange(%d, %d, keep %v) on %d bytes: %v", i, off, n, keep, n0, err)
			}
			model = zeroModel(model, off, n, keep)
			if f.Size != uint64(len(model)) {
				t.Fatalf("op %d: ZeroRange(%d, %d, keep %v) on %d bytes: size %d, want %d", i, off, n, keep, n0, f.Size, len(model))
			}
		default:
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openTest(t, dir)
		}
		if got := readAll(t, s, ino); !bytes.Equal(got, model) {
			t.Fatalf("op %d (%d): content differs (len %d vs %d)", i, op, len(got), len(model))
		}
		if c := s.Counters(); !countersEqual(c, mustScan(t, s)) {
			t.Fatalf("op %d (%d): counters %+v, a scan finds %+v", i, op, c, mustScan(t, s))
		}
		checkHoles(t, s, ino, model)
	}
	r, err := s.Fsck(FsckOptions{})
	if err != nil || !r.Clean {
		t.Fatalf("fsck after punches: %v %+v", err, r)
	}
}

// checkHoles checks that every block of the model that is all zeros is a hole (SEEK_DATA
// skips it) and every other one data.
func checkHoles(t *testing.T, s *Store, ino uint64, model []byte) {
	t.Helper()
	for b := 0; b*bs < len(model); b++ {
		zero := codec.IsZero(model[b*bs : min(len(model), (b+1)*bs)])
		off, err := s.SeekData(ino, uint64(b*bs), false)
		isData := err == nil && off == uint64(b*bs)
		if isData == zero {
			t.Fatalf("block %d: all zeros %v, but SEEK_DATA from it gives %d, %v", b, zero, off, err)
		}
	}
}

// TestZeroRangeSpace: punching most of a large file gives its stored bytes back, at once in
// the counters, and the groups leave the index.
func TestZeroRangeSpace(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ino := newFile(t, s, "big")
	data := mixedData(3, 8<<20)
	writeFile(t, s, ino, data)
	_, _, before := s.Counters().Stored()
	// Unaligned at both ends: the partial blocks keep their other bytes.
	off, n := uint64(3*bs+100), uint64(7<<20)
	if _, err := s.ZeroRange(ino, off, n, true); err != nil {
		t.Fatal(err)
	}
	clear(data[off : off+n])
	if got := readAll(t, s, ino); !bytes.Equal(got, data) {
		t.Fatal("content after the punch differs")
	}
	_, _, after := s.Counters().Stored()
	if want := before / 8 * 2; after > want {
		t.Fatalf("stored %d bytes before punching 7 of 8 MiB, %d after (want at most %d)", before, after, want)
	}
	if c := s.Counters(); !countersEqual(c, mustScan(t, s)) || c.Logical != int64(len(data)) {
		t.Fatalf("counters %+v, scan %+v, logical want %d", c, mustScan(t, s), len(data))
	}
}

// TestZeroRangeRacesCompactor: blocks punched while the compactor recodes them stay holes (its
// swap finds the slot changed), and blocks it recodes around the punches keep their bytes.
func TestZeroRangeRacesCompactor(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ino := newFile(t, s, "f")
	text := bytes.Repeat([]byte("the compactor recodes what a punch may remove at the same moment. "), 1<<15)
	data := text[:2<<20]
	s.StartCompactor(CompactOptions{Batch: 64, Idle: 10 * time.Millisecond})
	rng := rand.New(rand.NewSource(11))
	model := bytes.Clone(data)
	rounds := 20
	if testing.Short() {
		rounds = 8
	}
	for round := 0; round < rounds; round++ {
		writeFile(t, s, ino, data)
		copy(model, data)
		var wg sync.WaitGroup
		for k := 0; k < 30; k++ {
			off := rng.Intn(len(data))
			n := 1 + rng.Intn(64<<10)
			if _, err := s.ZeroRange(ino, uint64(off), uint64(n), true); err != nil {
				t.Fatal(err)
			}
			clear(model[off:min(len(model), off+n)])
			if k%10 == 0 {
				// A reader alongside, through the cache the compactor's LM blocks would use.
				at := uint64(rng.Intn(len(data)))
				wg.Add(1)
				go func() {
					defer wg.Done()
					buf := make([]byte, 64<<10)
					s.ReadAt(ino, buf, at)
				}()
			}
		}
		wg.Wait()
		if got := readAll(t, s, ino); !bytes.Equal(got, model) {
			t.Fatalf("round %d: content differs while compacting", round)
		}
	}
	// Let the compactor finish: nothing pending, content unchanged, counters exact. It may
	// take long on a loaded machine; it fails only when the compactor stops making progress.
	last, stalled := s.Counters().Pending, time.Now()
	for last > 0 {
		time.Sleep(20 * time.Millisecond)
		if p := s.Counters().Pending; p < last {
			last, stalled = p, time.Now()
		} else if time.Since(stalled) > time.Minute {
			t.Fatalf("compactor left %d blocks pending and made no progress for a minute", p)
		}
	}
	s.StopCompactor()
	st := s.Compactor()
	t.Logf("compactor: %d blocks recoded, %d skipped (changed while being recoded)", st.Blocks, st.Skipped)
	if got := readAll(t, s, ino); !bytes.Equal(got, model) {
		t.Fatal("content differs after compaction")
	}
	checkHoles(t, s, ino, model)
	if c := s.Counters(); !countersEqual(c, mustScan(t, s)) {
		t.Fatalf("counters %+v, scan %+v", c, mustScan(t, s))
	}
}

// TestPunchCrashMidway: a punch deletes the groups wholly inside its range after the commit of
// its ends and the inode, in bounded transactions, without truncate's marker. A crash between
// them (the image a killed server leaves, taken after each of them) must leave a store that
// opens without repair and checks clean, whose counters equal a scan, with the file's size
// kept and each block its old bytes or zeros: groups left in the range are ones no punch
// reached yet, never half-deleted (a group goes whole, with its pending and fresh keys, in one
// transaction), and nothing outside the index counts them (usage is recomputed, segment
// liveness is a scan of the references).
func TestPunchCrashMidway(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s := openTest(t, dir)
	defer func() { s.Close() }()
	ino := newFile(t, s, "f")
	// Groups of two kinds: more than 2 KiB (a data segment's entry) and a few bytes (a Badger
	// value), enough of them for three delete transactions.
	const groups = 2*purgeGroups + 300
	const gbytes = GroupBlocks * bs
	rng := rand.New(rand.NewSource(3))
	var data []byte
	for g := range groups {
		n := 100
		if g%2 == 0 {
			n = 3000
		}
		part := make([]byte, n)
		rng.Read(part)
		if err := s.WriteAt(ino, part, uint64(g*gbytes)); err != nil {
			t.Fatal(err)
		}
		data = append(data, make([]byte, g*gbytes-len(data))...)
		data = append(data, part...)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	// Unaligned at both ends: the ends are slot changes, every group between goes whole.
	off, end := uint64(50), uint64((groups-1)*gbytes+40)
	var images []string
	purgeBatchHook = func(i uint64) {
		if i == ino {
			img := filepath.Join(t.TempDir(), fmt.Sprintf("crash%d", len(images)))
			copyTree(t, dir, img)
			images = append(images, img)
		}
	}
	defer func() { purgeBatchHook = nil }()
	if _, err := s.ZeroRange(ino, off, end-off, true); err != nil {
		t.Fatal(err)
	}
	purgeBatchHook = nil
	if len(images) < 3 {
		t.Fatalf("%d delete transactions, want 3", len(images))
	}
	punched := bytes.Clone(data)
	clear(punched[off:end])
	if got := readAll(t, s, ino); !bytes.Equal(got, punched) {
		t.Fatal("content after the punch differs")
	}
	for i, img := range images[:len(images)-1] { // the last one is the punch complete
		c, err := Open(img, Options{})
		if err != nil {
			t.Fatalf("crash after delete transaction %d: open: %v", i+1, err)
		}
		r, err := c.Fsck(FsckOptions{})
		if err != nil || !r.Clean {
			c.Close()
			t.Fatalf("crash after delete transaction %d: fsck: %v %+v", i+1, err, r)
		}
		if cnt := c.Counters(); !countersEqual(cnt, mustScan(t, c)) {
			c.Close()
			t.Fatalf("crash after delete transaction %d: counters %+v, a scan finds %+v", i+1, cnt, mustScan(t, c))
		}
		got := readAll(t, c, ino)
		c.Close()
		if len(got) != len(data) {
			t.Fatalf("crash after delete transaction %d: size %d, want %d", i+1, len(got), len(data))
		}
		zeroed, kept := 0, 0
		for g := range groups {
			lo, hi := g*gbytes, min((g+1)*gbytes, len(data))
			switch {
			case bytes.Equal(got[lo:hi], punched[lo:hi]):
				if !bytes.Equal(punched[lo:hi], data[lo:hi]) {
					zeroed++
				}
			case bytes.Equal(got[lo:hi], data[lo:hi]) && g > 0 && g < groups-1:
				kept++ // a whole group the punch had not reached
			default:
				t.Fatalf("crash after delete transaction %d: group %d is neither its old bytes nor punched", i+1, g)
			}
		}
		if want := (i + 1) * purgeGroups; zeroed != want+2 || kept != groups-2-want {
			t.Fatalf("crash after delete transaction %d: %d groups punched, %d kept; want %d and %d", i+1, zeroed, kept, want+2, groups-2-want)
		}
	}
}
