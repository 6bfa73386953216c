package test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
)

// storeDigest hashes every file of a store directory (except the log and the socket), to
// prove a refused command left it untouched.
func storeDigest(t *testing.T, store string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	err := filepath.WalkDir(store, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || d.Name() == "lmfs.log" || d.Name() == "lmfs.sock" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out[strings.TrimPrefix(p, store)] = sha256.Sum256(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameDigest(a, b map[string][32]byte) string {
	var diffs []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			diffs = append(diffs, k+" removed")
		} else if w != v {
			diffs = append(diffs, k+" changed")
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			diffs = append(diffs, k+" added")
		}
	}
	sort.Strings(diffs)
	return strings.Join(diffs, ", ")
}

// TestReadOnlyStore: a store lmfs cannot write (immutable files, or a read-only bind mount
// of the store directory; root ignores permission bits) is refused by `lmfs mount` with one
// clear line and a non-zero exit, in the background and in the foreground; nothing in the
// store changes, and once writable again it mounts with its data intact.
func TestReadOnlyStore(t *testing.T) {
	needFUSE(t)
	store := newStore(t)
	m := mountStore(t, store)
	data := textData(42, 50000)
	writeFile(t, m.path("f"), data)
	m.umount()
	before := storeDigest(t, store)

	tryMount := func(t *testing.T, storeArg, how string) {
		t.Helper()
		for _, fg := range []bool{false, true} {
			dir := newMountDir(t)
			args := []string{"mount", storeArg, dir}
			if fg {
				args = []string{"mount", "-f", storeArg, dir}
			}
			r := lmfs(t, args...)
			msg := strings.TrimSpace(r.stderr)
			t.Logf("%s: lmfs %s: exit %d: %s", how, strings.Join(args[:len(args)-2], " "), r.code, msg)
			if isMounted(dir) {
				exec.Command("umount", "-l", dir).Run()
				t.Errorf("%s: lmfs %v mounted a store it cannot write", how, args)
				continue
			}
			if r.code == 0 {
				t.Errorf("%s: lmfs %v exited 0 without mounting", how, args)
			}
			if msg == "" || strings.Contains(msg, "\n") {
				t.Errorf("%s: lmfs %v: want one line on stderr, got %q", how, args, msg)
			}
			if !strings.Contains(msg, "read-only") && !strings.Contains(msg, "not permitted") && !strings.Contains(msg, "permission") {
				t.Errorf("%s: lmfs %v: the message %q does not say the store cannot be written", how, args, msg)
			}
		}
	}

	t.Run("chattr+i", func(t *testing.T) {
		if _, err := exec.LookPath("chattr"); err != nil {
			t.Skip("no chattr")
		}
		if out, err := exec.Command("chattr", "-R", "+i", store).CombinedOutput(); err != nil {
			exec.Command("chattr", "-R", "-i", store).Run()
			t.Skipf("chattr +i not supported here: %v %s", err, out)
		}
		defer exec.Command("chattr", "-R", "-i", store).Run()
		tryMount(t, store, "immutable store")
	})
	t.Run("read-only bind mount", func(t *testing.T) {
		ro := filepath.Join(t.TempDir(), "ro")
		if err := os.Mkdir(ro, 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("mount", "--bind", store, ro).CombinedOutput(); err != nil {
			t.Skipf("bind mount: %v %s", err, out)
		}
		defer exec.Command("umount", ro).Run()
		if out, err := exec.Command("mount", "-o", "remount,bind,ro", ro).CombinedOutput(); err != nil {
			t.Skipf("remount ro: %v %s", err, out)
		}
		tryMount(t, ro, "read-only bind mount")
		// Reading a read-only store works: stats opens it read-only.
		if st := statsOf(t, ro); st.Files != 1 || st.Logical != int64(len(data)) {
			t.Errorf("stats of the read-only store: %+v", st)
		}
	})

	if d := sameDigest(before, storeDigest(t, store)); d != "" {
		t.Errorf("the refused mounts changed the store: %s", d)
	}
	m = mountAt(t, store, m.dir)
	if got := readFile(t, m.path("f")); !bytes.Equal(got, data) {
		t.Errorf("file after the refused mounts: %s", firstDiff(got, data))
	}
	m.umount()
	fsckClean(t, store, "after the refused mounts")
}

// flipBytes XORs n bytes at each of the offsets of file p.
func flipBytes(t *testing.T, p string, offsets []int64, n int) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, off := range offsets {
		b := make([]byte, n)
		if _, err := f.ReadAt(b, off); err != nil {
			t.Fatal(err)
		}
		for i := range b {
			b[i] ^= 0x5a
		}
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCorruptStoreFiles damages Badger's own files (.vlog: block records, inode records;
// .sst: keys, small values, value pointers) of an unmounted store, in the middle, and
// mounts it. Either the store refuses to open with one clear line (and fsck refuses too,
// exit 1), or it mounts and every read of every file gives the right bytes or EIO, never
// wrong bytes, no file silently vanishes, and the server survives; then fsck exits 1 if
// any read failed.
func TestCorruptStoreFiles(t *testing.T) {
	needFUSE(t)
	base := newStore(t)
	// --no-lm: the store keeps no model file (the default's 21 MB would fill value-log files of
	// their own), so the value log holds the files' records this test damages.
	m := mountAt(t, base, newMountDir(t), "--no-compact", "--no-lm")
	want := map[string][]byte{}
	for i := 0; i < 12; i++ {
		name := fmt.Sprintf("f%02d", i)
		want[name] = mixedData(int64(700+i), 20000+i*15000)
		writeFile(t, m.path(name), want[name])
	}
	m.umount()
	files := func(store, ext string) []string {
		ms, _ := filepath.Glob(filepath.Join(store, "*."+ext))
		sort.Strings(ms)
		return ms
	}
	if len(files(base, "vlog")) != 1 || len(files(base, "sst")) == 0 {
		t.Fatalf("base store should have one .vlog and some .sst files: %v %v", files(base, "vlog"), files(base, "sst"))
	}
	// The same store after one more mount: the data now sits in a value-log file that is
	// not the newest (Badger starts a new one at every open).
	cycled := copyStore(t, base)
	mustLmfs(t, "umount", mountAt(t, cycled, newMountDir(t), "--no-compact", "--no-lm").dir)
	if len(files(cycled, "vlog")) < 2 {
		t.Fatalf("after a second mount the store has value-log files %v; want 2 or more", files(cycled, "vlog"))
	}

	type damage struct {
		name  string
		store string
		ext   string
		which int // which file of that extension: 0 the first (oldest), -1 the last
		// offsets to damage in a file of size n
		at    func(n int64) []int64
		bytes int
	}
	spread := func(step int64) func(n int64) []int64 {
		return func(n int64) []int64 {
			var out []int64
			for off := n / 7; off < n-64; off += step {
				out = append(out, off)
			}
			return out
		}
	}
	middle := func(n int64) []int64 { return []int64{n / 2} }
	for _, d := range []damage{
		{"newest vlog middle", base, "vlog", -1, middle, 16},
		{"older vlog middle", cycled, "vlog", 0, middle, 16},
		{"older vlog every 40KB", cycled, "vlog", 0, spread(40000), 4},
		{"sst middle", base, "sst", -1, middle, 16},
		{"sst every 3KB", base, "sst", -1, spread(3000), 2},
	} {
		t.Run(d.name, func(t *testing.T) {
			store := copyStore(t, d.store)
			fl := files(store, d.ext)
			p := fl[0]
			if d.which < 0 {
				p = fl[len(fl)-1]
			}
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			flipBytes(t, p, d.at(st.Size()), d.bytes)
			damaged := storeDigest(t, store)
			dir := newMountDir(t)
			r := lmfs(t, "mount", store, dir)
			if r.code != 0 {
				msg := strings.TrimSpace(r.stderr)
				t.Logf("OUTCOME %s: the store refuses to mount: %s", d.name, msg)
				if msg == "" || strings.Contains(msg, "\n") {
					t.Errorf("refusal is not one line: %q", msg)
				}
				if isMounted(dir) {
					t.Fatalf("lmfs mount exit %d but %s is mounted", r.code, dir)
				}
				// A refused mount must leave the store as it was: what is not damaged can still be
				// read out by a later version or by hand.
				if diff := changedFiles(t, damaged, storeDigest(t, store), store); diff != "" {
					if strings.Contains(diff, ".vlog rewritten") {
						diff += " — Badger cuts the newest value-log file at its first damaged entry when it opens a store read-write, destroying every record written after the damage (a torn-tail repair applied to damage in the middle)"
					}
					t.Fatalf("the refused mount of a store with %d damaged bytes in %s changed the store (%s was %d bytes): %s", d.bytes*len(d.at(st.Size())), filepath.Base(p), filepath.Base(p), st.Size(), diff)
				}
				f := lmfs(t, "fsck", store)
				if f.code != 1 {
					t.Errorf("fsck of a store that refuses to mount: exit %d, want 1\n%s%s", f.code, f.stdout, f.stderr)
				}
				t.Logf("fsck: exit %d: %s%s", f.code, lastLines(f.stdout, 3), strings.TrimSpace(f.stderr))
				if diff := changedFiles(t, damaged, storeDigest(t, store), store); diff != "" {
					t.Fatalf("fsck of a damaged store changed it: %s", diff)
				}
				return
			}
			mm := &fsMount{t: t, store: store, dir: dir}
			t.Cleanup(mm.cleanup)
			mm.pid = mm.stats().PID
			var good, eio, lost, wrong int
			var problems []string
			names := make([]string, 0, len(want))
			for n := range want {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				w := want[n]
				p := filepath.Join(dir, n)
				var st syscall.Stat_t
				if err := syscall.Stat(p, &st); err != nil {
					if errors.Is(err, syscall.EIO) {
						eio++
					} else {
						lost++
						problems = append(problems, fmt.Sprintf("%s: stat: %v", n, err))
					}
					continue
				}
				if st.Size != int64(len(w)) {
					wrong++
					problems = append(problems, fmt.Sprintf("%s: size %d, want %d", n, st.Size, len(w)))
				}
				for blk := 0; blk*2048 < len(w); blk++ {
					k := min(2048, len(w)-blk*2048)
					got, err := preadDirect(p, int64(blk)*2048, k)
					switch {
					case errors.Is(err, syscall.EIO):
						eio++
					case err != nil:
						wrong++
						problems = append(problems, fmt.Sprintf("%s block %d: %v (want the data or EIO)", n, blk, err))
					case !bytes.Equal(got, w[blk*2048:blk*2048+k]):
						wrong++
						problems = append(problems, fmt.Sprintf("%s block %d: WRONG BYTES: %s", n, blk, firstDiff(got, w[blk*2048:blk*2048+k])))
					default:
						good++
					}
				}
			}
			// Files nobody wrote must not appear either.
			ents, err := os.ReadDir(dir)
			if err != nil && !errors.Is(err, syscall.EIO) {
				problems = append(problems, fmt.Sprintf("readdir: %v", err))
			}
			for _, e := range ents {
				if _, ok := want[e.Name()]; !ok {
					problems = append(problems, fmt.Sprintf("unexpected entry %q", e.Name()))
				}
			}
			alive := isMounted(dir) && syscall.Kill(mm.pid, 0) == nil && !zombie(mm.pid)
			t.Logf("OUTCOME %s: mounts; %d blocks right, %d EIO, %d wrong, %d files lost; server alive %v", d.name, good, eio, wrong, lost, alive)
			if !alive {
				b, _ := os.ReadFile(filepath.Join(store, "lmfs.log"))
				t.Fatalf("the mount server died reading a damaged store; log tail:\n%s", lastLines(string(b), 20))
			}
			for _, p := range problems {
				t.Errorf("%s: %s", d.name, p)
			}
			mm.umount()
			f := lmfs(t, "fsck", store)
			t.Logf("fsck: exit %d: %s%s", f.code, lastLines(f.stdout, 3), strings.TrimSpace(f.stderr))
			if (eio > 0 || len(problems) > 0) && f.code != 1 {
				t.Errorf("reads failed (%d EIO, %d other problems) but fsck exit %d, want 1", eio, len(problems), f.code)
			}
		})
	}
}

// changedFiles lists files of before that are gone or different now (new files are fine),
// with their sizes.
func changedFiles(t *testing.T, before, after map[string][32]byte, store string) string {
	t.Helper()
	var out []string
	for k, v := range before {
		w, ok := after[k]
		switch {
		case !ok:
			out = append(out, k+" deleted")
		case w != v:
			size := int64(-1)
			if st, err := os.Stat(filepath.Join(store, k)); err == nil {
				size = st.Size()
			}
			out = append(out, fmt.Sprintf("%s rewritten (now %d bytes)", k, size))
		}
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
