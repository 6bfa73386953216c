package blockstore

import (
	"container/list"
	"sync"
	"sync/atomic"
)

type cacheKey struct{ ino, blk uint64 }

// blockCache keeps recently decoded LM blocks (their raw bytes, as long as the record's raw
// length) so partial writes and repeated reads skip the model; classical records decode in
// microseconds straight from the value log and are not cached. Entries are replaced or
// dropped under the inode's lock whenever the block changes.
type blockCache struct {
	mu     sync.Mutex
	max    int
	lru    *list.List // of *cacheEntry, front = most recent
	items  map[cacheKey]*list.Element
	perIno map[uint64]int // entries per inode: writes to uncached files skip the search
	// gen counts invalidations. Writes land behind the inode's lock (data.go), so a read may
	// decode a block from a snapshot older than a write that lands meanwhile: it puts the
	// block only if no invalidation happened since it took its snapshot.
	gen atomic.Uint64
}

// generation is taken before a read's transaction starts; see put.
func (c *blockCache) generation() uint64 { return c.gen.Load() }

type cacheEntry struct {
	key  cacheKey
	data []byte
}

func newBlockCache(max int) *blockCache {
	return &blockCache{max: max, lru: list.New(), items: map[cacheKey]*list.Element{}, perIno: map[uint64]int{}}
}

func (c *blockCache) get(ino, blk uint64) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[cacheKey{ino, blk}]; ok {
		c.lru.MoveToFront(e)
		return e.Value.(*cacheEntry).data, true
	}
	return nil, false
}

// put stores data (which the cache owns from now on; nil means a hole) decoded by a read that
// took generation gen before its transaction; nothing is stored if blocks were invalidated
// since.
func (c *blockCache) put(ino, blk uint64, data []byte, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen.Load() != gen {
		return
	}
	k := cacheKey{ino, blk}
	if e, ok := c.items[k]; ok {
		e.Value.(*cacheEntry).data = data
		c.lru.MoveToFront(e)
		return
	}
	c.items[k] = c.lru.PushFront(&cacheEntry{key: k, data: data})
	c.perIno[ino]++
	for c.lru.Len() > c.max {
		c.remove(c.lru.Back())
	}
}

func (c *blockCache) remove(e *list.Element) {
	k := e.Value.(*cacheEntry).key
	c.lru.Remove(e)
	delete(c.items, k)
	if c.perIno[k.ino]--; c.perIno[k.ino] <= 0 {
		delete(c.perIno, k.ino)
	}
}

// dropRange forgets blocks first..last of ino.
func (c *blockCache) dropRange(ino, first, last uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen.Add(1)
	if c.perIno[ino] == 0 {
		return
	}
	if last-first > uint64(c.perIno[ino]) {
		c.dropWhere(func(k cacheKey) bool { return k.ino == ino && k.blk >= first && k.blk <= last })
		return
	}
	for b := first; b <= last; b++ {
		if e, ok := c.items[cacheKey{ino, b}]; ok {
			c.remove(e)
		}
	}
}

// dropFrom forgets the blocks of ino from block from on.
func (c *blockCache) dropFrom(ino, from uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen.Add(1)
	if c.perIno[ino] == 0 {
		return
	}
	c.dropWhere(func(k cacheKey) bool { return k.ino == ino && k.blk >= from })
}

func (c *blockCache) dropWhere(match func(cacheKey) bool) {
	for e := c.lru.Front(); e != nil; {
		next := e.Next()
		if match(e.Value.(*cacheEntry).key) {
			c.remove(e)
		}
		e = next
	}
}
