package kv

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

func openTest(t *testing.T) *Badger {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(t.TempDir()).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return NewBadger(db)
}

// The contract the store relies on, checked on the real engine.
func TestBadgerContract(t *testing.T) {
	db := openTest(t)
	err := db.Update(func(tx Txn) error {
		for _, k := range []string{"a1", "a2", "a3", "b1", "\xff\xff"} {
			if err := tx.Set([]byte(k), []byte("v"+k)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = db.View(func(tx Txn) error {
		if _, err := tx.Get([]byte("zz")); !errors.Is(err, ErrNotFound) || !errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("missing key: %v", err)
		}
		if v, err := tx.Get([]byte("a2")); err != nil || string(v) != "va2" {
			return fmt.Errorf("get a2 = %q, %v", v, err)
		}
		if ok, err := tx.Has([]byte("b1")); !ok || err != nil {
			return fmt.Errorf("has b1 = %v, %v", ok, err)
		}
		var got []string
		if err := tx.Scan([]byte("a"), []byte("a2"), func(k, v []byte) (bool, error) {
			got = append(got, string(k)+"="+string(v))
			return true, nil
		}); err != nil {
			return err
		}
		if fmt.Sprint(got) != "[a2=va2 a3=va3]" {
			return fmt.Errorf("scan from a2 = %v", got)
		}
		got = nil
		if err := tx.ScanKeys([]byte("a"), nil, func(k []byte) (bool, error) {
			got = append(got, string(k))
			return len(got) < 2, nil
		}); err != nil {
			return err
		}
		if fmt.Sprint(got) != "[a1 a2]" {
			return fmt.Errorf("stopped key scan = %v", got)
		}
		for p, want := range map[string]string{"a": "a3", "b": "b1", "\xff": "\xff\xff", "": "\xff\xff"} {
			if k, err := tx.LastKey([]byte(p)); err != nil || string(k) != want {
				return fmt.Errorf("LastKey(%q) = %q, %v; want %q", p, k, err, want)
			}
		}
		if _, err := tx.LastKey([]byte("c")); !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("LastKey(c): %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.View(func(tx Txn) error { return tx.Set([]byte("x"), nil) }); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("write in a view: %v", err)
	}
}

// Update retries a transaction whose read key was changed by a concurrent commit, so
// read-modify-write increments are never lost.
func TestBadgerUpdateRetriesConflicts(t *testing.T) {
	db := openTest(t)
	key := []byte("n")
	var wg sync.WaitGroup
	const workers, each = 4, 50
	for range workers {
		wg.Go(func() {
			for range each {
				err := db.Update(func(tx Txn) error {
					var n int
					v, err := tx.Get(key)
					if err == nil {
						n = int(v[0]) | int(v[1])<<8
					} else if !errors.Is(err, ErrNotFound) {
						return err
					}
					n++
					return tx.Set(key, []byte{byte(n), byte(n >> 8)})
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	db.View(func(tx Txn) error {
		return tx.View(key, func(v []byte) error {
			if n := int(v[0]) | int(v[1])<<8; n != workers*each {
				t.Errorf("counter = %d, want %d", n, workers*each)
			}
			return nil
		})
	})
	b := db.Begin()
	b.Get(key)
	db.Update(func(tx Txn) error { return tx.Set(key, []byte{0, 0}) })
	b.Set(key, []byte{1, 1})
	if err := b.Commit(); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale batch commit: %v, want ErrConflict", err)
	}
}
