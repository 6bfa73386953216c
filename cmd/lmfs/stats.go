package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"lmfs/blockstore"
)

// report is what `lmfs stats` shows; the control socket sends the same as JSON.
type report struct {
	Store        string                         `json:"store"`
	Mounted      bool                           `json:"mounted"`
	PID          int                            `json:"pid,omitempty"`
	Files        int64                          `json:"files"`
	Dirs         int64                          `json:"dirs"`
	Symlinks     int64                          `json:"symlinks"`
	Logical      int64                          `json:"logical_bytes"`
	Stored       int64                          `json:"stored_bytes"` // block records, pending ones included
	Blocks       int64                          `json:"blocks"`
	Ratio        float64                        `json:"ratio"`       // stored / logical
	Saved        int64                          `json:"saved_bytes"` // logical - stored
	Pending      int64                          `json:"pending_blocks"`
	PendingRaw   int64                          `json:"pending_bytes"`
	DiskUsage    int64                          `json:"disk_bytes"`          // the store directory's files, allocated
	DiskOther    int64                          `json:"disk_other_bytes"`    // disk - stored: garbage not yet reclaimed, index, logs
	Compactor    *compactorReport               `json:"compactor,omitempty"` // a mount's (or an offline compact's)
	Codecs       map[string]blockstore.CodecUse `json:"codecs"`
	Extra        map[string]any                 `json:"extra,omitempty"`
	FormatVesion int                            `json:"format"`
}

// compactorReport is the compactor's progress as numbers: what is pending, how much of what
// was pending since the store was opened is done, the recent rate and the time left at it.
type compactorReport struct {
	Running       bool    `json:"running"`
	PendingBlocks int64   `json:"pending_blocks"`
	PendingBytes  int64   `json:"pending_bytes"`
	DoneBlocks    int64   `json:"done_blocks"` // recoded since the store was opened
	DoneBytes     int64   `json:"done_bytes"`  // their raw bytes
	PercentDone   float64 `json:"percent_done"`
	// The recent rate of the full recode (its last batches) and the time left at it; null
	// until a batch has finished.
	RateBytes   *float64 `json:"rate_bytes_per_second"`
	RateBlocks  *float64 `json:"rate_blocks_per_second"`
	ETASeconds  *float64 `json:"eta_seconds"`
	LMBlocks    int64    `json:"lm_blocks"`   // recoded to LM since the store was opened
	FastBlocks  int64    `json:"fast_blocks"` // coded by the fast pass (S2)
	BytesSaved  int64    `json:"bytes_saved"` // by the recoding since the store was opened
	Skipped     int64    `json:"skipped_blocks"`
	BatchBlocks int64    `json:"batch_blocks"` // the batch being recoded now
	BatchSecs   float64  `json:"batch_seconds"`
	LastError   string   `json:"last_error,omitempty"`
}

// newCompactorReport puts the compactor's statistics and the store's pending counts together.
func newCompactorReport(c blockstore.CompactorStats, pending, pendingRaw int64) *compactorReport {
	r := &compactorReport{Running: c.Running, PendingBlocks: pending, PendingBytes: pendingRaw,
		DoneBlocks: c.Blocks, DoneBytes: c.RawBytes, LMBlocks: c.LMBlocks, FastBlocks: c.FastBlocks,
		BytesSaved: c.Saved, Skipped: c.Skipped, BatchBlocks: c.BatchBlocks, BatchSecs: c.BatchSeconds,
		LastError: c.LastError}
	if c.RecentBlocksPerSec > 0 {
		r.RateBlocks, r.RateBytes = &c.RecentBlocksPerSec, &c.RecentBytesPerSec
	}
	done, left := r.progress()
	if done+left > 0 {
		r.PercentDone = 100 * done / (done + left)
	} else {
		r.PercentDone = 100
	}
	switch {
	case pending == 0:
		r.ETASeconds = new(float64)
	case r.RateBlocks != nil:
		eta := left / *r.RateBlocks
		r.ETASeconds = &eta
	}
	return r
}

// progress returns the blocks done and left, the batch in flight counted by estimate: the
// part of it its time so far would have done at the recent rate (at most 95% of it, until
// it is swapped in). The count of done blocks moves a whole batch at a time (a minute, on a
// loaded machine); this moves every second.
func (r *compactorReport) progress() (done, left float64) {
	inBatch := 0.0
	if r.RateBlocks != nil && r.BatchBlocks > 0 {
		inBatch = min(0.95*float64(r.BatchBlocks), r.BatchSecs**r.RateBlocks)
	}
	return float64(r.DoneBlocks) + inBatch, max(0, float64(r.PendingBlocks)-inBatch)
}

