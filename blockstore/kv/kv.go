// Package kv is the seam between lmfs's metadata and the ordered key-value engine that holds
// it. The store (package blockstore) keeps every inode, directory entry, block-group record,
// counter and marker as a key in one ordered keyspace and changes them only in transactions;
// this package names the few operations it needs (get, set, delete, ordered prefix scans, and
// transactions that are retried when they conflict) so that an engine is something that
// implements them, not something the store's code calls directly.
//
// Badger (badger.go) is the engine lmfs ships. What another engine must provide is the contract
// written on Txn and DB below: each transaction reads one consistent snapshot, and a read-write
// transaction commits only if no key it read was changed by a transaction that committed after
// its snapshot was taken (otherwise ErrConflict, and DB.Update runs it again). That is
// serializable isolation for the keys a transaction touches, which is what the store's
// invariants (link counts, directory entries, counters, the compactor's compare-and-swap)
// rely on. README's "Scaling out" says how TiKV, FoundationDB or PostgreSQL would provide it.
package kv

import "errors"

// Sentinel errors, matched with errors.Is. An engine wraps its own error so that both its own
// sentinel and these match.
var (
	// ErrNotFound: the key is not in the transaction's snapshot.
	ErrNotFound = errors.New("kv: key not found")
	// ErrConflict: a key the transaction read was changed meanwhile; its writes were not
	// applied. DB.Update retries; a caller of Batch.Commit sees it and runs the batch again.
	ErrConflict = errors.New("kv: transaction conflict")
	// ErrTooBig: the transaction holds more writes than the engine commits at once.
	ErrTooBig = errors.New("kv: transaction too big")
	// ErrClosed: the database has been closed.
	ErrClosed = errors.New("kv: database closed")
	// ErrReadOnly: a write in a read-only transaction or on a read-only database.
	ErrReadOnly = errors.New("kv: read-only")
)

// Txn is one transaction: reads see the snapshot taken when it began plus its own writes.
//
// Lifetimes: a slice passed to Set (key and value) must not be modified until the transaction
// has ended. A slice handed to a callback (View, Scan, ScanKeys) is valid only during that
// call; keep a copy (append([]byte(nil), v...)) to use it later. Get returns a copy the caller
// owns.
type Txn interface {
	// Get returns a copy of the value of key, or ErrNotFound.
	Get(key []byte) ([]byte, error)
	// View calls fn with the value of key without copying it (valid only during fn), or
	// returns ErrNotFound without calling fn. For hot paths that decode the value in place.
	View(key []byte, fn func(val []byte) error) error
	// Has reports whether key exists, without reading its value.
	Has(key []byte) (bool, error)
	// Set writes key = val.
	Set(key, val []byte) error
	// Delete removes key (no error if it is absent).
	Delete(key []byte) error
	// Scan calls fn for each key that starts with prefix and is >= start (nil: from the
	// prefix's first key), in ascending byte order, until fn returns false or an error (which
	// Scan returns).
	Scan(prefix, start []byte, fn func(key, val []byte) (more bool, err error)) error
	// ScanKeys is Scan without values: engines that keep large values apart (Badger's value
	// log) need not read them.
	ScanKeys(prefix, start []byte, fn func(key []byte) (more bool, err error)) error
	// LastKey returns a copy of the largest key that starts with prefix, or ErrNotFound.
	LastKey(prefix []byte) ([]byte, error)
}

// Batch is a read-write transaction whose commit the caller drives, for pipelines that build
// the next transaction while the previous one is being written (the write-behind queue).
type Batch interface {
	Txn
	// Commit applies the writes, or returns ErrConflict / ErrTooBig and applies none.
	Commit() error
	// CommitAsync starts the commit and calls done with its result from another goroutine.
	CommitAsync(done func(error))
	// Discard ends the transaction without applying it; safe after Commit.
	Discard()
}

// DB is an open keyspace.
type DB interface {
	// View runs fn in a read-only transaction.
	View(fn func(Txn) error) error
	// Update runs fn in a read-write transaction and commits it; when the commit conflicts it
	// runs fn again on a new snapshot (fn must therefore be safe to repeat: no side effects
	// outside the transaction, or side effects that are idempotent). Errors fn returns are
	// returned unchanged and nothing is written.
	Update(fn func(Txn) error) error
	// Begin starts a read-write transaction the caller commits or discards.
	Begin() Batch
	// Sync makes every committed transaction durable.
	Sync() error
	// Close flushes and closes; later calls return ErrClosed.
	Close() error
}
