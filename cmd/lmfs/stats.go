package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"text/tabwriter"

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
	Stored       int64                          `json:"stored_bytes"`
	Blocks       int64                          `json:"blocks"`
	Ratio        float64                        `json:"ratio"` // stored / logical
	Saved        int64                          `json:"saved_bytes"`
	Pending      int64                          `json:"pending_blocks"`
	PendingRaw   int64                          `json:"pending_bytes"`
	DiskUsage    int64                          `json:"disk_bytes"`
	Codecs       map[string]blockstore.CodecUse `json:"codecs"`
	Extra        map[string]any                 `json:"extra,omitempty"`
	FormatVesion int                            `json:"format"`
}

func buildReport(st *blockstore.Store, mounted bool) report {
	c := st.Counters()
	blocks, _, stored := c.Stored()
	r := report{Store: st.Dir(), Mounted: mounted, Files: c.Files, Dirs: c.Dirs, Symlinks: c.Symlinks,
		Logical: c.Logical, Stored: stored, Blocks: blocks, Saved: c.Logical - stored, Pending: c.Pending, PendingRaw: c.PendingRaw,
		DiskUsage: diskUsage(st.Dir()), Codecs: c.Codecs, FormatVesion: st.Format().Version}
	if mounted {
		r.PID = os.Getpid()
	}
	if c.Logical > 0 {
		r.Ratio = float64(stored) / float64(c.Logical)
	}
	return r
}

// diskUsage is the space the store's files take on disk.
func diskUsage(dir string) int64 {
	var total int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				if st, ok := info.Sys().(*syscall.Stat_t); ok {
					total += st.Blocks * 512 // allocated, not apparent: Badger preallocates sparse files
				} else {
					total += info.Size()
				}
			}
		}
		return nil
	})
	return total
}

func runStats(args []string) error {
	fl := newFlags("stats")
	asJSON := fl.Bool("json", false, "print JSON")
	pos, err := parseArgs(fl, args, 1, 1)
	if err != nil {
		return err
	}
	rep, err := getReport(pos[0])
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printReport(rep)
	return nil
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
	fmt.Printf("store          %s (%s)\n", r.Store, state)
	fmt.Printf("files          %d files, %d directories, %d symlinks\n", r.Files, r.Dirs, r.Symlinks)
	fmt.Printf("logical        %s\n", human(r.Logical))
	fmt.Printf("stored         %s in %d blocks (%.1f%% of logical)\n", human(r.Stored), r.Blocks, 100*r.Ratio)
	fmt.Printf("saved          %s\n", human(r.Saved))
	fmt.Printf("pending        %d blocks (%s) awaiting the compactor\n", r.Pending, human(r.PendingRaw))
	fmt.Printf("on disk        %s (Badger and data segment files, including garbage GC has not taken back yet)\n", human(r.DiskUsage))
	names := make([]string, 0, len(r.Codecs))
	for n := range r.Codecs {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) > 0 {
		fmt.Println()
		tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "codec\tblocks\tlogical\tstored\tstored %\t")
		for _, n := range names {
			u := r.Codecs[n]
			pct := 0.0
			if u.Raw > 0 {
				pct = 100 * float64(u.Stored) / float64(u.Raw)
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%.1f\t\n", n, u.Blocks, human(u.Raw), human(u.Stored), pct)
		}
		tw.Flush()
	}
	if len(r.Extra) > 0 {
		fmt.Println()
		keys := make([]string, 0, len(r.Extra))
		for k := range r.Extra {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Printf("%-14s %v\n", k, r.Extra[k])
		}
	}
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