func buildReport(st *blockstore.Store, mounted bool) report {
	c := st.Counters()
	blocks, _, stored := c.Stored()
	r := report{Store: st.Dir(), Mounted: mounted, Files: c.Files, Dirs: c.Dirs, Symlinks: c.Symlinks,
		Logical: c.Logical, Stored: stored, Blocks: blocks, Saved: c.Logical - stored, Pending: c.Pending, PendingRaw: c.PendingRaw,
		DiskUsage: st.DiskUsage(), Codecs: c.Codecs, FormatVesion: st.Format().Version}
	r.DiskOther = r.DiskUsage - stored
	if mounted {
		r.PID = os.Getpid()
		r.Compactor = newCompactorReport(st.Compactor(), c.Pending, c.PendingRaw)
	}
	if c.Logical > 0 {
		r.Ratio = float64(stored) / float64(c.Logical)
	}
	return r
}

func runStats(args []string) error {
	fl := newFlags("stats")
	asJSON := fl.Bool("json", false, "print JSON")
	pos, err := parseArgs(fl, args, 1, 1)
	if err != nil {
		return err
	}
	if in, ok := inMount(pos[0]); ok && in.ino != blockstore.RootIno {
		// A file or directory inside a mount: what it takes, asked of the mount.
		rep, err := getPathReport(pos[0], in)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(rep)
		}
		printPathReport(rep)
		return nil
	}
	rep, err := getReport(pos[0])
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(rep)
	}
	printReport(rep)
	return nil
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// getReport asks the running mount, or opens the unmounted store read-only.
func getReport(arg string) (report, error) {
	store, _, err := resolveStore(arg)
	if err != nil {
		return report{}, err
	}
	var rep report
	if err := controlGet(store, "/stats", &rep); err == nil {
		return rep, nil
	}
	if err := checkReadable(store); err != nil {
		return report{}, err
	}
	st, err := blockstore.Open(store, blockstore.Options{ReadOnly: true})
	if errors.Is(err, blockstore.ErrLocked) {
		return report{}, fmt.Errorf("%s is open in another process that does not answer on %s", store, socketPath(store))
	}
	if errors.Is(err, blockstore.ErrUnclean) {
		// Read-only opening cannot replay what a killed server left behind.
		return report{}, fmt.Errorf("%s was not closed cleanly (was its server killed?): mount it or run 'lmfs fsck %s' once to recover it", store, store)
	}
	if err != nil {
		return report{}, err
	}
	defer st.Close()
	return buildReport(st, false), nil
}

// checkReadable says that a store of another user is a permission problem: lmfs opens only
// its own user's stores (and root opens any), and a store directory is private (0700).
func checkReadable(store string) error {
	var st unix.Stat_t
	if err := unix.Stat(store, &st); err != nil {
		return nil // Open says why
	}
	euid := uint32(os.Geteuid())
	if euid != 0 && st.Uid != euid {
		return fmt.Errorf("permission denied: store %s belongs to uid %d; only its owner (or root) can read it", store, st.Uid)
	}
	if err := unix.Access(store, unix.R_OK|unix.X_OK); err != nil {
		return fmt.Errorf("permission denied: cannot read store %s (mode %04o): %w", store, st.Mode&0o7777, err)
	}
	return nil
}

func printReport(r report) {
	state := "not mounted"
	if r.Mounted {
		state = fmt.Sprintf("mounted, server pid %d", r.PID)
	}
	fmt.Printf("store      %s (%s)\n", r.Store, state)
	printSpace(usageLines{Files: r.Files, Dirs: r.Dirs, Symlinks: r.Symlinks, Logical: r.Logical,
		Stored: r.Stored, Blocks: r.Blocks, Pending: r.Pending, PendingRaw: r.PendingRaw, Codecs: r.Codecs},
		pendingNote(r))
	// What the disk holds beyond the records: records replaced or deleted that GC has not
	// taken back yet (the compactor's swaps leave the old records behind), Badger's index,
	// preallocated log files, lmfs.log. "saved" above is what the coding saves; this is why
	// the store can take more than the logical size while the compactor is behind.
	fmt.Printf("on disk    %s: %s of records + %s other (garbage GC has not taken back yet, index, logs)\n",
		human(r.DiskUsage), human(r.Stored), human(r.DiskOther))
	if c := r.Compactor; c != nil && (c.DoneBlocks > 0 || c.FastBlocks > 0) {
		fmt.Printf("compactor  %d blocks recoded since the mount (%s, %d to LM, %s smaller than before), %d coded by the fast pass",
			c.DoneBlocks, human(c.DoneBytes), c.LMBlocks, human(c.BytesSaved), c.FastBlocks)
		if c.Skipped > 0 {
			fmt.Printf(", %d skipped (overwritten)", c.Skipped)
		}
		fmt.Println()
	}
	if c := r.Compactor; c != nil && c.LastError != "" {
		fmt.Printf("compactor  last error: %s\n", c.LastError)
	}
	if len(r.Extra) > 0 {
		keys := make([]string, 0, len(r.Extra))
		for k := range r.Extra {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			switch {
			case k == "model_backend" && r.Extra["model"] != nil:
				continue // on the model's line
			case k == "model" && r.Extra["model_backend"] != nil:
				fmt.Printf("%-10s %v on %v\n", k, r.Extra[k], r.Extra["model_backend"])
			default:
				fmt.Printf("%-10s %v\n", k, r.Extra[k])
			}
		}
	}
	printCodecs(r.Codecs)
}

