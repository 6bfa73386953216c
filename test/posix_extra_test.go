package test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// waitFor polls cond for up to d (FUSE RELEASE is sent after close(2) returns).
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestUnlinkOpenFile(t *testing.T) {
	m := mountStore(t, newStore(t))
	data := mixedData(1, 1<<20+123)
	p := m.path("victim")
	writeFile(t, p, data)
	writeFile(t, m.path("other"), []byte("stays"))
	before := m.stats()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("stat after unlink: %v, want ENOENT", err)
	}
	got, err := io.ReadAll(f)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("reading the unlinked open file: err %v, %s", err, firstDiff(got, data))
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil || st.Nlink != 0 || st.Size != int64(len(data)) {
		t.Fatalf("fstat of unlinked file: err %v nlink %d size %d", err, st.Nlink, st.Size)
	}
	if s := m.stats(); s.Logical != before.Logical {
		t.Errorf("logical_bytes changed while the file is open: %d -> %d", before.Logical, s.Logical)
	}
	f.Close()
	var after statsReport
	ok := waitFor(5*time.Second, func() bool {
		after = m.stats()
		return after.Logical == before.Logical-int64(len(data)) && after.Files == before.Files-1
	})
	if !ok {
		t.Fatalf("after close: files %d logical %d stored %d; before: files %d logical %d stored %d (want files -1, logical -%d)",
			after.Files, after.Logical, after.Stored, before.Files, before.Logical, before.Stored, len(data))
	}
	if after.Stored >= before.Stored {
		t.Errorf("stored_bytes did not go down: %d -> %d", before.Stored, after.Stored)
	}
	m.remount()
	if s := m.stats(); s.Files != 1 || s.Logical != 5 {
		t.Errorf("after remount: files %d logical %d, want 1 and 5", s.Files, s.Logical)
	}
}

