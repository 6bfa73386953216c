package test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestFSX is the project's fsx: random operations (writes, reads, truncates, appends, holes
// punched and ranges zeroed, renames, unlinks, closes) applied to an lmfs mount and to a plain
// temp dir, compared byte for byte. It prints its seed; LMFS_FSX_SEED=N replays a run and
// LMFS_FSX_OPS=N changes the number of operations.
func TestFSX(t *testing.T) {
	needFUSE(t)
	seed := time.Now().UnixNano()
	if s := os.Getenv("LMFS_FSX_SEED"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("LMFS_FSX_SEED: %v", err)
		}
		seed = v
	}
	ops := 4000
	if s := os.Getenv("LMFS_FSX_OPS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("LMFS_FSX_OPS: %v", err)
		}
		ops = v
	}
	t.Logf("fsx seed %d (replay with LMFS_FSX_SEED=%d), %d ops", seed, seed, ops)
	m := mountStore(t, newStore(t))
	x := &fsx{t: t, seed: seed, r: newRand(seed), m: m, ref: t.TempDir(), fds: map[int]*fdPair{}}
	x.dataRand = newRand(seed ^ 0x5eed)
	t.Cleanup(x.closeAll)

	phase := ops / 4
	x.run(phase)
	x.check("phase 1")
	x.run(phase)
	x.check("phase 2")
	x.closeAll()
	m.remount()
	x.check("after remount")
	x.run(phase)
	x.check("phase 3")
	x.run(ops - 3*phase)
	x.closeAll()
	x.check("phase 4 (all closed)")
	m.remount()
	files, bytes := x.check("final remount")
	if st := m.stats(); st.Files != int64(files) || st.Logical != bytes {
		t.Errorf("lmfs stats after fsx: files %d, logical_bytes %d; the mount shows %d files, %d bytes", st.Files, st.Logical, files, bytes)
	}
	t.Logf("fsx: %d ops; op counts: %v", x.n, x.counts)
}

const fsxFiles = 6

type fdPair struct {
	l, r   *os.File
	append bool
}

type fsx struct {
	t        *testing.T
	seed     int64
	r        *rand.Rand // choices
	dataRand *rand.Rand // contents
	m        *fsMount
	ref      string
	fds      map[int]*fdPair // open files by slot (they follow renames)
	n        int
	history  []string
	counts   map[string]int
}

func (x *fsx) name(slot int) string { return fmt.Sprintf("f%d", slot) }

func (x *fsx) paths(slot int) (string, string) {
	return x.m.path(x.name(slot)), filepath.Join(x.ref, x.name(slot))
}

func (x *fsx) logOp(format string, a ...any) {
	s := fmt.Sprintf("#%d ", x.n) + fmt.Sprintf(format, a...)
	x.history = append(x.history, s)
	if len(x.history) > 40 {
		x.history = x.history[1:]
	}
	if x.counts == nil {
		x.counts = map[string]int{}
	}
	x.counts[strings.Fields(fmt.Sprintf(format, a...))[0]]++
}

func (x *fsx) fail(format string, a ...any) {
	x.t.Helper()
	x.t.Fatalf("fsx seed %d, op %d: %s\nlast operations:\n  %s\nreplay: LMFS_FSX_SEED=%d go test -run TestFSX ./test/",
		x.seed, x.n, fmt.Sprintf(format, a...), strings.Join(x.history, "\n  "), x.seed)
}

func (x *fsx) exists(slot int) bool {
	_, err := os.Stat(filepath.Join(x.ref, x.name(slot)))
	return err == nil
}

func (x *fsx) refSize(slot int) int64 {
	st, err := os.Stat(filepath.Join(x.ref, x.name(slot)))
	if err != nil {
		return 0
	}
	return st.Size()
}

// open returns the slot's open pair, opening (creating) it read-write if needed.
func (x *fsx) open(slot int) *fdPair {
	if p := x.fds[slot]; p != nil && !p.append {
		return p
	}
	x.closeSlot(slot)
	lp, rp := x.paths(slot)
	l, err := os.OpenFile(lp, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		x.fail("open %s on lmfs: %v", lp, err)
	}
	r, err := os.OpenFile(rp, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		x.fail("open ref: %v", err)
	}
	p := &fdPair{l: l, r: r}
	x.fds[slot] = p
	return p
}

