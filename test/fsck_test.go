package test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"lmfs/blockstore"
)

// fsckFinding and fsckJSON are `lmfs fsck --json`.
type fsckFinding struct {
	Kind     string `json:"kind"`
	Path     string `json:"path"`
	Ino      uint64 `json:"ino"`
	Block    int64  `json:"block"`
	Detail   string `json:"detail"`
	Repaired bool   `json:"repaired"`
}

type fsckJSON struct {
	Inodes      int64         `json:"inodes"`
	Blocks      int64         `json:"blocks"`
	Full        bool          `json:"full"`
	LMUndecoded int64         `json:"lm_undecoded"`
	Findings    []fsckFinding `json:"findings"`
	Clean       bool          `json:"clean"`
}

// fsckRun runs `lmfs fsck --json [--repair] [extra...] store` and parses its report.
func fsckRun(t *testing.T, store string, repair bool, extra ...string) (fsckJSON, result) {
	t.Helper()
	args := []string{"fsck", "--json"}
	if repair {
		args = append(args, "--repair")
	}
	args = append(args, extra...)
	r := lmfs(t, append(args, store)...)
	var rep fsckJSON
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("lmfs %s: exit %d, output is not a report: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, err, r.stdout, r.stderr)
	}
	return rep, r
}

func (r fsckJSON) find(kind string) []fsckFinding {
	var out []fsckFinding
	for _, f := range r.Findings {
		if f.Kind == kind {
			out = append(out, f)
		}
	}
	return out
}

func (r fsckJSON) String() string {
	b, _ := json.Marshal(r.Findings)
	return string(b)
}

// copyStore copies an unmounted store directory.
func copyStore(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "store")
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -a %s: %v %s", src, err, out)
	}
	os.Remove(filepath.Join(dst, "lmfs.sock"))
	return dst
}

// inoOf is the inode number of a path on a mount.
func inoOf(t *testing.T, p string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func keyU64Of(tag byte, n uint64) []byte {
	k := make([]byte, 9)
	k[0] = tag
	binary.BigEndian.PutUint64(k[1:], n)
	return k
}

func keyU64U64Of(tag byte, a, b uint64) []byte {
	k := keyU64Of(tag, a)
	return binary.BigEndian.AppendUint64(k, b)
}

func getKey(t *testing.T, db *badger.DB, k []byte) []byte {
	t.Helper()
	var v []byte
	err := db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(k)
		if err != nil {
			return err
		}
		v, err = it.ValueCopy(nil)
		return err
	})
	if err != nil {
		t.Fatalf("get key %q: %v", k, err)
	}
	return v
}

