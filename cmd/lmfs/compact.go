package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"lmfs/blockstore"
)

func runCompact(args []string) error {
	fl := newFlags("compact")
	var lf lmFlags
	lf.register(fl)
	wait := fl.Bool("wait", false, "with a mounted store: wait until nothing is pending (the mount compacts in the background anyway)")
	recode := fl.Bool("recode", false, "also recode the blocks an older model coded (after an upgrade) with the model new blocks get; each is replaced only by a smaller record")
	quiet := fl.Bool("quiet", false, "no progress (a bar on a terminal, else a line every 10 s)")
	pos, err := parseArgs(fl, args, 1, 1)
	if err != nil {
		return err
	}
	if _, err := lf.check(); err != nil {
		return err
	}
	show := showBar
	switch {
	case *quiet:
		show = showNothing
	case !isTerminal(os.Stderr):
		show = showLines
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
		if *recode {
			return recodeMounted(store, rep.PID, *wait, show)
		}
		if !*wait {
			fmt.Printf("%d blocks pending; the mount (pid %d) is compacting them\n", rep.Pending, rep.PID)
			return nil
		}
		err := waitPending(func() (*compactorReport, error) {
			var r report
			if err := controlGet(store, "/stats", &r); err != nil {
				return nil, err
			}
			if r.Compactor == nil { // a server of an older lmfs: the counts only
				return &compactorReport{Running: true, PendingBlocks: r.Pending, PendingBytes: r.PendingRaw}, nil
			}
			if !r.Compactor.Running && r.Pending > 0 {
				return nil, fmt.Errorf("the mount (pid %d) does not compact (mounted with --no-compact): %d blocks stay pending", r.PID, r.Pending)
			}
			return r.Compactor, nil
		}, show, sig)
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
	err = nil
	if *recode {
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-sig:
				cancel()
			case <-ctx.Done():
			}
		}()
		err = recodeOffline(ctx, st, show)
		cancel()
		if errors.Is(err, context.Canceled) {
			err = errInterrupted
		}
	}
	if err == nil {
		err = waitPending(func() (*compactorReport, error) {
			c := st.Compactor()
			if c.LastError != "" {
				return nil, fmt.Errorf("compactor: %s", c.LastError)
			}
			n := st.Counters()
			return newCompactorReport(c, n.Pending, n.PendingRaw), nil
		}, show, sig)
	}
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

// How waitPending shows progress.
const (
	showNothing = iota
	showBar     // a bar redrawn in place (a terminal)
	showLines   // a line every progressLineEvery (a log, a pipe)
)

const progressLineEvery = 10 * time.Second

// waitPending polls the compactor until nothing is pending, showing its progress (show); a
// signal on stop ends it with errInterrupted.
//
// The bar is of the blocks pending when the wait began (more, if writes add some): the
// blocks done since then, the batch being recoded counted by estimate (compactorReport's
// progress), so it moves every poll, not a batch at a time; the rate is the recent batches'.
func waitPending(poll func() (*compactorReport, error), show int, stop <-chan os.Signal) error {
	start := time.Now()
	var base float64 = -1 // done blocks when the wait began
	var total float64     // what there was to do since then
	lastLine := time.Time{}
	for {
		c, err := poll()
		if err != nil {
			if show == showBar {
				fmt.Fprintln(os.Stderr)
			}
			return err
		}
		done, left := c.progress()
		if base < 0 {
			base = done
		}
		total = max(total, done-base+left)
		if left == 0 && c.PendingBlocks == 0 {
			done = base + total
		}
		line := compactLine(done-base, total, c, time.Since(start))
		switch {
		case show == showBar:
			progressLine(os.Stderr, done-base, total, line)
		case show == showLines && (time.Since(lastLine) >= progressLineEvery || c.PendingBlocks == 0):
			fmt.Fprintln(os.Stderr, "lmfs compact: "+line)
			lastLine = time.Now()
		}
		if c.PendingBlocks == 0 {
			if show == showBar {
				fmt.Fprintln(os.Stderr)
			}
			return nil
		}
		select {
		case <-stop:
			if show == showBar {
				fmt.Fprintln(os.Stderr)
			}
			return errInterrupted
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// compactLine is one line of progress: "1234/5000 blocks, 4.2 MiB left, 52.1 KB/s, ETA 3m10s, 40s".
func compactLine(done, total float64, c *compactorReport, elapsed time.Duration) string {
	pct := 100.0
	if total > 0 {
		pct = 100 * done / total
	}
	if total == 0 && c.PendingBlocks == 0 {
		return "nothing pending"
	}
	leftBytes := c.PendingBytes // the batch in flight by estimate, as the blocks
	if c.PendingBlocks > 0 {
		_, left := c.progress()
		leftBytes = int64(float64(c.PendingBytes) * left / float64(c.PendingBlocks))
	}
	s := fmt.Sprintf("%3.0f%% %.0f/%.0f blocks, %s left", pct, done, total, human(leftBytes))
	if c.RateBytes != nil {
		s += ", " + humanRate(*c.RateBytes)
	}
	switch {
	case c.PendingBlocks == 0:
	case c.ETASeconds != nil:
		s += ", ETA " + humanDuration(*c.ETASeconds)
	default:
		s += ", ETA after the first batch"
	}
	return s + ", " + elapsed.Round(time.Second).String()
}

// progressLine draws a bar and text on one terminal line (rewritten in place, cleared to its end).
func progressLine(w *os.File, done, total float64, text string) {
	const width = 30
	frac := 1.0
	if total > 0 {
		frac = min(1, done/total)
	}
	filled := int(frac * width)
	bar := strings.Repeat("#", filled) + strings.Repeat(".", width-filled)
	fmt.Fprintf(w, "\r[%s] %s\x1b[K", bar, text)
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