func TestRmdirNotEmpty(t *testing.T) {
	m := mountStore(t, newStore(t))
	d := m.path("d")
	if err := os.MkdirAll(filepath.Join(d, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(d, "f"), []byte("x"))
	if err := syscall.Rmdir(d); err != syscall.ENOTEMPTY {
		t.Fatalf("rmdir of non-empty dir: %v, want ENOTEMPTY", err)
	}
	if err := syscall.Rmdir(filepath.Join(d, "f")); err != syscall.ENOTDIR {
		t.Errorf("rmdir of a file: %v, want ENOTDIR", err)
	}
	if err := syscall.Unlink(filepath.Join(d, "sub")); err != syscall.EISDIR && err != syscall.EPERM {
		t.Errorf("unlink of a dir: %v, want EISDIR", err)
	}
	os.Remove(filepath.Join(d, "f"))
	if err := syscall.Rmdir(d); err != syscall.ENOTEMPTY {
		t.Fatalf("rmdir with subdir left: %v, want ENOTEMPTY", err)
	}
	if err := os.Remove(filepath.Join(d, "sub")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Rmdir(d); err != nil {
		t.Fatalf("rmdir of emptied dir: %v", err)
	}
	var st syscall.Stat_t
	syscall.Stat(m.dir, &st)
	if st.Nlink != 2 {
		t.Errorf("root nlink %d after rmdir, want 2", st.Nlink)
	}
}

func nlinkOf(t *testing.T, p string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Nlink
}

func TestRename(t *testing.T) {
	m := mountStore(t, newStore(t))
	a, b := m.path("a"), m.path("b")
	writeFile(t, a, []byte("content a"))
	writeFile(t, b, []byte("content b, longer"))

	// Over an existing file.
	if err := os.Rename(a, b); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, b); string(got) != "content a" {
		t.Errorf("after rename over existing: %q", got)
	}
	if _, err := os.Stat(a); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("old name still there: %v", err)
	}
	if s := m.stats(); s.Files != 1 || s.Logical != 9 {
		t.Errorf("stats after rename over: files %d logical %d, want 1, 9", s.Files, s.Logical)
	}

	// Across directories, a file and a directory.
	for _, d := range []string{"d1", "d2", "d1/sub"} {
		os.Mkdir(m.path(d), 0o755)
	}
	writeFile(t, m.path("d1/sub/x"), []byte("x"))
	if err := os.Rename(b, m.path("d1", "b")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(m.path("d1/sub"), m.path("d2/sub2")); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, m.path("d2/sub2/x")); string(got) != "x" {
		t.Errorf("moved dir content: %q", got)
	}
	if n1, n2 := nlinkOf(t, m.path("d1")), nlinkOf(t, m.path("d2")); n1 != 2 || n2 != 3 {
		t.Errorf("nlink after moving a subdir: d1 %d (want 2), d2 %d (want 3)", n1, n2)
	}
	if err := syscall.Rename(m.path("d2"), m.path("d2/sub2/inside")); err != syscall.EINVAL {
		t.Errorf("moving a dir below itself: %v, want EINVAL", err)
	}
	// Directory over a non-empty directory, file over directory.
	os.Mkdir(m.path("d1/empty"), 0o755)
	// (syscall.Rename: os.Rename refuses to replace a directory by itself, before the fs sees it.)
	if err := syscall.Rename(m.path("d1/empty"), m.path("d2/sub2")); err != syscall.ENOTEMPTY {
		t.Errorf("rename dir over non-empty dir: %v, want ENOTEMPTY", err)
	}
	if err := syscall.Rename(m.path("d1/b"), m.path("d1/empty")); err != syscall.EISDIR {
		t.Errorf("rename file over dir: %v, want EISDIR", err)
	}

	// RENAME_NOREPLACE.
	writeFile(t, m.path("n1"), []byte("one"))
	writeFile(t, m.path("n2"), []byte("two"))
	dirfd := unix.AT_FDCWD
	if err := unix.Renameat2(dirfd, m.path("n1"), dirfd, m.path("n2"), unix.RENAME_NOREPLACE); err != unix.EEXIST {
		t.Errorf("RENAME_NOREPLACE over existing: %v, want EEXIST", err)
	}
	if string(readFile(t, m.path("n1"))) != "one" || string(readFile(t, m.path("n2"))) != "two" {
		t.Errorf("failed RENAME_NOREPLACE changed files")
	}
	if err := unix.Renameat2(dirfd, m.path("n1"), dirfd, m.path("n3"), unix.RENAME_NOREPLACE); err != nil {
		t.Errorf("RENAME_NOREPLACE to a new name: %v", err)
	}

	// RENAME_EXCHANGE: two files, then a file and a directory in different directories.
	if err := unix.Renameat2(dirfd, m.path("n2"), dirfd, m.path("n3"), unix.RENAME_EXCHANGE); err != nil {
		t.Fatalf("RENAME_EXCHANGE: %v", err)
	}
	if string(readFile(t, m.path("n2"))) != "one" || string(readFile(t, m.path("n3"))) != "two" {
		t.Errorf("RENAME_EXCHANGE did not swap contents")
	}
	if err := unix.Renameat2(dirfd, m.path("n2"), dirfd, m.path("nothere"), unix.RENAME_EXCHANGE); err != unix.ENOENT {
		t.Errorf("RENAME_EXCHANGE with missing target: %v, want ENOENT", err)
	}
	if err := unix.Renameat2(dirfd, m.path("n2"), dirfd, m.path("d2/sub2"), unix.RENAME_EXCHANGE); err != nil {
		t.Fatalf("RENAME_EXCHANGE file<->dir: %v", err)
	}
	if string(readFile(t, m.path("d2/sub2"))) != "one" || string(readFile(t, m.path("n2/x"))) != "x" {
		t.Errorf("RENAME_EXCHANGE file<->dir did not swap")
	}
	if n0, n2 := nlinkOf(t, m.dir), nlinkOf(t, m.path("d2")); n0 != 5 || n2 != 2 {
		t.Errorf("nlink after exchange: root %d (want 5: d1 d2 n2), d2 %d (want 2)", n0, n2)
	}
	if err := os.Rename(m.path("n2"), m.path("n2/moved")); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("moving exchanged dir below itself: %v, want EINVAL", err)
	}

	// Everything survives a remount.
	want := snapshotTree(t, m.dir)
	m.remount()
	compareTrees(t, want, snapshotTree(t, m.dir))
}