func hasKeyIn(t *testing.T, db *badger.DB, k []byte) bool {
	t.Helper()
	err := db.View(func(txn *badger.Txn) error { _, err := txn.Get(k); return err })
	if err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

func setKeys(t *testing.T, db *badger.DB, kv ...[]byte) {
	t.Helper()
	if err := db.Update(func(txn *badger.Txn) error {
		for i := 0; i < len(kv); i += 2 {
			if err := txn.Set(kv[i], kv[i+1]); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func deleteKeys(t *testing.T, db *badger.DB, keys ...[]byte) {
	t.Helper()
	if err := db.Update(func(txn *badger.Txn) error {
		for _, k := range keys {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// fsckBase is a small compacted store (with LM blocks) that subtests copy and damage.
type fsckBase struct {
	store          string
	inoA, inoB     uint64
	inoLM, inoDir  uint64
	a, b, lm, c    []byte
	lmBlock        uint64 // a block of /lm stored with the model
	lmRecordBefore []byte
}

func makeFsckBase(t *testing.T) fsckBase {
	t.Helper()
	model := tinyModel(t)
	base := fsckBase{store: newStore(t), a: textData(1, 5*2048), b: textData(2, 3*2048+100), lm: textData(3, 24*2048), c: []byte("small\n")}
	m := mountAt(t, base.store, newMountDir(t), "--model", model)
	needLMEncoder(t, fullStatsOf(t, m.dir))
	if err := os.Mkdir(m.path("dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, m.path("a"), base.a)
	writeFile(t, m.path("dir", "b"), base.b)
	writeFile(t, m.path("lm"), base.lm)
	writeFile(t, m.path("c"), base.c)
	base.inoA, base.inoB, base.inoLM, base.inoDir = inoOf(t, m.path("a")), inoOf(t, m.path("dir", "b")), inoOf(t, m.path("lm")), inoOf(t, m.path("dir"))
	mustLmfs(t, "compact", "--wait", m.dir)
	m.umount()
	fsckClean(t, base.store, "the undamaged base store")
	db := openBadger(t, base.store)
	defer db.Close()
	found := false
	for blk := uint64(0); blk < 24 && !found; blk++ {
		rec := getBlock(t, db, base.inoLM, blk)
		if rec[0] == 6 { // codec lm
			base.lmBlock, base.lmRecordBefore, found = blk, rec, true
		}
	}
	if !found {
		t.Fatalf("no block of /lm (24 blocks of text) was stored with the model")
	}
	return base
}

// TestFsckFindsFaults injects one fault per subtest into a copy of a clean store, directly
// in Badger. fsck must exit 1 and name the fault; `fsck --repair` fixes what can be fixed
// without guessing data and a second fsck is clean; bad blocks and blocks of a missing
// model are reported but never zeroed or dropped: the file still reads EIO at that block
// and right elsewhere.
func TestFsckFindsFaults(t *testing.T) {
	needFUSE(t)
	base := makeFsckBase(t)

	type fault struct {
		name   string
		kind   string // finding fsck must report
		inject func(t *testing.T, db *badger.DB)
		check  func(t *testing.T, f fsckFinding) // the finding names the right thing
		repair bool                              // fixable by --repair
		after  func(t *testing.T, mnt string)    // on a mount after repair
		// full: only `fsck --full` can see the fault (a record rewritten through Badger,
		// its checksums made anew: only decoding it shows the damage).
		full bool
	}
	const ghostIno = 987654
	faults := []fault{
		{
			name: "corrupt block payload", kind: "bad-block", full: true,
			inject: func(t *testing.T, db *badger.DB) {
				corruptBlock(t, db, base.inoA, 1, func(rec []byte) { rec[8+len(rec[8:])/2] ^= 0x21 })
			},
			check: func(t *testing.T, f fsckFinding) {
				if f.Path != "/a" || f.Block != 1 || f.Ino != base.inoA {
					t.Errorf("bad-block finding names %s (inode %d) block %d; want /a (inode %d) block 1", f.Path, f.Ino, f.Block, base.inoA)
				}
			},
			after: func(t *testing.T, mnt string) {
				checkEIOBlocks(t, filepath.Join(mnt, "a"), base.a, map[int]bool{1: true})
			},
		},
		{
			name: "dangling directory entry", kind: "dangling-entry", repair: true,
			inject: func(t *testing.T, db *badger.DB) {
				const cookie = 1 << 40
				d := make([]byte, 20)
				binary.LittleEndian.PutUint64(d, ghostIno)
				binary.LittleEndian.PutUint32(d[8:], syscall.S_IFREG)
				binary.LittleEndian.PutUint64(d[12:], cookie)
				o := append(append(make([]byte, 0, 20), d[:12]...), "ghost"...)
				setKeys(t, db, append(keyU64Of('d', 1), "ghost"...), d, keyU64U64Of('e', 1, cookie), o)
			},
			check: func(t *testing.T, f fsckFinding) {
				if !strings.Contains(f.Detail, "ghost") || !strings.Contains(f.Detail, fmt.Sprint(ghostIno)) {
					t.Errorf("dangling-entry finding %q does not name the entry \"ghost\" and inode %d", f.Detail, ghostIno)
				}
			},
			after: func(t *testing.T, mnt string) {
				if _, err := os.Lstat(filepath.Join(mnt, "ghost")); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("the dangling entry is still there after repair: %v", err)
				}
			},
		},
		{
			name: "wrong nlink", kind: "nlink", repair: true,
			inject: func(t *testing.T, db *badger.DB) {
				rec := getKey(t, db, keyU64Of('i', base.inoA))
				binary.LittleEndian.PutUint32(rec[13:], 5)
				setKeys(t, db, keyU64Of('i', base.inoA), rec)
			},
			check: func(t *testing.T, f fsckFinding) {
				if f.Path != "/a" || f.Ino != base.inoA {
					t.Errorf("nlink finding names %s (inode %d), want /a (inode %d)", f.Path, f.Ino, base.inoA)
				}
			},
			after: func(t *testing.T, mnt string) {
				var st syscall.Stat_t
				if err := syscall.Stat(filepath.Join(mnt, "a"), &st); err != nil || st.Nlink != 1 {
					t.Errorf("/a after repair: nlink %d, err %v; want 1", st.Nlink, err)
				}
			},
		},
		{
			name: "orphan block", kind: "orphan-block", repair: true,
			inject: func(t *testing.T, db *badger.DB) {
				setBlock(t, db, ghostIno, 35, getBlock(t, db, base.inoA, 0))
			},
			check: func(t *testing.T, f fsckFinding) {
				if f.Ino != ghostIno || f.Block != 32 {
					t.Errorf("orphan-block finding names inode %d block %d, want inode %d block 32 (its group's first)", f.Ino, f.Block, ghostIno)
				}
			},
		},
		{
			name: "block past EOF", kind: "block-past-eof", repair: true,
			inject: func(t *testing.T, db *badger.DB) {
				setBlock(t, db, base.inoA, 40, getBlock(t, db, base.inoA, 0))
			},
			check: func(t *testing.T, f fsckFinding) {
				if f.Path != "/a" || f.Block != 40 {
					t.Errorf("block-past-eof finding names %s block %d, want /a block 40", f.Path, f.Block)
				}
			},
		},
		{
			name: "pending marker without block", kind: "orphan-key", repair: true,
			inject: func(t *testing.T, db *badger.DB) {
				setKeys(t, db, keyU64U64Of('q', base.inoA, 30), []byte{}) // block group 30: blocks 480-495
			},
			check: func(t *testing.T, f fsckFinding) {
				if f.Ino != base.inoA || f.Block != 480 || !strings.Contains(f.Detail, "pending") {
					t.Errorf("finding %+v does not name the pending marker of inode %d block group 30 (block 480)", f, base.inoA)
				}
			},
		},
		{
			name: "LM block of a model not in the store", kind: "missing-model",
			inject: func(t *testing.T, db *badger.DB) {
				corruptBlock(t, db, base.inoLM, base.lmBlock, func(rec []byte) { copy(rec[8:12], []byte{0xde, 0xad, 0xbe, 0xef}) })
			},
			check: func(t *testing.T, f fsckFinding) {
				if f.Path != "/lm" || f.Block != int64(base.lmBlock) || !strings.Contains(f.Detail, "deadbeef") {
					t.Errorf("missing-model finding %+v; want /lm block %d naming model deadbeef", f, base.lmBlock)
				}
			},
			after: func(t *testing.T, mnt string) {
				checkEIOBlocks(t, filepath.Join(mnt, "lm"), base.lm, map[int]bool{int(base.lmBlock): true})
			},
		},
		{
			name: "unreachable inode", kind: "unreachable", repair: true,
			inject: func(t *testing.T, db *badger.DB) {
				dk := append(keyU64Of('d', base.inoDir), "b"...)
				d := getKey(t, db, dk)
				cookie := binary.LittleEndian.Uint64(d[12:])
				deleteKeys(t, db, dk, keyU64U64Of('e', base.inoDir, cookie))
			},
			check: func(t *testing.T, f fsckFinding) {
				if f.Ino != base.inoB {
					t.Errorf("unreachable finding names inode %d, want %d (/dir/b)", f.Ino, base.inoB)
				}
			},
			after: func(t *testing.T, mnt string) {
				p := filepath.Join(mnt, "lost+found", fmt.Sprintf("#%d", base.inoB))
				got, err := os.ReadFile(p)
				if err != nil || !bytes.Equal(got, base.b) {
					t.Errorf("%s after repair: err %v, %s", p, err, firstDiff(got, base.b))
				}
			},
		},
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			store := copyStore(t, base.store)
			db := openBadger(t, store)
			f.inject(t, db)
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			var full []string
			if f.full {
				full = []string{"--full"}
			}
			rep, r := fsckRun(t, store, false, full...)
			if r.code != 1 || rep.Clean {
				t.Errorf("fsck of a store with a %s: exit %d clean %v, want exit 1", f.name, r.code, rep.Clean)
			}
			got := rep.find(f.kind)
			if len(got) != 1 {
				t.Fatalf("fsck reported %d %q findings for a %s, want 1; findings: %s", len(got), f.kind, f.name, rep)
			}
			if got[0].Repaired {
				t.Errorf("fsck without --repair marked %q repaired", f.kind)
			}
			f.check(t, got[0])
			// The text report names it too.
			txt := lmfs(t, append(append([]string{"fsck"}, full...), store)...)
			if txt.code != 1 || !strings.Contains(txt.stdout, f.kind) {
				t.Errorf("fsck text report (exit %d) does not name %q:\n%s%s", txt.code, f.kind, txt.stdout, txt.stderr)
			}
			if got[0].Block != 0 && !strings.Contains(txt.stdout, fmt.Sprintf("block %d", got[0].Block)) {
				t.Errorf("fsck text report does not name block %d:\n%s", got[0].Block, txt.stdout)
			}
			t.Logf("fsck: %s", strings.TrimSpace(txt.stdout))

			rep, r = fsckRun(t, store, true, full...)
			got = rep.find(f.kind)
			if len(got) != 1 {
				t.Fatalf("fsck --repair reported %d %q findings, want 1: %s", len(got), f.kind, rep)
			}
			if got[0].Repaired != f.repair {
				t.Errorf("fsck --repair: %q repaired=%v, want %v", f.kind, got[0].Repaired, f.repair)
			}
			if f.repair && (r.code != 0 || !rep.Clean) {
				t.Errorf("fsck --repair of a %s: exit %d clean %v, want exit 0; findings %s", f.name, r.code, rep.Clean, rep)
			}
			if !f.repair && r.code != 1 {
				t.Errorf("fsck --repair of an unrepairable %s: exit %d, want 1", f.name, r.code)
			}
			rep, r = fsckRun(t, store, false, full...)
			if f.repair {
				if r.code != 0 || !rep.Clean || len(rep.Findings) != 0 {
					t.Errorf("fsck after repair of a %s: exit %d, findings %s; want clean", f.name, r.code, rep)
				}
			} else if r.code != 1 || len(rep.find(f.kind)) != 1 {
				t.Errorf("fsck after --repair of an unrepairable %s: exit %d, findings %s; want it still reported", f.name, r.code, rep)
			}
			if !f.repair {
				// Reported, never zeroed or dropped: the damaged record is still stored.
				db := openBadger(t, store)
				k, _ := blockstore.GroupKey(base.inoA, 1)
				if f.kind == "missing-model" {
					k, _ = blockstore.GroupKey(base.inoLM, base.lmBlock)
				}
				if !hasKeyIn(t, db, k) {
					t.Errorf("fsck --repair deleted the damaged block record")
				}
				db.Close()
			}
			// Every file still reads as before (except the damaged block).
			m := mountAt(t, store, newMountDir(t))
			if f.after != nil {
				f.after(t, m.dir)
			}
			for name, want := range map[string][]byte{"a": base.a, "dir/b": base.b, "lm": base.lm, "c": base.c} {
				if (f.kind == "bad-block" && name == "a") || (f.kind == "missing-model" && name == "lm") || (f.kind == "unreachable" && name == "dir/b") {
					continue
				}
				if got, err := readDirect(m.path(name)); err != nil || !bytes.Equal(got, want) {
					t.Errorf("/%s after repair: err %v, %s", name, err, firstDiff(got, want))
				}
			}
			m.umount()
		})
	}
}

// checkEIOBlocks reads every 2 KiB block of p with O_DIRECT: the bad ones must fail with
// EIO, all others must read exactly want.
func checkEIOBlocks(t *testing.T, p string, want []byte, bad map[int]bool) {
	t.Helper()
	for blk := 0; blk*2048 < len(want); blk++ {
		n := min(2048, len(want)-blk*2048)
		got, err := preadDirect(p, int64(blk)*2048, n)
		if bad[blk] {
			if err != syscall.EIO {
				t.Errorf("%s block %d (damaged): %d bytes, err %v; want EIO", p, blk, len(got), err)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, want[blk*2048:blk*2048+n]) {
			t.Errorf("%s intact block %d: err %v, %s", p, blk, err, firstDiff(got, want[blk*2048:blk*2048+n]))
		}
	}
}

// TestFsckMounted: fsck of a mounted store (by its store path or its mount point) refuses
// with one clear line and exit 1, and the mount keeps working.
func TestFsckMounted(t *testing.T) {
	needFUSE(t)
	store := newStore(t)
	m := mountStore(t, store)
	writeFile(t, m.path("f"), textData(5, 5000))
	for _, arg := range []string{store, m.dir} {
		for _, flags := range [][]string{nil, {"--repair"}} {
			r := lmfs(t, append(append([]string{"fsck"}, flags...), arg)...)
			msg := strings.TrimSpace(r.stderr)
			if r.code != 1 || !strings.Contains(msg, "mounted") || strings.Count(msg, "\n") != 0 {
				t.Errorf("fsck %v %s of a mounted store: exit %d, stderr %q; want exit 1 and one line saying it is mounted", flags, arg, r.code, msg)
			}
		}
	}
	if got := readFile(t, m.path("f")); !bytes.Equal(got, textData(5, 5000)) {
		t.Errorf("file changed after fsck attempts on the mounted store")
	}
	m.umount()
	fsckClean(t, store, "after the refused fsck runs")
}

// TestFsckDefaultFindsFlippedPayload: fsck's default checks without running the model, yet
// a byte flipped on disk in the data segment holding LM blocks is a bad-block finding naming
// the file and the group's first block, and so is a flipped byte in a block of a classical
// codec stored in Badger (those are decoded by default). --full decodes the LM blocks too and
// finds the same.
func TestFsckDefaultFindsFlippedPayload(t *testing.T) {
	needFUSE(t)
	store := newStore(t)
	m := mountAt(t, store, newMountDir(t), "--model", tinyModel(t))
	needLMEncoder(t, fullStatsOf(t, m.dir))
	text := textData(7, 64*2048) // four groups of 16 blocks, stored in a data segment
	rnd := make([]byte, 4*2048)  // raw records: a classical codec
	fillRandom(newRand(7), rnd)
	writeFile(t, m.path("big"), text)
	writeFile(t, m.path("rnd"), rnd)
	inoBig, inoRnd := inoOf(t, m.path("big")), inoOf(t, m.path("rnd"))
	mustLmfs(t, "compact", "--wait", m.dir)
	m.umount()

	rep, r := fsckRun(t, store, false)
	if r.code != 0 || !rep.Clean || rep.Full || rep.LMUndecoded == 0 {
		t.Fatalf("default fsck of the intact store: exit %d clean %v full %v lm_undecoded %d; want clean, LM blocks not decoded\n%s", r.code, rep.Clean, rep.Full, rep.LMUndecoded, r.stderr)
	}
	rep, r = fsckRun(t, store, false, "--full")
	if r.code != 0 || !rep.Clean || !rep.Full || rep.LMUndecoded != 0 {
		t.Fatalf("fsck --full of the intact store: exit %d clean %v full %v lm_undecoded %d; want clean, every block decoded\n%s", r.code, rep.Clean, rep.Full, rep.LMUndecoded, r.stderr)
	}

	// An LM block of /big, found in its segment file and flipped there.
	db := openBadger(t, store)
	var lmBlk uint64
	var rec []byte
	for blk := uint64(0); blk < 64 && rec == nil; blk++ {
		if r := getBlock(t, db, inoBig, blk); r[0] == 6 { // codec lm
			lmBlk, rec = blk, r
		}
	}
	if rec == nil {
		t.Fatal("no block of /big (64 blocks of text) was stored with the model")
	}
	corruptBlock(t, db, inoRnd, 2, func(rec []byte) { rec[8+100] ^= 0x01 })
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(store, "data", "*"))
	flipped := false
	for _, p := range segs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(b, rec); i >= 0 { // every copy (an older segment may hold one)
			b[i+8+(len(rec)-8)/2] ^= 0x10
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			flipped = true
		}
	}
	if !flipped {
		t.Fatalf("block %d of /big is not in any data segment (%v)", lmBlk, segs)
	}

	for _, args := range [][]string{nil, {"--full"}} {
		rep, r := fsckRun(t, store, false, args...)
		if r.code != 1 || rep.Clean {
			t.Errorf("fsck %v of a store with a flipped byte: exit %d clean %v, want exit 1", args, r.code, rep.Clean)
		}
		found := map[string]bool{}
		for _, f := range rep.find("bad-block") {
			switch {
			case f.Path == "/big" && f.Ino == inoBig && uint64(f.Block) == lmBlk/16*16:
				found["big"] = true
			case f.Path == "/rnd" && f.Ino == inoRnd && f.Block == 2:
				found["rnd"] = true
			}
		}
		if !found["big"] || !found["rnd"] {
			t.Errorf("fsck %v: bad-block findings %s; want /big block %d (its group's first: the segment entry fails its checksum) and /rnd block 2 (a raw record)", args, rep, lmBlk/16*16)
		}
	}
}