// pendingNote says where pending blocks stand: the compactor's progress, rate and ETA.
func pendingNote(r report) string {
	c := r.Compactor
	switch {
	case r.Pending == 0:
		return ""
	case c == nil && !r.Mounted:
		return "recoded when mounted or by 'lmfs compact'"
	case c == nil:
		return ""
	case !c.Running:
		return "compactor off (--no-compact)"
	}
	return compactorProgress(c)
}

// compactorProgress is "42% done, 17.2 KB/s, ETA 3m10s" (the rate and ETA once known).
func compactorProgress(c *compactorReport) string {
	s := fmt.Sprintf("%.0f%% done", c.PercentDone)
	if c.RateBytes != nil {
		s += ", " + humanRate(*c.RateBytes)
	}
	if c.ETASeconds != nil {
		s += ", ETA " + humanDuration(*c.ETASeconds)
	} else if c.PendingBlocks > 0 {
		s += ", ETA after the first batch"
	}
	return s
}

// usageLines is what the store's report and a path's report both show.
type usageLines struct {
	Files, Dirs, Symlinks   int64
	Logical, Stored, Blocks int64
	Pending, PendingRaw     int64
	Codecs                  map[string]blockstore.CodecUse
	OneFile                 bool // a file's report: no count of files
}

// printSpace prints the files, the logical and stored bytes, and the pending blocks (note:
// their progress).
func printSpace(u usageLines, note string) {
	if !u.OneFile {
		fmt.Printf("files      %s, %s, %s\n", plural(u.Files, "file"), plural(u.Dirs, "directory"), plural(u.Symlinks, "symlink"))
	}
	fmt.Printf("logical    %s\n", human(u.Logical))
	pct := 0.0
	if u.Logical > 0 {
		pct = 100 * float64(u.Stored) / float64(u.Logical)
	}
	fmt.Printf("stored     %s in %d blocks, %.1f%% of logical: saves %s\n", human(u.Stored), u.Blocks, pct, human(u.Logical-u.Stored))
	if u.Pending == 0 {
		fmt.Printf("pending    none: every block has its final coding\n")
	} else {
		fmt.Printf("pending    %d blocks (%s) awaiting the compactor", u.Pending, human(u.PendingRaw))
		if note != "" {
			fmt.Printf(": %s", note)
		}
		fmt.Println()
	}
}

// printCodecs prints the blocks, logical and stored bytes per codec (as compsize does), and
// their total when there are several.
func printCodecs(codecs map[string]blockstore.CodecUse) {
	names := make([]string, 0, len(codecs))
	for n := range codecs {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return
	}
	fmt.Println()
	const row = "%-8s %9s %12s %12s %9s\n"
	fmt.Printf(row, "codec", "blocks", "logical", "stored", "stored %")
	var total blockstore.CodecUse
	line := func(name string, c blockstore.CodecUse) {
		pct := "-"
		if c.Raw > 0 {
			pct = fmt.Sprintf("%.1f", 100*float64(c.Stored)/float64(c.Raw))
		}
		fmt.Printf(row, name, strconv.FormatInt(c.Blocks, 10), human(c.Raw), human(c.Stored), pct)
	}
	for _, n := range names {
		c := codecs[n]
		line(n, c)
		total.Blocks += c.Blocks
		total.Raw += c.Raw
		total.Stored += c.Stored
	}
	if len(names) > 1 {
		line("total", total)
	}
}

func plural(n int64, what string) string {
	if n == 1 {
		return "1 " + what
	}
	if strings.HasSuffix(what, "y") {
		return fmt.Sprintf("%d %sies", n, strings.TrimSuffix(what, "y"))
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// humanRate is a rate in bytes per second, in decimal units as transfer rates are.
func humanRate(bps float64) string {
	switch {
	case bps >= 1e6:
		return fmt.Sprintf("%.1f MB/s", bps/1e6)
	case bps >= 1e3:
		return fmt.Sprintf("%.1f KB/s", bps/1e3)
	}
	return fmt.Sprintf("%.0f B/s", bps)
}

// humanDuration is a time left: "45s", "3m10s", "2h05m", "3d04h".
func humanDuration(sec float64) string {
	d := time.Duration(sec * float64(time.Second)).Round(time.Second)
	switch {
	case sec < 0:
		return "?"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}

func human(n int64) string {
	const unit = 1024
	if n < unit && n > -unit {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	suffix := "KMGTPE"
	i := -1
	for (f >= unit || f <= -unit) && i < len(suffix)-1 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.2f %ciB", f, suffix[i]) // exact byte counts: --json
}
