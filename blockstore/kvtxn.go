package blockstore

import (
	"github.com/dgraph-io/badger/v4"

	"lmfs/blockstore/kv"
)

// The store is moving its metadata transactions from Badger's API to package kv, file by
// file (README "Scaling out" lists which files go through it). Until the move is complete,
// this file bridges the two: converted code runs its transactions through kvView, kvUpdate
// and kvUpdateData, which keep the store's rules (the GC gate, read-only EROFS, retries on
// conflict and on data-segment moves, EFBIG for a transaction too big) by calling the
// Badger-typed runners; code not converted yet keeps the helper names it calls, which hand
// its *badger.Txn to the converted helpers. Once no file uses a *badger.Txn, the runners
// move onto kv.DB and this file goes.

// kvView is view (store.go, groupio.go) for code that takes a kv.Txn.
func (s *Store) kvView(fn func(txn kv.Txn) error) error {
	return s.view(func(t *badger.Txn) error { return fn(kv.BadgerTxn(t)) })
}

// kvUpdate is update for code that takes a kv.Txn.
func (s *Store) kvUpdate(fn func(txn kv.Txn) error) error {
	return s.update(func(t *badger.Txn) error { return fn(kv.BadgerTxn(t)) })
}

// kvUpdateData is updateData for code that takes a kv.Txn.
func (s *Store) kvUpdateData(fn func(txn kv.Txn, sb *segBatch) error) error {
	return s.updateData(func(t *badger.Txn, sb *segBatch) error { return fn(kv.BadgerTxn(t), sb) })
}

// getInode is loadInode for code that still holds a *badger.Txn.
func getInode(txn *badger.Txn, ino uint64) (Inode, error) { return loadInode(kv.BadgerTxn(txn), ino) }

// putInode is saveInode for code that still holds a *badger.Txn.
func putInode(txn *badger.Txn, n *Inode) error { return saveInode(kv.BadgerTxn(txn), n) }
