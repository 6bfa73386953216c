package blockstore

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// aclText parses the short text form "u::rw,u:65534:r,g::r,m::rw,o::" (tag, id, perms) so the
// tables below read like getfacl output.
func aclText(t *testing.T, s string) acl {
	t.Helper()
	var a acl
	for _, f := range strings.Split(s, ",") {
		parts := strings.Split(f, ":")
		if len(parts) != 3 {
			t.Fatalf("bad entry %q", f)
		}
		e := aclEntry{id: aclUndefinedID}
		named := parts[1] != ""
		switch parts[0] {
		case "u":
			e.tag = aclUserObj
			if named {
				e.tag = aclUser
			}
		case "g":
			e.tag = aclGroupObj
			if named {
				e.tag = aclGroup
			}
		case "m":
			e.tag = aclMask
		case "o":
			e.tag = aclOther
		default:
			t.Fatalf("bad tag in %q", f)
		}
		if named {
			id, err := strconv.ParseUint(parts[1], 10, 32)
			if err != nil {
				t.Fatal(err)
			}
			e.id = uint32(id)
		}
		for _, c := range parts[2] {
			e.perm |= map[rune]uint16{'r': 4, 'w': 2, 'x': 1}[c]
		}
		a = append(a, e)
	}
	return a
}

func (a acl) String() string {
	var parts []string
	for _, e := range a {
		tag := map[uint16]string{aclUserObj: "u", aclUser: "u", aclGroupObj: "g", aclGroup: "g", aclMask: "m", aclOther: "o"}[e.tag]
		id := ""
		if e.tag == aclUser || e.tag == aclGroup {
			id = strconv.FormatUint(uint64(e.id), 10)
		}
		perm := ""
		for i, c := range "rwx" {
			if e.perm&(4>>i) != 0 {
				perm += string(c)
			}
		}
		parts = append(parts, tag+":"+id+":"+perm)
	}
	return strings.Join(parts, ",")
}

// rawACL builds an attribute value from (tag, perm, id) triples, valid or not.
func rawACL(version uint32, entries ...[3]uint32) []byte {
	b := []byte{byte(version), byte(version >> 8), byte(version >> 16), byte(version >> 24)}
	for _, e := range entries {
		b = append(b, byte(e[0]), byte(e[0]>>8), byte(e[1]), byte(e[1]>>8),
			byte(e[2]), byte(e[2]>>8), byte(e[2]>>16), byte(e[2]>>24))
	}
	return b
}

