package test

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestCrashDuringSegmentGC kills the server with SIGKILL while segment GC moves the live half of
// sealed data segments (every other file deleted). Whatever point the kill hits, the surviving
// files come back intact after a plain remount, fsck is clean, and GC finishes the job later.
func TestCrashDuringSegmentGC(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 640 MiB")
	}
	store := newStore(t)
	const files, size = 8, 16 << 20
	sums := map[int][32]byte{}
	// GC looks every 2 s and then moves 8 MiB per sealed segment: kills spread over that
	// window land before, during and after it.
	for round, killAfter := range []time.Duration{400, 900, 1400, 1900, 2400} {
		killAfter *= time.Millisecond
		m := mountForeground(t, store, "--no-compact")
		for i := 0; i < files; i++ {
			data := mixedData(int64(round*files+i), size)
			p := m.path(fmt.Sprintf("r%d-%d", round, i))
			writeSynced(t, p, data)
			if i%2 == 1 {
				sums[round*files+i] = sha256.Sum256(data)
			}
		}
		for i := 0; i < files; i += 2 {
			if err := os.Remove(m.path(fmt.Sprintf("r%d-%d", round, i))); err != nil {
				t.Fatal(err)
			}
		}
		if df, err := os.Open(m.dir); err == nil {
			df.Sync()
			df.Close()
		}
		time.Sleep(killAfter)
		m.kill9()
		if err := exec.Command("umount", m.dir).Run(); err != nil {
			exec.Command("umount", "-l", m.dir).Run()
		}
		m2 := mountAt(t, store, m.dir, "--no-compact") // GC only: no recoding to wait for
		for k, sum := range sums {
			p := m2.path(fmt.Sprintf("r%d-%d", k/files, k%files))
			b, err := os.ReadFile(p)
			if err != nil || sha256.Sum256(b) != sum {
				t.Fatalf("round %d: %s after a kill during GC: err %v, %d bytes, changed: %v", round, p, err, len(b), sha256.Sum256(b) != sum)
			}
		}
		m2.umount()
		if out := mustLmfs(t, "fsck", "--quiet", store); !strings.Contains(out, "clean") {
			t.Fatalf("round %d: fsck after a kill during GC: %s", round, out)
		}
	}
	// The garbage does come back once the store runs undisturbed.
	m := mountAt(t, store, newMountDir(t), "--no-compact")
	defer m.umount()
	live := int64(len(sums)) * size
	deadline := time.Now().Add(time.Minute)
	for {
		disk := diskBytes(t, m)
		if disk < live+live/2 {
			t.Logf("on disk %d MiB for %d MiB live", disk>>20, live>>20)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a minute after remount the store still takes %d MiB for %d MiB of live data", disk>>20, live>>20)
		}
		time.Sleep(time.Second)
	}
}
