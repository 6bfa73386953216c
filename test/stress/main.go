// Command stress loads an lmfs mount with several processes of mixed file operations and then
// checks that everything survived: unmount, `lmfs fsck` (must be clean), remount, and a
// byte-for-byte comparison with what the workers know they left behind.
//
//	go build -o /tmp/stress ./test/stress && /tmp/stress -lmfs ./lmfs -duration 2m
//
// The parent mounts a fresh store and starts -procs child processes (this binary again, with
// -child); each child runs -workers goroutines. A worker owns two directories on the mount and
// keeps an in-memory model (name -> bytes) of the files in them. It creates, writes at random
// offsets and sizes (holes included), appends, truncates, renames (also across its two
// directories and over existing files), reads ranges and whole files (checked against the
// model), fsyncs and deletes. Any error and any read that differs from the model is counted
// as an error. At the end each worker writes its model to a reference directory outside the
// mount, which the parent compares with the remounted store.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

var (
	lmfsBin    = flag.String("lmfs", "./lmfs", "lmfs binary")
	duration   = flag.Duration("duration", 2*time.Minute, "how long the workers run")
	procs      = flag.Int("procs", 4, "worker processes")
	workers    = flag.Int("workers", 2, "goroutines per process")
	seed       = flag.Uint64("seed", uint64(time.Now().UnixNano()), "random seed")
	mountFlags = flag.String("mount-flags", "--no-lm", "extra flags for lmfs mount (space separated)")
	workDir    = flag.String("dir", "", "work directory (default: a new one in $TMPDIR, removed on success)")
	maxFiles   = flag.Int("max-files", 24, "files per worker at most")
	maxSize    = flag.Int("max-size", 1<<20, "file size at most (bytes)")

	child    = flag.Bool("child", false, "internal: run as a worker process")
	childDir = flag.String("child-dir", "", "internal: this process's directory on the mount")
	childRef = flag.String("child-ref", "", "internal: this process's reference directory")
	childID  = flag.Int("child-id", 0, "internal: process number")
)

// result is what a child reports (JSON on stdout).
type result struct {
	Ops    map[string]int64 `json:"ops"`
	Errors int64            `json:"errors"`
	Msgs   []string         `json:"messages,omitempty"`
}

func main() {
	flag.Parse()
	if *child {
		runChild()
		return
	}
	if err := runParent(); err != nil {
		fmt.Fprintln(os.Stderr, "stress: FAIL:", err)
		os.Exit(1)
	}
}

