package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"lmfs/blockstore"
)

func runCompact(args []string) error {
	fl := newFlags("compact")
	var lf lmFlags
	lf.register(fl)
	wait := fl.Bool("wait", false, "with a mounted store: wait until nothing is pending (the mount compacts in the background anyway)")
	quiet := fl.Bool("quiet", false, "no progress bar")
	pos, err := parseArgs(fl, args, 1, 1)
	if err != nil {
		return err
	}
	if _, err := lf.check(); err != nil {
		return err
	}
	if !isTerminal(os.Stderr) {
		*quiet = true
	}
	store, _, err := resolveStore(pos[0])
	if err != nil {
		return err
	}
	// ^C or SIGTERM stops the work (and the waiting); the store is closed cleanly.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	var rep report
	if err := controlGet(store, "/stats", &rep); err == nil {
		// A mount serves this store: its compactor is already at work.
		if !*wait {
			fmt.Printf("%d blocks pending; the mount (pid %d) is compacting them\n", rep.Pending, rep.PID)
			return nil
		}
		err := waitPending(func() (int64, error) {
			var r report
			err := controlGet(store, "/stats", &r)
			return r.Pending, err
		}, *quiet, sig)
		if errors.Is(err, errInterrupted) {
			return fmt.Errorf("%w: stopped waiting; the mount (pid %d) goes on compacting", errInterrupted, rep.PID)
		}
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := blockstore.Open(store, blockstore.Options{Logger: log})
	if err != nil {
		return err
	}
	closed := false
	closeStore := func() error {
		if closed {
			return nil
		}
		closed = true
		return st.Close()
	}
	defer closeStore()
	lm, err := openModels(st, lf, log)
	if err != nil {
		return err
	}
	defer lm.Close()
	st.StartCompactor(blockstore.CompactOptions{Policy: lm.policy(), Idle: 100 * time.Millisecond})
	err = waitPending(func() (int64, error) {
		if c := st.Compactor(); c.LastError != "" {
			return 0, fmt.Errorf("compactor: %s", c.LastError)
		}
		return st.Counters().Pending, nil
	}, *quiet, sig)
	if errors.Is(err, errInterrupted) {
		// The batch being coded is finished or dropped (recoding is all or nothing per
		// block), then the store is closed as after a finished run; a second signal quits.
		fmt.Fprintln(os.Stderr, "lmfs compact: interrupted: stopping the compactor and closing the store (^C again to quit at once; the next open recovers the store)")
		go func() {
			<-sig
			fmt.Fprintln(os.Stderr, "lmfs compact: quit without closing the store")
			os.Exit(130)
		}()
		st.StopCompactor()
		c, pending := st.Compactor(), st.Counters().Pending
		if cerr := closeStore(); cerr != nil {
			return fmt.Errorf("interrupted; closing the store failed: %w", cerr)
		}
		left := "nothing left pending"
		if pending > 0 {
			left = fmt.Sprintf("%d still pending (run again to go on)", pending)
		}
		return fmt.Errorf("%w: store closed cleanly; %d blocks recoded, %s", errInterrupted, c.Blocks, left)
	}
	st.StopCompactor()
	if err != nil {
		return err
	}
	c := st.Compactor()
	fmt.Printf("recoded %d blocks (%s), saved %s, %d to LM, %.0f KB/s\n", c.Blocks, human(c.RawBytes), human(c.Saved), c.LMBlocks, c.BytesPerSec/1000)
	return nil
}

// errInterrupted: a command stopped on SIGINT or SIGTERM.
var errInterrupted = errors.New("interrupted")

// waitPending polls the pending count until it reaches zero, drawing a progress bar; a
// signal on stop ends it with errInterrupted.
func waitPending(pending func() (int64, error), quiet bool, stop <-chan os.Signal) error {
	start := time.Now()
	var total int64 = -1
	for {
		n, err := pending()
		if err != nil {
			return err
		}
		if total < n {
			total = n
		}
		if !quiet {
			progressBar(os.Stderr, "compacting", total-n, total, time.Since(start))
		}
		if n == 0 {
			if !quiet {
				fmt.Fprintln(os.Stderr)
			}
			return nil
		}
		select {
		case <-stop:
			if !quiet {
				fmt.Fprintln(os.Stderr)
			}
			return errInterrupted
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// progressBar draws one line of progress on w (a terminal: it rewrites the line).
func progressBar(w *os.File, what string, done, total int64, elapsed time.Duration) {
	const width = 30
	frac := 1.0
	if total > 0 {
		frac = float64(done) / float64(total)
	}
	filled := int(frac * width)
	bar := make([]byte, width)
	for i := range bar {
		if i < filled {
			bar[i] = '#'
		} else {
			bar[i] = '.'
		}
	}
	fmt.Fprintf(w, "\r[%s] %3.0f%% %s %d/%d blocks %s", bar, 100*frac, what, done, total, elapsed.Round(time.Second))
}

// isTerminal reports whether f is a terminal (progress bars only go there).
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
