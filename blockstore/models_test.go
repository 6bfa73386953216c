package blockstore

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"lmfs/blockstore/kv"
	"lmfs/model/modelid"
)

// TestModelsLarge: a model file larger than one Badger value may be (16 MiB here) is kept in
// parts and comes back whole, also after a reopen; a damaged part marks it damaged, and putting
// the file again repairs it.
func TestModelsLarge(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	small := []byte("LMFSMDL1 a small model file")
	large := make([]byte, 21<<20+12345)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range large {
		large[i] = byte(rng.Uint32())
	}
	for _, m := range [][]byte{small, large, large} {
		if err := s.PutModel(m); err != nil {
			t.Fatalf("PutModel(%d bytes): %v", len(m), err)
		}
	}
	check := func(s *Store, when string, wantDamaged int) {
		t.Helper()
		models, damaged, err := s.Models()
		if err != nil {
			t.Fatal(err)
		}
		if len(damaged) != wantDamaged {
			t.Fatalf("%s: %d damaged, want %d", when, len(damaged), wantDamaged)
		}
		found := 0
		for _, m := range models {
			if bytes.Equal(m, small) || bytes.Equal(m, large) {
				found++
			}
		}
		if found != len(models) || found != 2-wantDamaged {
			t.Fatalf("%s: %d models (%d known), want %d", when, len(models), found, 2-wantDamaged)
		}
	}
	check(s, "after put", 0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	check(s, "after reopen", 0)
	id := modelid.Of(large)
	if err := s.update(func(txn kv.Txn) error { return txn.Set(modelPartKey(id, 1), []byte("garbage")) }); err != nil {
		t.Fatal(err)
	}
	check(s, "with a damaged part", 1)
	if err := s.PutModel(large); err != nil {
		t.Fatal(err)
	}
	check(s, "after putting it again", 0)
	if err := s.update(func(txn kv.Txn) error { return txn.Delete(modelPartKey(id, 2)) }); err != nil {
		t.Fatal(err)
	}
	check(s, "with a part missing", 1)
}
