package test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// What the mount tells du, df and `lmfs stats PATH` about the space files take.

// allocated is st_blocks*512 of p: what du counts.
func allocated(t *testing.T, p string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// duBytes runs du -s -B1 on p (the allocated bytes of the tree, as a user sees them).
func duBytes(t *testing.T, p string) int64 {
	t.Helper()
	out, err := exec.Command("du", "-s", "-B1", p).Output()
	if err != nil {
		t.Fatalf("du %s: %v", p, err)
	}
	n, err := strconv.ParseInt(strings.Fields(string(out))[0], 10, 64)
	if err != nil {
		t.Fatalf("du %s: %q", p, out)
	}
	return n
}

// pathStats is `lmfs stats --json PATH` of a file or directory inside a mount.
type pathStats struct {
	Path     string `json:"path"`
	Ino      uint64 `json:"inode"`
	Type     string `json:"type"`
	Files    int64  `json:"files"`
	Dirs     int64  `json:"dirs"`
	Symlinks int64  `json:"symlinks"`
	Logical  int64  `json:"logical_bytes"`
	Stored   int64  `json:"stored_bytes"`
	Blocks   int64  `json:"blocks"`
	Pending  int64  `json:"pending_blocks"`
	Codecs   map[string]struct {
		Blocks int64 `json:"blocks"`
		Raw    int64 `json:"raw_bytes"`
		Stored int64 `json:"stored_bytes"`
	} `json:"codecs"`
}

func pathStatsOf(t *testing.T, p string) pathStats {
	t.Helper()
	out := mustLmfs(t, "stats", "--json", p)
	var r pathStats
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("lmfs stats --json %s: %v\n%s", p, err, out)
	}
	return r
}

// TestDuShowsCompression: st_blocks is what a file's records take: raw records as written
// (a little more than the data: a header per block), less than the size once the compactor
// has coded the text, the same after a remount; du of the mount agrees.
func TestDuShowsCompression(t *testing.T) {
	needFUSE(t)
	store := newStore(t)
	m := mountStore(t, store, "--no-compact")
	const size = 600 << 10
	writeSynced(t, m.path("text"), textData(7, size))
	raw := allocated(t, m.path("text"))
	if raw < size || raw > size+size/100 {
		t.Errorf("a file of raw records: du says %d bytes for %d (want the data plus record headers)", raw, size)
	}
	dir := m.dir
	m.umount()
	m = mountAt(t, store, dir, "--no-lm")
	mustLmfs(t, "compact", "--wait", m.dir)
	after := allocated(t, m.path("text"))
	st := pathStatsOf(t, m.path("text"))
	t.Logf("du of %d bytes of text: %d raw, %d compacted (stored %d)", size, raw, after, st.Stored)
	if after >= size*3/4 {
		t.Errorf("compacted text: du says %d bytes for %d", after, size)
	}
	if want := (st.Stored + 511) / 512 * 512; after != want {
		t.Errorf("st_blocks*512 = %d, stats says %d bytes stored (rounded up: %d)", after, st.Stored, want)
	}
	if d := duBytes(t, m.dir); d < after || d > after+64<<10 {
		t.Errorf("du of the mount %d, the file alone %d", d, after)
	}
	m.umount()
	m = mountAt(t, store, dir, "--no-lm")
	if again := allocated(t, m.path("text")); again != after {
		t.Errorf("after a remount du says %d bytes, before %d", again, after)
	}
	if data := readFile(t, m.path("text")); string(data) != string(textData(7, size)) {
		t.Error("content differs after compaction and remount")
	}
}

// TestDuSparseFile: a hole takes nothing.
func TestDuSparseFile(t *testing.T) {
	needFUSE(t)
	m := mountStore(t, newStore(t), "--no-compact")
	p := m.path("sparse")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(textData(1, 4096), 10<<20); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// Two raw records of 2 KiB and their headers.
	if got := allocated(t, p); got == 0 || got > 8<<10 {
		t.Errorf("64 MiB file with 4 KiB of data: du says %d bytes", got)
	}
	empty := m.path("empty")
	writeFile(t, empty, nil)
	if got := allocated(t, empty); got != 0 {
		t.Errorf("empty file: du says %d bytes", got)
	}
}

