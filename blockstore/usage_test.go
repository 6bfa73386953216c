package blockstore

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math/rand"
	"sync"
	"syscall"
	"testing"
	"time"

	"lmfs/blockstore/kv"
)

// BenchmarkFileStoredScan measures what FileStored costs without its cache (one Badger
// iteration over the file's group keys), beside GetInode (what every getattr does anyway).
func BenchmarkFileStoredScan(b *testing.B) {
	for _, mib := range []int{0, 1, 16, 256} {
		b.Run(fmt.Sprintf("%dMiB", mib), func(b *testing.B) {
			s, err := Open(b.TempDir(), Options{Create: true})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			n, err := s.Create(RootIno, "f", NewNode{Mode: 0o100644})
			if err != nil {
				b.Fatal(err)
			}
			chunk := make([]byte, 1<<20)
			for i := range chunk {
				chunk[i] = byte(i*7 + i/2048)
			}
			size := uint64(mib) << 20
			if mib == 0 {
				size = 1000 // a small file: one inline group
				chunk = chunk[:size]
			}
			for off := uint64(0); off < size; off += uint64(len(chunk)) {
				if err := s.WriteAt(n.Ino, chunk, off); err != nil {
					b.Fatal(err)
				}
			}
			s.settleAll()
			b.Run("scan", func(b *testing.B) {
				for b.Loop() {
					var d Delta
					if err := kv.View(s.db, func(txn kv.Txn) error { return fileUsage(txn, n.Ino, &d) }); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("cached", func(b *testing.B) {
				for b.Loop() {
					if _, err := s.FileStored(n.Ino, size); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("getinode", func(b *testing.B) {
				for b.Loop() {
					if _, err := s.GetInode(n.Ino); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// scanStored sums file ino's records afresh (what FileStored must agree with).
func scanStored(t *testing.T, s *Store, ino uint64) int64 {
	t.Helper()
	var d Delta
	if err := kv.View(s.db, func(txn kv.Txn) error { return fileUsage(txn, ino, &d) }); err != nil {
		t.Fatal(err)
	}
	return d.storedBytes()
}

func checkStored(t *testing.T, s *Store, ino uint64, what string) int64 {
	t.Helper()
	n, err := s.GetInode(ino)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.FileStored(ino, n.Size)
	if err != nil {
		t.Fatal(err)
	}
	if want := scanStored(t, s, ino); got != want {
		t.Fatalf("%s: FileStored %d, the records sum to %d", what, got, want)
	}
	return got
}

// TestFileStoredFollowsChanges: the stored bytes kept for a file stay exact through writes,
// appends, truncation, zeroed ranges, the compactor's swaps and the file's removal.
func TestFileStoredFollowsChanges(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ino := newFile(t, s, "f")
	text := bytes.Repeat([]byte("stored bytes follow every change of the file's groups. "), 1<<15)
	writeFile(t, s, ino, text[:1<<20])
	raw := checkStored(t, s, ino, "written")
	if raw < 1<<20 {
		t.Fatalf("a file of raw records stores %d bytes, less than its 1 MiB", raw)
	}
	if _, ok := s.counters.files.get(ino); !ok {
		t.Fatal("a file of many groups is not kept after its first sum")
	}
	s.counters.files.finish(ino, 0, false) // (get registered nothing: it was known)
	if err := s.WriteAt(ino, mixedData(3, 100<<10), 300<<10); err != nil {
		t.Fatal(err)
	}
	s.settleAll()
	checkStored(t, s, ino, "overwritten")
	if err := s.WriteAt(ino, text[:200<<10], 3<<20); err != nil { // past the end: a hole between
		t.Fatal(err)
	}
	s.settleAll()
	checkStored(t, s, ino, "appended past a hole")
	if _, err := s.ZeroRange(ino, 100<<10, 500<<10, true); err != nil {
		t.Fatal(err)
	}
	checkStored(t, s, ino, "range zeroed")
	if _, err := s.Truncate(ino, 700<<10+5); err != nil {
		t.Fatal(err)
	}
	before := checkStored(t, s, ino, "truncated")
	s.StartCompactor(CompactOptions{Idle: 10 * time.Millisecond})
	waitCompacted(t, s)
	s.StopCompactor()
	after := checkStored(t, s, ino, "compacted")
	if after >= before/2 {
		t.Errorf("compaction of text: %d stored bytes before, %d after", before, after)
	}
	if err := s.Unlink(RootIno, "f"); err != nil {
		t.Fatal(err)
	}
	if got := scanStored(t, s, ino); got != 0 {
		t.Fatalf("a removed file still has %d bytes of records", got)
	}
	if got, err := s.FileStored(ino, 700<<10+5); err != nil || got != 0 {
		t.Fatalf("a removed file: FileStored %d, %v", got, err)
	}
}

// waitCompacted waits until nothing is pending; it fails only when the compactor stops making
// progress for a minute (a loaded machine may be slow).
func waitCompacted(t *testing.T, s *Store) {
	t.Helper()
	last, stalled := s.Counters().Pending, time.Now()
	for last > 0 {
		time.Sleep(20 * time.Millisecond)
		if p := s.Counters().Pending; p < last {
			last, stalled = p, time.Now()
		} else if time.Since(stalled) > time.Minute {
			t.Fatalf("compactor left %d blocks pending and made no progress for a minute", p)
		}
	}
}

// TestFileStoredRacesWritersAndCompactor: sums taken while writers and the compactor change
// the file are never kept stale: once they stop, what is kept is what the records hold.
func TestFileStoredRacesWritersAndCompactor(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ino := newFile(t, s, "f")
	text := bytes.Repeat([]byte("a sum taken while the groups change is not kept. "), 1<<16)
	writeFile(t, s, ino, text[:2<<20])
	s.StartCompactor(CompactOptions{Batch: 32, Idle: 5 * time.Millisecond})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.FileStored(ino, 2<<20); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	rng := rand.New(rand.NewSource(5))
	rounds := 200
	if testing.Short() {
		rounds = 60
	}
	for i := 0; i < rounds; i++ {
		off := rng.Intn(2 << 20)
		n := 1 + rng.Intn(96<<10)
		var err error
		switch rng.Intn(3) {
		case 0:
			err = s.WriteAt(ino, text[:min(n, len(text))], uint64(off))
		case 1:
			err = s.WriteAt(ino, mixedData(int64(i), n), uint64(off))
		default:
			_, err = s.ZeroRange(ino, uint64(off), uint64(n), true)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	s.settleAll()
	waitCompacted(t, s)
	close(stop)
	wg.Wait()
	s.StopCompactor()
	checkStored(t, s, ino, "after racing writes and compaction")
}

// TestTreeUsage: a tree's usage is the sum of its files (a hard link counted once), and the
// root's is the store's counters.
func TestTreeUsage(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	d, err := s.Create(RootIno, "d", NewNode{Mode: syscall.S_IFDIR | 0o755})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := s.Create(d.Ino, "sub", NewNode{Mode: syscall.S_IFDIR | 0o755})
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.Create(d.Ino, "a", NewNode{Mode: syscall.S_IFREG | 0o644})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Create(sub.Ino, "b", NewNode{Mode: syscall.S_IFREG | 0o644})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, s, a.Ino, mixedData(1, 100<<10))
	writeFile(t, s, b.Ino, bytes.Repeat([]byte("b"), 5000))
	if _, err := s.Link(b.Ino, d.Ino, "b-again"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(sub.Ino, "l", NewNode{Mode: syscall.S_IFLNK | 0o777, Target: "a"}); err != nil {
		t.Fatal(err)
	}
	outside := newFile(t, s, "outside")
	writeFile(t, s, outside, mixedData(2, 40<<10))

	u, err := s.TreeUsage(d.Ino)
	if err != nil {
		t.Fatal(err)
	}
	if u.Files != 2 || u.Dirs != 2 || u.Symlinks != 1 || u.Logical != 100<<10+5000 {
		t.Errorf("tree usage %+v: want 2 files (a hard link once), 2 directories, 1 symlink, %d bytes", u, 100<<10+5000)
	}
	_, _, stored := u.Stored()
	if want := scanStored(t, s, a.Ino) + scanStored(t, s, b.Ino); stored != want {
		t.Errorf("tree stores %d bytes, its files %d", stored, want)
	}
	fu, err := s.TreeUsage(b.Ino)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, st := fu.Stored(); fu.Files != 1 || fu.Logical != 5000 || st != scanStored(t, s, b.Ino) {
		t.Errorf("file usage %+v", fu)
	}
	root, err := s.TreeUsage(RootIno)
	if err != nil {
		t.Fatal(err)
	}
	c := s.Counters()
	if root.Files != c.Files || root.Dirs != c.Dirs || root.Symlinks != c.Symlinks || root.Logical != c.Logical ||
		root.Pending != c.Pending || root.PendingRaw != c.PendingRaw || !maps.Equal(root.Codecs, c.Codecs) {
		t.Errorf("root's usage %+v, the store's counters %+v", root, c)
	}
	if _, err := s.TreeUsage(99999); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("usage of a missing inode: %v, want ENOENT", err)
	}
}
