package blockstore

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
)

// The store's boundary: what a damaged or hostile store can make go wrong inside opening or
// checking it comes out of Open and Fsck as one error line, never as a panic that takes the
// caller (lmfs fsck, the mount server) down with a stack trace. The decoders of stored
// records return errors (and are fuzzed: *_fuzz_test.go), Badger's index files are checked
// before Badger reads them (tablecheck.go); the recovers here catch what those miss, in the
// caller's goroutine. (Badger's own goroutines cannot be recovered from: that is why its
// files are checked first.) FUSE requests have their own boundary: go-fuse answers a request
// whose handler panicked with EIO and logs the panic (fuse.MountOptions.PanicHandler).

// ErrPanic reports a panic while opening or checking a store: a record the code did not
// expect (damage the checks missed) or a bug. The stack is logged at debug level.
var ErrPanic = errors.New("internal error reading the store (is it damaged?)")

// Open opens (or with Create, creates) the store in dir.
func Open(dir string, opts Options) (s *Store, err error) {
	defer func() {
		if p := recover(); p != nil {
			s, err = nil, panicError("open store "+dir, p, opts.Logger)
		}
		err = oneLine(err)
	}()
	return openStore(dir, opts)
}

// panicError turns a recovered panic into an error saying what was being done.
func panicError(what string, p any, log *slog.Logger) error {
	if log != nil {
		log.Debug("panic recovered", "during", what, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
	}
	return fmt.Errorf("%s: %w: %v", what, ErrPanic, p)
}

// lineError is an error whose message was made one line (Badger's have line breaks).
type lineError struct {
	err error
	msg string
}

func (e *lineError) Error() string { return e.msg }
func (e *lineError) Unwrap() error { return e.err }

// oneLine returns err with the lines of its message joined by "; ".
func oneLine(err error) error {
	if err == nil || !strings.Contains(err.Error(), "\n") {
		return err
	}
	var parts []string
	for _, l := range strings.Split(err.Error(), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return &lineError{err, strings.Join(parts, "; ")}
}