func (x *fsx) closeSlot(slot int) {
	if p := x.fds[slot]; p != nil {
		if err := p.l.Close(); err != nil {
			x.fail("close %s on lmfs: %v", x.name(slot), err)
		}
		p.r.Close()
		delete(x.fds, slot)
	}
}

func (x *fsx) closeAll() {
	for slot := range x.fds {
		x.closeSlot(slot)
	}
}

// data returns n bytes: text, random, zeros, or a mix of them.
func (x *fsx) data(n int) []byte {
	b := make([]byte, n)
	switch x.dataRand.IntN(4) {
	case 0:
		fillText(x.dataRand, b)
	case 1:
		fillRandom(x.dataRand, b)
	case 2: // zeros
	default:
		for i := 0; i < n; {
			k := min(n-i, 1+x.dataRand.IntN(3000))
			switch x.dataRand.IntN(3) {
			case 0:
				fillText(x.dataRand, b[i:i+k])
			case 1:
				fillRandom(x.dataRand, b[i:i+k])
			}
			i += k
		}
	}
	return b
}

// offset picks a write offset for a file of size: anywhere, block aligned, straddling a
// block boundary, at EOF, or beyond EOF (leaving a hole).
func (x *fsx) offset(size int64) int64 {
	r := x.r
	switch r.IntN(6) {
	case 0:
		return r.Int64N(size + 1)
	case 1:
		return int64(r.IntN(int(size/2048)+3)) * 2048
	case 2:
		return max(0, int64(r.IntN(int(size/2048)+3))*2048-int64(1+r.IntN(64)))
	case 3:
		return size
	case 4:
		return size + r.Int64N(3*2048) // a hole of up to 3 blocks
	default:
		return size + r.Int64N(256<<10) // a long hole
	}
}

// length picks a write length: 1 byte, small, one block, several blocks, or anything.
func (x *fsx) length() int {
	r := x.r
	switch r.IntN(6) {
	case 0:
		return 1
	case 1:
		return 1 + r.IntN(100)
	case 2:
		return 2048
	case 3:
		return 2048 * (1 + r.IntN(8))
	case 4:
		return 1 + r.IntN(70000)
	default:
		return 1 + r.IntN(6000)
	}
}

func (x *fsx) run(ops int) {
	for i := 0; i < ops; i++ {
		x.n++
		slot := x.r.IntN(fsxFiles)
		switch k := x.r.IntN(100); {
		case k < 40:
			x.write(slot)
		case k < 52:
			x.read(slot)
		case k < 56:
			x.punch(slot, punchHole)
		case k < 60:
			x.punch(slot, []uint32{zeroRange, zeroKeep}[x.r.IntN(2)])
		case k < 70:
			x.truncate(slot)
		case k < 76:
			x.appendWrite(slot)
		case k < 80:
			x.openTrunc(slot)
		case k < 86:
			x.rename(slot, x.r.IntN(fsxFiles))
		case k < 89:
			x.unlink(slot)
		case k < 95:
			x.closeSlot(slot)
			x.logOp("close %s", x.name(slot))
		default:
			x.closeAll()
			x.logOp("closeall")
		}
		x.compareSizes()
	}
}

func (x *fsx) write(slot int) {
	p := x.open(slot)
	off := x.offset(x.refSize(slot))
	b := x.data(x.length())
	x.logOp("write %s off=%d len=%d", x.name(slot), off, len(b))
	if n, err := p.l.WriteAt(b, off); err != nil || n != len(b) {
		x.fail("pwrite lmfs: n=%d err=%v", n, err)
	}
	if _, err := p.r.WriteAt(b, off); err != nil {
		x.fail("pwrite ref: %v", err)
	}
}

// punch applies fallocate mode (PUNCH_HOLE|KEEP_SIZE, ZERO_RANGE with or without KEEP_SIZE)
// at an offset and length picked as for writes (inside, across or past the end). Where the
// reference file system lacks the mode (tmpfs has no ZERO_RANGE), it is written as zeros.
func (x *fsx) punch(slot int, mode uint32) {
	p := x.open(slot)
	size := x.refSize(slot)
	off, n := x.offset(size), int64(x.length())
	op := map[uint32]string{punchHole: "punch", zeroRange: "zero", zeroKeep: "zerokeep"}[mode]
	x.logOp("%s %s off=%d len=%d (size %d)", op, x.name(slot), off, n, size)
	if err := unix.Fallocate(int(p.l.Fd()), mode, off, n); err != nil {
		x.fail("fallocate %s on lmfs: %v", op, err)
	}
	err := unix.Fallocate(int(p.r.Fd()), mode, off, n)
	if errors.Is(err, unix.EOPNOTSUPP) {
		end := off + n
		if mode&keepSize != 0 {
			end = min(end, size)
		}
		if off < end {
			_, err = p.r.WriteAt(make([]byte, end-off), off)
		} else {
			err = nil
		}
	}
	if err != nil {
		x.fail("fallocate %s on the reference: %v", op, err)
	}
}

