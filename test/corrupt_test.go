package test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"lmfs/blockstore"
)

// openBadger opens an unmounted store's database directly, with the store's own settings.
func openBadger(t *testing.T, store string) *badger.DB {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(store).WithLogger(nil).WithCompression(options.None).
		WithValueThreshold(1 << 20).WithNumVersionsToKeep(1))
	if err != nil {
		t.Fatalf("open badger: %v", err)
	}
	return db
}

// getBlock returns the stored record of block blk of ino (nil for a hole).
func getBlock(t *testing.T, db *badger.DB, ino, blk uint64) []byte {
	t.Helper()
	key, slot := blockstore.GroupKey(ino, blk)
	var rec []byte
	err := db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return fmt.Errorf("block %d of inode %d: %w", blk, ino, err)
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		if v, err = blockstore.ResolveGroup(db.Opts().Dir, key, v); err != nil {
			return err
		}
		rec, err = blockstore.GroupRecord(v, slot)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// setBlock stores rec as the record of block blk of ino, behind the store's back.
func setBlock(t *testing.T, db *badger.DB, ino, blk uint64, rec []byte) {
	t.Helper()
	key, slot := blockstore.GroupKey(ino, blk)
	err := db.Update(func(txn *badger.Txn) error {
		var v []byte
		if item, err := txn.Get(key); err == nil {
			if v, err = item.ValueCopy(nil); err != nil {
				return err
			}
			// Stored back inline (any size is valid inline): the segment entry is garbage now.
			if v, err = blockstore.ResolveGroup(db.Opts().Dir, key, v); err != nil {
				return err
			}
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		nv, err := blockstore.SetGroupRecord(v, slot, rec)
		if err != nil {
			return err
		}
		return txn.Set(key, nv)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// corruptBlock changes the record of block blk of ino with change.
func corruptBlock(t *testing.T, db *badger.DB, ino, blk uint64, change func(rec []byte)) {
	t.Helper()
	rec := getBlock(t, db, ino, blk)
	if rec == nil {
		t.Fatalf("block %d of inode %d is a hole", blk, ino)
	}
	change(rec)
	setBlock(t, db, ino, blk, rec)
}

// preadDirect reads n bytes at off with O_DIRECT (one FUSE READ, no page cache sharing a
// 4 KiB page between two 2 KiB blocks).
func preadDirect(p string, off int64, n int) ([]byte, error) {
	fd, err := syscall.Open(p, syscall.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	buf, err := syscall.Mmap(-1, 0, (n+4095)/4096*4096, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return nil, err
	}
	defer syscall.Munmap(buf)
	k, err := syscall.Pread(fd, buf[:n], off)
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), buf[:k]...), nil
}

// TestCorruptBlock flips bytes inside stored block records: reading such a block fails with
// EIO (never wrong data), the file's other blocks read fine, the mount keeps running, and the
// log names the inode and block.
func TestCorruptBlock(t *testing.T) {
	store := newStore(t)
	m := mountStore(t, store)
	p := m.path("f")
	// Blocks 0-7: text (compressed records) and random (raw records), no zero blocks.
	var data []byte
	for b := 0; b < 8; b++ {
		if b%2 == 0 {
			data = append(data, textData(int64(b), 2048)...)
		} else {
			blk := make([]byte, 2048)
			fillRandom(newRand(int64(b)), blk)
			data = append(data, blk...)
		}
	}
	writeFile(t, p, data)
	writeFile(t, m.path("other"), textData(99, 10000))
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	ino := st.Ino
	m.umount()

	db := openBadger(t, store)
	bad := map[uint64]string{
		2: "payload byte of a compressed block",
		5: "payload byte of a raw block",
		6: "stored checksum",
	}
	corruptBlock(t, db, ino, 2, func(rec []byte) { rec[8+len(rec[8:])/2] ^= 0x40 })
	corruptBlock(t, db, ino, 5, func(rec []byte) { rec[8+100] ^= 0x01 })
	corruptBlock(t, db, ino, 6, func(rec []byte) { rec[5] ^= 0xff })
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	m = mountAt(t, store, m.dir)
	for blk := uint64(0); blk < 8; blk++ {
		got, err := preadDirect(p, int64(blk)*2048, 2048)
		if what, isBad := bad[blk]; isBad {
			if err != syscall.EIO {
				t.Errorf("block %d (%s): read gave %d bytes, err %v; want EIO", blk, what, len(got), err)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, data[blk*2048:(blk+1)*2048]) {
			t.Errorf("intact block %d: err %v, %s", blk, err, firstDiff(got, data[blk*2048:(blk+1)*2048]))
		}
	}
	// Buffered reads: the whole file fails, never returning wrong bytes; a range before the
	// bad blocks reads fine.
	if got, err := os.ReadFile(p); err == nil {
		t.Errorf("reading the whole file succeeded (%d bytes); want EIO", len(got))
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 4096)
	if n, err := f.ReadAt(head, 0); err != nil || !bytes.Equal(head[:n], data[:4096]) {
		t.Errorf("buffered read of blocks 0-1: n %d err %v", n, err)
	}
	f.Close()
	// The mount keeps running: other files read, new files write.
	if got := readFile(t, m.path("other")); !bytes.Equal(got, textData(99, 10000)) {
		t.Errorf("other file changed")
	}
	writeFile(t, m.path("new"), []byte("fine"))
	if !isMounted(m.dir) {
		t.Fatal("mount died")
	}
	// The log names the inode and the block.
	var log string
	waitFor(3*time.Second, func() bool {
		b, _ := os.ReadFile(filepath.Join(store, "lmfs.log"))
		log = string(b)
		return strings.Contains(log, fmt.Sprintf("block=%d", 6))
	})
	for blk := range bad {
		found := false
		for _, line := range strings.Split(log, "\n") {
			if strings.Contains(line, fmt.Sprintf("inode=%d ", ino)) && strings.Contains(line, fmt.Sprintf("block=%d ", blk)) {
				found = true
			}
		}
		if !found {
			t.Errorf("log has no line naming inode %d block %d:\n%s", ino, blk, log)
		}
	}
	// Overwriting a bad block whole repairs it.
	fw, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fw.WriteAt(data[2*2048:3*2048], 2*2048); err != nil {
		t.Errorf("overwriting a bad block: %v", err)
	}
	fw.Close()
	if got, err := preadDirect(p, 2*2048, 2048); err != nil || !bytes.Equal(got, data[2*2048:3*2048]) {
		t.Errorf("block 2 after overwrite: err %v", err)
	}
	// A partial write into a bad block must fail rather than build on garbage.
	fw, _ = os.OpenFile(p, os.O_WRONLY, 0)
	if _, err := fw.WriteAt([]byte("x"), 5*2048+10); err == nil {
		t.Errorf("partial write into a corrupt block succeeded")
	}
	fw.Close()
	if _, err := preadDirect(p, 5*2048, 2048); err != syscall.EIO {
		t.Errorf("block 5 after failed partial write: %v, want EIO", err)
	}
}