// TestStatsPath: `lmfs stats PATH` of a file and of a directory inside a mount; for a store
// that holds only that tree, the tree's numbers are the store's.
func TestStatsPath(t *testing.T) {
	needFUSE(t)
	m := mountStore(t, newStore(t), "--no-lm")
	tree := m.path("tree")
	files := map[string][]byte{
		"a.txt":         textData(1, 300<<10),
		"sub/b.bin":     mixedData(2, 100<<10+17),
		"sub/deep/c":    textData(3, 5000),
		"sub/deep/zero": make([]byte, 64<<10),
		"small":         []byte("tiny"),
	}
	var logical int64
	for name, data := range files {
		p := filepath.Join(tree, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, p, data)
		logical += int64(len(data))
	}
	if err := os.Link(filepath.Join(tree, "a.txt"), filepath.Join(tree, "sub", "a-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a.txt", filepath.Join(tree, "sym")); err != nil {
		t.Fatal(err)
	}
	mustLmfs(t, "compact", "--wait", m.dir)

	whole := statsOf(t, m.dir)
	ts := pathStatsOf(t, tree)
	if ts.Type != "directory" || ts.Files != 5 || ts.Dirs != 3 || ts.Symlinks != 1 || ts.Logical != logical {
		t.Errorf("stats of the tree: %+v; want 5 files (a hard link once), 3 directories, 1 symlink, %d bytes", ts, logical)
	}
	// The store holds only the tree (and its root directory).
	if ts.Files != whole.Files || ts.Dirs+1 != whole.Dirs || ts.Logical != whole.Logical || ts.Stored != whole.Stored ||
		ts.Blocks != whole.Blocks || ts.Pending != whole.Pending {
		t.Errorf("stats of the only tree %+v, of the store %+v", ts, whole)
	}
	full := fullStatsOf(t, m.dir)
	for name, c := range full.Codecs {
		if got := ts.Codecs[name]; got != c {
			t.Errorf("codec %s: the tree %+v, the store %+v", name, got, c)
		}
	}
	var sum int64
	for name := range files {
		fs := pathStatsOf(t, filepath.Join(tree, name))
		if fs.Type != "file" || fs.Files != 1 || fs.Logical != int64(len(files[name])) {
			t.Errorf("stats of %s: %+v", name, fs)
		}
		if got := allocated(t, filepath.Join(tree, name)); got != (fs.Stored+511)/512*512 {
			t.Errorf("%s: st_blocks*512 %d, stats stored %d", name, got, fs.Stored)
		}
		sum += fs.Stored
	}
	if sum != ts.Stored {
		t.Errorf("the files store %d bytes, their tree %d", sum, ts.Stored)
	}
	if z := pathStatsOf(t, filepath.Join(tree, "sub/deep/zero")); z.Stored != 0 || z.Blocks != 0 {
		t.Errorf("an all-zero file stores %+v", z)
	}
	// The human form names the path and shows the table per codec.
	out := mustLmfs(t, "stats", filepath.Join(tree, "a.txt"))
	if !strings.Contains(out, "a.txt (file, inode") || !strings.Contains(out, "stored %") {
		t.Errorf("stats PATH:\n%s", out)
	}
	t.Logf("stats of the tree:\n%s", mustLmfs(t, "stats", tree))
	// The mount point itself is the store's report.
	if out := mustLmfs(t, "stats", m.dir); !strings.Contains(out, "store ") {
		t.Errorf("stats of the mount point:\n%s", out)
	}
	r := lmfs(t, "stats", filepath.Join(tree, "missing"))
	if r.code == 0 {
		t.Errorf("stats of a missing path succeeded: %s", r.stdout)
	}
}

// TestStatsPathOtherUser: on an allow_other mount, a user who can stat a file still cannot
// ask the store's mount about it (its control socket is the owner's): a clear permission error.
func TestStatsPathOtherUser(t *testing.T) {
	needFUSE(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root to run as another user")
	}
	shared, bin := sharedBin(t)
	mnt := filepath.Join(shared, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	m := mountAt(t, filepath.Join(shared, "store"), mnt, "--no-compact", "-o", "allow_other")
	writeFile(t, m.path("f"), textData(1, 10000))
	os.Chmod(m.dir, 0o755)
	out, err := asUser(65534, 65534, bin, "stats", m.path("f"))
	if err == nil || !strings.Contains(out, "permission denied") || strings.Count(strings.TrimSpace(out), "\n") > 0 {
		t.Errorf("stats PATH by another user: err %v, output %q", err, out)
	}
}

// TestStatsCompactorJSON: stats --json has the compactor's progress as numbers, and compact
// --wait reports progress on a pipe as lines.
func TestStatsCompactorJSON(t *testing.T) {
	needFUSE(t)
	store := newStore(t)
	m := mountStore(t, store, "--no-compact")
	writeFile(t, m.path("text"), textData(5, 1<<20))
	var raw struct {
		Compactor map[string]any `json:"compactor"`
	}
	out := mustLmfs(t, "stats", "--json", m.dir)
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"running", "pending_blocks", "pending_bytes", "done_blocks", "percent_done",
		"rate_bytes_per_second", "eta_seconds", "lm_blocks", "bytes_saved", "batch_blocks"} {
		if _, ok := raw.Compactor[k]; !ok {
			t.Errorf("stats --json: compactor has no %q: %v", k, raw.Compactor)
		}
	}
	if raw.Compactor["running"] != false || raw.Compactor["pending_blocks"].(float64) != 512 {
		t.Errorf("a mount with --no-compact: compactor %v", raw.Compactor)
	}
	r := lmfs(t, "compact", "--wait", m.dir)
	if r.code == 0 || !strings.Contains(r.stderr, "--no-compact") {
		t.Errorf("compact --wait on a mount that does not compact: exit %d, %q", r.code, r.stderr)
	}
	dir := m.dir
	m.umount()
	m = mountAt(t, store, dir, "--no-lm")
	r = lmfs(t, "compact", "--wait", m.dir)
	if r.code != 0 || !strings.Contains(r.stderr, "lmfs compact: 100% ") || strings.Contains(r.stderr, "\r") {
		t.Errorf("compact --wait on a pipe: exit %d, stderr %q (want lines, the last at 100%%)", r.code, r.stderr)
	}
	st := fullStatsOf(t, m.dir)
	c := st.Compactor
	if c == nil || st.Pending != 0 || c.PendingBlocks != 0 || c.PercentDone == nil || *c.PercentDone != 100 ||
		c.ETASeconds == nil || *c.ETASeconds != 0 || c.DoneBlocks == 0 || c.BytesSaved == nil || *c.BytesSaved <= 0 ||
		c.RateBytes == nil || *c.RateBytes <= 0 {
		t.Errorf("after compact --wait: pending %d, compactor %s", st.Pending, jsonOf(c))
	}
	text := mustLmfs(t, "stats", m.dir)
	for _, want := range []string{"pending    none", "on disk ", "compactor  "} {
		if !strings.Contains(text, want) {
			t.Errorf("stats has no %q:\n%s", want, text)
		}
	}
}

func jsonOf(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// TestDfOfMount: df shows the store's own space: used is what the store's files take on disk
// (stats' disk_bytes), available what new data may still take (the host's, less the reserve),
// size their sum.
func TestDfOfMount(t *testing.T) {
	needFUSE(t)
	store := newStore(t)
	m := mountStore(t, store, "--no-compact")
	writeSynced(t, m.path("f"), mixedData(3, 8<<20))
	var disk struct {
		Disk int64 `json:"disk_bytes"`
	}
	if err := json.Unmarshal([]byte(mustLmfs(t, "stats", "--json", m.dir)), &disk); err != nil {
		t.Fatal(err)
	}
	var fs, host syscall.Statfs_t
	if err := syscall.Statfs(m.dir, &fs); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Statfs(store, &host); err != nil {
		t.Fatal(err)
	}
	bs := int64(fs.Bsize)
	used := (int64(fs.Blocks) - int64(fs.Bfree)) * bs
	avail := int64(fs.Bavail) * bs
	t.Logf("df: size %d, used %d, avail %d; stats disk %d; host avail %d", int64(fs.Blocks)*bs, used, avail, disk.Disk, int64(host.Bavail)*int64(host.Bsize))
	// Badger and GC may change a few files between the two looks.
	if diff := used - disk.Disk; diff < -16<<20 || diff > 16<<20 {
		t.Errorf("df used %d, the store's files take %d", used, disk.Disk)
	}
	if used < 8<<20 {
		t.Errorf("df used %d after writing 8 MiB of incompressible data", used)
	}
	if hostAvail := int64(host.Bavail) * int64(host.Bsize); avail >= hostAvail || fs.Bfree != fs.Bavail {
		t.Errorf("df avail %d (free %d blocks, avail %d), the host's %d: want the host's less the reserve", avail, fs.Bfree, fs.Bavail, hostAvail)
	}
	out, err := exec.Command("df", "-B1", "--output=used,avail", m.dir).Output()
	if err != nil {
		t.Fatalf("df: %v", err)
	}
	t.Logf("df -B1 --output=used,avail:\n%s", out)
}
