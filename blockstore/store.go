// Package blockstore keeps an lmfs file system in a store directory: a Badger database for
// the namespace (inodes, directory entries, xattrs, ACLs), the index of file data and small
// block groups, plus data segments (data/*.seg) for the large ones. A file's contents are
// independently coded 2 KiB block records (codec), stored 16 to a block group; blocks land
// raw and the compactor recodes them in the background with the codec's policy.
//
// Where things are (the store format itself is in README.md, "Store format"):
//
//	store.go, storedir.go, boundary.go   Open and Close, the marker file, the directory's
//	                                     safety, panics turned into errors
//	tablecheck.go, vlogcheck.go          checks of Badger's own files before Badger opens them
//	keys.go, inode.go                    the Badger key layout and the inode/entry records
//	namespace.go, xattr.go, acl.go       names, attributes, extended attributes, POSIX ACLs
//	orphan.go                            unlinked-while-open files, cleanup that survives a crash
//	data.go                              the data path, one file per part (it lists them)
//	group.go, segref.go, segment_gc.go   block groups, references into data segments (package
//	                                     segment holds the segment files), segment GC
//	compactor.go, compactprogress.go     the background recode (the codec choice is codec's)
//	cache.go                             decoded LM blocks kept for reads and partial writes
//	gc.go, space.go, prealloc.go         value-log GC, the free-space guard, Badger preallocation
//	counters.go, usage.go, statfs.go     stats, per-file usage, what df shows
//	fsck.go                              the check, as passes (it lists them), and repair
//	upgrade.go, models.go                older formats, the model files a store keeps
//	testing_api.go                       exported for the integration tests only
//
// What the store guarantees:
//   - Every operation is one Badger transaction (retried on conflict): after a crash the
//     metadata is as of some prefix of the committed operations, never half of one.
//   - Sync (fsync) makes everything committed before it durable. Without it, a crash may
//     lose recent operations, as on any file system with a page cache.
//   - A block is never returned unless it decoded to bytes matching its checksum.
//   - Counters (stats) are kept in memory and persisted on Sync and Close; a store that
//     was not closed cleanly has them recomputed from the data when it is opened.
package blockstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"lmfs/blockstore/kv"
	"lmfs/blockstore/segment"
	"lmfs/codec"
)

// FormatVersion is the store format this build writes and the newest it reads. Format 1
// (a Badger key per block) is upgraded in place when opened for writing (upgrade.go). Format
// 2 (block groups, all in Badger) is read as it is: format 3 adds data segments (segref.go)
// for groups written from now on, so opening a format-2 store for writing only records the
// new number (older lmfs builds cannot follow segment references).
const FormatVersion = 3

// Badger file sizes: 16 MiB value-log files (value-log GC frees space in steps of one file,
// and never the file being written: gc.go), 32 MiB memtables.
const (
	valueLogFileSize = 16 << 20
	memTableSize     = 32 << 20
)

// MarkerFile sits beside Badger's files; it identifies an lmfs store before Badger opens it,
// so a foreign or newer directory is refused without being touched. (Its presence is also how
// the command tells a store directory from a mountpoint, and sees a store vanish.)
const MarkerFile = "LMFS"

// The mount keeps its log and its control socket in the store directory (lmfs mount, which
// opens the log before the store exists); they are the store's own files, never foreign ones.
const (
	LogFile    = "lmfs.log"
	SocketFile = "lmfs.sock"
)

// ownFiles may sit in a store directory before the store is made (the mount's log, a
// marker whose writing a crash interrupted).
var ownFiles = map[string]bool{LogFile: true, SocketFile: true, closedMarker: true, MarkerFile + tmpSuffix: true}

var (
	// ErrNotStore reports a directory that holds something other than an lmfs store.
	ErrNotStore = errors.New("not an lmfs store")
	// ErrNewerFormat reports a store written by a newer lmfs.
	ErrNewerFormat = errors.New("store format is newer than this lmfs")
	// ErrLocked reports a store already opened (mounted) by another process.
	ErrLocked = errors.New("store is in use by another process (is it mounted?)")
	// ErrBadMarker reports a store whose marker file is missing, empty or garbled while
	// Badger's files are there: lmfs fsck --repair writes it anew from the format record.
	ErrBadMarker = errors.New("store marker file is missing or damaged")
	// ErrUnclean reports a store that was not closed cleanly, opened read-only: Badger must
	// replay or cut the log its server left behind, which only a read-write open does (a
	// mount, lmfs fsck).
	ErrUnclean = errors.New("store was not closed cleanly")
)

