package test

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestCrashKill9 kills the mount server with SIGKILL during a bulk write. Files written and
// fsync'ed (and their directory fsync'ed) before the kill must come back intact after a
// remount; the store must open without repair, every file must read without error, and
// `lmfs stats` must add up (files and logical bytes equal what the mount shows).
func TestCrashKill9(t *testing.T) {
	store := newStore(t)
	for round := 0; round < 2; round++ {
		m := mountForeground(t, store)
		synced := map[string][32]byte{}
		dir := m.path(fmt.Sprintf("synced%d", round))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 12; i++ {
			p := filepath.Join(dir, fmt.Sprintf("f%d", i))
			data := mixedData(int64(round*100+i), 10000+i*37000)
			writeSynced(t, p, data)
			synced[p] = sha256.Sum256(data)
		}
		// One synced file is also overwritten in place and truncated, then synced again.
		p0 := filepath.Join(dir, "f0")
		upd := mixedData(int64(round*100+99), 5000)
		f, _ := os.OpenFile(p0, os.O_RDWR, 0)
		f.WriteAt(upd, 3000)
		f.Truncate(7000)
		f.Sync()
		f.Close()
		want0 := mixedData(int64(round*100), 10000)
		copy(want0[3000:], upd)
		synced[p0] = sha256.Sum256(want0[:7000])
		for _, d := range []string{dir, m.dir} {
			df, err := os.Open(d)
			if err != nil {
				t.Fatal(err)
			}
			if err := df.Sync(); err != nil {
				t.Fatalf("fsync dir: %v", err)
			}
			df.Close()
		}

		// Bulk writers, killed mid-flight.
		var wg sync.WaitGroup
		for w := 0; w < 2; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				bulk := m.path(fmt.Sprintf("bulk%d-%d", round, w))
				if os.Mkdir(bulk, 0o755) != nil {
					return
				}
				for i := 0; ; i++ {
					f, err := os.Create(filepath.Join(bulk, fmt.Sprint(i)))
					if err != nil {
						return
					}
					data := mixedData(int64(i), 1+i*5000%300000)
					_, err = f.Write(data)
					f.Close()
					if err != nil {
						return
					}
					if i%5 == 0 {
						os.Remove(filepath.Join(bulk, fmt.Sprint(i-3)))
					}
				}
			}(w)
		}
		time.Sleep(700 * time.Millisecond)
		m.kill9()
		wg.Wait()
		if err := exec.Command("umount", m.dir).Run(); err != nil {
			exec.Command("umount", "-l", m.dir).Run()
		}
		if isMounted(m.dir) {
			t.Fatalf("%s still mounted after the server died and umount", m.dir)
		}

		// Recovery: a plain mount, no repair step.
		m2 := mountAt(t, store, m.dir)
		for p, sum := range synced {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatalf("synced file %s after crash: %v", p, err)
			}
			if sha256.Sum256(b) != sum {
				t.Fatalf("synced file %s changed by the crash (size %d)", p, len(b))
			}
		}
		files, size := walkSizes(t, m2.dir, true)
		st := m2.stats()
		if st.Files != files || st.Logical != size {
			t.Errorf("round %d after crash: stats files %d logical %d; the mount shows %d files, %d bytes", round, st.Files, st.Logical, files, size)
		}
		t.Logf("round %d: %d files, %d bytes after recovery; stored %d in %d blocks", round, files, size, st.Stored, st.Blocks)
		m2.umount()
		// (The background compactor may recode blocks meanwhile: stored bytes may shrink.)
		if st2 := statsOf(t, store); st2.Files != files || st2.Logical != size || st2.Blocks != st.Blocks || st2.Stored > st.Stored {
			t.Errorf("stats of the unmounted store %+v differ from the mount's %+v", st2, st)
		}
	}
}

// walkSizes counts the regular files below root and sums their sizes; with readAll it also
// reads every file completely (any EIO fails the test).
func walkSizes(t *testing.T, root string, readAll bool) (files, size int64) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			files++
			size += info.Size()
			if readAll {
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				if int64(len(b)) != info.Size() {
					return fmt.Errorf("%s: read %d bytes, stat says %d", p, len(b), info.Size())
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return
}