func TestParseACL(t *testing.T) {
	const u = aclUndefinedID
	valid := []struct {
		name string
		b    []byte
		want string
	}{
		{"base", rawACL(2, [3]uint32{1, 6, u}, [3]uint32{4, 4, u}, [3]uint32{0x20, 4, u}), "u::rw,g::r,o::r"},
		{"named", rawACL(2, [3]uint32{1, 7, u}, [3]uint32{2, 0, 65534}, [3]uint32{4, 5, u}, [3]uint32{8, 4, 100}, [3]uint32{0x10, 7, u}, [3]uint32{0x20, 0, u}),
			"u::rwx,u:65534:,g::rx,g:100:r,m::rwx,o::"},
		{"mask without named entries", rawACL(2, [3]uint32{1, 6, u}, [3]uint32{4, 4, u}, [3]uint32{0x10, 0, u}, [3]uint32{0x20, 0, u}), "u::rw,g::r,m::,o::"},
		{"ids of unnamed entries ignored", rawACL(2, [3]uint32{1, 6, 5}, [3]uint32{4, 4, 6}, [3]uint32{0x20, 4, 7}), "u::rw,g::r,o::r"},
	}
	for _, c := range valid {
		a, err := parseACL(c.b)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if a.String() != c.want {
			t.Errorf("%s: parsed %s, want %s", c.name, a, c.want)
		}
		for _, e := range a {
			if e.tag != aclUser && e.tag != aclGroup && e.id != u {
				t.Errorf("%s: unnamed entry kept id %d", c.name, e.id)
			}
		}
		if back, err := parseACL(a.marshal()); err != nil || back.String() != a.String() {
			t.Errorf("%s: marshal round trip: %s %v", c.name, back, err)
		}
	}
	invalid := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"header only", rawACL(2)},
		{"short header", []byte{2, 0}},
		{"partial entry", append(rawACL(2, [3]uint32{1, 6, u}), 4, 0)},
		{"version 1", rawACL(1, [3]uint32{1, 6, u}, [3]uint32{4, 4, u}, [3]uint32{0x20, 4, u})},
		{"no other", rawACL(2, [3]uint32{1, 6, u}, [3]uint32{4, 4, u})},
		{"no user::", rawACL(2, [3]uint32{4, 4, u}, [3]uint32{0x20, 4, u})},
		{"no group::", rawACL(2, [3]uint32{1, 6, u}, [3]uint32{0x20, 4, u})},
		{"two user::", rawACL(2, [3]uint32{1, 6, u}, [3]uint32{1, 6, u}, [3]uint32{4, 4, u}, [3]uint32{0x20, 4, u})},
		{"out of order", rawACL(2, [3]uint32{4, 4, u}, [3]uint32{1, 6, u}, [3]uint32{0x20, 4, u})},
		{"named user without mask", rawACL(2, [3]uint32{1, 6, u}, [3]uint32{2, 4, 9}, [3]uint32{4, 4, u}, [3]uint32{0x20, 4, u})},
		{"named group without mask", rawACL(2, [3]uint32{1, 6, u}, [3]uint32{4, 4, u}, [3]uint32{8, 4, 9}, [3]uint32{0x20, 4, u})},
		{"two masks", rawACL(2, [3]uint32{1, 6, u}, [3]uint32{4, 4, u}, [3]uint32{0x10, 4, u}, [3]uint32{0x10, 4, u}, [3]uint32{0x20, 4, u})},
		{"named user after group::", rawACL(2, [3]uint32{1, 6, u}, [3]uint32{4, 4, u}, [3]uint32{2, 4, 9}, [3]uint32{0x10, 4, u}, [3]uint32{0x20, 4, u})},
		{"entry after other", rawACL(2, [3]uint32{1, 6, u}, [3]uint32{4, 4, u}, [3]uint32{0x20, 4, u}, [3]uint32{0x10, 4, u})},
		{"unknown tag", rawACL(2, [3]uint32{1, 6, u}, [3]uint32{4, 4, u}, [3]uint32{0x40, 4, u}, [3]uint32{0x20, 4, u})},
		{"perm beyond rwx", rawACL(2, [3]uint32{1, 8, u}, [3]uint32{4, 4, u}, [3]uint32{0x20, 4, u})},
	}
	for _, c := range invalid {
		if a, err := parseACL(c.b); !errors.Is(err, syscall.EINVAL) {
			t.Errorf("%s: parsed %s, err %v, want EINVAL", c.name, a, err)
		}
	}
}

func TestACLEquivMode(t *testing.T) {
	for _, c := range []struct {
		acl   string
		mode  uint32 // before
		want  uint32
		equiv bool
	}{
		{"u::rw,g::r,o::r", syscall.S_IFREG | 0o600, syscall.S_IFREG | 0o644, true},
		{"u::rwx,g::rx,o::rx", syscall.S_IFDIR | 0o700, syscall.S_IFDIR | 0o755, true},
		{"u::rw,g::,o::", syscall.S_IFREG | 0o777, syscall.S_IFREG | 0o600, true},
		{"u::rw,u:65534:,g::r,m::r,o::r", syscall.S_IFREG | 0o644, syscall.S_IFREG | 0o644, false},
		{"u::rw,u:65534:rw,g::,m::rw,o::", syscall.S_IFREG | 0o600, syscall.S_IFREG | 0o660, false}, // group bits are the mask
		{"u::rw,g::rw,m::r,o::", syscall.S_IFREG | 0o600, syscall.S_IFREG | 0o640, false},
		{"u::rw,g::r,o::r", syscall.S_IFREG | syscall.S_ISGID | syscall.S_ISVTX | 0o700, syscall.S_IFREG | syscall.S_ISGID | syscall.S_ISVTX | 0o644, true},
	} {
		mode, equiv := aclText(t, c.acl).equivMode(c.mode)
		if mode != c.want || equiv != c.equiv {
			t.Errorf("%s on %o: mode %o equiv %v, want %o %v", c.acl, c.mode, mode, equiv, c.want, c.equiv)
		}
	}
}