// errEmptyDir: the directory holds no store yet (Create makes one there); it comes wrapped
// with ErrNotStore.
var errEmptyDir = errors.New("empty directory")

// Format is the store's identity record.
type Format struct {
	Magic     string `json:"magic"`
	Version   int    `json:"version"`
	BlockSize int    `json:"block_size"`
	Created   string `json:"created"`
}

// Options configure Open.
type Options struct {
	// Create makes a new store when Dir is missing or empty.
	Create bool
	// ReadOnly opens without writing anything (stats, fsck of a mounted store is refused by Badger's lock).
	ReadOnly bool
	// SyncWrites makes every transaction durable (slow); the default relies on Sync.
	SyncWrites bool
	// IgnoreMarker opens a store whose marker file is missing or damaged (ErrBadMarker) on
	// the strength of Badger's format record alone (fsck; RestoreMarker writes it anew).
	IgnoreMarker bool
	// CacheBlocks bounds the decoded-block cache (0: default 4096 blocks = 8 MiB).
	CacheBlocks int
	Logger      *slog.Logger
}

// Store is an open lmfs store. Its methods are safe for concurrent use.
type Store struct {
	dir string
	// db is the metadata keyspace: every key is read and written through it (package kv).
	// engine is the same database as Badger, for the engine's own maintenance only (gc.go).
	db     kv.DB
	engine *kv.Badger
	opts   Options
	log    *slog.Logger
	format Format

	prealloc   *preallocator // allocates Badger's new files (prealloc.go)
	segs       segment.Store // data segments: group values too big for Badger (segref.go)
	segGCAgain atomic.Bool   // segment GC sealed the current segment: look again (segment_gc.go)
	counters   *counters
	locks      inodeLocks
	secX       secXattrs                             // inodes with security.* xattrs (xattr.go)
	queues     [len(inodeLocks{}.stripes)]writeQueue // writes waiting for each lock stripe (data.go)
	// queuedBytes: written but not yet landed, counted against the free-space reserve.
	queuedBytes atomic.Int64
	cache       *blockCache
	decodes     decodeGates // the order reads' LM blocks decode in (decodeorder.go)

	lmDec atomic.Pointer[lmHolder] // decoder of LM blocks (replaced when models are loaded)

	gcStop chan struct{}
	gcDone chan struct{}
	gcKick chan struct{}
	// gate: write transactions hold it for reading, gc.go's forced memtable flush for
	// writing (Badger refuses commits while it flushes).
	gate  sync.RWMutex
	space spaceGuard // free-space reserve (space.go)

	mu        sync.Mutex
	compactor *compactor
	opens     map[uint64]int   // open file handles per inode (for unlinked-while-open files)
	writeErrs map[uint64]error // writes that failed after they were accepted (data.go)
	closed    bool
	nextMu    sync.Mutex
	next      uint64 // next inode number to hand out
}

