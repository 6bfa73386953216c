// Package kv is the seam between lmfs's metadata and the ordered key-value engine that holds
// it. The store (package blockstore) keeps every inode, directory entry, block-group record,
// counter and marker as a key in one ordered keyspace and changes them only in transactions;
// this package names the few operations it needs so that an engine is something that
// implements them, not something the store's code calls directly.
//
// An engine implements three small interfaces: DB (Begin a transaction, Sync, Close), Txn
// (Get, Has, Set, Delete, and an Iterator over a prefix) and Batch (Commit, CommitAsync,
// Discard). Everything else here (View and Update with retry on conflict, Scan, ScanKeys,
// LastKey) is written once on top of them. Badger (badger.go) is the engine lmfs ships.
//
// The contract an engine must keep is written on Txn and DB below: each transaction reads one
// consistent snapshot, and a read-write transaction commits only if no key it read was changed
// by a transaction that committed after its snapshot was taken (otherwise ErrConflict). That
// is serializable isolation for the keys a transaction touches, which is what the store's
// invariants (link counts, directory entries, counters, the compactor's compare-and-swap) rely
// on. README's "Scaling out" says how TiKV, FoundationDB or PostgreSQL would provide it.
//
// Hot paths: the methods take and return plain slices, never callbacks, so a caller on the
// data path reads a value into a buffer it keeps (Get's dst) without an allocation per call
// (a closure handed to an interface method escapes, and so does everything it captures).
package kv

import "errors"

// Sentinel errors, matched with errors.Is. An engine wraps its own error so that both its own
// sentinel and these match.
var (
	// ErrNotFound: the key is not in the transaction's snapshot.
	ErrNotFound = errors.New("kv: key not found")
	// ErrConflict: a key the transaction read was changed meanwhile; its writes were not
	// applied. Update retries; a caller of Batch.Commit sees it and runs the batch again.
	ErrConflict = errors.New("kv: transaction conflict")
	// ErrTooBig: the transaction holds more writes than the engine commits at once.
	ErrTooBig = errors.New("kv: transaction too big")
	// ErrClosed: the database has been closed.
	ErrClosed = errors.New("kv: database closed")
	// ErrReadOnly: a write in a read-only transaction or on a read-only database.
	ErrReadOnly = errors.New("kv: read-only")
	// ErrBlocked: the engine refused the commit for a while (Badger during a memtable flush
	// it was asked for); nothing was applied, and the same transaction may be run again.
	ErrBlocked = errors.New("kv: writes blocked")
)

// Txn is one transaction: reads see the snapshot taken when it began plus its own writes.
//
// Lifetimes: a slice passed to Set (key and value) must not be modified until the transaction
// has ended. A key or value an Iterator returns is valid until the iterator moves; a value Get
// returns lives in dst's memory (or a new slice) and is the caller's.
type Txn interface {
	// Get appends the value of key to dst[:0] and returns it (a new slice when dst is nil or
	// too small; an empty value may come back nil), or ErrNotFound. With a dst the caller
	// keeps, a read allocates nothing of its own.
	Get(key, dst []byte) ([]byte, error)
	// Has reports whether key exists, without reading its value.
	Has(key []byte) (bool, error)
	// Set writes key = val.
	Set(key, val []byte) error
	// Delete removes key (no error if it is absent).
	Delete(key []byte) error
	// Iterate returns an iterator over the keys that start with o.Prefix, unpositioned (call
	// Seek). Close it before the transaction ends.
	Iterate(o IterOptions) Iterator
}

// IterOptions choose what an Iterator visits.
type IterOptions struct {
	// Prefix: only keys that start with it (nil: every key).
	Prefix []byte
	// Reverse: descending byte order.
	Reverse bool
	// Prefetch: most values will be read; the engine may fetch them ahead of the iteration
	// (Badger reads them in background goroutines). Leave it off for key-only scans and for
	// scans that read values here and there.
	Prefetch bool
}

// Iterator walks the keys of a prefix in byte order (descending with Reverse) within its
// transaction's snapshot.
type Iterator interface {
	// Seek moves to the first key >= key (Reverse: the last key <= key); nil key: the first
	// key of the prefix (Reverse: the last).
	Seek(key []byte)
	// Valid reports whether the iterator is on a key that starts with the prefix.
	Valid() bool
	// Next moves to the next key.
	Next()
	// Key is the current key, valid until the iterator moves (copy it to keep it).
	Key() []byte
	// Value appends the current key's value to dst[:0] and returns it, as Txn.Get.
	Value(dst []byte) ([]byte, error)
	// Close releases the iterator.
	Close()
}