func runParent() error {
	bin, err := filepath.Abs(*lmfsBin)
	if err != nil {
		return err
	}
	work := *workDir
	if work == "" {
		if work, err = os.MkdirTemp("", "lmfs-stress-"); err != nil {
			return err
		}
	}
	store, mnt, ref := filepath.Join(work, "store"), filepath.Join(work, "mnt"), filepath.Join(work, "ref")
	for _, d := range []string{mnt, ref} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	lmfs := func(args ...string) (string, error) {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			return string(out), fmt.Errorf("lmfs %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
		return string(out), nil
	}
	mount := func() error {
		args := append([]string{"mount"}, strings.Fields(*mountFlags)...)
		_, err := lmfs(append(args, store, mnt)...)
		return err
	}
	mounted := false
	defer func() {
		if mounted {
			if _, err := lmfs("umount", mnt); err != nil {
				exec.Command("umount", "-l", mnt).Run()
			}
		}
	}()
	if err := mount(); err != nil {
		return err
	}
	mounted = true
	fmt.Printf("stress: %d processes x %d workers for %s on %s (seed %d, mount flags %q)\n",
		*procs, *workers, *duration, mnt, *seed, *mountFlags)

	self, err := os.Executable()
	if err != nil {
		return err
	}
	start := time.Now()
	results := make([]result, *procs)
	errs := make([]error, *procs)
	var wg sync.WaitGroup
	for p := 0; p < *procs; p++ {
		dir, pref := filepath.Join(mnt, fmt.Sprintf("p%d", p)), filepath.Join(ref, fmt.Sprintf("p%d", p))
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
		cmd := exec.Command(self, "-child", "-child-dir", dir, "-child-ref", pref, "-child-id", fmt.Sprint(p),
			"-duration", duration.String(), "-workers", fmt.Sprint(*workers), "-seed", fmt.Sprint(*seed),
			"-max-files", fmt.Sprint(*maxFiles), "-max-size", fmt.Sprint(*maxSize))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, os.Stderr
		if err := cmd.Start(); err != nil {
			return err
		}
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			if err := cmd.Wait(); err != nil {
				errs[p] = fmt.Errorf("process %d: %v", p, err)
			}
			if err := json.Unmarshal(out.Bytes(), &results[p]); err != nil && errs[p] == nil {
				errs[p] = fmt.Errorf("process %d: bad report: %v", p, err)
			}
		}(p)
	}
	wg.Wait()
	elapsed := time.Since(start)

	ops := map[string]int64{}
	var total, nerr int64
	for p, r := range results {
		for k, v := range r.Ops {
			ops[k] += v
			total += v
		}
		nerr += r.Errors
		for _, m := range r.Msgs {
			fmt.Printf("  p%d: %s\n", p, m)
		}
		if errs[p] != nil {
			fmt.Println(" ", errs[p])
			nerr++
		}
	}
	names := make([]string, 0, len(ops))
	for k := range ops {
		names = append(names, k)
	}
	sort.Strings(names)
	fmt.Printf("operations: %d in %s (%.0f ops/s), errors: %d\n", total, elapsed.Round(time.Millisecond),
		float64(total)/elapsed.Seconds(), nerr)
	for _, k := range names {
		fmt.Printf("  %-9s %9d\n", k, ops[k])
	}

	// Unmount, fsck, remount, compare.
	t := time.Now()
	if _, err := lmfs("umount", mnt); err != nil {
		return err
	}
	mounted = false
	out, err := lmfs("fsck", "--quiet", store)
	fmt.Printf("fsck (%s): %s", time.Since(t).Round(time.Millisecond), out)
	if err != nil || !strings.Contains(out, "clean") {
		return fmt.Errorf("fsck is not clean (work dir kept: %s)", work)
	}
	if err := mount(); err != nil {
		return err
	}
	mounted = true
	files, bytesCmp, diffs := compareTrees(ref, mnt)
	fmt.Printf("after remount: %d files, %d bytes compared byte for byte: %d differences\n", files, bytesCmp, len(diffs))
	for i, d := range diffs {
		if i == 20 {
			fmt.Printf("  ... %d more\n", len(diffs)-20)
			break
		}
		fmt.Println(" ", d)
	}
	if _, err := lmfs("umount", mnt); err != nil {
		return err
	}
	mounted = false
	if nerr > 0 || len(diffs) > 0 {
		return fmt.Errorf("%d errors, %d differences (work dir kept: %s)", nerr, len(diffs), work)
	}
	if *workDir == "" {
		os.RemoveAll(work)
	}
	fmt.Println("stress: PASS")
	return nil
}

// compareTrees compares every regular file under ref with the same path under mnt, and
// reports files on the mount that ref does not have.
func compareTrees(ref, mnt string) (files int, n int64, diffs []string) {
	want := map[string]bool{}
	filepath.WalkDir(ref, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(ref, p)
		want[rel] = true
		a, _ := os.ReadFile(p)
		b, err := os.ReadFile(filepath.Join(mnt, rel))
		files++
		n += int64(len(a))
		switch {
		case err != nil:
			diffs = append(diffs, fmt.Sprintf("%s: %v", rel, err))
		case !bytes.Equal(a, b):
			diffs = append(diffs, fmt.Sprintf("%s: %s", rel, firstDiff(b, a)))
		}
		return nil
	})
	filepath.WalkDir(mnt, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			diffs = append(diffs, fmt.Sprintf("walking the mount: %v", err))
			return nil
		}
		if d.IsDir() {
			return nil
		}
		if rel, _ := filepath.Rel(mnt, p); !want[rel] {
			diffs = append(diffs, fmt.Sprintf("%s: on the mount but deleted (or never made) by its worker", rel))
		}
		return nil
	})
	return
}

func firstDiff(got, want []byte) string {
	k := min(len(got), len(want))
	for i := 0; i < k; i++ {
		if got[i] != want[i] {
			return fmt.Sprintf("first difference at byte %d (lengths %d, want %d)", i, len(got), len(want))
		}
	}
	return fmt.Sprintf("lengths %d, want %d (common prefix equal)", len(got), len(want))
}

// --- worker processes ---