// openStore opens (or with Create, creates) the store in dir (Open, boundary.go, is the
// boundary that turns a panic into an error).
func openStore(dir string, opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if opts.CacheBlocks == 0 {
		opts.CacheBlocks = 4096
	}
	// A store path that is a symlink is resolved once; the directory it leads to is the
	// one checked and used (storedir.go).
	resolved, err := ResolvePath(dir)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	dir = resolved
	if !opts.ReadOnly {
		restrictUmask() // Badger's files are made 0666 less the umask
	}
	created, err := checkDir(dir, opts)
	if err != nil {
		return nil, err
	}
	if !created {
		// A crash right after Badger made a value-log file leaves it without its header
		// (vlogcheck.go).
		if err := fixShortValueLog(dir, opts.ReadOnly, opts.Logger); err != nil {
			return nil, fmt.Errorf("open store %s: %w", dir, err)
		}
	}
	if !opts.ReadOnly && !created {
		if err := guardValueLog(dir); err != nil {
			return nil, fmt.Errorf("open store %s: %w", dir, err)
		}
	}
	if !created {
		// Badger trusts its index files: damage there must be an error, not its panic or
		// its deletion of tables (tablecheck.go).
		if err := checkIndex(dir); err != nil {
			return nil, fmt.Errorf("open store %s: %w", dir, err)
		}
	}
	var pre *preallocator
	if !opts.ReadOnly {
		// Value-log files only (the WAL gets keys and pointers: little to gain), and only the
		// size Badger fills before it moves on (it maps twice that): space taken ahead stays
		// within the free-space reserve (space.go).
		pre = startPrealloc(dir, map[string]int64{".vlog": valueLogFileSize + 1<<20})
	}
	// Engine level: Badger's options and its open. From here on the store reads and writes
	// keys only through kv (s.db); Badger itself is named again only for its maintenance
	// (gc.go, through s.engine), its files' checks (tablecheck.go, vlogcheck.go, space.go)
	// and, below, the open errors and its log.
	bo := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{opts.Logger}).
		WithCompression(options.None). // block records are already compressed
		WithSyncWrites(opts.SyncWrites).
		// Big block groups go to data segments (segref.go), small ones and format-2 groups
		// to the value log (written once, append only); the LSM tree holds keys, metadata
		// and segment references (refSize bytes), so its compactions stay cheap. Space of
		// deleted and overwritten blocks comes back through GC (gc.go, segment_gc.go).
		WithValueThreshold(128).
		WithNumVersionsToKeep(1).
		WithReadOnly(opts.ReadOnly).
		WithMemTableSize(memTableSize).
		WithValueLogFileSize(valueLogFileSize). // small files: GC frees space in small steps, and never the file being written (gc.go)
		WithNumCompactors(2).
		WithBlockCacheSize(32 << 20).
		WithIndexCacheSize(16 << 20).
		// Damage in Badger's own files must never come back as data. A value-log entry whose
		// checksum fails is an error (EIO), not bytes; every table was checked whole just
		// before (checkIndex: a damaged table block would read as missing keys, holes:
		// zeros), so Badger does not check them again (its OnTableRead did, after parsing
		// what it checks, and took longer: 140 ms against 78 for 40 MB of tables).
		WithVerifyValueChecksum(true).
		WithChecksumVerificationMode(options.NoVerification)
	db, err := badger.Open(bo)
	if err != nil {
		pre.stop()
		if created {
			os.Remove(filepath.Join(dir, MarkerFile))
		}
		return nil, fmt.Errorf("open store %s: %w", dir, badgerOpenError(err))
	}
	if !opts.ReadOnly {
		// From here on the store is in use: a crash leaves no marker (see vlogcheck.go),
		// also a power loss (the removal is durable before anything is written).
		if err := os.Remove(filepath.Join(dir, closedMarker)); err == nil {
			if err := syncDir(dir); err != nil {
				db.Close()
				pre.stop()
				return nil, fmt.Errorf("open store %s: sync directory: %w", dir, err)
			}
		}
	}
	engine := kv.NewBadger(db)
	s := &Store{dir: dir, db: engine, engine: engine, prealloc: pre, opts: opts, log: opts.Logger, opens: map[uint64]int{}, writeErrs: map[uint64]error{}}
	if !opts.ReadOnly {
		s.space = spaceGuard{dir: dir, reserve: spaceReserve(bo)}
	}
	s.cache = newBlockCache(opts.CacheBlocks)
	for i := range s.queues {
		s.queues[i].cond.L = &s.queues[i].mu
	}
	if s.segs, err = segment.Open(dir, segment.Options{ReadOnly: opts.ReadOnly, Streams: segStreams}); err != nil {
		db.Close()
		pre.stop()
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	if err := s.init(created); err != nil {
		s.segs.Close()
		db.Close()
		pre.stop()
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	if !opts.ReadOnly {
		s.startGC()
	}
	return s, nil
}

// badgerOpenError turns the errors of badger.Open that callers must tell apart into the
// store's sentinels. Badger says them in words only (its y.Wrapf formats the cause instead of
// wrapping it), so this is the one place that knows its wording.
func badgerOpenError(err error) error {
	msg := err.Error()
	switch {
	case errors.Is(err, syscall.EWOULDBLOCK) || strings.Contains(msg, "Cannot acquire directory lock"):
		return ErrLocked
	case errors.Is(err, badger.ErrTruncateNeeded) || strings.Contains(msg, badger.ErrTruncateNeeded.Error()):
		return fmt.Errorf("%w (%s)", ErrUnclean, msg)
	}
	return err
}

// Check reports, without changing anything, whether dir can be opened as a store: a store
// of a format this build reads, an empty directory, or a missing one (both made into stores
// with Create).
func Check(dir string) error {
	resolved, err := ResolvePath(dir)
	if err != nil {
		return fmt.Errorf("open store %s: %w", dir, err)
	}
	dir = resolved
	st, err := os.Lstat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return checkAncestors(dir)
	}
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	if !st.IsDir() && st.Mode()&os.ModeSymlink == 0 {
		return fmt.Errorf("open store %s: %w (it is a file)", dir, ErrNotStore)
	}
	if _, err := os.Lstat(filepath.Join(dir, MarkerFile)); err == nil {
		_, err := checkDir(dir, Options{ReadOnly: true})
		return err
	}
	_, err = checkDir(dir, Options{ReadOnly: true, Create: true})
	if errors.Is(err, errEmptyDir) {
		return nil
	}
	return err
}

