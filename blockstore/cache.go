package blockstore

import (
	"container/list"
	"sync"
)

// inodeLocks serialize data operations per inode (striped: two inodes may share a stripe, so
// no code path holds two stripes at once).
type inodeLocks struct{ stripes [512]sync.RWMutex }

func (l *inodeLocks) of(ino uint64) *sync.RWMutex { return &l.stripes[ino%uint64(len(l.stripes))] }

type cacheKey struct{ ino, blk uint64 }

// blockCache keeps recently decoded blocks (their raw bytes, as long as the record's raw
// length) so partial writes and repeated reads skip the decoder. Entries are replaced or
// dropped under the inode's lock whenever the block changes.
type blockCache struct {
	mu    sync.Mutex
	max   int
	lru   *list.List // of *cacheEntry, front = most recent
	items map[cacheKey]*list.Element
}

type cacheEntry struct {
	key  cacheKey
	data []byte
}

func newBlockCache(max int) *blockCache {
	return &blockCache{max: max, lru: list.New(), items: map[cacheKey]*list.Element{}}
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

// put stores data (which the cache owns from now on; nil means a hole).
func (c *blockCache) put(ino, blk uint64, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := cacheKey{ino, blk}
	if e, ok := c.items[k]; ok {
		e.Value.(*cacheEntry).data = data
		c.lru.MoveToFront(e)
		return
	}
	c.items[k] = c.lru.PushFront(&cacheEntry{key: k, data: data})
	for c.lru.Len() > c.max {
		e := c.lru.Back()
		c.lru.Remove(e)
		delete(c.items, e.Value.(*cacheEntry).key)
	}
}

// dropFrom forgets the blocks of ino from block from on.
func (c *blockCache) dropFrom(ino, from uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for e := c.lru.Front(); e != nil; {
		next := e.Next()
		if k := e.Value.(*cacheEntry).key; k.ino == ino && k.blk >= from {
			c.lru.Remove(e)
			delete(c.items, k)
		}
		e = next
	}
}
