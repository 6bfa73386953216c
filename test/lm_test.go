package test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Helpers shared by lm_test.go, fsck_test.go and fault_test.go.

// tinyModel copies the small test model to a temporary file (so a test can delete it to
// prove the store keeps its own copy) and returns its absolute path.
func tinyModel(t *testing.T) string {
	t.Helper()
	src, err := filepath.Abs(filepath.Join("..", "model", "testdata", "tiny.lmfsm"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatalf("test model: %v", err)
	}
	p := filepath.Join(t.TempDir(), "tiny.lmfsm")
	writeFile(t, p, b)
	return p
}

// fullStats is `lmfs stats --json` with the per-codec use and the mount's extras.
type fullStats struct {
	statsReport
	Codecs map[string]struct {
		Blocks int64 `json:"blocks"`
		Raw    int64 `json:"raw_bytes"`
		Stored int64 `json:"stored_bytes"`
	} `json:"codecs"`
	Extra     map[string]any `json:"extra"`
	Compactor *compactorJSON `json:"compactor"`
}

// compactorJSON is the part of stats' "compactor" object the tests use.
type compactorJSON struct {
	Running       bool     `json:"running"`
	PendingBlocks int64    `json:"pending_blocks"`
	PendingBytes  int64    `json:"pending_bytes"`
	DoneBlocks    int64    `json:"done_blocks"`
	DoneBytes     int64    `json:"done_bytes"`
	PercentDone   *float64 `json:"percent_done"`
	RateBytes     *float64 `json:"rate_bytes_per_second"`
	RateBlocks    *float64 `json:"rate_blocks_per_second"`
	ETASeconds    *float64 `json:"eta_seconds"`
	LMBlocks      *int64   `json:"lm_blocks"`
	FastBlocks    int64    `json:"fast_blocks"`
	BytesSaved    *int64   `json:"bytes_saved"`
	Skipped       int64    `json:"skipped_blocks"`
	BatchBlocks   int64    `json:"batch_blocks"`
	BatchSeconds  float64  `json:"batch_seconds"`
}

func fullStatsOf(t testing.TB, arg string) fullStats {
	t.Helper()
	out := mustLmfs(t, "stats", "--json", arg)
	var r fullStats
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("lmfs stats --json: %v\n%s", err, out)
	}
	if err := json.Unmarshal([]byte(out), &r.statsReport); err != nil {
		t.Fatal(err)
	}
	return r
}

// corpusDir is the shared evaluation corpus (real text and code), or "" (test skipped) when
// this checkout has none; with CI=true a missing corpus fails.
func corpusDir(t *testing.T) string {
	t.Helper()
	d, _ := filepath.Abs(filepath.Join("..", "..", "shared", "corpus", "dev"))
	if _, err := os.Stat(filepath.Join(d, "text")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but the corpus is missing: %v", err)
		}
		t.Skipf("no corpus at %s (../shared is not there): %v", d, err)
	}
	return d
}

// pickCorpus returns about perFolder bytes of whole files from each corpus folder
// (relative path -> content), in a fixed order, skipping files bigger than perFolder/2.
func pickCorpus(t *testing.T, perFolder int, folders ...string) map[string][]byte {
	t.Helper()
	root := corpusDir(t)
	out := map[string][]byte{}
	for _, f := range folders {
		var paths []string
		filepath.WalkDir(filepath.Join(root, f), func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				paths = append(paths, p)
			}
			return nil
		})
		sort.Strings(paths)
		total := 0
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil || len(b) == 0 || len(b) > perFolder/2 {
				continue
			}
			rel, _ := filepath.Rel(root, p)
			out[rel] = b
			if total += len(b); total >= perFolder {
				break
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("no corpus files found in %s %v", root, folders)
	}
	return out
}

// dropCaches drops the kernel's clean page cache, so the next reads go to the server.
func dropCaches(t *testing.T) {
	t.Helper()
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		t.Logf("cannot drop caches (%v); reads also use O_DIRECT", err)
	}
}

// readDirect reads a whole file with O_DIRECT (every byte comes from the server).
func readDirect(p string) ([]byte, error) {
	var out []byte
	const chunk = 128 << 10
	for off := int64(0); ; off += chunk {
		b, err := preadDirect(p, off, chunk)
		if err != nil {
			return out, err
		}
		out = append(out, b...)
		if len(b) < chunk {
			return out, nil
		}
	}
}

