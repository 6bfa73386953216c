package blockstore

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"sync"
	"syscall"

	"lmfs/blockstore/kv"
	"lmfs/codec"
)

const (
	counterNextIno = "next_ino"
	counterStats   = "stats"
	counterClean   = "clean"
	firstCookie    = 3 // readdir offsets 1 and 2 are "." and ".."
)

// CodecUse is what the blocks of one codec hold.
type CodecUse struct {
	Blocks int64 `json:"blocks"`
	Raw    int64 `json:"raw_bytes"`    // logical bytes in these blocks
	Stored int64 `json:"stored_bytes"` // record bytes (header + payload)
}

// Delta is a change of the counters by one operation.
type Delta struct {
	Files, Dirs, Symlinks, Others int64
	Logical                       int64
	Pending, PendingRaw           int64
	codec                         [8]CodecUse
	freed                         int64        // record bytes removed or replaced (garbage for value-log GC)
	files                         *fileChanges // stored bytes changed by file (usage.go)
}

// addBlock accounts for a new or removed (sign -1) block record.
func (d *Delta) addBlock(rec []byte, sign int64) {
	if len(rec) < codec.HeaderSize {
		return
	}
	raw, flags := -1, byte(0)
	if h, _, err := codec.ParseHeader(rec); err == nil {
		raw, flags = int(h.RawLen), h.Flags
	}
	d.addRecord(rec[0], flags, raw, len(rec), sign)
}

// addRecord accounts for a record of codec id with its header's flags and raw length (-1:
// unreadable header) and stored length.
func (d *Delta) addRecord(id byte, flags byte, raw, stored int, sign int64) {
	if int(id) >= len(d.codec) {
		id = 0
	}
	u := &d.codec[id]
	if sign < 0 {
		d.freed += int64(stored)
	}
	u.Blocks += sign
	u.Stored += sign * int64(stored)
	if raw >= 0 {
		u.Raw += sign * int64(raw)
		if flags&codec.FlagPending != 0 {
			d.Pending += sign
			d.PendingRaw += sign * int64(raw)
		}
	}
}

// Counters is a snapshot of the store's counters.
type Counters struct {
	Files      int64               `json:"files"`
	Dirs       int64               `json:"dirs"`
	Symlinks   int64               `json:"symlinks"`
	Others     int64               `json:"others"`
	Logical    int64               `json:"logical_bytes"`
	Pending    int64               `json:"pending_blocks"`
	PendingRaw int64               `json:"pending_bytes"`
	Codecs     map[string]CodecUse `json:"codecs"`
}

// Stored is the sum of all block records' bytes.
func (c Counters) Stored() (blocks, raw, stored int64) {
	for _, u := range c.Codecs {
		blocks += u.Blocks
		raw += u.Raw
		stored += u.Stored
	}
	return
}

type counters struct {
	mu       sync.Mutex
	d        Delta
	segFreed int64      // record bytes freed since segment GC last looked (segment_gc.go)
	files    usageCache // stored bytes of files (usage.go)
}

// takeSegFreed returns the record bytes freed since the last call.
func (c *counters) takeSegFreed() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.segFreed
	c.segFreed = 0
	return n
}

// freedSince is the record bytes freed since resetFreed (what value-log GC may get back).
func (c *counters) freedSince() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.d.freed
}

func (c *counters) resetFreed() {
	c.mu.Lock()
	c.d.freed = 0
	c.mu.Unlock()
}

func newCounters() *counters { return &counters{} }

func (c *counters) add(d Delta) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.d.Files += d.Files
	c.d.Dirs += d.Dirs
	c.d.Symlinks += d.Symlinks
	c.d.Others += d.Others
	c.d.Logical += d.Logical
	c.d.Pending += d.Pending
	c.d.PendingRaw += d.PendingRaw
	c.d.freed += d.freed
	c.segFreed += d.freed
	for i := range d.codec {
		c.d.codec[i].Blocks += d.codec[i].Blocks
		c.d.codec[i].Raw += d.codec[i].Raw
		c.d.codec[i].Stored += d.codec[i].Stored
	}
	c.files.apply(d.files)
}

func (c *counters) snapshot() Counters {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := Counters{Files: c.d.Files, Dirs: c.d.Dirs, Symlinks: c.d.Symlinks, Others: c.d.Others,
		Logical: c.d.Logical, Pending: c.d.Pending, PendingRaw: c.d.PendingRaw, Codecs: map[string]CodecUse{}}
	for i, u := range c.d.codec {
		if u.Blocks != 0 || u.Stored != 0 {
			out.Codecs[codec.ID(i).String()] = u
		}
	}
	return out
}

// Counters returns the store's counters, including every write that has returned (it waits
// for writes still being committed).
func (s *Store) Counters() Counters {
	s.settleAll()
	return s.counters.snapshot()
}

type persisted struct {
	Files, Dirs, Symlinks, Others, Logical, Pending, PendingRaw int64
	Codec                                                       [8]CodecUse
}