// checkDir validates dir (absolute, symlinks resolved) before Badger touches it: a store
// directory no one else can change (storedir.go), made private when opened for writing, and
// marked as a store of a format this build reads. It reports whether a new store is being made.
func checkDir(dir string, opts Options) (bool, error) {
	st, err := os.Lstat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist) && opts.Create && !opts.ReadOnly:
		if err := checkAncestors(dir); err != nil {
			return false, err
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return false, fmt.Errorf("create store: %w", err)
		}
	case err != nil:
		return false, fmt.Errorf("open store: %w", err)
	case !st.IsDir() && st.Mode()&os.ModeSymlink == 0:
		return false, fmt.Errorf("open store %s: %w (it is a file)", dir, ErrNotStore)
	}
	if err := checkStoreDir(dir); err != nil {
		return false, err
	}
	v, problem, err := readMarker(dir)
	if err != nil {
		return false, fmt.Errorf("open store %s: %w", dir, err)
	}
	if problem == "" && v > FormatVersion {
		return false, fmt.Errorf("open store %s: %w (format %d, this lmfs reads up to %d)", dir, ErrNewerFormat, v, FormatVersion)
	}
	if problem != "" && hasBadgerFiles(dir) {
		if !opts.IgnoreMarker {
			return false, fmt.Errorf("open store %s: %w: %s, but the store's own files are there: run lmfs fsck --repair %s", dir, ErrBadMarker, problem, dir)
		}
		problem = "" // Badger's format record decides (init)
	}
	if problem == "" {
		if !opts.ReadOnly {
			if err := tightenStoreDir(dir); err != nil {
				return false, err
			}
		}
		return false, nil
	}
	if problem != markerMissing {
		return false, fmt.Errorf("open store %s: %w (%s)", dir, ErrNotStore, problem)
	}
	entries, _ := os.ReadDir(dir)
	if foreign := slices.DeleteFunc(entries, func(e os.DirEntry) bool { return ownFiles[e.Name()] }); len(foreign) > 0 {
		return false, fmt.Errorf("open store %s: %w (directory is not empty and has no %s file)", dir, ErrNotStore, MarkerFile)
	}
	if !opts.Create || opts.ReadOnly {
		return false, fmt.Errorf("open store %s: %w (%w)", dir, ErrNotStore, errEmptyDir)
	}
	if err := tightenStoreDir(dir); err != nil {
		return false, err
	}
	if err := writeFileAtomic(dir, MarkerFile, markerText(FormatVersion, codec.BlockSize)); err != nil {
		return false, fmt.Errorf("create store: %w", err)
	}
	// The store directory's own name, made here or by the mount command, is durable too.
	if err := syncDir(filepath.Dir(dir)); err != nil {
		return false, fmt.Errorf("create store: sync %s: %w", filepath.Dir(dir), err)
	}
	return true, nil
}

// markerMissing is readMarker's problem when there is no marker file.
const markerMissing = "there is no " + MarkerFile + " file"

// readMarker reads the format number from dir's marker file. A missing, empty or garbled
// marker is not an error but a problem, said in words; err is for a marker that cannot be read.
func readMarker(dir string) (version int, problem string, err error) {
	f, err := openNoFollow(filepath.Join(dir, MarkerFile), os.O_RDONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return 0, markerMissing, nil
	}
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return 0, "", fmt.Errorf("read %s: %w", MarkerFile, err)
	}
	if len(b) == 0 {
		return 0, MarkerFile + " is empty", nil
	}
	if _, err := fmt.Sscanf(string(b), "lmfs store format %d", &version); err != nil {
		return 0, "unreadable " + MarkerFile + " file", nil
	}
	return version, "", nil
}

