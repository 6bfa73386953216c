package test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fallocate modes (linux/falloc.h).
const (
	keepSize   = unix.FALLOC_FL_KEEP_SIZE
	punchHole  = unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE
	zeroRange  = unix.FALLOC_FL_ZERO_RANGE
	zeroKeep   = unix.FALLOC_FL_ZERO_RANGE | unix.FALLOC_FL_KEEP_SIZE
	blockBytes = 2048
)

// falloc calls fallocate(2) on f and fails the test on error.
func falloc(t testing.TB, f *os.File, mode uint32, off, n int64) {
	t.Helper()
	if err := unix.Fallocate(int(f.Fd()), mode, off, n); err != nil {
		t.Fatalf("fallocate(mode %#x, off %d, len %d) on %s: %v", mode, off, n, f.Name(), err)
	}
}

// zeroed applies a punch or zero range to the model of a file's bytes.
func zeroed(model []byte, mode uint32, off, n int64) []byte {
	if mode&keepSize == 0 && off+n > int64(len(model)) {
		model = append(model, make([]byte, off+n-int64(len(model)))...)
	}
	if off < int64(len(model)) {
		clear(model[off:min(off+n, int64(len(model)))])
	}
	return model
}

// checkContent compares what f (read through the open descriptor, whose pages the kernel may
// cache) and a fresh open of its path hold with want, and its size.
func checkContent(t testing.TB, f *os.File, want []byte, what string) {
	t.Helper()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != int64(len(want)) {
		t.Fatalf("%s: size %d, want %d", what, st.Size(), len(want))
	}
	got := make([]byte, len(want)+100)
	n, err := f.ReadAt(got, 0)
	if err != nil && err != io.EOF {
		t.Fatalf("%s: read: %v", what, err)
	}
	if !bytes.Equal(got[:n], want) {
		t.Fatalf("%s: through the open file: %s", what, firstDiff(got[:n], want))
	}
	if got := readFile(t, f.Name()); !bytes.Equal(got, want) {
		t.Fatalf("%s: after a new open: %s", what, firstDiff(got, want))
	}
}

// seek calls lseek(2) with SEEK_DATA or SEEK_HOLE.
func seek(t testing.TB, f *os.File, off int64, whence int) int64 {
	t.Helper()
	pos, err := unix.Seek(int(f.Fd()), off, whence)
	if err != nil {
		t.Fatalf("lseek(%d, %d): %v", off, whence, err)
	}
	return pos
}

// remountWith unmounts m and mounts its store on the same directory again with flags (a plain
// remount would start the LM compactor, whose batch the next unmount waits for).
func remountWith(t *testing.T, m *fsMount, flags ...string) *fsMount {
	t.Helper()
	m.umount()
	return mountAt(t, m.store, m.dir, flags...)
}

// patience is how long a test waits for background work (compaction, GC) that should take
// a moment: a minute, or 30 times what the test's own writing took when the machine is slow.
func patience(work time.Duration) time.Duration { return max(time.Minute, 30*work) }