// saveCounters writes the counters; clean marks a store closed cleanly.
func (s *Store) saveCounters(clean bool) error {
	s.counters.mu.Lock()
	d := s.counters.d
	s.counters.mu.Unlock()
	p := persisted{d.Files, d.Dirs, d.Symlinks, d.Others, d.Logical, d.Pending, d.PendingRaw, d.codec}
	b, _ := json.Marshal(p)
	cl := []byte{0}
	if clean {
		cl[0] = 1
	}
	s.gate.RLock() // see gc.go
	defer s.gate.RUnlock()
	return kv.UpdateOnce(s.db, func(txn kv.Txn) error {
		if err := txn.Set(counterKey(counterStats), b); err != nil {
			return err
		}
		return txn.Set(counterKey(counterClean), cl)
	})
}

// loadCounters reads the persisted counters of a cleanly closed store, or recomputes them,
// and marks the store in use (not clean) until Close.
func (s *Store) loadCounters() error {
	var p persisted
	clean := false
	err := s.viewOnce(func(txn kv.Txn) error {
		if v, err := txn.Get(counterKey(counterClean), nil); err == nil {
			clean = len(v) == 1 && v[0] == 1
		}
		v, err := txn.Get(counterKey(counterStats), nil)
		if errors.Is(err, kv.ErrNotFound) {
			clean = false
			return nil
		}
		if err != nil {
			return err // there, but its value cannot be read
		}
		if json.Unmarshal(v, &p) != nil {
			clean = false
		}
		return nil
	})
	if err != nil {
		return err
	}
	if next, err := s.scanNextIno(); err != nil {
		return err
	} else {
		s.next = next
	}
	s.counters = newCounters()
	if clean {
		s.counters.d = Delta{Files: p.Files, Dirs: p.Dirs, Symlinks: p.Symlinks, Others: p.Others, Logical: p.Logical, Pending: p.Pending, PendingRaw: p.PendingRaw, codec: p.Codec}
	} else {
		s.log.Info("store was not closed cleanly: recomputing counters", "store", s.dir)
		d, err := s.scanCounters()
		if err != nil {
			return err
		}
		s.counters.d = d
	}
	if s.opts.ReadOnly {
		return nil
	}
	if err := s.removeOrphans(); err != nil {
		return err
	}
	return s.saveCounters(false)
}

// scanNextIno finds the next free inode number: one past the largest inode in the store.
func (s *Store) scanNextIno() (uint64, error) {
	next := uint64(RootIno + 1)
	err := s.viewOnce(func(txn kv.Txn) error {
		it := txn.Iterate(kv.IterOptions{Prefix: []byte{tagInode}, Reverse: true})
		defer it.Close()
		it.Seek(append(keyU64(tagInode, ^uint64(0)), 0xff))
		if it.Valid() {
			k := it.Key()
			if len(k) == 9 {
				next = binary.BigEndian.Uint64(k[1:]) + 1
			}
		}
		return nil
	})
	return next, err
}

// scanCounters recomputes every counter from the stored inodes and blocks.
func (s *Store) scanCounters() (Delta, error) {
	var d Delta
	err := s.viewOnce(func(txn kv.Txn) error {
		var v []byte
		it := txn.Iterate(kv.IterOptions{Prefix: []byte{tagInode}, Prefetch: true})
		defer it.Close()
		for it.Seek(nil); it.Valid(); it.Next() {
			k := it.Key()
			if len(k) != 9 {
				continue
			}
			var err error
			if v, err = it.Value(v); err == nil {
				var n Inode
				if n, err = unmarshalInode(binary.BigEndian.Uint64(k[1:]), v); err == nil {
					d.addInode(&n, 1)
				}
			}
			if err != nil {
				// One unreadable record must not keep the store from opening (fsck could
				// not check it either): it is not counted, and fsck names it.
				s.log.Warn("counters: inode record unreadable; not counted (lmfs fsck names it)", "err", err)
			}
		}
		groups := txn.Iterate(kv.IterOptions{Prefix: []byte{tagGroup}, Prefetch: true})
		defer groups.Close()
		for groups.Seek(nil); groups.Valid(); groups.Next() {
			var err error
			if v, err = groups.Value(v); err != nil {
				return err
			}
			d.addGroup(v, 1)
		}
		return nil
	})
	return d, err
}

// addInode accounts for an inode appearing (sign 1) or going away (-1).
func (d *Delta) addInode(n *Inode, sign int64) {
	switch n.Mode & syscall.S_IFMT {
	case syscall.S_IFREG:
		d.Files += sign
		d.Logical += sign * int64(n.Size)
	case syscall.S_IFDIR:
		d.Dirs += sign
	case syscall.S_IFLNK:
		d.Symlinks += sign
	default:
		d.Others += sign
	}
}

func u64bytes(n uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, n)
	return b
}
