package blockstore

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"syscall"
	"testing"

	"lmfs/blockstore/kv"
)

// FuzzInodeRecord: inode records (inode.go).
func FuzzInodeRecord(f *testing.F) {
	for i, v := range seedInodes() {
		f.Add(uint64(i+2), v)
	}
	f.Fuzz(func(t *testing.T, ino uint64, v []byte) {
		n, err := unmarshalInode(ino, v)
		if err != nil {
			return
		}
		if m := n.marshal(); !bytes.Equal(m, v) {
			t.Fatalf("parse and marshal differ:\n%x\n%x", v, m)
		}
		var d Delta
		d.addInode(&n, 1)
		d.addInode(&n, -1)
		if d != (Delta{}) {
			t.Fatalf("adding and removing an inode does not cancel: %+v", d)
		}
	})
}

// FuzzDirent: directory entries and readdir slots (inode.go, namespace.go).
func FuzzDirent(f *testing.F) {
	for _, v := range seedDirents() {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		if d, err := unmarshalDirent(v); err == nil {
			if m := d.marshal(); !bytes.Equal(m, v) {
				t.Fatalf("entry: parse and marshal differ")
			}
		}
		if e, err := parseSlot(v); err == nil {
			if m := orderValue(dirent{Ino: e.Ino, Mode: e.Mode}, e.Name); !bytes.Equal(m, v) {
				t.Fatalf("slot: parse and marshal differ")
			}
		}
	})
}

// FuzzACL: POSIX ACL attribute values (acl.go), the xattr values the store interprets.
func FuzzACL(f *testing.F) {
	for _, v := range seedACLs() {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		a, err := parseACL(v)
		if err != nil {
			return
		}
		if err := a.valid(); err != nil {
			t.Fatalf("parseACL returned an invalid ACL: %v", err)
		}
		b, err := parseACL(a.marshal())
		if err != nil || len(b) != len(a) {
			t.Fatalf("a parsed ACL does not parse again: %v", err)
		}
		mode, _ := a.equivMode(0o644)
		a.chmod(mode)
		createFromDefault(a, 0o666)
	})
}

// FuzzStoreRecords plants one record (any key, any value) into a real store and runs what
// reads records: lookups, listings, attributes, data reads, fsck. None may panic (fsck turns
// a panic into ErrPanic, which fails the target). The record is taken out again after.
func FuzzStoreRecords(f *testing.F) {
	dir := f.TempDir()
	s, err := Open(dir, Options{Create: true, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError + 4}))})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	d, err := s.Create(RootIno, "dir", NewNode{Mode: syscall.S_IFDIR | 0o755})
	if err != nil {
		f.Fatal(err)
	}
	file, err := s.Create(RootIno, "file", NewNode{Mode: syscall.S_IFREG | 0o644})
	if err != nil {
		f.Fatal(err)
	}
	if file.Ino != 3 || d.Ino != 2 {
		f.Fatalf("inode numbers %d, %d: the seeds assume 2 and 3", d.Ino, file.Ino)
	}
	data := bytes.Repeat([]byte("records from a hostile store "), 2000)
	if err := s.WriteAt(file.Ino, data, 0); err != nil {
		f.Fatal(err)
	}
	if err := s.SetXattr(file.Ino, "user.x", []byte("v"), 0); err != nil {
		f.Fatal(err)
	}
	if _, err := s.Create(d.Ino, "link", NewNode{Mode: syscall.S_IFLNK | 0o777, Target: "../file"}); err != nil {
		f.Fatal(err)
	}
	s.Sync()
	for _, kv := range seedRecords() {
		f.Add(kv.k, kv.v)
	}
	buf := make([]byte, 256<<10)
	f.Fuzz(func(t *testing.T, k, v []byte) {
		if len(k) == 0 || len(k) > 1024 || len(v) > 1<<20 || bytes.HasPrefix(k, []byte("!badger")) {
			return
		}
		var old []byte
		had := false
		err := kv.UpdateOnce(s.db, func(txn kv.Txn) error {
			v, err := txn.Get(k, nil)
			if err == nil {
				had = true
				old = v
			} else if !errors.Is(err, kv.ErrNotFound) {
				return err
			}
			return txn.Set(bytes.Clone(k), bytes.Clone(v))
		})
		if err != nil {
			return
		}
		defer func() {
			err := kv.UpdateOnce(s.db, func(txn kv.Txn) error {
				if had {
					return txn.Set(bytes.Clone(k), old)
				}
				return txn.Delete(bytes.Clone(k))
			})
			if err != nil {
				t.Fatalf("taking the record out: %v", err)
			}
		}()
		inos := []uint64{RootIno, d.Ino, file.Ino, 4, 999}
		if len(k) >= 9 {
			inos = append(inos, decodeInoKey(k))
		}
		for _, ino := range inos {
			s.GetInode(ino)
			s.ReadDir(ino, 0, 100)
			s.ListXattr(ino)
			s.GetXattr(ino, "user.x")
			s.GetXattr(ino, XattrACLAccess)
			s.ReadAt(ino, buf, 0)
			s.ReadAt(ino, buf[:3000], 30000)
		}
		s.Lookup(RootIno, "file")
		s.Lookup(RootIno, "planted")
		s.Models()
		if _, err := s.Fsck(FsckOptions{}); errors.Is(err, ErrPanic) {
			t.Fatal(err)
		}
	})
}

// decodeInoKey is the inode number in a key of the inode-keyed tables.
func decodeInoKey(k []byte) uint64 {
	ino, _ := decodeU64U64(k)
	return ino
}
