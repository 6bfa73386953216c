package kv

import (
	"bytes"
	"errors"

	"github.com/dgraph-io/badger/v4"
)

// Badger is the DB that lmfs ships: a Badger database opened by the caller (blockstore's
// open sets its options: sync writes, value threshold, read-only). Badger provides what the
// contract asks: snapshot reads at the transaction's start timestamp, and a commit that fails
// with a conflict when a key the transaction read has a newer committed version.
type Badger struct{ db *badger.DB }

// NewBadger wraps an open Badger database.
func NewBadger(db *badger.DB) *Badger { return &Badger{db: db} }

// Raw is the Badger database, for engine-specific maintenance only (value-log GC, flushing
// memtables, the table check); code that reads or writes keys goes through DB.
func (b *Badger) Raw() *badger.DB { return b.db }

// maxAttempts bounds Update's retries on conflict; conflicts come from concurrent writers to
// the same keys and clear in a few attempts.
const maxAttempts = 1000

// View runs fn in a read-only transaction.
func (b *Badger) View(fn func(Txn) error) error {
	return mapErr(b.db.View(func(t *badger.Txn) error { return fn(badgerTxn{t}) }))
}

// Update runs fn in a read-write transaction, again on a new snapshot while the commit
// conflicts (or fn returns an error matching ErrConflict), up to maxAttempts.
func (b *Badger) Update(fn func(Txn) error) error {
	for attempt := 1; ; attempt++ {
		err := b.db.Update(func(t *badger.Txn) error { return fn(badgerTxn{t}) })
		if attempt < maxAttempts && (errors.Is(err, badger.ErrConflict) || errors.Is(err, ErrConflict)) {
			continue
		}
		return mapErr(err)
	}
}

// Begin starts a read-write transaction the caller commits.
func (b *Badger) Begin() Batch { return badgerBatch{badgerTxn{b.db.NewTransaction(true)}} }

// Sync writes Badger's value log and memtable-backing files to disk.
func (b *Badger) Sync() error { return mapErr(b.db.Sync()) }

// Close closes the database.
func (b *Badger) Close() error { return mapErr(b.db.Close()) }

// BadgerTxn lets code that still holds a *badger.Txn call code that takes a Txn (the store
// is moving to this package file by file; see README "Scaling out"). Free: no allocation.
func BadgerTxn(t *badger.Txn) Txn { return badgerTxn{t} }

// RawTxn is the inverse of BadgerTxn, for converted code that calls code not converted yet;
// nil when t is not a Badger transaction.
func RawTxn(t Txn) *badger.Txn {
	switch x := t.(type) {
	case badgerTxn:
		return x.t
	case badgerBatch:
		return x.t
	}
	return nil
}

// badgerTxn is one pointer, so it sits in a Txn interface without an allocation.
type badgerTxn struct{ t *badger.Txn }

func (x badgerTxn) Get(key []byte) ([]byte, error) {
	item, err := x.t.Get(key)
	if err != nil {
		return nil, mapErr(err)
	}
	v, err := item.ValueCopy(nil)
	return v, mapErr(err)
}

func (x badgerTxn) View(key []byte, fn func(val []byte) error) error {
	item, err := x.t.Get(key)
	if err != nil {
		return mapErr(err)
	}
	return item.Value(fn)
}

func (x badgerTxn) Has(key []byte) (bool, error) {
	_, err := x.t.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, mapErr(err)
}

func (x badgerTxn) Set(key, val []byte) error { return mapErr(x.t.Set(key, val)) }

func (x badgerTxn) Delete(key []byte) error { return mapErr(x.t.Delete(key)) }

func (x badgerTxn) Scan(prefix, start []byte, fn func(key, val []byte) (bool, error)) error {
	it := x.iter(prefix, true)
	defer it.Close()
	for it.Seek(first(prefix, start)); it.ValidForPrefix(prefix); it.Next() {
		item := it.Item()
		more := false
		err := item.Value(func(v []byte) error {
			var err error
			more, err = fn(item.Key(), v)
			return err
		})
		if err != nil || !more {
			return err
		}
	}
	return nil
}

func (x badgerTxn) ScanKeys(prefix, start []byte, fn func(key []byte) (bool, error)) error {
	it := x.iter(prefix, false)
	defer it.Close()
	for it.Seek(first(prefix, start)); it.ValidForPrefix(prefix); it.Next() {
		more, err := fn(it.Item().Key())
		if err != nil || !more {
			return err
		}
	}
	return nil
}

func (x badgerTxn) LastKey(prefix []byte) ([]byte, error) {
	o := badger.DefaultIteratorOptions
	o.Reverse = true
	o.PrefetchValues = false
	it := x.t.NewIterator(o)
	defer it.Close()
	// A reverse Seek lands on the largest key <= its argument: seek to the smallest key
	// above every key with the prefix (the prefix's successor), or the very end.
	if next := successor(prefix); next != nil {
		it.Seek(next)
	} else {
		it.Rewind()
	}
	for ; it.Valid(); it.Next() {
		k := it.Item().Key()
		if bytes.HasPrefix(k, prefix) {
			return it.Item().KeyCopy(nil), nil
		}
		if bytes.Compare(k, prefix) < 0 {
			break
		}
	}
	return nil, ErrNotFound
}

func (x badgerTxn) iter(prefix []byte, values bool) *badger.Iterator {
	o := badger.DefaultIteratorOptions
	o.Prefix = prefix
	o.PrefetchValues = values
	return x.t.NewIterator(o)
}

func first(prefix, start []byte) []byte {
	if start == nil {
		return prefix
	}
	return start
}

// successor is the smallest key greater than every key that starts with prefix; nil when
// there is none (prefix empty or all 0xff).
func successor(prefix []byte) []byte {
	for i := len(prefix) - 1; i >= 0; i-- {
		if prefix[i] != 0xff {
			s := append([]byte(nil), prefix[:i+1]...)
			s[i]++
			return s
		}
	}
	return nil
}

type badgerBatch struct{ badgerTxn }

func (x badgerBatch) Commit() error { return mapErr(x.t.Commit()) }

func (x badgerBatch) CommitAsync(done func(error)) {
	x.t.CommitWith(func(err error) { done(mapErr(err)) })
}

func (x badgerBatch) Discard() { x.t.Discard() }

// engineErr is an engine error that also matches this package's sentinel, keeping the
// engine's message (callers that log it see what Badger said).
type engineErr struct{ kv, eng error }

func (e engineErr) Error() string   { return e.eng.Error() }
func (e engineErr) Unwrap() []error { return []error{e.kv, e.eng} }

// errNotFound matches ErrNotFound and badger.ErrKeyNotFound, so code not yet moved to this
// package still recognises a miss.
var errNotFound error = engineErr{kv: ErrNotFound, eng: badger.ErrKeyNotFound}

// mapErr wraps Badger's sentinels so that errors.Is matches this package's too.
func mapErr(err error) error {
	var s error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, badger.ErrKeyNotFound):
		if err == badger.ErrKeyNotFound {
			return errNotFound // the common case: no allocation
		}
		s = ErrNotFound
	case errors.Is(err, badger.ErrConflict):
		s = ErrConflict
	case errors.Is(err, badger.ErrTxnTooBig):
		s = ErrTooBig
	case errors.Is(err, badger.ErrDBClosed):
		s = ErrClosed
	case errors.Is(err, badger.ErrReadOnlyTxn):
		s = ErrReadOnly
	default:
		return err
	}
	if errors.Is(err, s) {
		return err
	}
	return engineErr{kv: s, eng: err}
}