// verifyFiles reads every file of want below root twice (after dropping caches, and with
// O_DIRECT) and fails the test on any difference.
func verifyFiles(t *testing.T, root string, want map[string][]byte, when string) {
	t.Helper()
	dropCaches(t)
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := filepath.Join(root, n)
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("%s: reading %s: %v", when, n, err)
		}
		if !bytes.Equal(got, want[n]) {
			t.Fatalf("%s: %s read back different: %s", when, n, firstDiff(got, want[n]))
		}
		got, err = readDirect(p)
		if err != nil {
			t.Fatalf("%s: O_DIRECT read of %s: %v", when, n, err)
		}
		if !bytes.Equal(got, want[n]) {
			t.Fatalf("%s: %s read back different with O_DIRECT: %s", when, n, firstDiff(got, want[n]))
		}
	}
}

// copyIn writes every file of files below root (creating folders) and fsyncs them.
func copyIn(t *testing.T, root string, files map[string][]byte) {
	t.Helper()
	for n, b := range files {
		p := filepath.Join(root, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(b); err != nil {
			t.Fatalf("write %s: %v", n, err)
		}
		if err := f.Sync(); err != nil {
			t.Fatalf("fsync %s: %v", n, err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// fsckClean runs `lmfs fsck` on an unmounted store and fails the test unless it is clean.
func fsckClean(t *testing.T, store, when string) {
	t.Helper()
	r := lmfs(t, "fsck", store)
	if r.code != 0 || !strings.Contains(r.stdout, "clean") {
		t.Fatalf("%s: lmfs fsck exit %d, want a clean store (exit 0)\nstdout: %s\nstderr: %s", when, r.code, r.stdout, r.stderr)
	}
}

// needLMEncoder fails when the mount cannot code LM blocks (no ONNX Runtime found).
func needLMEncoder(t *testing.T, st fullStats) {
	t.Helper()
	if model, _ := st.Extra["model"].(string); model == "" || strings.Contains(model, "decode only") || strings.HasPrefix(model, "none") {
		t.Fatalf("the mount cannot code LM blocks (model %q, backend %v): ONNX Runtime missing? run `make ort`", st.Extra["model"], st.Extra["model_backend"])
	}
}

// TestLMThroughMount copies real text and code into a mount with the tiny model, lets the
// compactor recode everything, and checks that LM blocks were chosen, nothing is pending,
// and every file reads back byte-identical straight from the store: on the same mount,
// after a remount, and after a remount without --model (the store keeps its own copy of the
// model; the model file is deleted first). fsck finds the store clean.
func TestLMThroughMount(t *testing.T) {
	needFUSE(t)
	files := pickCorpus(t, 160<<10, "code", "text")
	total := 0
	for _, b := range files {
		total += len(b)
	}
	t.Logf("%d corpus files, %d bytes", len(files), total)
	model := tinyModel(t)
	store := newStore(t)
	dir := newMountDir(t)
	m := mountAt(t, store, dir, "--model", model)
	needLMEncoder(t, fullStatsOf(t, m.dir))
	copyIn(t, m.dir, files)
	start := time.Now()
	mustLmfs(t, "compact", "--wait", m.dir)
	st := fullStatsOf(t, m.dir)
	t.Logf("compacted in %s: %d blocks, stored %d of %d; codecs %+v", time.Since(start).Round(time.Millisecond), st.Blocks, st.Stored, st.Logical, st.Codecs)
	if st.Pending != 0 {
		t.Fatalf("after compact --wait: %d blocks still pending", st.Pending)
	}
	if st.Codecs["lm"].Blocks == 0 {
		t.Fatalf("no block of %d bytes of real text and code was stored with the model (codecs %+v)", total, st.Codecs)
	}
	if st.Codecs["s2"].Blocks != 0 {
		t.Errorf("%d blocks still coded with the write path's S2 after compaction", st.Codecs["s2"].Blocks)
	}
	if st.Logical != int64(total) {
		t.Errorf("stats logical %d, wrote %d", st.Logical, total)
	}
	verifyFiles(t, m.dir, files, "after compaction")

	m.umount()
	mountAt(t, store, dir, "--model", model)
	verifyFiles(t, dir, files, "after a remount with --model")
	lmBlocks := fullStatsOf(t, dir).Codecs["lm"].Blocks
	if lmBlocks != st.Codecs["lm"].Blocks {
		t.Errorf("lm blocks %d after remount, %d before", lmBlocks, st.Codecs["lm"].Blocks)
	}
	mustLmfs(t, "umount", dir)

	// Without --model, and with the model file gone.
	if err := os.Remove(model); err != nil {
		t.Fatal(err)
	}
	mountAt(t, store, dir)
	verifyFiles(t, dir, files, "after a remount without --model (model file deleted)")
	mustLmfs(t, "umount", dir)
	fsckClean(t, store, "after the LM round trip")
	// An unmounted store's stats agree.
	if st2 := fullStatsOf(t, store); st2.Codecs["lm"].Blocks != lmBlocks || st2.Pending != 0 {
		t.Errorf("unmounted stats: lm %d pending %d; want lm %d pending 0", st2.Codecs["lm"].Blocks, st2.Pending, lmBlocks)
	}
}

// TestCompactorRace overwrites and reads blocks from several goroutines while the compactor
// (with the model: slow batches, a wide window) recodes a large set of pending blocks. Every
// read must return what was last written; afterwards, once the compactor is done, every file
// equals the last writes (a write made while its block was being recoded must win), also
// after a remount, and fsck is clean.
func TestCompactorRace(t *testing.T) {
	needFUSE(t)
	model := tinyModel(t)
	store := newStore(t)
	m := mountAt(t, store, newMountDir(t), "--model", model)
	needLMEncoder(t, fullStatsOf(t, m.dir))

	const nfiles, fsize = 4, 160 << 10 // 320 blocks pending: two batches of the compactor
	type file struct {
		mu   sync.RWMutex
		path string
		want []byte
	}
	files := make([]*file, nfiles)
	for i := range files {
		f := &file{path: m.path(fmt.Sprintf("f%d", i)), want: textData(int64(1000+i), fsize)}
		writeFile(t, f.path, f.want)
		files[i] = f
	}
	st0 := fullStatsOf(t, m.dir)
	t.Logf("pending at start: %d blocks", st0.Pending)

	var stop atomic.Bool
	var writes, reads atomic.Int64
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := newRand(int64(77 + w))
			for i := 0; !stop.Load(); i++ {
				f := files[r.IntN(nfiles)]
				var off, n int
				switch r.IntN(3) {
				case 0: // a whole block
					off, n = r.IntN(fsize/2048)*2048, 2048
				case 1: // a few bytes inside a block
					off, n = r.IntN(fsize-64), 1+r.IntN(63)
				default: // across block boundaries
					off = r.IntN(fsize - 6000)
					n = 2049 + r.IntN(3000)
				}
				data := make([]byte, n)
				if r.IntN(2) == 0 {
					fillText(r, data)
				} else {
					fillRandom(r, data)
				}
				f.mu.Lock()
				h, err := os.OpenFile(f.path, os.O_WRONLY, 0)
				if err == nil {
					_, err = h.WriteAt(data, int64(off))
					if cerr := h.Close(); err == nil {
						err = cerr
					}
				}
				if err == nil {
					copy(f.want[off:], data)
				}
				f.mu.Unlock()
				if err != nil {
					errs <- fmt.Errorf("writer %d: %s at %d+%d: %v", w, f.path, off, n, err)
					return
				}
				writes.Add(1)
				time.Sleep(time.Duration(1+r.IntN(4)) * time.Millisecond)
			}
		}(w)
	}
	for rd := 0; rd < 3; rd++ {
		wg.Add(1)
		go func(rd int) {
			defer wg.Done()
			r := newRand(int64(500 + rd))
			for !stop.Load() {
				fi := r.IntN(nfiles)
				f := files[fi]
				off := r.IntN(fsize/2048) * 2048
				n := min(fsize-off, 2048*(1+r.IntN(8)))
				f.mu.RLock()
				got, err := preadDirect(f.path, int64(off), n)
				var want []byte
				if err == nil {
					want = append([]byte(nil), f.want[off:off+n]...)
				}
				f.mu.RUnlock()
				if err != nil {
					errs <- fmt.Errorf("reader %d: %s at %d+%d: %v", rd, f.path, off, n, err)
					return
				}
				if !bytes.Equal(got, want) {
					errs <- fmt.Errorf("reader %d: f%d at %d+%d during compaction: %s", rd, fi, off, n, firstDiff(got, want))
					return
				}
				reads.Add(1)
			}
		}(rd)
	}
	// Race for at least 3s and until the compactor has recoded as many blocks as were
	// pending at the start (overwrites make blocks pending again); with -short, until one
	// of its batches has finished with an overwrite skipped. No fixed limit: one batch of
	// LM recoding took over 15s under GOMAXPROCS=1 on 2 loaded cores, where the race was
	// then cut before it had happened. The deadline leaves the rest of the test its time.
	raceStart := time.Now()
	deadline := raceStart.Add(3 * time.Minute)
	if d, ok := t.Deadline(); ok && d.Add(-2*time.Minute).Before(deadline) {
		deadline = d.Add(-2 * time.Minute)
	}
	var st fullStats
	var done, skipped int64
	for time.Now().Before(deadline) && len(errs) == 0 {
		time.Sleep(300 * time.Millisecond)
		st = fullStatsOf(t, m.dir)
		done, skipped = compactorCounts(st)
		raced := done >= st0.Pending || (testing.Short() && done > 0 && skipped > 0)
		if raced && time.Since(raceStart) > 3*time.Second {
			break
		}
	}
	t.Logf("raced for %s", time.Since(raceStart).Round(time.Millisecond))
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d writes, %d reads while racing; compactor: %v", writes.Load(), reads.Load(), st.Compactor)
	if done == 0 {
		t.Fatalf("the compactor recoded nothing while racing (pending %d, was %d)", st.Pending, st0.Pending)
	}
	if skipped == 0 {
		t.Errorf("no overwrite hit a block while the compactor recoded it (%d blocks recoded): the race was not exercised", done)
	}
	if writes.Load() < 20 || reads.Load() < 20 {
		t.Fatalf("too little traffic during compaction: %d writes, %d reads", writes.Load(), reads.Load())
	}

	mustLmfs(t, "compact", "--wait", m.dir)
	st = fullStatsOf(t, m.dir)
	if st.Pending != 0 {
		t.Fatalf("%d blocks pending after compact --wait", st.Pending)
	}
	t.Logf("after compaction: codecs %+v; %v", st.Codecs, st.Compactor)
	want := map[string][]byte{}
	for i, f := range files {
		want[fmt.Sprintf("f%d", i)] = f.want
	}
	verifyFiles(t, m.dir, want, "after racing the compactor")
	m.remount()
	verifyFiles(t, m.dir, want, "after racing the compactor and a remount")
	m.umount()
	fsckClean(t, store, "after racing the compactor")
}

// compactorCounts reads blocks recoded and blocks skipped (overwritten while being recoded)
// from a mount's stats.
func compactorCounts(st fullStats) (done, skipped int64) {
	if c := st.Compactor; c != nil {
		return c.DoneBlocks, c.Skipped
	}
	return 0, 0
}

// TestKill9DuringCompaction kills the mount server with SIGKILL while its compactor recodes
// fsync'ed files with the model. After a remount every fsync'ed file reads back intact, the
// compactor finishes the rest, and fsck finds the store clean.
func TestKill9DuringCompaction(t *testing.T) {
	needFUSE(t)
	model := tinyModel(t)
	store := newStore(t)
	m := mountForeground(t, store, "--model", model)
	want := map[string][]byte{}
	for i := 0; i < 8; i++ {
		want[fmt.Sprintf("d%d/f%d", i%2, i)] = mixedData(int64(300+i), 100<<10+i*20000)
	}
	copyIn(t, m.dir, want)
	for _, d := range []string{m.path("d0"), m.path("d1"), m.dir} {
		df, err := os.Open(d)
		if err != nil {
			t.Fatal(err)
		}
		if err := df.Sync(); err != nil {
			t.Fatalf("fsync dir %s: %v", d, err)
		}
		df.Close()
	}
	// Wait until the compactor has recoded some blocks and still has work left.
	var st fullStats
	deadline := time.Now().Add(60 * time.Second)
	for {
		st = fullStatsOf(t, m.dir)
		if done, _ := compactorCounts(st); done > 0 && st.Pending > 0 {
			break
		}
		if st.Pending == 0 || time.Now().After(deadline) {
			t.Fatalf("never saw the compactor mid-way (pending %d, compactor %v)", st.Pending, st.Compactor)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("killing the server while compacting: pending %d, %v", st.Pending, st.Compactor)
	m.kill9()
	if err := exec.Command("umount", "-l", m.dir).Run(); err != nil {
		t.Logf("umount -l: %v", err)
	}
	if isMounted(m.dir) {
		t.Fatalf("%s still mounted after the server died and umount -l", m.dir)
	}

	m2 := mountAt(t, store, m.dir, "--model", model)
	verifyFiles(t, m2.dir, want, "after kill -9 during compaction")
	st = fullStatsOf(t, m2.dir)
	if st.Files != int64(len(want)) {
		t.Errorf("stats: %d files after recovery, want %d", st.Files, len(want))
	}
	mustLmfs(t, "compact", "--wait", m2.dir)
	verifyFiles(t, m2.dir, want, "after kill -9 and the compactor finishing")
	m2.umount()
	fsckClean(t, store, "after kill -9 during compaction and a remount")
}
