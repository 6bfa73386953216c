package blockstore

import (
	"encoding/binary"
	"fmt"
	"syscall"
)

// POSIX access control lists, as Linux keeps them in two extended attributes. The kernel
// enforces them (the mount negotiates FUSE_POSIX_ACL) but leaves to the file system what a
// local file system does itself: keeping the mode in sync with the access ACL when either
// changes, and giving new inodes the default ACL of their directory. These are pure functions
// over the attribute's binary form; the store applies them in the transactions that change
// modes and ACLs, so the two never disagree on disk.
//
// Binary form (little endian): a 4-byte header holding version 2, then 8-byte entries
// {tag uint16, perm uint16, id uint32}, in the order user::, user:ID..., group::, group:ID...,
// mask::, other:: (the kernel writes them sorted and checks the order, not the ids).
const (
	XattrACLAccess  = "system.posix_acl_access"
	XattrACLDefault = "system.posix_acl_default"
)

// Entry tags.
const (
	aclUserObj  = 0x01
	aclUser     = 0x02
	aclGroupObj = 0x04
	aclGroup    = 0x08
	aclMask     = 0x10
	aclOther    = 0x20
)

const (
	aclVersion     = 2
	aclHeaderSize  = 4
	aclEntrySize   = 8
	aclUndefinedID = 0xffffffff // the id of entries that name no one (user::, group::, mask::, other::)
	permBits       = 0o777
)

// aclEntry is one entry: who (tag, and id for named users and groups) gets which of rwx.
type aclEntry struct {
	tag  uint16
	perm uint16 // rwx as 4|2|1
	id   uint32
}

// acl is a parsed, valid ACL.
type acl []aclEntry

// isACLXattr reports whether name is one of the two ACL attributes.
func isACLXattr(name string) bool { return name == XattrACLAccess || name == XattrACLDefault }

// parseACL decodes and validates an ACL attribute value. Anything malformed is EINVAL.
func parseACL(b []byte) (acl, error) {
	if len(b) < aclHeaderSize || (len(b)-aclHeaderSize)%aclEntrySize != 0 {
		return nil, fmt.Errorf("ACL of %d bytes: %w", len(b), syscall.EINVAL)
	}
	if v := binary.LittleEndian.Uint32(b); v != aclVersion {
		return nil, fmt.Errorf("ACL version %d: %w", v, syscall.EINVAL)
	}
	a := make(acl, 0, (len(b)-aclHeaderSize)/aclEntrySize)
	for off := aclHeaderSize; off < len(b); off += aclEntrySize {
		e := aclEntry{
			tag:  binary.LittleEndian.Uint16(b[off:]),
			perm: binary.LittleEndian.Uint16(b[off+2:]),
			id:   binary.LittleEndian.Uint32(b[off+4:]),
		}
		if e.tag != aclUser && e.tag != aclGroup {
			e.id = aclUndefinedID // meaningless for the other tags: kept canonical
		}
		a = append(a, e)
	}
	if err := a.valid(); err != nil {
		return nil, err
	}
	return a, nil
}

// valid checks what the kernel checks (posix_acl_valid): only rwx bits; exactly one user::,
// group:: and other:: entry, in tag order; a mask:: entry, only one, wherever there is a named
// user or group entry.
func (a acl) valid() error {
	const (
		wantUserObj = iota
		inUsers
		inGroups
		afterMask
		done
	)
	state, named := wantUserObj, false
	bad := func(why string) error { return fmt.Errorf("ACL %s: %w", why, syscall.EINVAL) }
	for _, e := range a {
		if e.perm&^7 != 0 {
			return bad("entry with permission bits other than rwx")
		}
		switch e.tag {
		case aclUserObj:
			if state != wantUserObj {
				return bad("user:: entry out of place")
			}
			state = inUsers
		case aclUser:
			if state != inUsers {
				return bad("named user entry out of place")
			}
			named = true
		case aclGroupObj:
			if state != inUsers {
				return bad("group:: entry out of place")
			}
			state = inGroups
		case aclGroup:
			if state != inGroups {
				return bad("named group entry out of place")
			}
			named = true
		case aclMask:
			if state != inGroups {
				return bad("mask:: entry out of place")
			}
			state = afterMask
		case aclOther:
			if state != afterMask && !(state == inGroups && !named) {
				return bad("other:: entry out of place or mask:: missing")
			}
			state = done
		default:
			return bad(fmt.Sprintf("entry with unknown tag %#x", e.tag))
		}
	}
	if state != done {
		return bad("without user::, group:: and other:: entries")
	}
	return nil
}