func TestACLChmod(t *testing.T) {
	for _, c := range []struct {
		acl  string
		mode uint32
		want string
	}{
		{"u::rw,g::r,o::r", 0o750, "u::rwx,g::rx,o::"},
		{"u::rw,u:65534:rwx,g::r,m::rwx,o::r", 0o640, "u::rw,u:65534:rwx,g::r,m::r,o::"}, // mask, not group::, takes the group bits
		{"u::rw,u:1:r,g::rwx,g:2:w,m::rw,o::", 0o000, "u::,u:1:r,g::rwx,g:2:w,m::,o::"},
		{"u::rw,g::r,m::r,o::r", 0o4777, "u::rwx,g::r,m::rwx,o::rwx"},
	} {
		a := aclText(t, c.acl)
		orig := a.String()
		if got := a.chmod(c.mode).String(); got != c.want {
			t.Errorf("chmod %o of %s: %s, want %s", c.mode, c.acl, got, c.want)
		}
		if a.String() != orig {
			t.Errorf("chmod changed its input: %s", a)
		}
	}
}

func TestACLCreateFromDefault(t *testing.T) {
	// Expectations are what ext4 gives for the same default ACLs (getfacl of files made by
	// touch (0666) and mkdir (0777) under setfacl -d).
	for _, c := range []struct {
		def       string
		mode      uint32
		wantMode  uint32
		wantACL   string // "" when the mode says it all
		wantEquiv bool
	}{
		// setfacl -d -m u:65534:rx,g::rwx,o::- : touch -> 0660 with mask rw-, mkdir -> 0770
		{"u::rwx,u:65534:rx,g::rwx,m::rwx,o::", syscall.S_IFREG | 0o666, syscall.S_IFREG | 0o660, "u::rw,u:65534:rx,g::rwx,m::rw,o::", false},
		{"u::rwx,u:65534:rx,g::rwx,m::rwx,o::", syscall.S_IFDIR | 0o777, syscall.S_IFDIR | 0o770, "u::rwx,u:65534:rx,g::rwx,m::rwx,o::", false},
		// Base entries only: the mode alone; no access ACL.
		{"u::rwx,g::rx,o::rx", syscall.S_IFREG | 0o666, syscall.S_IFREG | 0o644, "", true},
		{"u::rwx,g::rx,o::rx", syscall.S_IFDIR | 0o777, syscall.S_IFDIR | 0o755, "", true},
		{"u::rw,g::,o::", syscall.S_IFDIR | syscall.S_ISGID | 0o777, syscall.S_IFDIR | syscall.S_ISGID | 0o600, "", true},
		// The requested mode limits the entries (open(O_CREAT, 0600)).
		{"u::rwx,g::rwx,m::rwx,o::rwx", syscall.S_IFREG | 0o600, syscall.S_IFREG | 0o600, "u::rw,g::rwx,m::,o::", false},
		{"u::rwx,g::rwx,o::rwx", syscall.S_IFIFO | 0o640, syscall.S_IFIFO | 0o640, "", true},
	} {
		def := aclText(t, c.def)
		orig := def.String()
		mode, a := createFromDefault(def, c.mode)
		got := ""
		if a != nil {
			got = a.String()
		}
		if mode != c.wantMode || got != c.wantACL {
			t.Errorf("default %s, mode %o: mode %o ACL %q, want %o %q", c.def, c.mode, mode, got, c.wantMode, c.wantACL)
		}
		if def.String() != orig {
			t.Errorf("createFromDefault changed the default ACL: %s", def)
		}
		if a != nil {
			if err := a.valid(); err != nil {
				t.Errorf("created ACL %s invalid: %v", a, err)
			}
		}
	}
}