// hasBadgerFiles reports whether dir holds a Badger database (its manifest).
func hasBadgerFiles(dir string) bool {
	st, err := os.Lstat(filepath.Join(dir, "MANIFEST"))
	return err == nil && st.Mode().IsRegular()
}

// markerText is the marker file of a store of format version and blockSize.
func markerText(version, blockSize int) []byte {
	return fmt.Appendf(nil, "lmfs store format %d\nblock size %d\n", version, blockSize)
}

// RestoreMarker writes the marker file anew from the store's format record, after an Open
// with IgnoreMarker (lmfs fsck --repair).
func (s *Store) RestoreMarker() error {
	if s.opts.ReadOnly {
		return syscall.EROFS
	}
	return writeFileAtomic(s.dir, MarkerFile, markerText(s.format.Version, s.format.BlockSize))
}

// init writes a new store's format record and root, or checks an existing one's, then loads
// the counters.
func (s *Store) init(created bool) error {
	if !created && !s.opts.ReadOnly && !s.opts.IgnoreMarker {
		// A crash after the marker was written but before the format record was durable
		// leaves a marked store with an empty database: there is nothing to lose, so its
		// making is finished.
		empty, err := s.emptyDB()
		if err != nil {
			return err
		}
		if empty {
			// Only a store that never held data can be an unfinished creation: with tables
			// or data segments present, an empty index means the index was lost, and
			// making the store anew would hide every file it holds.
			if leftover := dataFiles(s.dir); leftover != "" {
				return fmt.Errorf("%w: its index is empty but %s holds data; run lmfs fsck %s (nothing was changed)", ErrNotStore, leftover, s.dir)
			}
			s.log.Warn("the store's making was interrupted (no records yet): making it now", "store", s.dir)
			created = true
		}
	}
	if created {
		now := time.Now()
		s.format = Format{Magic: "lmfs", Version: FormatVersion, BlockSize: codec.BlockSize, Created: now.UTC().Format(time.RFC3339)}
		fb, _ := json.Marshal(s.format)
		root := Inode{Ino: RootIno, Mode: syscall.S_IFDIR | 0o755, Nlink: 2, Atime: now.UnixNano(), Mtime: now.UnixNano(), Ctime: now.UnixNano(), NextCookie: firstCookie, Parent: RootIno}
		if os.Getuid() == 0 {
			root.Mode = syscall.S_IFDIR | 0o755
		} else {
			root.Uid, root.Gid = uint32(os.Getuid()), uint32(os.Getgid())
		}
		err := kv.UpdateOnce(s.db, func(txn kv.Txn) error {
			if err := txn.Set([]byte{tagFormat}, fb); err != nil {
				return err
			}
			if err := txn.Set(counterKey(counterNextIno), u64bytes(RootIno+1)); err != nil {
				return err
			}
			return txn.Set(inodeKey(RootIno), root.marshal())
		})
		if err != nil {
			return err
		}
		s.counters = newCounters()
		s.counters.add(Delta{Dirs: 1})
		s.next = RootIno + 1
		return s.saveCounters(false)
	}
	err := kv.View(s.db, func(txn kv.Txn) error {
		v, err := txn.Get([]byte{tagFormat}, nil)
		if err != nil {
			return fmt.Errorf("%w (no format record: %v)", ErrNotStore, err)
		}
		return json.Unmarshal(v, &s.format)
	})
	if err != nil {
		return err
	}
	switch {
	case s.format.Magic != "lmfs":
		return fmt.Errorf("%w (magic %q)", ErrNotStore, s.format.Magic)
	case s.format.Version > FormatVersion:
		return fmt.Errorf("%w (format %d, this lmfs reads up to %d)", ErrNewerFormat, s.format.Version, FormatVersion)
	case s.format.BlockSize != codec.BlockSize:
		return fmt.Errorf("store block size %d is not supported (this lmfs uses %d)", s.format.BlockSize, codec.BlockSize)
	case s.format.Version == 1 && s.opts.ReadOnly:
		return fmt.Errorf("store format %d must be upgraded first: mount it (or run lmfs fsck --repair) with this lmfs", s.format.Version)
	case s.format.Version == 1:
		if err := s.upgradeV1(); err != nil {
			return err
		}
	case s.format.Version < FormatVersion && !s.opts.ReadOnly:
		if err := s.recordFormat(); err != nil {
			return err
		}
	}
	if err := s.loadSecXattrs(); err != nil {
		return err
	}
	return s.loadCounters()
}

