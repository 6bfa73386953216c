package blockstore

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"lmfs/codec"
	"lmfs/codec/bench"
)

// TestCompactorKeepsWhatBenchCounts: after the compactor has finished, a store holds every
// block as the bench's lmfs column says (the same codec.Policy): the same codecs for the same
// number of blocks, the same stored bytes, holes for all-zero blocks. Without a model here: the
// model's half of the rule is tested in codec and by the mount tests.
func TestCompactorKeepsWhatBenchCounts(t *testing.T) {
	src, err := os.ReadFile("compactor.go")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"source": src,
		"mixed":  mixedData(5, 40<<10+123),
		"zeros":  append(make([]byte, 3*2048), "end"...),
		"text":   bytes.Repeat([]byte("every block on its own, the smallest kept. "), 500),
	}
	dir := t.TempDir()
	s := openTest(t, filepath.Join(dir, "store"))
	defer s.Close()
	for name, data := range files {
		writeFile(t, s, newFile(t, s, name), data)
		if err := os.MkdirAll(filepath.Join(dir, "files"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "files", name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s.StartCompactor(CompactOptions{Idle: 10 * time.Millisecond})
	// It may take long on a loaded machine; it fails only when the compactor stops making
	// progress.
	last, stalled := s.Counters().Pending, time.Now()
	for last > 0 {
		time.Sleep(20 * time.Millisecond)
		if p := s.Counters().Pending; p < last {
			last, stalled = p, time.Now()
		} else if time.Since(stalled) > time.Minute {
			t.Fatalf("compactor stalled with %d blocks pending: %+v", p, s.Compactor())
		}
	}
	s.StopCompactor()

	res, err := bench.Run([]string{filepath.Join(dir, "files")}, bench.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := s.Counters()
	var stored int64
	for _, u := range c.Codecs {
		stored += u.Stored
	}
	for id := codec.ID(0); id < 16; id++ {
		if got, want := c.Codecs[id.String()].Blocks, int64(res.Chosen[bench.ColumnName(id)]); got != want {
			t.Errorf("store holds %d %s blocks, the bench counts %d", got, id, want)
		}
	}
	if stored != res.Total.Stored[bench.Lmfs] {
		t.Errorf("store holds %d bytes of records, the bench's lmfs column %d", stored, res.Total.Stored[bench.Lmfs])
	}
	t.Logf("chosen %v, %d bytes", res.Chosen, stored)
}