// TestStoreACLs checks the store keeps mode and ACL in step in its transactions: setting an
// ACL sets the mode (and stores only what the mode cannot say), chmod rewrites the ACL's mask,
// and creation applies the umask or the directory's default ACL.
func TestStoreACLs(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	f, err := s.Create(RootIno, "f", NewNode{Mode: syscall.S_IFREG | 0o666, Umask: 0o077})
	if err != nil {
		t.Fatal(err)
	}
	if f.Mode&0o7777 != 0o600 {
		t.Fatalf("created with umask 077: mode %o", f.Mode)
	}
	mode := func(ino uint64) uint32 {
		n, err := s.GetInode(ino)
		if err != nil {
			t.Fatal(err)
		}
		return n.Mode & 0o7777
	}
	stored := func(ino uint64, name string) string {
		v, err := s.GetXattr(ino, name)
		if errors.Is(err, syscall.ENODATA) {
			return ""
		}
		if err != nil {
			t.Fatal(err)
		}
		a, err := parseACL(v)
		if err != nil {
			t.Fatal(err)
		}
		return a.String()
	}
	set := func(ino uint64, name, text string, flags uint32) error {
		return s.SetXattr(ino, name, aclText(t, text).marshal(), flags)
	}

	// cp -a: an ACL equivalent to 0644 on a 0600 file.
	if err := set(f.Ino, XattrACLAccess, "u::rw,g::r,o::r", 0); err != nil {
		t.Fatal(err)
	}
	if m, a := mode(f.Ino), stored(f.Ino, XattrACLAccess); m != 0o644 || a != "" {
		t.Errorf("equivalent ACL: mode %o, stored %q; want 644 and nothing", m, a)
	}
	if err := set(f.Ino, XattrACLAccess, "u::rw,u:65534:,g::r,m::r,o::r", 0); err != nil {
		t.Fatal(err)
	}
	if m, a := mode(f.Ino), stored(f.Ino, XattrACLAccess); m != 0o644 || a != "u::rw,u:65534:,g::r,m::r,o::r" {
		t.Errorf("named entry: mode %o, stored %q", m, a)
	}
	if _, err := s.SetAttr(f.Ino, AttrChange{Mode: ptr(uint32(0o600))}); err != nil {
		t.Fatal(err)
	}
	if a := stored(f.Ino, XattrACLAccess); a != "u::rw,u:65534:,g::r,m::,o::" {
		t.Errorf("after chmod 600: stored %q", a)
	}
	// Setting an ACL equivalent to a mode drops the stored one.
	if err := set(f.Ino, XattrACLAccess, "u::rw,g::,o::", 0); err != nil {
		t.Fatal(err)
	}
	if a := stored(f.Ino, XattrACLAccess); a != "" {
		t.Errorf("equivalent ACL over a stored one: still stored %q", a)
	}
	// Set-group-ID cleared on the kernel's word only.
	if _, err := s.SetAttr(f.Ino, AttrChange{Mode: ptr(uint32(syscall.S_ISGID | 0o750))}); err != nil {
		t.Fatal(err)
	}
	if set(f.Ino, XattrACLAccess, "u::rwx,g::rx,o::", 0); mode(f.Ino) != syscall.S_ISGID|0o750 {
		t.Errorf("set-group-ID lost without the kill flag: %o", mode(f.Ino))
	}
	if set(f.Ino, XattrACLAccess, "u::rwx,g::rx,o::", XattrACLKillSGID); mode(f.Ino) != 0o750 {
		t.Errorf("set-group-ID kept with the kill flag: %o", mode(f.Ino))
	}
	// Malformed values, default ACLs on files, ACLs on symlinks: refused, nothing changed.
	before := mode(f.Ino)
	if err := s.SetXattr(f.Ino, XattrACLAccess, rawACL(2, [3]uint32{1, 6, aclUndefinedID}), 0); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("malformed ACL: %v, want EINVAL", err)
	}
	if err := set(f.Ino, XattrACLDefault, "u::rw,g::,o::", 0); !errors.Is(err, syscall.EACCES) {
		t.Errorf("default ACL on a file: %v, want EACCES", err)
	}
	if mode(f.Ino) != before {
		t.Errorf("refused ACLs changed the mode to %o", mode(f.Ino))
	}
	l, err := s.Create(RootIno, "l", NewNode{Mode: syscall.S_IFLNK | 0o777, Target: "f", Umask: 0o077})
	if err != nil {
		t.Fatal(err)
	}
	if l.Mode&0o777 != 0o777 {
		t.Errorf("symlink mode %o, want 777 (no umask)", l.Mode&0o777)
	}
	if err := set(l.Ino, XattrACLAccess, "u::rw,g::,o::", 0); !errors.Is(err, syscall.EOPNOTSUPP) {
		t.Errorf("ACL on a symlink: %v, want EOPNOTSUPP", err)
	}

	// Default ACL inheritance: the umask does not apply.
	d, err := s.Create(RootIno, "d", NewNode{Mode: syscall.S_IFDIR | 0o755})
	if err != nil {
		t.Fatal(err)
	}
	const def = "u::rwx,u:65534:rx,g::rwx,m::rwx,o::"
	if err := set(d.Ino, XattrACLDefault, def, 0); err != nil {
		t.Fatal(err)
	}
	if mode(d.Ino) != 0o755 {
		t.Errorf("default ACL changed the directory's mode to %o", mode(d.Ino))
	}
	df, err := s.Create(d.Ino, "f", NewNode{Mode: syscall.S_IFREG | 0o666, Umask: 0o077})
	if err != nil {
		t.Fatal(err)
	}
	if df.Mode&0o7777 != 0o660 || stored(df.Ino, XattrACLAccess) != "u::rw,u:65534:rx,g::rwx,m::rw,o::" || stored(df.Ino, XattrACLDefault) != "" {
		t.Errorf("file under a default ACL: mode %o, access %q, default %q", df.Mode&0o7777,
			stored(df.Ino, XattrACLAccess), stored(df.Ino, XattrACLDefault))
	}
	dd, err := s.Create(d.Ino, "sub", NewNode{Mode: syscall.S_IFDIR | 0o777, Umask: 0o077})
	if err != nil {
		t.Fatal(err)
	}
	if dd.Mode&0o7777 != 0o770 || stored(dd.Ino, XattrACLAccess) != def || stored(dd.Ino, XattrACLDefault) != def {
		t.Errorf("directory under a default ACL: mode %o, access %q, default %q", dd.Mode&0o7777,
			stored(dd.Ino, XattrACLAccess), stored(dd.Ino, XattrACLDefault))
	}
	dl, err := s.Create(d.Ino, "l", NewNode{Mode: syscall.S_IFLNK | 0o777, Target: "f"})
	if err != nil {
		t.Fatal(err)
	}
	if dl.Mode&0o777 != 0o777 || stored(dl.Ino, XattrACLAccess) != "" {
		t.Errorf("symlink under a default ACL: mode %o, access %q", dl.Mode&0o777, stored(dl.Ino, XattrACLAccess))
	}
	// What is stored is the canonical form, whatever ids the unnamed entries carried.
	v, _ := s.GetXattr(dd.Ino, XattrACLDefault)
	if !bytes.Equal(v, aclText(t, def).marshal()) {
		t.Errorf("stored default ACL not canonical: %x", v)
	}
}

func ptr[T any](v T) *T { return &v }