// emptyDB reports whether the database holds no key at all.
func (s *Store) emptyDB() (bool, error) {
	empty := false
	err := kv.View(s.db, func(txn kv.Txn) error {
		it := txn.Iterate(kv.IterOptions{})
		defer it.Close()
		it.Seek(nil)
		empty = !it.Valid()
		return nil
	})
	return empty, err
}

// dataFiles names a file of dir that only a store holding data has (a Badger table or a data
// segment), or "" when there is none.
func dataFiles(dir string) string {
	for _, pat := range []string{filepath.Join(dir, "*.sst"), filepath.Join(dir, segment.Subdir, "*.seg")} {
		if m, _ := filepath.Glob(pat); len(m) > 0 {
			return m[0]
		}
	}
	return ""
}

// Close persists the counters, marks the store clean and closes the database.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.settleAll() // writes accepted but not yet committed land first
	s.StopCompactor()
	s.stopGC()
	var err error
	if !s.opts.ReadOnly {
		err = s.saveCounters(true)
	}
	// Segment bytes are durable before Badger's references to them are (db.Close syncs).
	if serr := s.segs.Close(); err == nil {
		err = serr
	}
	if cerr := s.db.Close(); err == nil {
		err = cerr
	}
	s.prealloc.stop()
	if err == nil && !s.opts.ReadOnly {
		err = markClosed(s.dir)
	}
	return err
}

// markClosed leaves the marker of a clean close (vlogcheck.go), naming the newest value-log
// file, durably, never through a symlink.
func markClosed(dir string) error {
	f, err := openNoFollow(filepath.Join(dir, closedMarker), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("mark store closed: %w", err)
	}
	_, err = f.Write(closedText(dir))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("mark store closed: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("mark store closed: sync directory: %w", err)
	}
	return nil
}

// Sync makes every committed operation durable.
func (s *Store) Sync() error {
	if s.opts.ReadOnly {
		return nil
	}
	s.settleAll()
	if err := s.saveCounters(false); err != nil {
		return err
	}
	if err := s.segs.Sync(); err != nil { // segment bytes first, then the references to them
		return err
	}
	return s.db.Sync()
}

type lmHolder struct{ dec codec.LMDecoder }

// SetLM sets the decoder of LM blocks (all models the store has used).
func (s *Store) SetLM(dec codec.LMDecoder) { s.lmDec.Store(&lmHolder{dec}) }

// lm is the decoder of LM blocks; nil until SetLM (no model loaded).
func (s *Store) lm() codec.LMDecoder {
	if h := s.lmDec.Load(); h != nil {
		return h.dec
	}
	return nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// Format returns the store's identity record.
func (s *Store) Format() Format { return s.format }

// update runs fn in a read-write transaction, retrying on conflicts with concurrent ones
// (and on errMoved, which matches kv.ErrConflict). fn is called here, not handed to an
// interface: the closures of the data path's callers stay on their stacks.
func (s *Store) update(fn func(txn kv.Txn) error) error {
	if s.opts.ReadOnly {
		return syscall.EROFS
	}
	for attempt := 0; ; attempt++ {
		s.gate.RLock() // see gc.go
		err := s.updateOnce(fn)
		s.gate.RUnlock()
		if errors.Is(err, kv.ErrConflict) && attempt < 1000 {
			continue
		}
		if errors.Is(err, kv.ErrTooBig) {
			return fmt.Errorf("%w: %v", syscall.EFBIG, err)
		}
		return err
	}
}

// updateOnce is one attempt of update.
func (s *Store) updateOnce(fn func(txn kv.Txn) error) error { return kv.UpdateOnce(s.db, fn) }

// viewOnce runs fn in a read-only transaction; view (groupio.go) retries it when a data
// segment moved.
func (s *Store) viewOnce(fn func(txn kv.Txn) error) error { return kv.View(s.db, fn) }

// badgerLogger routes Badger's chatter to slog at debug level (warnings and errors stay visible).
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error("badger: " + strings.TrimSpace(fmt.Sprintf(f, a...)))
}
func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn("badger: " + strings.TrimSpace(fmt.Sprintf(f, a...)))
}
func (b badgerLogger) Infof(f string, a ...any) {
	b.l.Debug("badger: " + strings.TrimSpace(fmt.Sprintf(f, a...)))
}
func (b badgerLogger) Debugf(f string, a ...any) {
	b.l.Debug("badger: " + strings.TrimSpace(fmt.Sprintf(f, a...)))
}
