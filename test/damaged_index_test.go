package test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// oneLineRefusal checks what lmfs said when it refused a damaged store: exit 1 and one line
// naming the damaged file and what to do, no panic or stack trace.
func oneLineRefusal(t *testing.T, what string, r result, file string) {
	t.Helper()
	out := strings.TrimSpace(r.stdout + r.stderr)
	lines := strings.Split(out, "\n")
	if r.code != 1 || len(lines) != 1 || !strings.Contains(out, file) || !strings.Contains(out, "backup") ||
		strings.Contains(out, "goroutine") || strings.Contains(out, "panic") {
		t.Errorf("%s: want exit 1 and one line naming %s and what to do; got exit %d:\n%s", what, file, r.code, out)
	}
}

// damagedStore makes a store with some files, unmounts it and damages it with damage; it
// returns the store and a copy of its Badger index files (name -> bytes) after the damage.
func damagedStore(t *testing.T, damage func(store string)) (string, map[string][]byte) {
	t.Helper()
	store := newStore(t)
	m := mountStore(t, store, "--no-lm")
	for i, name := range []string{"a", "b", "c"} {
		writeFile(t, m.path(name), textData(int64(i), 5000))
	}
	if err := os.Mkdir(m.path("dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	m.umount()
	damage(store)
	return store, indexFiles(t, store)
}

// indexFiles returns the MANIFEST and tables of store.
func indexFiles(t *testing.T, store string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	ps, _ := filepath.Glob(filepath.Join(store, "*.sst"))
	for _, p := range append(ps, filepath.Join(store, "MANIFEST")) {
		if b, err := os.ReadFile(p); err == nil {
			out[filepath.Base(p)] = b
		}
	}
	return out
}

func sameFiles(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

// tables returns the names of the store's Badger tables (Badger writes its memtable as one
// when the store is closed).
func tables(t *testing.T, store string) []string {
	t.Helper()
	ps, _ := filepath.Glob(filepath.Join(store, "*.sst"))
	if len(ps) == 0 {
		t.Fatal("the closed store has no Badger table")
	}
	var names []string
	for _, p := range ps {
		names = append(names, filepath.Base(p))
	}
	slices.Sort(names)
	return names
}

// TestDamagedIndexRefused: a Badger table overwritten with zeros made Badger panic in its own
// goroutine ("index out of range [3] with length 0"): fsck exited 2 with a stack trace and
// mount said only "see lmfs.log". A MANIFEST cut short made Badger delete every table it no
// longer listed: the store opened empty. Now fsck and mount (background and foreground) each
// refuse with one line naming the file, and the store's files stay as they were.
func TestDamagedIndexRefused(t *testing.T) {
	needFUSE(t)
	cases := []struct {
		name   string
		damage func(t *testing.T, store string) string // returns the file to be named
	}{
		{"zeroed table", func(t *testing.T, store string) string {
			name := tables(t, store)[0]
			p := filepath.Join(store, name)
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, make([]byte, st.Size()), 0o600); err != nil {
				t.Fatal(err)
			}
			return name
		}},
		{"truncated MANIFEST", func(t *testing.T, store string) string {
			tables(t, store)
			p := filepath.Join(store, "MANIFEST")
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(p, st.Size()/2); err != nil {
				t.Fatal(err)
			}
			return "MANIFEST"
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var file string
			store, before := damagedStore(t, func(store string) { file = c.damage(t, store) })
			oneLineRefusal(t, "fsck", lmfs(t, "fsck", store), file)
			mnt := newMountDir(t)
			t.Cleanup((&fsMount{t: t, dir: mnt}).cleanup) // should the store be mounted after all
			oneLineRefusal(t, "mount", lmfs(t, "mount", "--no-lm", store, mnt), file)
			if isMounted(mnt) {
				t.Fatal("the damaged store was mounted")
			}
			oneLineRefusal(t, "mount -f", lmfs(t, "mount", "-f", "--no-lm", store, mnt), file)
			if isMounted(mnt) {
				t.Fatal("the damaged store was mounted")
			}
			if after := indexFiles(t, store); !sameFiles(before, after) {
				t.Errorf("the store's index files changed: %d files before, %d after", len(before), len(after))
			}
		})
	}
}
