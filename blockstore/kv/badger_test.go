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
	err := Update(db, func(tx Txn) error {
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
	err = View(db, func(tx Txn) error {
		if _, err := tx.Get([]byte("zz"), nil); !errors.Is(err, ErrNotFound) || !errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("missing key: %v", err)
		}
		if v, err := tx.Get([]byte("a2"), nil); err != nil || string(v) != "va2" {
			return fmt.Errorf("get a2 = %q, %v", v, err)
		}
		// Into a buffer the caller keeps: its memory is used, nothing allocated.
		buf := make([]byte, 0, 16)
		if v, err := tx.Get([]byte("a3"), buf); err != nil || string(v) != "va3" || &v[0] != &buf[:1][0] {
			return fmt.Errorf("get a3 into a buffer = %q, %v (own memory: %v)", v, err, len(v) > 0 && &v[0] == &buf[:1][0])
		}
		if ok, err := tx.Has([]byte("b1")); !ok || err != nil {
			return fmt.Errorf("has b1 = %v, %v", ok, err)
		}
		var got []string
		if err := Scan(tx, []byte("a"), []byte("a2"), func(k, v []byte) (bool, error) {
			got = append(got, string(k)+"="+string(v))
			return true, nil
		}); err != nil {
			return err
		}
		if fmt.Sprint(got) != "[a2=va2 a3=va3]" {
			return fmt.Errorf("scan from a2 = %v", got)
		}
		got = nil
		if err := ScanKeys(tx, []byte("a"), nil, func(k []byte) (bool, error) {
			got = append(got, string(k))
			return len(got) < 2, nil
		}); err != nil {
			return err
		}
		if fmt.Sprint(got) != "[a1 a2]" {
			return fmt.Errorf("stopped key scan = %v", got)
		}
		for p, want := range map[string]string{"a": "a3", "b": "b1", "\xff": "\xff\xff", "": "\xff\xff"} {
			if k, err := LastKey(tx, []byte(p)); err != nil || string(k) != want {
				return fmt.Errorf("LastKey(%q) = %q, %v; want %q", p, k, err, want)
			}
		}
		if _, err := LastKey(tx, []byte("c")); !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("LastKey(c): %v", err)
		}
		// Iterators: a prefix, a seek key, reverse order (a reverse seek lands on the largest key
		// <= its argument; none: the prefix's last key).
		walk := func(o IterOptions, seek string) string {
			it := tx.Iterate(o)
			defer it.Close()
			var got []string
			var sk []byte
			if seek != "" {
				sk = []byte(seek)
			}
			for it.Seek(sk); it.Valid(); it.Next() {
				v, err := it.Value(nil)
				if err != nil {
					return err.Error()
				}
				got = append(got, string(it.Key())+"="+string(v))
			}
			return fmt.Sprint(got)
		}
		for _, c := range []struct {
			o    IterOptions
			seek string
			want string
		}{
			{IterOptions{Prefix: []byte("a")}, "", "[a1=va1 a2=va2 a3=va3]"},
			{IterOptions{Prefix: []byte("a"), Prefetch: true}, "a2", "[a2=va2 a3=va3]"},
			{IterOptions{Prefix: []byte("a"), Reverse: true}, "", "[a3=va3 a2=va2 a1=va1]"},
			{IterOptions{Prefix: []byte("a"), Reverse: true}, "a2z", "[a2=va2 a1=va1]"},
			{IterOptions{Prefix: []byte("b"), Reverse: true}, "", "[b1=vb1]"},
			{IterOptions{Prefix: []byte("c")}, "", "[]"},
			{IterOptions{Reverse: true}, "", "[\xff\xff=v\xff\xff b1=vb1 a3=va3 a2=va2 a1=va1]"},
		} {
			if got := walk(c.o, c.seek); got != c.want {
				return fmt.Errorf("iterate %+v from %q = %q, want %q", c.o, c.seek, got, c.want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := View(db, func(tx Txn) error { return tx.Set([]byte("x"), nil) }); !errors.Is(err, ErrReadOnly) {
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
				err := Update(db, func(tx Txn) error {
					var n int
					v, err := tx.Get(key, nil)
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
	View(db, func(tx Txn) error {
		v, err := tx.Get(key, nil)
		if err != nil {
			return err
		}
		if n := int(v[0]) | int(v[1])<<8; n != workers*each {
			t.Errorf("counter = %d, want %d", n, workers*each)
		}
		return nil
	})
	b, err := db.Begin(true)
	if err != nil {
		t.Fatal(err)
	}
	b.Get(key, nil)
	Update(db, func(tx Txn) error { return tx.Set(key, []byte{0, 0}) })
	b.Set(key, []byte{1, 1})
	if err := b.Commit(); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale batch commit: %v, want ErrConflict", err)
	}
	// The same through CommitAsync, whose result comes back on the channel.
	b, err = db.Begin(true)
	if err != nil {
		t.Fatal(err)
	}
	b.Get(key, nil)
	Update(db, func(tx Txn) error { return tx.Set(key, []byte{2, 2}) })
	b.Set(key, []byte{3, 3})
	done := make(chan error, 1)
	b.CommitAsync(done)
	if err := <-done; !errors.Is(err, ErrConflict) {
		t.Fatalf("stale async commit: %v, want ErrConflict", err)
	}
	db.Close()
	if _, err := db.Begin(false); !errors.Is(err, ErrClosed) {
		t.Fatalf("Begin after Close: %v, want ErrClosed", err)
	}
}