func (x *fsx) read(slot int) {
	if !x.exists(slot) {
		return
	}
	p := x.open(slot)
	size := x.refSize(slot)
	off := x.r.Int64N(size + 4096)
	n := x.length()
	x.logOp("read %s off=%d len=%d (size %d)", x.name(slot), off, n, size)
	bl, br := make([]byte, n), make([]byte, n)
	nl, errl := p.l.ReadAt(bl, off)
	nr, errr := p.r.ReadAt(br, off)
	if errl != nil && errl != io.EOF {
		x.fail("pread lmfs: %v", errl)
	}
	if nl != nr || (errl == io.EOF) != (errr == io.EOF) {
		x.fail("pread lmfs returned %d (%v), ref %d (%v)", nl, errl, nr, errr)
	}
	if !bytes.Equal(bl[:nl], br[:nr]) {
		x.fail("pread %s off=%d: %s", x.name(slot), off, firstDiff(bl[:nl], br[:nr]))
	}
}

func (x *fsx) truncate(slot int) {
	size := x.refSize(slot)
	var to int64
	switch x.r.IntN(5) {
	case 0:
		to = 0
	case 1:
		to = x.r.Int64N(size + 1) // down, anywhere (mid-block mostly)
	case 2:
		to = int64(x.r.IntN(int(size/2048)+2)) * 2048
	case 3:
		to = size + x.r.Int64N(10000) // up
	default:
		to = max(0, size-int64(1+x.r.IntN(3000)))
	}
	if x.r.IntN(2) == 0 || !x.exists(slot) {
		p := x.open(slot)
		x.logOp("ftruncate %s %d -> %d", x.name(slot), size, to)
		if err := p.l.Truncate(to); err != nil {
			x.fail("ftruncate lmfs: %v", err)
		}
		if err := p.r.Truncate(to); err != nil {
			x.fail("ftruncate ref: %v", err)
		}
		return
	}
	lp, rp := x.paths(slot)
	x.logOp("truncate %s %d -> %d", x.name(slot), size, to)
	if err := os.Truncate(lp, to); err != nil {
		x.fail("truncate lmfs: %v", err)
	}
	if err := os.Truncate(rp, to); err != nil {
		x.fail("truncate ref: %v", err)
	}
}

func (x *fsx) appendWrite(slot int) {
	x.closeSlot(slot)
	lp, rp := x.paths(slot)
	flags := os.O_WRONLY | os.O_APPEND | os.O_CREATE
	l, err := os.OpenFile(lp, flags, 0o644)
	if err != nil {
		x.fail("open O_APPEND lmfs: %v", err)
	}
	r, err := os.OpenFile(rp, flags, 0o644)
	if err != nil {
		x.fail("open O_APPEND ref: %v", err)
	}
	p := &fdPair{l: l, r: r, append: true}
	x.fds[slot] = p
	for i := 0; i <= x.r.IntN(3); i++ {
		b := x.data(x.length())
		x.logOp("append %s len=%d (size %d)", x.name(slot), len(b), x.refSize(slot))
		if n, err := l.Write(b); err != nil || n != len(b) {
			x.fail("append lmfs: n=%d err=%v", n, err)
		}
		if _, err := r.Write(b); err != nil {
			x.fail("append ref: %v", err)
		}
	}
	if x.r.IntN(2) == 0 {
		x.closeSlot(slot)
	}
}

func (x *fsx) openTrunc(slot int) {
	x.closeSlot(slot)
	lp, rp := x.paths(slot)
	flags := os.O_RDWR | os.O_TRUNC | os.O_CREATE
	x.logOp("otrunc %s (size %d)", x.name(slot), x.refSize(slot))
	l, err := os.OpenFile(lp, flags, 0o644)
	if err != nil {
		x.fail("open O_TRUNC lmfs: %v", err)
	}
	r, err := os.OpenFile(rp, flags, 0o644)
	if err != nil {
		x.fail("open O_TRUNC ref: %v", err)
	}
	x.fds[slot] = &fdPair{l: l, r: r}
	if st, err := l.Stat(); err != nil || st.Size() != 0 {
		x.fail("after O_TRUNC: stat %v, err %v", st, err)
	}
}