func TestHardLinks(t *testing.T) {
	m := mountStore(t, newStore(t))
	a := m.path("a")
	os.Mkdir(m.path("d"), 0o755)
	writeFile(t, a, []byte("hello"))
	if err := os.Link(a, m.path("d/b")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(a, m.path("c")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{a, m.path("d/b"), m.path("c")} {
		if n := nlinkOf(t, p); n != 3 {
			t.Errorf("nlink of %s = %d, want 3", p, n)
		}
	}
	var s1, s2 syscall.Stat_t
	syscall.Stat(a, &s1)
	syscall.Stat(m.path("d/b"), &s2)
	if s1.Ino != s2.Ino {
		t.Errorf("links have different inodes %d, %d", s1.Ino, s2.Ino)
	}
	f, _ := os.OpenFile(m.path("d/b"), os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte(" world"))
	f.Close()
	if got := readFile(t, a); string(got) != "hello world" {
		t.Errorf("write through a link not visible: %q", got)
	}
	if err := os.Link(m.path("d"), m.path("dlink")); err == nil {
		t.Errorf("hard link to a directory succeeded")
	}
	if err := os.Link(a, m.path("c")); !errors.Is(err, syscall.EEXIST) {
		t.Errorf("link over existing name: %v, want EEXIST", err)
	}
	os.Remove(a)
	if n := nlinkOf(t, m.path("c")); n != 2 {
		t.Errorf("nlink after unlink = %d, want 2", n)
	}
	if s := m.stats(); s.Files != 1 || s.Logical != 11 {
		t.Errorf("stats with links: files %d logical %d, want 1, 11", s.Files, s.Logical)
	}
	m.remount()
	if n := nlinkOf(t, m.path("d/b")); n != 2 {
		t.Errorf("nlink after remount = %d, want 2", n)
	}
	os.Remove(m.path("c"))
	os.Remove(m.path("d/b"))
	if !waitFor(5*time.Second, func() bool { s := m.stats(); return s.Files == 0 && s.Logical == 0 && s.Blocks == 0 }) {
		t.Errorf("after removing every link: %+v, want no files or blocks", m.stats())
	}
}

func TestSymlinks(t *testing.T) {
	m := mountStore(t, newStore(t))
	writeFile(t, m.path("target"), []byte("data"))
	if err := os.Symlink("target", m.path("rel")); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x/", 1000) + "end"
	if err := os.Symlink(long, m.path("long")); err != nil {
		t.Fatal(err)
	}
	os.Symlink("/nonexistent/file", m.path("dangling"))
	if got, err := os.Readlink(m.path("rel")); err != nil || got != "target" {
		t.Errorf("readlink: %q %v", got, err)
	}
	if got, err := os.Readlink(m.path("long")); err != nil || got != long {
		t.Errorf("readlink of a 2 KB target: len %d %v", len(got), err)
	}
	if got := readFile(t, m.path("rel")); string(got) != "data" {
		t.Errorf("read through symlink: %q", got)
	}
	fi, err := os.Lstat(m.path("rel"))
	if err != nil || fi.Mode()&fs.ModeSymlink == 0 || fi.Size() != int64(len("target")) {
		t.Errorf("lstat of symlink: %v %v", fi, err)
	}
	if _, err := os.Stat(m.path("dangling")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat of dangling symlink: %v", err)
	}
	if s := m.stats(); s.Symlink != 3 {
		t.Errorf("stats symlinks = %d, want 3", s.Symlink)
	}
	m.remount()
	if got, err := os.Readlink(m.path("long")); err != nil || got != long {
		t.Errorf("readlink after remount: len %d %v", len(got), err)
	}
}

func statT(t *testing.T, p string) syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func tsNano(ts syscall.Timespec) int64 { return ts.Sec*1e9 + ts.Nsec }

func TestAttrs(t *testing.T) {
	m := mountStore(t, newStore(t))
	p := m.path("f")
	writeFile(t, p, []byte("x"))
	st0 := statT(t, p)
	time.Sleep(20 * time.Millisecond)

	if err := os.Chmod(p, 0o640); err != nil {
		t.Fatal(err)
	}
	st1 := statT(t, p)
	if st1.Mode&0o7777 != 0o640 || st1.Mode&syscall.S_IFMT != syscall.S_IFREG {
		t.Errorf("mode after chmod: %o", st1.Mode)
	}
	if tsNano(st1.Ctim) <= tsNano(st0.Ctim) {
		t.Errorf("chmod did not advance ctime")
	}
	if tsNano(st1.Mtim) != tsNano(st0.Mtim) {
		t.Errorf("chmod changed mtime")
	}
	time.Sleep(20 * time.Millisecond)
	if err := os.Lchown(p, 1234, 5678); err != nil {
		t.Fatal(err)
	}
	st2 := statT(t, p)
	if st2.Uid != 1234 || st2.Gid != 5678 || tsNano(st2.Ctim) <= tsNano(st1.Ctim) {
		t.Errorf("after chown: uid %d gid %d, ctime advanced %v", st2.Uid, st2.Gid, tsNano(st2.Ctim) > tsNano(st1.Ctim))
	}
	atime := time.Date(2001, 2, 3, 4, 5, 6, 123456789, time.UTC)
	mtime := time.Date(2002, 3, 4, 5, 6, 7, 987654321, time.UTC)
	time.Sleep(20 * time.Millisecond)
	if err := os.Chtimes(p, atime, mtime); err != nil {
		t.Fatal(err)
	}
	st3 := statT(t, p)
	if tsNano(st3.Atim) != atime.UnixNano() || tsNano(st3.Mtim) != mtime.UnixNano() {
		t.Errorf("utimens: atime %v mtime %v", time.Unix(0, tsNano(st3.Atim)).UTC(), time.Unix(0, tsNano(st3.Mtim)).UTC())
	}
	if tsNano(st3.Ctim) <= tsNano(st2.Ctim) {
		t.Errorf("utimens did not advance ctime")
	}
	// UTIME_NOW and UTIME_OMIT.
	before := time.Now().Add(-time.Second).UnixNano()
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_NOW}}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, 0); err != nil {
		t.Fatal(err)
	}
	st4 := statT(t, p)
	if tsNano(st4.Atim) != atime.UnixNano() || tsNano(st4.Mtim) < before {
		t.Errorf("UTIME_OMIT/UTIME_NOW: atime %d (want %d), mtime %d (want >= %d)", tsNano(st4.Atim), atime.UnixNano(), tsNano(st4.Mtim), before)
	}
	// A write updates mtime and ctime; a directory's change updates its own.
	time.Sleep(20 * time.Millisecond)
	f, _ := os.OpenFile(p, os.O_WRONLY, 0)
	f.WriteAt([]byte("y"), 5)
	f.Close()
	st5 := statT(t, p)
	if tsNano(st5.Mtim) <= tsNano(st4.Mtim) || tsNano(st5.Ctim) <= tsNano(st4.Ctim) || st5.Size != 6 {
		t.Errorf("write: mtime/ctime not advanced or size %d != 6", st5.Size)
	}
	d0 := statT(t, m.dir)
	time.Sleep(20 * time.Millisecond)
	writeFile(t, m.path("g"), nil)
	d1 := statT(t, m.dir)
	if tsNano(d1.Mtim) <= tsNano(d0.Mtim) || tsNano(d1.Ctim) <= tsNano(d0.Ctim) {
		t.Errorf("creating a file did not advance the directory's mtime/ctime")
	}
	// Truncate changes mtime.
	time.Sleep(20 * time.Millisecond)
	os.Truncate(p, 2)
	st6 := statT(t, p)
	if tsNano(st6.Mtim) <= tsNano(st5.Mtim) || st6.Size != 2 {
		t.Errorf("truncate: mtime not advanced or size %d", st6.Size)
	}
	m.remount()
	st7 := statT(t, p)
	if st7.Mode != st6.Mode || st7.Uid != 1234 || st7.Gid != 5678 || st7.Mtim != st6.Mtim || st7.Ctim != st6.Ctim || st7.Atim != st6.Atim {
		t.Errorf("attributes changed across remount: %+v vs %+v", st7, st6)
	}
}