func runChild() {
	var mu sync.Mutex
	res := result{Ops: map[string]int64{}}
	var wg sync.WaitGroup
	deadline := time.Now().Add(*duration)
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			k := &worker{
				r:     rand.New(rand.NewPCG(*seed, uint64(*childID)<<16|uint64(w))),
				dirs:  [2]string{filepath.Join(*childDir, fmt.Sprintf("w%d", w)), filepath.Join(*childDir, fmt.Sprintf("w%d-b", w))},
				model: map[string][]byte{},
				ops:   map[string]int64{},
			}
			k.run(deadline)
			if err := k.saveModel(*childRef, *childDir); err != nil {
				k.fail("saving the model: %v", err)
			}
			mu.Lock()
			for op, n := range k.ops {
				res.Ops[op] += n
			}
			res.Errors += k.errors
			res.Msgs = append(res.Msgs, k.msgs...)
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	json.NewEncoder(os.Stdout).Encode(res)
}

type worker struct {
	r      *rand.Rand
	dirs   [2]string
	model  map[string][]byte // path -> contents
	ops    map[string]int64
	errors int64
	msgs   []string
	serial int
}

func (k *worker) fail(format string, a ...any) {
	k.errors++
	if len(k.msgs) < 10 {
		k.msgs = append(k.msgs, fmt.Sprintf(format, a...))
	}
}

func (k *worker) check(op string, err error) bool {
	if err != nil {
		k.fail("%s: %v", op, err)
		return false
	}
	return true
}

// pick returns a random existing file of the model ("" if none).
func (k *worker) pick() string {
	if len(k.model) == 0 {
		return ""
	}
	names := make([]string, 0, len(k.model))
	for n := range k.model {
		names = append(names, n)
	}
	sort.Strings(names)
	return names[k.r.IntN(len(names))]
}

func (k *worker) newName() string {
	k.serial++
	return filepath.Join(k.dirs[k.r.IntN(2)], fmt.Sprintf("f%05d", k.serial))
}

// data returns n bytes: compressible text, random bytes or zeros.
func (k *worker) data(n int) []byte {
	b := make([]byte, n)
	switch k.r.IntN(4) {
	case 0, 1:
		words := []string{"block ", "store ", "the ", "kernel ", "lmfs ", "model ", "write ", "of ", "data\n"}
		for i := 0; i < n; {
			i += copy(b[i:], words[k.r.IntN(len(words))])
		}
	case 2:
		for i := range b {
			b[i] = byte(k.r.Uint32())
		}
	}
	return b
}

func (k *worker) size() int {
	// Mostly small files, some up to max-size.
	if k.r.IntN(4) == 0 {
		return k.r.IntN(*maxSize + 1)
	}
	return k.r.IntN(64 << 10)
}

func (k *worker) run(deadline time.Time) {
	for _, d := range k.dirs {
		if err := os.Mkdir(d, 0o755); err != nil {
			k.fail("mkdir: %v", err)
			return
		}
	}
	for time.Now().Before(deadline) {
		p := k.pick()
		switch x := k.r.IntN(100); {
		case p == "" || (x < 12 && len(k.model) < *maxFiles):
			k.create()
		case x < 32:
			k.write(p)
		case x < 37:
			k.appendTo(p)
		case x < 43:
			k.truncate(p)
		case x < 51:
			k.rename(p)
		case x < 75:
			k.readRange(p)
		case x < 83:
			k.readAll(p)
		case x < 86:
			k.fsync(p)
		case x < 90:
			k.stat(p)
		default:
			k.remove(p)
		}
	}
}

func (k *worker) create() {
	k.ops["create"]++
	name := k.newName()
	b := k.data(k.size())
	f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if !k.check("create "+name, err) {
		return
	}
	k.model[name] = nil // exists (empty) from now on, whatever happens below
	if _, err := f.Write(b); k.check("create/write "+name, err) {
		k.model[name] = b
	}
	k.check("close "+name, f.Close())
}