// TestPunchHole punches holes into a file of text: block-aligned, unaligned at both ends, one
// inside a single block and one running past the end. Each time the range reads as zeros
// (also through pages the kernel cached before), everything else is intact, the size never
// changes, SEEK_HOLE/SEEK_DATA report the whole blocks punched as a hole; the same after a
// remount, and fsck finds the store clean.
func TestPunchHole(t *testing.T) {
	m := mountNoLM(t, newStore(t))
	want := textData(1, 1<<20+1234)
	writeFile(t, m.path("text"), want)
	f, err := os.OpenFile(m.path("text"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	checkContent(t, f, want, "before punching") // the kernel caches the pages now

	// Block-aligned: blocks 8..39 become a hole.
	falloc(t, f, punchHole, 8*blockBytes, 32*blockBytes)
	want = zeroed(want, punchHole, 8*blockBytes, 32*blockBytes)
	checkContent(t, f, want, "aligned punch")
	if got := seek(t, f, 0, unix.SEEK_HOLE); got != 8*blockBytes {
		t.Errorf("SEEK_HOLE from 0 = %d, want %d", got, 8*blockBytes)
	}
	if got := seek(t, f, 8*blockBytes+5, unix.SEEK_DATA); got != 40*blockBytes {
		t.Errorf("SEEK_DATA inside the hole = %d, want %d", got, 40*blockBytes)
	}

	// Unaligned at both ends: the partial blocks keep their other bytes, the blocks between
	// are a hole.
	const uoff, ulen = 300001, 50000
	falloc(t, f, punchHole, uoff, ulen)
	want = zeroed(want, punchHole, uoff, ulen)
	checkContent(t, f, want, "unaligned punch")
	firstWhole, endWhole := int64((uoff+blockBytes-1)/blockBytes*blockBytes), int64((uoff+ulen)/blockBytes*blockBytes)
	if got := seek(t, f, uoff, unix.SEEK_HOLE); got != firstWhole {
		t.Errorf("SEEK_HOLE from %d = %d, want %d (the first whole block punched)", uoff, got, firstWhole)
	}
	if got := seek(t, f, firstWhole, unix.SEEK_DATA); got != endWhole {
		t.Errorf("SEEK_DATA from %d = %d, want %d (the partial block at the end)", firstWhole, got, endWhole)
	}

	// Inside one block, and a range running past the end of the file (size unchanged).
	falloc(t, f, punchHole, 500000+10, 100)
	want = zeroed(want, punchHole, 500000+10, 100)
	size := int64(len(want))
	falloc(t, f, punchHole, size-3000, 1<<20)
	want = zeroed(want, punchHole, size-3000, 1<<20)
	checkContent(t, f, want, "small and past-EOF punches")
	// Punching a hole again, or past the end, changes nothing.
	falloc(t, f, punchHole, 8*blockBytes, 32*blockBytes)
	falloc(t, f, punchHole, size+4096, 4096)
	checkContent(t, f, want, "punching holes again")

	// Other modes stay unsupported; a punch without KEEP_SIZE is refused (Linux's rule).
	for _, mode := range []uint32{unix.FALLOC_FL_COLLAPSE_RANGE, unix.FALLOC_FL_INSERT_RANGE, unix.FALLOC_FL_UNSHARE_RANGE, unix.FALLOC_FL_PUNCH_HOLE} {
		if err := unix.Fallocate(int(f.Fd()), mode, 0, 4*blockBytes); !errors.Is(err, unix.EOPNOTSUPP) {
			t.Errorf("fallocate mode %#x: %v, want EOPNOTSUPP", mode, err)
		}
	}
	checkContent(t, f, want, "after unsupported modes")
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()

	m = remountWith(t, m, "--no-lm")
	if got := readFile(t, m.path("text")); !bytes.Equal(got, want) {
		t.Fatalf("after remount: %s", firstDiff(got, want))
	}
	if st := m.stats(); st.Logical != int64(len(want)) {
		t.Errorf("logical_bytes %d, want %d", st.Logical, len(want))
	}
	m.umount()
	fsckClean(t, m.store, "after punching holes")
}

// TestZeroRange: ZERO_RANGE with and without KEEP_SIZE, inside the file and past its end,
// gives what ext4 gives (the test's temp dir is the reference): without KEEP_SIZE a range
// past the end grows the file, with it the size stays.
func TestZeroRange(t *testing.T) {
	m := mountNoLM(t, newStore(t))
	data := textData(2, 200000)
	writeFile(t, m.path("z"), data)
	ref := filepath.Join(t.TempDir(), "z")
	writeFile(t, ref, data)
	f, err := os.OpenFile(m.path("z"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := os.OpenFile(ref, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	checkContent(t, f, data, "before")
	want := data
	for _, op := range []struct {
		mode     uint32
		off, len int64
		what     string
	}{
		{zeroKeep, 10000, 20000, "inside, KEEP_SIZE"},
		{zeroRange, 70001, 33333, "inside, unaligned"},
		{zeroKeep, 190000, 50000, "past the end, KEEP_SIZE: the size stays"},
		{zeroRange, 199000, 60000, "past the end: the file grows to the range's end"},
		{zeroRange, 300000, 5000, "wholly past the end: the file grows"},
		{zeroKeep, 400000, 5000, "wholly past the end, KEEP_SIZE: nothing changes"},
		{zeroRange, 0, 4 * blockBytes, "the first blocks"},
	} {
		falloc(t, f, op.mode, op.off, op.len)
		if err := unix.Fallocate(int(r.Fd()), op.mode, op.off, op.len); err != nil {
			t.Fatalf("reference fallocate: %v", err)
		}
		want = zeroed(want, op.mode, op.off, op.len)
		refData := readFile(t, ref)
		if !bytes.Equal(refData, want) {
			t.Fatalf("%s: the test's model differs from ext4: %s", op.what, firstDiff(want, refData))
		}
		checkContent(t, f, want, op.what)
	}
	if got := seek(t, f, 0, unix.SEEK_DATA); got != 4*blockBytes {
		t.Errorf("SEEK_DATA from 0 = %d, want %d", got, 4*blockBytes)
	}
	// From 190000 on everything is zeros to the end (305000): no data there.
	if got, err := unix.Seek(int(f.Fd()), 195000, unix.SEEK_DATA); !errors.Is(err, unix.ENXIO) {
		t.Errorf("SEEK_DATA in the zeroed and grown tail: %d, %v; want ENXIO", got, err)
	}
	f.Close()
	m = remountWith(t, m, "--no-lm")
	if got := readFile(t, m.path("z")); !bytes.Equal(got, want) {
		t.Fatalf("after remount: %s", firstDiff(got, want))
	}
	if st := m.stats(); st.Logical != int64(len(want)) {
		t.Errorf("logical_bytes %d, want %d", st.Logical, len(want))
	}
	m.umount()
	fsckClean(t, m.store, "after zero ranges")
}

// TestPunchGivesSpaceBack: punching most of a compacted file drops the stored bytes `lmfs
// stats` reports at once (the logical size stays), and punching a large incompressible file
// gives its space on disk back (value-log and segment GC, without any command).
func TestPunchGivesSpaceBack(t *testing.T) {
	// Without the compactor the stored bytes change only by what the test does (its recoding
	// racing a punch is TestZeroRangeRacesCompactor's).
	m := mountStore(t, newStore(t), "--no-compact")
	text := textData(3, 32<<20)
	writeSynced(t, m.path("text"), text)
	before := m.stats() // every write has landed (stats waits for write-behind)
	f, err := os.OpenFile(m.path("text"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const off, n = 1<<20 + 100, 30 << 20 // 30 of 32 MiB, unaligned
	falloc(t, f, punchHole, off, n)
	after := m.stats()
	if after.Pending >= before.Pending {
		t.Errorf("pending blocks %d before the punch, %d after", before.Pending, after.Pending)
	}
	t.Logf("stored bytes: %d before punching %d of %d MiB, %d after", before.Stored, n>>20, len(text)>>20, after.Stored)
	if after.Stored > before.Stored/8 {
		t.Errorf("stored bytes %d before punching 30 of 32 MiB, %d after: want at most %d", before.Stored, after.Stored, before.Stored/8)
	}
	if after.Logical != before.Logical {
		t.Errorf("logical bytes %d after the punch, %d before: a punch keeps the size", after.Logical, before.Logical)
	}
	text = zeroed(text, punchHole, off, n)
	checkContent(t, f, text, "after the large punch")

	// Space on disk: 48 MiB that do not compress, then punched whole.
	disk0 := diskBytes(t, m)
	big := make([]byte, 48<<20)
	fillRandom(newRand(4), big)
	start := time.Now()
	writeSynced(t, m.path("random"), big)
	wait := patience(time.Since(start))
	full := diskBytes(t, m)
	g, err := os.OpenFile(m.path("random"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	falloc(t, g, punchHole, 0, int64(len(big)))
	start = time.Now()
	now := diskBytes(t, m)
	for now-disk0 > (full-disk0)/4 && time.Since(start) < wait {
		time.Sleep(time.Second)
		now = diskBytes(t, m)
	}
	t.Logf("on disk: %d MiB before writing 48 MiB, %d MiB after, %d MiB %s after punching it whole",
		disk0>>20, full>>20, now>>20, time.Since(start).Round(100*time.Millisecond))
	if now-disk0 > (full-disk0)/4 {
		t.Errorf("%v after punching 48 MiB the store still takes %d MiB more than before writing it (%d MiB after the write)",
			wait, (now-disk0)>>20, (full-disk0)>>20)
	}
	if st, err := g.Stat(); err != nil || st.Size() != int64(len(big)) {
		t.Fatalf("size after punching the whole file: %v, %v; want %d", st.Size(), err, len(big))
	}
	f.Close()
	g.Close()
	m.umount()
	fsckClean(t, m.store, "after giving space back")
}

// TestDigHoles runs util-linux `fallocate --dig-holes` on a file with long zero runs: it
// succeeds, the content is unchanged, SEEK_HOLE finds the runs (lmfs stores all-zero blocks
// as holes from the start, so there may be nothing left for it to punch), and after a
// remount the file is the same.
func TestDigHoles(t *testing.T) {
	if _, err := exec.LookPath("fallocate"); err != nil {
		t.Skip("util-linux fallocate not installed")
	}
	m := mountNoLM(t, newStore(t))
	var want []byte
	r := newRand(5)
	for i := 0; i < 12; i++ {
		chunk := make([]byte, 3000+r.IntN(20000))
		fillText(r, chunk)
		want = append(want, chunk...)
		want = append(want, make([]byte, 50000+r.IntN(200000))...) // a zero run, unaligned
	}
	writeFile(t, m.path("runs"), want)
	if out, err := exec.Command("fallocate", "--dig-holes", m.path("runs")).CombinedOutput(); err != nil {
		t.Fatalf("fallocate --dig-holes: %v\n%s", err, out)
	}
	f, err := os.Open(m.path("runs"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	checkContent(t, f, want, "after --dig-holes")
	// Walk the holes: every whole block of zeros is in one, every block with data is not.
	for b := int64(0); b*blockBytes < int64(len(want)); b++ {
		blk := want[b*blockBytes : min(int64(len(want)), (b+1)*blockBytes)]
		isHole := seek(t, f, b*blockBytes, unix.SEEK_HOLE) == b*blockBytes
		if zero := !bytes.ContainsFunc(blk, func(r rune) bool { return r != 0 }); isHole != zero {
			t.Fatalf("block %d: all zeros %v, SEEK_HOLE says hole %v", b, zero, isHole)
		}
	}
	f.Close()
	m = remountWith(t, m, "--no-lm")
	if got := readFile(t, m.path("runs")); !bytes.Equal(got, want) {
		t.Fatalf("after remount: %s", firstDiff(got, want))
	}
}

// TestPunchWhileWriting punches holes in a file while other writers append to it and
// rewrite a region the punches cover: the size is never cut (a punch keeps it, even racing
// an append), every byte ends as the last write made it or zero, what no one touched is
// intact, and all of it survives a remount with fsck clean.
func TestPunchWhileWriting(t *testing.T) {
	// Without the compactor: what races here is writers and punches (the compactor racing
	// punches is TestZeroRangeRacesCompactor's), and its batches would only slow the remount.
	m := mountStore(t, newStore(t), "--no-compact")
	base := textData(6, 4<<20)
	writeFile(t, m.path("busy"), base)
	open := func() *os.File {
		f, err := os.OpenFile(m.path("busy"), os.O_RDWR, 0)
		if err != nil {
			t.Error(err)
		}
		return f
	}
	const (
		regionOff = 1<<20 + 777 // rewritten by one writer, punched
		regionLen = 256<<10 + 1000
		rounds    = 60
	)
	appendData := textData(7, 3<<20)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	stop := make(chan struct{})
	// Rewriter: the region, whole, once per round, with the round's byte.
	wg.Add(1)
	go func() {
		defer wg.Done()
		f := open()
		defer f.Close()
		for k := 1; k <= rounds; k++ {
			if _, err := f.WriteAt(bytes.Repeat([]byte{byte(k)}, regionLen), regionOff); err != nil {
				errs <- err
				return
			}
		}
	}()
	// Appender: the rest of appendData in pieces at the end of the file.
	wg.Add(1)
	go func() {
		defer wg.Done()
		f, err := os.OpenFile(m.path("busy"), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			errs <- err
			return
		}
		defer f.Close()
		for i := 0; i < len(appendData); {
			k := min(len(appendData)-i, 1000+i%7000)
			if _, err := f.Write(appendData[i : i+k]); err != nil {
				errs <- err
				return
			}
			i += k
		}
	}()
	// Puncher: the rewritten region (aligned and not) and the growing end of the file.
	var punchedTail [][2]int64 // ranges punched in the appended part
	var mu sync.Mutex
	wg.Add(1)
	go func() {
		defer wg.Done()
		f := open()
		defer f.Close()
		r := newRand(8)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			var off, n int64
			if i%2 == 0 {
				off = regionOff + r.Int64N(regionLen)
				n = min(1+r.Int64N(64<<10), regionOff+regionLen-off)
			} else {
				st, err := f.Stat()
				if err != nil {
					errs <- err
					return
				}
				off, n = max(int64(len(base)), st.Size()-r.Int64N(20000)), 1+r.Int64N(30000)
				mu.Lock()
				punchedTail = append(punchedTail, [2]int64{off, off + n})
				mu.Unlock()
			}
			if err := unix.Fallocate(int(f.Fd()), punchHole, off, n); err != nil {
				errs <- err
				return
			}
		}
	}()
	// The writers end on their own; then the puncher is stopped.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			st, err := os.Stat(m.path("busy"))
			if err == nil && st.Size() == int64(len(base)+len(appendData)) {
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	select {
	case <-done:
	case err := <-errs:
		close(stop)
		wg.Wait()
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	check := func(when string) {
		got := readFile(t, m.path("busy"))
		if len(got) != len(base)+len(appendData) {
			t.Fatalf("%s: size %d, want %d (a punch must never change the size)", when, len(got), len(base)+len(appendData))
		}
		// The region: the last round's byte or zero (a punch after the last write).
		for i := int64(0); i < regionLen; i++ {
			if c := got[regionOff+i]; c != 0 && c != rounds {
				t.Fatalf("%s: region byte %d is %d, want %d or 0", when, i, c, rounds)
			}
		}
		// Outside the region and the tail: untouched.
		if !bytes.Equal(got[:regionOff], base[:regionOff]) {
			t.Fatalf("%s: bytes before the region: %s", when, firstDiff(got[:regionOff], base[:regionOff]))
		}
		if !bytes.Equal(got[regionOff+regionLen:len(base)], base[regionOff+regionLen:]) {
			t.Fatalf("%s: bytes after the region: %s", when, firstDiff(got[regionOff+regionLen:len(base)], base[regionOff+regionLen:]))
		}
		// The appended tail: the appended bytes, or zeros where a punch reached.
		punched := make([]bool, len(appendData))
		for _, p := range punchedTail {
			for at := p[0]; at < min(p[1], int64(len(base)+len(appendData))); at++ {
				punched[at-int64(len(base))] = true
			}
		}
		tail := got[len(base):]
		for i := range tail {
			if tail[i] != appendData[i] && (tail[i] != 0 || !punched[i]) {
				t.Fatalf("%s: appended byte %d is %d, want %d (or 0 if punched)", when, i, tail[i], appendData[i])
			}
		}
	}
	check("after the race")
	m = remountWith(t, m, "--no-compact")
	check("after remount")
	m.umount()
	fsckClean(t, m.store, "after punching while writing")
}

// TestPunchCrash kills the server with SIGKILL while holes are being punched into a file and
// fsynced: after a plain remount every punch whose fsync returned is there, every other
// byte is the old one or (where a punch was under way) zero, never anything else, the size
// is unchanged, the counters add up and fsck finds the store clean.
func TestPunchCrash(t *testing.T) {
	store := newStore(t)
	m := mountForeground(t, store, "--no-lm")
	want := textData(9, 16<<20)
	writeSynced(t, m.path("victim"), want)
	type span struct{ off, end int64 }
	var mu sync.Mutex
	var tried, synced []span
	var punchErr error
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		f, err := os.OpenFile(m.path("victim"), os.O_RDWR, 0)
		if err != nil {
			return
		}
		defer f.Close()
		r := newRand(10)
		for {
			select {
			case <-stop:
				return
			default:
			}
			off, n := r.Int64N(int64(len(want))), 1+r.Int64N(2<<20)
			if r.IntN(2) == 0 {
				off, n = off/blockBytes*blockBytes, (n+blockBytes-1)/blockBytes*blockBytes
			}
			mu.Lock()
			tried = append(tried, span{off, off + n})
			mu.Unlock()
			err := unix.Fallocate(int(f.Fd()), punchHole, off, n)
			if err == nil {
				err = f.Sync()
			}
			if err != nil {
				mu.Lock()
				punchErr = err // the server is gone, or the punch failed (before the kill)
				mu.Unlock()
				return
			}
			mu.Lock()
			synced = append(synced, span{off, off + n})
			mu.Unlock()
		}
	}()
	// Kill once some punches are durable (and others under way).
	deadline := time.Now().Add(patience(0))
	for {
		mu.Lock()
		k, err := len(synced), punchErr
		mu.Unlock()
		if err != nil {
			t.Fatalf("punch before the kill: %v", err)
		}
		if k >= 20 {
			break
		}
		if time.Now().After(deadline) {
			close(stop)
			t.Fatalf("only %d punches fsynced in %v", k, patience(0))
		}
		time.Sleep(5 * time.Millisecond)
	}
	m.kill9()
	close(stop)
	<-done
	if err := exec.Command("umount", m.dir).Run(); err != nil {
		exec.Command("umount", "-l", m.dir).Run()
	}

	m2 := mountAt(t, store, m.dir, "--no-lm")
	got := readFile(t, m2.path("victim"))
	if len(got) != len(want) {
		t.Fatalf("size %d after the crash, want %d", len(got), len(want))
	}
	in := func(spans []span, at int64) bool {
		for _, s := range spans {
			if at >= s.off && at < s.end {
				return true
			}
		}
		return false
	}
	for i := range got {
		at := int64(i)
		switch {
		case got[i] == want[i] && (want[i] == 0 || !in(synced, at)):
		case got[i] == 0 && in(tried, at):
		default:
			t.Fatalf("byte %d (block %d) is %d after the crash; the old byte is %d; a punch reached it: tried %v, fsynced %v",
				i, i/blockBytes, got[i], want[i], in(tried, at), in(synced, at))
		}
	}
	t.Logf("%d punches fsynced, %d tried before the kill", len(synced), len(tried))
	if st := m2.stats(); st.Logical != int64(len(want)) || st.Files != 1 {
		t.Errorf("stats after the crash: %d files, %d logical bytes; want 1, %d", st.Files, st.Logical, len(want))
	}
	m2.umount()
	fsckClean(t, store, "after a crash while punching")
}
