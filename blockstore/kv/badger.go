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
//
// Besides DB it offers the engine's own maintenance (memtable flush, LSM flattening,
// value-log GC), which the store runs in the background (gc.go) and no other engine needs in
// this form.
type Badger struct{ db *badger.DB }

// NewBadger wraps an open Badger database.
func NewBadger(db *badger.DB) *Badger { return &Badger{db: db} }

// Begin starts a transaction (read-write with update).
func (b *Badger) Begin(update bool) (Batch, error) {
	if b.db.IsClosed() {
		return nil, mapErr(badger.ErrDBClosed)
	}
	return badgerTxn{b.db.NewTransaction(update)}, nil
}

// Sync writes Badger's value log and memtable-backing files to disk.
func (b *Badger) Sync() error { return mapErr(b.db.Sync()) }

// Close closes the database.
func (b *Badger) Close() error { return mapErr(b.db.Close()) }

// FlushMemtables writes the memtables out as tables now. Badger has no call for that, but
// DropPrefix flushes them before it drops: marker is a key of no use that is written so there
// is something to flush, then dropped. Commits are refused meanwhile (ErrBlocked): the caller
// keeps other writers out while it runs.
func (b *Badger) FlushMemtables(marker []byte) error {
	err := b.db.Update(func(txn *badger.Txn) error { return txn.Set(marker, []byte{1}) })
	if err == nil {
		err = b.db.DropPrefix(marker)
	}
	return mapErr(err)
}

// Flatten compacts the LSM tree into one level with the given number of workers.
func (b *Badger) Flatten(workers int) error { return mapErr(b.db.Flatten(workers)) }

// CollectValueLog rewrites one value-log file of which at least ratio is garbage, and
// reports whether it found one (false, nil: none worth it, or a GC already running).
func (b *Badger) CollectValueLog(ratio float64) (bool, error) {
	err := b.db.RunValueLogGC(ratio)
	if errors.Is(err, badger.ErrNoRewrite) || errors.Is(err, badger.ErrRejected) {
		return false, nil
	}
	return err == nil, mapErr(err)
}

// badgerTxn is one pointer, so it sits in a Txn or Batch interface without an allocation.
type badgerTxn struct{ t *badger.Txn }

func (x badgerTxn) Get(key, dst []byte) ([]byte, error) {
	item, err := x.t.Get(key)
	if err != nil {
		return nil, mapErr(err)
	}
	v, err := item.ValueCopy(dst[:0])
	return v, mapErr(err)
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

func (x badgerTxn) Iterate(o IterOptions) Iterator {
	bo := badger.IteratorOptions{Reverse: o.Reverse}
	if o.Prefetch {
		bo.PrefetchValues, bo.PrefetchSize = true, badger.DefaultIteratorOptions.PrefetchSize
	}
	if !o.Reverse {
		// Badger skips tables outside the prefix. (Not in reverse: its Seek of no key goes to
		// the prefix itself, the wrong end; Seek below finds the end.)
		bo.Prefix = o.Prefix
	}
	return &badgerIter{it: x.t.NewIterator(bo), prefix: o.Prefix, reverse: o.Reverse}
}

func (x badgerTxn) Commit() error { return mapErr(x.t.Commit()) }

func (x badgerTxn) CommitAsync(done chan<- error) {
	x.t.CommitWith(func(err error) { done <- mapErr(err) })
}

func (x badgerTxn) Discard() { x.t.Discard() }

type badgerIter struct {
	it      *badger.Iterator
	prefix  []byte
	reverse bool
}

func (x *badgerIter) Seek(key []byte) {
	switch {
	case key != nil:
		x.it.Seek(key)
	case !x.reverse:
		x.it.Seek(x.prefix) // Badger rewinds for an empty one
	default:
		// A reverse Seek lands on the largest key <= its argument: seek to the smallest key
		// above every key with the prefix (its successor; none: the very end), and step off
		// the successor itself if it is a key.
		next := successor(x.prefix)
		if next == nil {
			x.it.Rewind()
			return
		}
		x.it.Seek(next)
		if x.it.Valid() && bytes.Equal(x.it.Item().Key(), next) {
			x.it.Next()
		}
	}
}

func (x *badgerIter) Valid() bool { return x.it.ValidForPrefix(x.prefix) }

func (x *badgerIter) Next() { x.it.Next() }

func (x *badgerIter) Key() []byte { return x.it.Item().Key() }

func (x *badgerIter) Value(dst []byte) ([]byte, error) {
	v, err := x.it.Item().ValueCopy(dst[:0])
	return v, mapErr(err)
}

func (x *badgerIter) Close() { x.it.Close() }

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

// engineErr is an engine error that also matches this package's sentinel, keeping the
// engine's message (callers that log it see what Badger said).
type engineErr struct{ kv, eng error }

func (e engineErr) Error() string   { return e.eng.Error() }
func (e engineErr) Unwrap() []error { return []error{e.kv, e.eng} }

// errNotFound matches ErrNotFound and badger.ErrKeyNotFound; a package-level value, so the
// common miss allocates nothing.
var errNotFound error = engineErr{kv: ErrNotFound, eng: badger.ErrKeyNotFound}

// mapErr is where Badger's errors become this package's: its sentinels are wrapped so that
// errors.Is matches ours too (conflict, transaction too big, closed, read-only, writes blocked).
func mapErr(err error) error {
	var s error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, badger.ErrKeyNotFound):
		if err == badger.ErrKeyNotFound {
			return errNotFound
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
	case errors.Is(err, badger.ErrBlockedWrites):
		s = ErrBlocked
	default:
		return err
	}
	if errors.Is(err, s) {
		return err
	}
	return engineErr{kv: s, eng: err}
}
