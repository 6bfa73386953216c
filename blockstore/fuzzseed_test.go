package blockstore

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"lmfs/codec"
)

// Seeds of the fuzz targets, made by the real encoders: valid values and cut ones. The
// targets add them with f.Add; TestWriteFuzzSeeds writes them (and seeds that need a real
// store: Badger tables and manifests) as the committed corpora in testdata/fuzz.

// truncations returns v and versions of it cut short.
func truncations(v []byte) [][]byte {
	out := [][]byte{v}
	for _, n := range []int{len(v) - 1, len(v) / 2, 9, 1, 0} {
		if n >= 0 && n < len(v) {
			out = append(out, v[:n])
		}
	}
	return out
}

// seedGroup is a group value with holes, raw, pending and coded records.
func seedGroup() (group, []byte) {
	text := bytes.Repeat([]byte("seed records for the fuzzer "), 80)[:bs]
	var g group
	g[0] = codec.Encode(nil, text, 0, codec.RawCodec)
	g[2] = codec.Encode(nil, text, codec.FlagPending, codec.S2Codec)
	g[5] = codec.Encode(nil, text[:100], 0, codec.GzipCodec)
	g[15] = codec.Encode(nil, text[:1], codec.FlagPending, codec.RawCodec)
	return g, g.marshal()
}

func seedGroups() [][]byte {
	_, v := seedGroup()
	var one group
	one[7] = codec.Encode(nil, []byte("x"), 0, codec.RawCodec)
	out := truncations(v)
	out = append(out, one.marshal(), (&group{}).marshal(), append(bytes.Clone(v), 0))
	return out
}

func seedRefs() [][]byte {
	g, v := seedGroup()
	ref := encodeRef(3, 4096, uint32(len(v)), codec.Checksum(v), refSummary(&g))
	out := truncations(ref)
	bad := bytes.Clone(ref)
	bad[9], bad[10], bad[11], bad[12] = 0xff, 0xff, 0xff, 0x7f // length far past any group
	return append(out, bad)
}

func seedInodes() [][]byte {
	file := Inode{Ino: 5, Mode: syscall.S_IFREG | 0o644, Uid: 1000, Gid: 1000, Nlink: 1, Size: 123456, Atime: 1, Mtime: 2, Ctime: 3}
	dir := Inode{Ino: 6, Mode: syscall.S_IFDIR | 0o755, Nlink: 2, NextCookie: firstCookie, Parent: RootIno}
	link := Inode{Ino: 7, Mode: syscall.S_IFLNK | 0o777, Nlink: 1, Size: 11, Target: "/some/where"}
	var out [][]byte
	for _, n := range []Inode{file, dir, link} {
		out = append(out, truncations(n.marshal())...)
	}
	return out
}

func seedDirents() [][]byte {
	d := dirent{Ino: 5, Mode: syscall.S_IFREG, Cookie: 9}
	return append(truncations(d.marshal()), truncations(orderValue(d, "name"))...)
}

func seedACLs() [][]byte {
	u := uint32(aclUndefinedID)
	a := acl{{aclUserObj, 6, u}, {aclUser, 4, 1000}, {aclGroupObj, 4, u}, {aclMask, 6, u}, {aclOther, 0, u}}
	return append(truncations(a.marshal()), acl{{aclUserObj, 7, u}, {aclGroupObj, 5, u}, {aclOther, 5, u}}.marshal())
}

// seedKV is a key and value planted in a store.
type seedKV struct{ k, v []byte }

func seedRecords() []seedKV {
	_, gv := seedGroup()
	refs := seedRefs()
	return []seedKV{
		{inodeKey(2), seedInodes()[0]},
		{inodeKey(2), []byte{inodeVersion}},
		{inodeKey(999), seedInodes()[0]},
		{direntKey(RootIno, "planted"), dirent{Ino: 999, Mode: syscall.S_IFREG, Cookie: 50}.marshal()},
		{dirOrderKey(RootIno, 50), orderValue(dirent{Ino: 999, Mode: syscall.S_IFREG}, "planted")},
		{dirOrderKey(RootIno, 51), []byte{1, 2, 3}},
		{groupKey(2, 0), gv},
		{groupKey(2, 1), refs[0]},
		{groupKey(2, 0), refs[1]},
		{xattrKey(2, "system.posix_acl_access"), seedACLs()[1]},
		{xattrKey(2, "user.x"), []byte("value")},
		{pendingKey(2, 7), nil},
		{trimKey(2), u64bytes(1)},
		{orphanKey(999), nil},
		{[]byte("i\x00"), []byte{1}},
		{[]byte("e"), nil},
	}
}

// TestWriteFuzzSeeds writes the seed corpora (run with LMFS_WRITE_FUZZ_SEEDS=1 after a change
// of an encoding; the files are committed).
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("LMFS_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set LMFS_WRITE_FUZZ_SEEDS=1 to rewrite testdata/fuzz")
	}
	write := func(target string, vals ...any) {
		var b strings.Builder
		b.WriteString("go test fuzz v1\n")
		for _, v := range vals {
			switch v := v.(type) {
			case []byte:
				fmt.Fprintf(&b, "[]byte(%q)\n", v)
			case uint64:
				fmt.Fprintf(&b, "uint64(%d)\n", v)
			case uint32:
				fmt.Fprintf(&b, "uint32(%d)\n", v)
			case bool:
				fmt.Fprintf(&b, "bool(%v)\n", v)
			case string:
				fmt.Fprintf(&b, "string(%q)\n", v)
			default:
				t.Fatalf("seed of type %T", v)
			}
		}
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(b.String()))
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%x", sum[:8])), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range seedGroups() {
		write("FuzzParseGroup", v)
	}
	for _, v := range seedRefs() {
		write("FuzzParseRef", v, []byte("payload"))
	}
	for i, v := range seedInodes() {
		write("FuzzInodeRecord", uint64(i+2), v)
	}
	for _, v := range seedDirents() {
		write("FuzzDirent", v)
	}
	for _, v := range seedACLs() {
		write("FuzzACL", v)
	}
	for _, kv := range seedRecords() {
		write("FuzzStoreRecords", kv.k, kv.v)
	}
	// Badger's files of a small real store, whole and cut.
	dir := filepath.Join(t.TempDir(), "store")
	s := openTest(t, dir)
	for i := range 3 {
		ino := newFile(t, s, fmt.Sprintf("f%d", i))
		if err := s.WriteAt(ino, []byte("small"), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	tbl, err := os.ReadFile(filepath.Join(dir, "000001.sst"))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range truncations(tbl) {
		write("FuzzCheckTable", v, uint64(0), uint32(0))
	}
	write("FuzzCheckTable", make([]byte, len(tbl)), uint64(0), uint32(0))
	mf, err := os.ReadFile(filepath.Join(dir, "MANIFEST"))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range truncations(mf) {
		write("FuzzParseManifest", v, false)
		write("FuzzParseManifest", v, true)
	}
}