func (x *fsx) rename(a, b int) {
	if !x.exists(a) {
		return
	}
	la, ra := x.paths(a)
	lb, rb := x.paths(b)
	x.logOp("rename %s -> %s", x.name(a), x.name(b))
	if err := os.Rename(la, lb); err != nil {
		x.fail("rename lmfs: %v", err)
	}
	if err := os.Rename(ra, rb); err != nil {
		x.fail("rename ref: %v", err)
	}
	if a == b {
		return
	}
	// Open files follow their inode: a's handle now belongs to b; b's old inode is unlinked,
	// but its handle still works: read it once more before closing.
	if p := x.fds[b]; p != nil {
		if !p.append {
			x.compareOpen(p, "replaced "+x.name(b))
		}
		x.closeSlot(b)
	}
	if p := x.fds[a]; p != nil {
		x.fds[b] = p
		delete(x.fds, a)
	}
}

func (x *fsx) unlink(slot int) {
	if !x.exists(slot) {
		return
	}
	lp, rp := x.paths(slot)
	x.logOp("unlink %s", x.name(slot))
	if err := os.Remove(lp); err != nil {
		x.fail("unlink lmfs: %v", err)
	}
	if err := os.Remove(rp); err != nil {
		x.fail("unlink ref: %v", err)
	}
	if p := x.fds[slot]; p != nil && !p.append {
		x.compareOpen(p, "unlinked "+x.name(slot)) // still readable while open
	}
	x.closeSlot(slot)
}

// compareOpen compares the whole content behind an open pair.
func (x *fsx) compareOpen(p *fdPair, what string) {
	sl, err := p.l.Stat()
	if err != nil {
		x.fail("fstat %s: %v", what, err)
	}
	sr, _ := p.r.Stat()
	if sl.Size() != sr.Size() {
		x.fail("fstat %s: size %d, want %d", what, sl.Size(), sr.Size())
	}
	bl, br := make([]byte, sl.Size()), make([]byte, sr.Size())
	if _, err := p.l.ReadAt(bl, 0); err != nil && err != io.EOF {
		x.fail("read %s: %v", what, err)
	}
	p.r.ReadAt(br, 0)
	if !bytes.Equal(bl, br) {
		x.fail("content of %s: %s", what, firstDiff(bl, br))
	}
}

// compareSizes checks that every slot exists on both sides with the same size.
func (x *fsx) compareSizes() {
	for slot := 0; slot < fsxFiles; slot++ {
		lp, rp := x.paths(slot)
		sl, errl := os.Stat(lp)
		sr, errr := os.Stat(rp)
		if (errl == nil) != (errr == nil) {
			x.fail("stat %s: lmfs err %v, ref err %v", x.name(slot), errl, errr)
		}
		if errl == nil && sl.Size() != sr.Size() {
			x.fail("stat %s: size %d, want %d", x.name(slot), sl.Size(), sr.Size())
		}
	}
}

// check compares the directory listings and every file's full content and size.
func (x *fsx) check(phase string) (files int, total int64) {
	x.t.Helper()
	list := func(dir string) []string {
		es, err := os.ReadDir(dir)
		if err != nil {
			x.fail("%s: readdir %s: %v", phase, dir, err)
		}
		var names []string
		for _, e := range es {
			names = append(names, e.Name())
		}
		sort.Strings(names)
		return names
	}
	ln, rn := list(x.m.dir), list(x.ref)
	if strings.Join(ln, " ") != strings.Join(rn, " ") {
		x.fail("%s: lmfs lists %v, ref %v", phase, ln, rn)
	}
	for _, name := range rn {
		bl, err := os.ReadFile(x.m.path(name))
		if err != nil {
			x.fail("%s: read %s: %v", phase, name, err)
		}
		br, _ := os.ReadFile(filepath.Join(x.ref, name))
		if !bytes.Equal(bl, br) {
			x.fail("%s: content of %s: %s", phase, name, firstDiff(bl, br))
		}
		total += int64(len(br))
	}
	x.t.Logf("fsx %s: %d ops, %d files, %d bytes equal", phase, x.n, len(rn), total)
	return len(rn), total
}