func TestStatfsFsync(t *testing.T) {
	m := mountStore(t, newStore(t))
	var sf syscall.Statfs_t
	if err := syscall.Statfs(m.dir, &sf); err != nil {
		t.Fatal(err)
	}
	if sf.Bsize <= 0 || sf.Blocks == 0 || sf.Bavail > sf.Blocks || sf.Namelen != 255 || sf.Files == 0 {
		t.Errorf("statfs: %+v", sf)
	}
	f, err := os.Create(m.path("f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Write(mixedData(2, 100000))
	if err := f.Sync(); err != nil {
		t.Errorf("fsync: %v", err)
	}
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		t.Errorf("fdatasync: %v", err)
	}
	d, err := os.Open(m.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		t.Errorf("fsync of a directory: %v", err)
	}
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		t.Errorf("syncfs: %v", err)
	}
}

func TestXattrs(t *testing.T) {
	m := mountStore(t, newStore(t))
	p := m.path("f")
	writeFile(t, p, []byte("x"))
	os.Mkdir(m.path("d"), 0o755)
	big := bytes.Repeat([]byte("v"), 60000)
	for _, target := range []string{p, m.path("d")} {
		if err := unix.Setxattr(target, "user.a", []byte("alpha"), 0); err != nil {
			t.Fatalf("setxattr: %v", err)
		}
		if err := unix.Setxattr(target, "user.big", big, unix.XATTR_CREATE); err != nil {
			t.Fatalf("setxattr big: %v", err)
		}
		if err := unix.Setxattr(target, "user.a", []byte("again"), unix.XATTR_CREATE); err != unix.EEXIST {
			t.Errorf("XATTR_CREATE on existing: %v, want EEXIST", err)
		}
		if err := unix.Setxattr(target, "user.none", []byte("x"), unix.XATTR_REPLACE); err != unix.ENODATA {
			t.Errorf("XATTR_REPLACE on missing: %v, want ENODATA", err)
		}
		if err := unix.Setxattr(target, "user.a", []byte("replaced"), unix.XATTR_REPLACE); err != nil {
			t.Errorf("XATTR_REPLACE on existing: %v", err)
		}
		if err := unix.Setxattr(target, "user.empty", nil, 0); err != nil {
			t.Errorf("empty value: %v", err)
		}
		buf := make([]byte, 100000)
		if n, err := unix.Getxattr(target, "user.a", buf); err != nil || string(buf[:n]) != "replaced" {
			t.Errorf("getxattr: %q %v", buf[:n], err)
		}
		if n, err := unix.Getxattr(target, "user.a", nil); err != nil || n != len("replaced") {
			t.Errorf("getxattr size query: %d %v", n, err)
		}
		if _, err := unix.Getxattr(target, "user.a", make([]byte, 2)); err != unix.ERANGE {
			t.Errorf("getxattr small buffer: %v, want ERANGE", err)
		}
		if n, err := unix.Getxattr(target, "user.big", buf); err != nil || !bytes.Equal(buf[:n], big) {
			t.Errorf("getxattr big: %d %v", n, err)
		}
		if _, err := unix.Getxattr(target, "user.none", buf); err != unix.ENODATA {
			t.Errorf("getxattr missing: %v, want ENODATA", err)
		}
		if err := unix.Removexattr(target, "user.big"); err != nil {
			t.Errorf("removexattr: %v", err)
		}
		if err := unix.Removexattr(target, "user.big"); err != unix.ENODATA {
			t.Errorf("removexattr missing: %v, want ENODATA", err)
		}
	}
	m.remount()
	for _, target := range []string{p, m.path("d")} {
		buf := make([]byte, 1000)
		n, err := unix.Listxattr(target, buf)
		if err != nil {
			t.Fatal(err)
		}
		names := strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00")
		if strings.Join(names, ",") != "user.a,user.empty" {
			t.Errorf("listxattr after remount: %q", names)
		}
		if n, err := unix.Getxattr(target, "user.a", buf); err != nil || string(buf[:n]) != "replaced" {
			t.Errorf("getxattr after remount: %q %v", buf[:n], err)
		}
	}
	// getfattr (attr package) sees the same.
	if _, err := exec.LookPath("getfattr"); err == nil {
		out, err := exec.Command("getfattr", "-d", p).CombinedOutput()
		if err != nil || !strings.Contains(string(out), `user.a="replaced"`) {
			t.Errorf("getfattr -d: %v\n%s", err, out)
		}
	}
}

