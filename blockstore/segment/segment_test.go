package segment

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
)

var sink byte // what the fault test reads into (so the reads are not optimized out)

func openDir(t *testing.T, dir string, readOnly bool) *Dir {
	t.Helper()
	d, err := Open(dir, Options{ReadOnly: readOnly, Streams: 3})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// appendAll appends payloads to stream st in one batch, flushes and releases it.
func appendAll(t *testing.T, d *Dir, st int, payloads ...[]byte) []Loc {
	t.Helper()
	b := d.Batch()
	defer b.Release()
	var locs []Loc
	for i, p := range payloads {
		l, err := b.Append(st, 7, uint64(i), p)
		if err != nil {
			t.Fatal(err)
		}
		locs = append(locs, l)
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	return locs
}

func payload(i, n int) []byte {
	return bytes.Repeat([]byte(fmt.Sprintf("payload %d ", i)), n)
}

// TestSegmentAppendRead: entries read back by pread and through the mapping, before and
// after a reopen (which starts new segments); streams get segments of their own.
func TestSegmentAppendRead(t *testing.T) {
	dir := t.TempDir()
	d := openDir(t, dir, false)
	ps := [][]byte{payload(0, 100), payload(1, 3000), payload(2, 1)}
	locs := appendAll(t, d, 0, ps...)
	other := appendAll(t, d, 2, payload(9, 10))
	if other[0].Seg == locs[0].Seg {
		t.Fatal("two streams share a segment")
	}
	if locs[1].Off != uint32(locs[0].End()) {
		t.Fatalf("entries of one batch not adjacent: %+v", locs)
	}
	check := func(d *Dir) {
		for i, l := range locs {
			got, err := d.Read(nil, 7, uint64(i), l)
			if err != nil || !bytes.Equal(got, ps[i]) {
				t.Fatalf("entry %d: %v", i, err)
			}
			if err := CheckPayload(l, got); err != nil {
				t.Fatal(err)
			}
		}
		span, done, err := d.ReadRange(locs[0].Seg, int64(locs[0].Off), locs[2].End()-int64(locs[0].Off))
		if err != nil {
			t.Fatal(err)
		}
		err = ReadMapped(func() error {
			for i, l := range locs {
				e := span[int64(l.Off)-int64(locs[0].Off):][:EntrySize(l.N)]
				if err := CheckEntry(e, 7, uint64(i), l); err != nil {
					return err
				}
				if !bytes.Equal(e[EntryHeader:], ps[i]) {
					return fmt.Errorf("mapped entry %d differs", i)
				}
			}
			return nil
		})
		done()
		if err != nil {
			t.Fatal(err)
		}
	}
	check(d)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d = openDir(t, dir, false)
	defer d.Close()
	check(d)
	if l := appendAll(t, d, 0, payload(3, 1)); l[0].Seg <= other[0].Seg {
		t.Fatalf("an append after reopen went to old segment %d", l[0].Seg)
	}
}

// TestSegmentCheck: a Loc never returns another owner's bytes, nor bytes that fail the
// entry's checksums.
func TestSegmentCheck(t *testing.T) {
	dir := t.TempDir()
	d := openDir(t, dir, false)
	locs := appendAll(t, d, 1, payload(0, 50), payload(1, 50))
	d.Close()
	d = openDir(t, dir, true)
	defer d.Close()
	if _, err := d.Read(nil, 7, 1, locs[0]); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read with the wrong owner: %v", err)
	}
	wrong := locs[0]
	wrong.Off = locs[1].Off
	if _, err := d.Read(nil, 7, 0, wrong); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read at another entry: %v", err)
	}
	past := locs[1]
	past.Off += 1 << 20
	if _, err := d.Read(nil, 7, 1, past); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read past the end: %v", err)
	}
	if _, _, err := d.ReadRange(past.Seg, int64(past.Off), 10); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("range past the end: %v", err)
	}
	if err := CheckPayload(locs[0], payload(1, 50)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("payload check of other bytes: %v", err)
	}
	if _, err := d.Read(nil, 7, 0, Loc{Seg: 99, Off: FileHeader, N: 1}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read of a missing segment: %v", err)
	}
	if _, err := d.Batch().Append(0, 1, 1, []byte("x")); err == nil {
		t.Fatal("append to a read-only set")
	}
}

