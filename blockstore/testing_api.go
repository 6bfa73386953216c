package blockstore

import "lmfs/blockstore/segment"

// For tests only. The integration tests in test/ open a closed store's Badger database
// themselves and read or rewrite one block record in place (a flipped bit, a damaged group)
// to check that reads fail with EIO and fsck names the block; these functions find and
// rewrite that record without the tests copying the store's key and group formats. Nothing in
// lmfs itself calls them: they are exported only because those tests live in another package.

// GroupKey returns the Badger key of the group that holds block blk of file ino, and the
// block's slot in it.
func GroupKey(ino, blk uint64) ([]byte, int) {
	g, slot := groupOf(blk)
	return groupKey(ino, g), slot
}

// ResolveGroup returns the group value that v, the stored value of group key (ino, g) of the
// closed store in dir, stands for: v itself, or the bytes it refers to in a data segment
// (GroupKey gives the key).
func ResolveGroup(dir string, key, v []byte) ([]byte, error) {
	if !isRef(v) {
		return v, nil
	}
	r, err := parseRef(v)
	if err != nil {
		return nil, err
	}
	ino, g := decodeU64U64(key)
	ss, err := segment.Open(dir, segment.Options{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer ss.Close()
	v, err = ss.Read(nil, ino, g, r.loc())
	return v, segErr(err)
}

// GroupRecord returns the record in slot of a group value (nil for a hole).
func GroupRecord(v []byte, slot int) ([]byte, error) {
	g, err := parseGroup(v)
	if err != nil {
		return nil, err
	}
	return g[slot], nil
}

// SetGroupRecord returns a group value (v may be nil: a new group) with slot's record replaced
// by rec (nil: a hole).
func SetGroupRecord(v []byte, slot int, rec []byte) ([]byte, error) {
	var g group
	if v != nil {
		var err error
		if g, err = parseGroup(v); err != nil {
			return nil, err
		}
	}
	g[slot] = rec
	return g.marshal(), nil
}