// TestBigDirectory lists a directory of 100k entries (LMFS_BIGDIR_N to change) completely,
// then checks that a listing in progress survives creations and deletions: every entry that
// existed throughout is seen exactly once.
func TestBigDirectory(t *testing.T) {
	n := 100000
	if s := os.Getenv("LMFS_BIGDIR_N"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	if testing.Short() {
		n = 10000
	}
	m := mountStore(t, newStore(t))
	dir := m.path("big")
	os.Mkdir(dir, 0o755)
	name := func(i int) string { return fmt.Sprintf("entry-%06d-%s", i, strings.Repeat("n", i%40)) }
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += 4 {
				if err := syscall.Mknod(filepath.Join(dir, name(i)), syscall.S_IFREG|0o644, 0); err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("created %d entries in %v", n, time.Since(start))

	list := func(f *os.File, max int) []string {
		var out []string
		for max < 0 || len(out) < max {
			ents, err := f.ReadDir(1000)
			for _, e := range ents {
				out = append(out, e.Name())
			}
			if err == io.EOF || len(ents) == 0 {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	start = time.Now()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	all := list(f, -1)
	f.Close()
	t.Logf("listed %d entries in %v", len(all), time.Since(start))
	seen := map[string]int{}
	for _, e := range all {
		seen[e]++
	}
	for i := 0; i < n; i++ {
		if c := seen[name(i)]; c != 1 {
			t.Fatalf("entry %s seen %d times in a full listing", name(i), c)
		}
	}
	if len(all) != n {
		t.Fatalf("listing has %d entries, want %d", len(all), n)
	}

	// Interrupted listing: read half, mutate, continue.
	f, err = os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	first := list(f, n/2)
	deleted := map[string]bool{}
	for i := 0; i < n; i += 50 { // delete 2% of the entries, spread over seen and unseen ones
		os.Remove(filepath.Join(dir, name(i)))
		deleted[name(i)] = true
	}
	for i := 0; i < n/50; i++ {
		writeFile(t, filepath.Join(dir, fmt.Sprintf("new-%d", i)), nil)
	}
	rest := list(f, -1)
	count := map[string]int{}
	for _, e := range append(first, rest...) {
		count[e]++
	}
	for i := 0; i < n; i++ {
		nm := name(i)
		if !deleted[nm] && count[nm] != 1 {
			t.Fatalf("entry %s that existed throughout was seen %d times by a listing interrupted by creates/deletes", nm, count[nm])
		}
	}
	for nm, c := range count {
		if c > 1 {
			t.Fatalf("entry %s seen %d times", nm, c)
		}
	}
	// A fresh listing after the changes is exact.
	f2, _ := os.Open(dir)
	after := list(f2, -1)
	f2.Close()
	if want := n - len(deleted) + n/50; len(after) != want {
		t.Errorf("listing after changes has %d entries, want %d", len(after), want)
	}
}

func TestMmapShared(t *testing.T) {
	m := mountStore(t, newStore(t))
	p := m.path("mm")
	size := 5*2048 + 700
	orig := mixedData(3, size)
	writeFile(t, p, orig)
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	mem, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mem, orig) {
		t.Fatalf("mapped content: %s", firstDiff(mem, orig))
	}
	want := append([]byte(nil), orig...)
	for _, w := range []struct{ off, n int }{{0, 1}, {2040, 20}, {4096, 2048}, {size - 10, 10}, {7000, 300}} {
		for i := 0; i < w.n; i++ {
			v := byte(w.off + i*7 + 1)
			mem[w.off+i] = v
			want[w.off+i] = v
		}
	}
	if err := unix.Msync(mem, unix.MS_SYNC); err != nil {
		t.Fatalf("msync: %v", err)
	}
	if err := syscall.Munmap(mem); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, size+10)
	n, _ := f.ReadAt(got, 0)
	f.Close()
	if !bytes.Equal(got[:n], want) {
		t.Fatalf("read(2) after msync: %s", firstDiff(got[:n], want))
	}
	m.remount()
	if got := readFile(t, p); !bytes.Equal(got, want) {
		t.Fatalf("after remount: %s", firstDiff(got, want))
	}
}

func TestSparse(t *testing.T) {
	m := mountStore(t, newStore(t))
	p := m.path("sparse")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	head := textData(4, 3000) // no zero blocks: those would be holes too
	f.Write(head)
	const far = 64 << 20
	if _, err := f.Seek(far, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	tail := textData(5, 5000)
	if _, err := f.Write(tail); err != nil {
		t.Fatal(err)
	}
	fd := int(f.Fd())
	size := int64(far + len(tail))
	if st, _ := f.Stat(); st.Size() != size {
		t.Fatalf("size %d, want %d", st.Size(), size)
	}
	checks := []struct {
		off    int64
		whence int
		want   int64
	}{
		{0, unix.SEEK_DATA, 0},
		{0, unix.SEEK_HOLE, 4096}, // the first hole starts after the block holding byte 2999
		{5000, unix.SEEK_DATA, far},
		{far + 10, unix.SEEK_DATA, far + 10},
		{far, unix.SEEK_HOLE, size},
	}
	for _, c := range checks {
		got, err := unix.Seek(fd, c.off, c.whence)
		// A hole may start anywhere from the end of the data to the end of its block.
		if c.whence == unix.SEEK_HOLE && c.off == 0 {
			if err != nil || got < 3000 || got > 4096 {
				t.Errorf("SEEK_HOLE from 0: %d %v, want in [3000, 4096]", got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("lseek(%d, %d): %d %v, want %d", c.off, c.whence, got, err, c.want)
		}
	}
	if _, err := unix.Seek(fd, size, unix.SEEK_DATA); err != unix.ENXIO {
		t.Errorf("SEEK_DATA at EOF: %v, want ENXIO", err)
	}
	f.Close()
	check := func() {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		buf := make([]byte, 1<<20)
		var off int64
		for {
			n, err := f.ReadAt(buf, off)
			chunk := buf[:n]
			for i, b := range chunk {
				pos := off + int64(i)
				var want byte
				switch {
				case pos < int64(len(head)):
					want = head[pos]
				case pos >= far:
					want = tail[pos-far]
				}
				if b != want {
					t.Fatalf("byte %d = %#x, want %#x", pos, b, want)
				}
			}
			off += int64(n)
			if err != nil {
				break
			}
		}
		if off != size {
			t.Fatalf("read %d bytes, want %d", off, size)
		}
	}
	check()
	st := m.stats()
	if st.Logical != size || st.Stored >= 16<<10 {
		t.Errorf("stats of a sparse file: logical %d (want %d), stored %d (want < 16 KiB)", st.Logical, size, st.Stored)
	}
	var sst syscall.Stat_t
	syscall.Stat(p, &sst)
	t.Logf("sparse: size %d, st_blocks %d, stored %d", sst.Size, sst.Blocks, st.Stored)
	m.remount()
	check()
}

func TestOExcl(t *testing.T) {
	m := mountStore(t, newStore(t))
	p := m.path("x")
	fd, err := syscall.Open(p, syscall.O_CREAT|syscall.O_EXCL|syscall.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	syscall.Close(fd)
	if _, err := syscall.Open(p, syscall.O_CREAT|syscall.O_EXCL|syscall.O_WRONLY, 0o600); err != syscall.EEXIST {
		t.Errorf("O_EXCL on existing file: %v, want EEXIST", err)
	}
	os.Symlink("x", m.path("lnk"))
	if _, err := syscall.Open(m.path("lnk"), syscall.O_CREAT|syscall.O_EXCL|syscall.O_WRONLY, 0o600); err != syscall.EEXIST {
		t.Errorf("O_EXCL on a symlink: %v, want EEXIST", err)
	}
	// Many racers, one winner.
	var wins int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fd, err := syscall.Open(m.path("race"), syscall.O_CREAT|syscall.O_EXCL|syscall.O_WRONLY, 0o600)
			if err == nil {
				syscall.Close(fd)
				mu.Lock()
				wins++
				mu.Unlock()
			} else if err != syscall.EEXIST {
				t.Errorf("O_EXCL racer: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Errorf("%d O_EXCL creators won, want 1", wins)
	}
}

// TestLocksAcrossProcesses: a POSIX write lock held by the test blocks another process.
func TestLocksAcrossProcesses(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed (needed as a second locking process)")
	}
	m := mountStore(t, newStore(t))
	p := m.path("lock")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lk := syscall.Flock_t{Type: syscall.F_WRLCK}
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk); err != nil {
		t.Fatal(err)
	}
	script := `import fcntl,sys
f=open(sys.argv[1],'r+')
try:
    fcntl.lockf(f, fcntl.LOCK_SH|fcntl.LOCK_NB); print("locked")
except OSError as e: print("busy", e.errno)`
	out, err := exec.Command(py, "-c", script, p).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "busy") {
		t.Errorf("second process locking a locked file: %v %s", err, out)
	}
	lk.Type = syscall.F_UNLCK
	syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk)
	out, _ = exec.Command(py, "-c", script, p).CombinedOutput()
	if !strings.HasPrefix(string(out), "locked") {
		t.Errorf("after unlock, second process: %s", out)
	}
}

// treeEntry is what snapshotTree records of one path.
type treeEntry struct {
	mode    fs.FileMode
	content string // file content or symlink target
}

func snapshotTree(t *testing.T, root string) map[string]treeEntry {
	t.Helper()
	out := map[string]treeEntry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		e := treeEntry{mode: info.Mode()}
		switch {
		case info.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			e.content = string(b)
		case info.Mode()&fs.ModeSymlink != 0:
			e.content, _ = os.Readlink(p)
		}
		if rel == "." {
			e.mode = 0 // the roots' modes may differ
		}
		out[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func compareTrees(t *testing.T, want, got map[string]treeEntry) {
	t.Helper()
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			t.Errorf("%s missing", p)
		case g.mode != w.mode:
			t.Errorf("%s: mode %v, want %v", p, g.mode, w.mode)
		case g.content != w.content:
			t.Errorf("%s: %s", p, firstDiff([]byte(g.content), []byte(w.content)))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s unexpected", p)
		}
	}
}

// makeTree writes a small source tree with text, binary, empty and sparse-ish files, dirs and
// a symlink.
func makeTree(t *testing.T, root string) {
	t.Helper()
	for i := 0; i < 30; i++ {
		dir := filepath.Join(root, fmt.Sprintf("dir%d", i%4), fmt.Sprintf("sub%d", i%3))
		os.MkdirAll(dir, 0o755)
		writeFile(t, filepath.Join(dir, fmt.Sprintf("file%d.txt", i)), mixedData(int64(100+i), i*997))
	}
	writeFile(t, filepath.Join(root, "empty"), nil)
	writeFile(t, filepath.Join(root, "zeros"), make([]byte, 50000))
	os.Chmod(filepath.Join(root, "zeros"), 0o600)
	os.Symlink("dir0/sub0/file0.txt", filepath.Join(root, "link"))
}

func run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t",
		"GIT_COMMITTER_EMAIL=t@t", "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

func TestTarAndGit(t *testing.T) {
	for _, tool := range []string{"tar", "git"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	src := t.TempDir()
	makeTree(t, src)
	want := snapshotTree(t, src)
	m := mountStore(t, newStore(t))
	dst := m.path("untarred")
	os.Mkdir(dst, 0o755)
	archive := filepath.Join(t.TempDir(), "a.tar")
	run(t, src, "tar", "-cf", archive, ".")
	run(t, dst, "tar", "-xf", archive)
	compareTrees(t, want, snapshotTree(t, dst))
	// And tar reading from the mount produces an archive that unpacks to the same tree.
	archive2 := m.path("b.tar")
	run(t, dst, "tar", "-cf", archive2, ".")
	back := t.TempDir()
	run(t, back, "tar", "-xf", archive2)
	compareTrees(t, want, snapshotTree(t, back))

	repo := m.path("repo")
	os.Mkdir(repo, 0o755)
	run(t, repo, "tar", "-xf", archive)
	run(t, repo, "git", "init", "-q")
	run(t, repo, "git", "add", "-A")
	run(t, repo, "git", "commit", "-q", "-m", "first")
	writeFile(t, filepath.Join(repo, "dir1/sub1/file1.txt"), []byte("changed\n"))
	run(t, repo, "git", "commit", "-q", "-am", "second")
	head := run(t, repo, "git", "rev-parse", "HEAD")
	repoTree := snapshotTree(t, repo)

	m.remount()
	compareTrees(t, want, snapshotTree(t, dst))
	compareTrees(t, repoTree, snapshotTree(t, repo))
	run(t, repo, "git", "fsck", "--full", "--strict")
	if got := run(t, repo, "git", "rev-parse", "HEAD"); got != head {
		t.Errorf("HEAD after remount %s, want %s", got, head)
	}
	if st := run(t, repo, "git", "status", "--porcelain"); st != "" {
		t.Errorf("git status after remount not clean:\n%s", st)
	}
	if n := strings.Count(run(t, repo, "git", "log", "--oneline"), "\n"); n != 2 {
		t.Errorf("git log has %d commits, want 2", n)
	}
}

func TestSqlite(t *testing.T) {
	sq, err := exec.LookPath("sqlite3")
	if err != nil {
		t.Skip("sqlite3 not installed")
	}
	m := mountStore(t, newStore(t))
	db := m.path("db.sqlite")
	var sql strings.Builder
	sql.WriteString("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);\n")
	for i := 0; i < 20; i++ {
		sql.WriteString("BEGIN;")
		for j := 0; j < 100; j++ {
			fmt.Fprintf(&sql, "INSERT INTO t(v) VALUES('%s');", strings.Repeat(fmt.Sprint(i*j), 1+j%50))
		}
		sql.WriteString("COMMIT;\n")
	}
	sql.WriteString("DELETE FROM t WHERE id % 3 = 0; PRAGMA wal_checkpoint(TRUNCATE);\n")
	cmd := exec.Command(sq, db)
	cmd.Stdin = strings.NewReader(sql.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sqlite3: %v\n%s", err, out)
	}
	query := func() string {
		out, err := exec.Command(sq, db, "PRAGMA integrity_check; SELECT count(*), sum(length(v)) FROM t;").CombinedOutput()
		if err != nil {
			t.Fatalf("sqlite3 query: %v\n%s", err, out)
		}
		return string(out)
	}
	before := query()
	if !strings.HasPrefix(before, "ok\n1334|") {
		t.Fatalf("sqlite3 after inserts: %q", before)
	}
	m.remount()
	if after := query(); after != before {
		t.Errorf("sqlite3 after remount: %q, want %q", after, before)
	}
}