// TestSegmentSealDelete: a sealed segment is no longer appended to and is listed as sealed;
// reads that start after Delete get ErrDeleted, a span taken before stays readable.
func TestSegmentSealDelete(t *testing.T) {
	dir := t.TempDir()
	d := openDir(t, dir, false)
	defer d.Close()
	l := appendAll(t, d, 0, payload(0, 10))[0]
	if _, ok := d.Current()[l.Seg]; !ok {
		t.Fatal("the segment appended to is not current")
	}
	if sealed, _ := d.Sealed(); len(sealed) != 0 {
		t.Fatalf("sealed before Seal: %v", sealed)
	}
	d.Seal(l.Seg)
	if sealed, _ := d.Sealed(); sealed[l.Seg] != l.End() {
		t.Fatalf("sealed segments %v, want %d of size %d", sealed, l.Seg, l.End())
	}
	if n := appendAll(t, d, 0, payload(1, 10))[0]; n.Seg == l.Seg {
		t.Fatal("append to a sealed segment")
	}
	if !d.Idle(l.Seg) {
		t.Fatal("a released segment is not idle")
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	span, done, err := d.ReadRange(l.Seg, int64(l.Off), EntrySize(l.N))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Delete(l.Seg); err != nil {
		t.Fatal(err)
	}
	if err := CheckEntry(span, 7, 0, l); err != nil {
		t.Fatalf("span taken before Delete: %v", err)
	}
	done()
	if _, err := d.Read(nil, 7, 0, l); !errors.Is(err, ErrDeleted) {
		t.Fatalf("read after Delete: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, Subdir, FileName(l.Seg))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("deleted segment's file: %v", err)
	}
}

// TestSegmentBusy: an Appender that is not released keeps its segment busy (GC waits).
func TestSegmentBusy(t *testing.T) {
	d := openDir(t, t.TempDir(), false)
	defer d.Close()
	b := d.Batch()
	l, err := b.Append(2, 1, 2, []byte("pending"))
	if err != nil {
		t.Fatal(err)
	}
	if d.Idle(l.Seg) || !d.Current()[l.Seg].Busy {
		t.Fatal("a segment with an unreleased reservation is idle")
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	b.Release()
	if !d.Idle(l.Seg) || d.Current()[l.Seg].Busy {
		t.Fatal("released, still busy")
	}
}

// TestSegmentRotate: a stream moves to a new segment when an append would pass Size, and
// concurrent batches all read back.
func TestSegmentRotate(t *testing.T) {
	old := Size
	Size = 64 << 10
	t.Cleanup(func() { Size = old })
	d := openDir(t, t.TempDir(), false)
	defer d.Close()
	var mu sync.Mutex
	var all []Loc
	var owners []uint64
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				b := d.Batch()
				owner := uint64(w*100 + i)
				l, err := b.Append(0, owner, owner, payload(int(owner), 200))
				if err == nil {
					err = b.Flush()
				}
				b.Release()
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				all, owners = append(all, l), append(owners, owner)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	segs := map[uint32]bool{}
	for i, l := range all {
		segs[l.Seg] = true
		if l.End() > Size {
			t.Fatalf("entry past Size: %+v", l)
		}
		got, err := d.Read(nil, owners[i], owners[i], l)
		if err != nil || !bytes.Equal(got, payload(int(owners[i]), 200)) {
			t.Fatalf("entry %+v: %v", l, err)
		}
	}
	ids, _ := d.List()
	if len(segs) < 3 || !slices.Equal(ids, slices.Sorted(func(yield func(uint32) bool) {
		for id := range segs {
			if !yield(id) {
				return
			}
		}
	})) {
		t.Fatalf("segments used %v, listed %v", segs, ids)
	}
}

// TestSegmentFault: a segment cut short under a live mapping (on a real disk, an I/O error)
// fails the read under ReadMapped: the fault does not kill the process.
func TestSegmentFault(t *testing.T) {
	dir := t.TempDir()
	d := openDir(t, dir, false)
	defer d.Close()
	ps := make([][]byte, 64)
	for i := range ps {
		ps[i] = payload(i, 1000)
	}
	locs := appendAll(t, d, 0, ps...)
	first, last := locs[0], locs[len(locs)-1]
	span, done, err := d.ReadRange(first.Seg, int64(first.Off), last.End()-int64(first.Off))
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	if err := os.Truncate(filepath.Join(dir, Subdir, FileName(first.Seg)), 4096); err != nil {
		t.Fatal(err)
	}
	err = ReadMapped(func() error {
		for _, c := range span {
			sink += c
		}
		return nil
	})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read of a mapping cut short: %v", err)
	}
}