// Batch is a transaction whose end the caller drives: the store's own transaction runners
// (which add their locking and retry policy around it) and pipelines that build the next
// transaction while the previous one is being written (the write-behind queue).
type Batch interface {
	Txn
	// Commit applies the writes, or returns ErrConflict / ErrTooBig and applies none. A
	// read-only transaction has nothing to apply.
	Commit() error
	// CommitAsync starts the commit and sends its result on done from another goroutine;
	// done must have room for it (the engine does not wait).
	CommitAsync(done chan<- error)
	// Discard ends the transaction without applying it; safe after Commit.
	Discard()
}

// DB is an open keyspace.
type DB interface {
	// Begin starts a transaction, read-write with update (on a read-only database a write
	// fails with ErrReadOnly), or ErrClosed.
	Begin(update bool) (Batch, error)
	// Sync makes every committed transaction durable.
	Sync() error
	// Close flushes and closes; later calls return ErrClosed.
	Close() error
}

// maxAttempts bounds Update's runs of one transaction; conflicts come from concurrent writers
// to the same keys and clear in a few attempts.
const maxAttempts = 1000

// View runs fn in a read-only transaction.
func View(db DB, fn func(Txn) error) error {
	txn, err := db.Begin(false)
	if err != nil {
		return err
	}
	defer txn.Discard()
	return fn(txn)
}

// Update runs fn in a read-write transaction and commits it. When the commit conflicts (or fn
// returns an error matching ErrConflict) it runs fn again on a new snapshot, up to
// maxAttempts, so fn must be safe to repeat: no side effects outside the transaction, or
// idempotent ones. Other errors fn returns come back unchanged and nothing is written.
func Update(db DB, fn func(Txn) error) error {
	for attempt := 1; ; attempt++ {
		err := UpdateOnce(db, fn)
		if attempt < maxAttempts && errors.Is(err, ErrConflict) {
			continue
		}
		return err
	}
}

// UpdateOnce is one attempt of Update: fn in a read-write transaction, committed unless fn
// fails; ErrConflict comes back to the caller, whose retry policy it is.
func UpdateOnce(db DB, fn func(Txn) error) error {
	txn, err := db.Begin(true)
	if err != nil {
		return err
	}
	defer txn.Discard()
	if err := fn(txn); err != nil {
		return err
	}
	return txn.Commit()
}

// Scan calls fn for each key that starts with prefix and is >= start (nil: from the prefix's
// first key), in ascending byte order, until fn returns false or an error (which Scan
// returns). key and val are valid only during fn; keep copies to use them later.
func Scan(txn Txn, prefix, start []byte, fn func(key, val []byte) (more bool, err error)) error {
	it := txn.Iterate(IterOptions{Prefix: prefix, Prefetch: true})
	defer it.Close()
	var buf []byte
	for it.Seek(start); it.Valid(); it.Next() {
		v, err := it.Value(buf[:0])
		if err != nil {
			return err
		}
		buf = v
		if more, err := fn(it.Key(), v); err != nil || !more {
			return err
		}
	}
	return nil
}

// ScanKeys is Scan without values: engines that keep large values apart (Badger's value log)
// need not read them.
func ScanKeys(txn Txn, prefix, start []byte, fn func(key []byte) (more bool, err error)) error {
	it := txn.Iterate(IterOptions{Prefix: prefix})
	defer it.Close()
	for it.Seek(start); it.Valid(); it.Next() {
		if more, err := fn(it.Key()); err != nil || !more {
			return err
		}
	}
	return nil
}

// LastKey returns a copy of the largest key that starts with prefix, or ErrNotFound.
func LastKey(txn Txn, prefix []byte) ([]byte, error) {
	it := txn.Iterate(IterOptions{Prefix: prefix, Reverse: true})
	defer it.Close()
	if it.Seek(nil); it.Valid() {
		return append([]byte(nil), it.Key()...), nil
	}
	return nil, ErrNotFound
}