func (k *worker) write(p string) {
	k.ops["write"]++
	old := k.model[p]
	off := k.r.IntN(len(old) + 1)
	if k.r.IntN(8) == 0 {
		off += k.r.IntN(64 << 10) // past the end: leaves a hole
	}
	n := 1 + k.r.IntN(64<<10)
	if off+n > *maxSize {
		if off >= *maxSize {
			off = k.r.IntN(*maxSize)
		}
		n = max(1, min(n, *maxSize-off))
	}
	b := k.data(n)
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if !k.check("open "+p, err) {
		return
	}
	defer func() { k.check("close "+p, f.Close()) }()
	if _, err := f.WriteAt(b, int64(off)); !k.check(fmt.Sprintf("write %s at %d (%d bytes)", p, off, n), err) {
		return
	}
	nb := old
	if off+n > len(nb) {
		nb = append(nb, make([]byte, off+n-len(nb))...)
	}
	copy(nb[off:], b)
	k.model[p] = nb
}

func (k *worker) appendTo(p string) {
	k.ops["append"]++
	if len(k.model[p]) >= *maxSize {
		return
	}
	b := k.data(1 + k.r.IntN(min(16<<10, *maxSize-len(k.model[p]))))
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if !k.check("open "+p, err) {
		return
	}
	if _, err := f.Write(b); k.check("append "+p, err) {
		k.model[p] = append(k.model[p], b...)
	}
	k.check("close "+p, f.Close())
}

func (k *worker) truncate(p string) {
	k.ops["truncate"]++
	n := k.r.IntN(len(k.model[p]) + 8192)
	n = min(n, *maxSize)
	if !k.check(fmt.Sprintf("truncate %s to %d", p, n), os.Truncate(p, int64(n))) {
		return
	}
	old := k.model[p]
	if n <= len(old) {
		k.model[p] = old[:n:n]
	} else {
		k.model[p] = append(old, make([]byte, n-len(old))...)
	}
}

func (k *worker) rename(p string) {
	k.ops["rename"]++
	to := k.newName()
	if k.r.IntN(3) == 0 {
		if q := k.pick(); q != p {
			to = q // over an existing file
		}
	}
	if !k.check(fmt.Sprintf("rename %s %s", p, to), os.Rename(p, to)) {
		return
	}
	k.model[to] = k.model[p]
	delete(k.model, p)
}

func (k *worker) readRange(p string) {
	k.ops["read"]++
	want := k.model[p]
	off := k.r.IntN(len(want) + 1)
	n := k.r.IntN(128 << 10)
	f, err := os.Open(p)
	if !k.check("open "+p, err) {
		return
	}
	defer f.Close()
	buf := make([]byte, n)
	got, err := f.ReadAt(buf, int64(off))
	if err != nil && !errors.Is(err, io.EOF) {
		k.fail("read %s at %d: %v", p, off, err)
		return
	}
	end := min(len(want), off+n)
	if !bytes.Equal(buf[:got], want[off:end]) {
		k.fail("read %s at %d (%d bytes): got %d bytes that differ from the model (%d)", p, off, n, got, end-off)
	}
}

func (k *worker) readAll(p string) {
	k.ops["readall"]++
	b, err := os.ReadFile(p)
	if !k.check("read "+p, err) {
		return
	}
	if want := k.model[p]; !bytes.Equal(b, want) {
		k.fail("read %s: %s", p, firstDiff(b, want))
	}
}

func (k *worker) fsync(p string) {
	k.ops["fsync"]++
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if !k.check("open "+p, err) {
		return
	}
	k.check("fsync "+p, f.Sync())
	k.check("close "+p, f.Close())
}

func (k *worker) stat(p string) {
	k.ops["stat"]++
	st, err := os.Stat(p)
	if !k.check("stat "+p, err) {
		return
	}
	if st.Size() != int64(len(k.model[p])) {
		k.fail("stat %s: size %d, model %d", p, st.Size(), len(k.model[p]))
	}
	for _, d := range k.dirs {
		if _, err := os.ReadDir(d); err != nil {
			k.fail("readdir %s: %v", d, err)
		}
	}
}

func (k *worker) remove(p string) {
	k.ops["delete"]++
	if k.check("unlink "+p, syscall.Unlink(p)) {
		delete(k.model, p)
	}
}

// saveModel writes the model under ref, with paths relative to base (the process's directory
// on the mount) kept, so the parent can compare trees.
func (k *worker) saveModel(ref, base string) error {
	for _, d := range k.dirs {
		rel, _ := filepath.Rel(base, d)
		if err := os.MkdirAll(filepath.Join(ref, rel), 0o755); err != nil {
			return err
		}
	}
	for p, b := range k.model {
		rel, _ := filepath.Rel(base, p)
		if err := os.WriteFile(filepath.Join(ref, rel), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