// marshal encodes a as the attribute value.
func (a acl) marshal() []byte {
	b := make([]byte, aclHeaderSize+aclEntrySize*len(a))
	binary.LittleEndian.PutUint32(b, aclVersion)
	for i, e := range a {
		off := aclHeaderSize + i*aclEntrySize
		binary.LittleEndian.PutUint16(b[off:], e.tag)
		binary.LittleEndian.PutUint16(b[off+2:], e.perm)
		binary.LittleEndian.PutUint32(b[off+4:], e.id)
	}
	return b
}

// equivMode returns mode with its rwx bits as a grants them (group bits from mask:: where
// there is one), and whether the mode says all that a says (no named entries, no mask), in
// which case the ACL need not be stored (posix_acl_equiv_mode).
func (a acl) equivMode(mode uint32) (uint32, bool) {
	var perm uint32
	equiv := true
	for _, e := range a {
		p := uint32(e.perm & 7)
		switch e.tag {
		case aclUserObj:
			perm |= p << 6
		case aclGroupObj:
			perm |= p << 3
		case aclOther:
			perm |= p
		case aclMask:
			perm = perm&^0o070 | p<<3 // mask:: follows group:: and wins
			equiv = false
		case aclUser, aclGroup:
			equiv = false
		}
	}
	return mode&^permBits | perm, equiv
}

// chmod returns a copy of a after chmod to mode: user:: and other:: take the owner and other
// bits, and the group bits go to mask:: if there is one, else to group:: (posix_acl_chmod).
// Named entries keep their permissions; the mask limits them.
func (a acl) chmod(mode uint32) acl {
	out := append(acl(nil), a...)
	hasMask := false
	for _, e := range out {
		hasMask = hasMask || e.tag == aclMask
	}
	for i := range out {
		switch e := &out[i]; {
		case e.tag == aclUserObj:
			e.perm = uint16(mode>>6) & 7
		case e.tag == aclOther:
			e.perm = uint16(mode) & 7
		case e.tag == aclMask, e.tag == aclGroupObj && !hasMask:
			e.perm = uint16(mode>>3) & 7
		}
	}
	return out
}

// createFromDefault gives a new inode with the requested mode the access ACL that a
// directory's default ACL def makes (posix_acl_create): each of user::, group:: (or mask::
// where there is one) and other:: is limited by the matching bits of mode, and the mode's
// bits by the resulting entries. It returns the new mode and the access ACL, nil when the
// mode alone says everything.
func createFromDefault(def acl, mode uint32) (uint32, acl) {
	a := append(acl(nil), def...)
	perm := mode & permBits
	equiv := true
	var group, mask *aclEntry
	for i := range a {
		e := &a[i]
		switch e.tag {
		case aclUserObj:
			e.perm &= uint16(perm>>6) & 7
			perm = perm&^0o700 | uint32(e.perm)<<6
		case aclOther:
			e.perm &= uint16(perm) & 7
			perm = perm&^0o007 | uint32(e.perm)
		case aclGroupObj:
			group = e
		case aclMask:
			mask = e
			equiv = false
		case aclUser, aclGroup:
			equiv = false
		}
	}
	g := mask
	if g == nil {
		g = group // valid ACLs always have group::
	}
	g.perm &= uint16(perm>>3) & 7
	perm = perm&^0o070 | uint32(g.perm)<<3
	mode = mode&^permBits | perm
	if equiv {
		return mode, nil
	}
	return mode, a
}
