package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"lmfs/blockstore"
	"lmfs/codec"
)

// errFindings makes fsck exit non-zero after it has printed its findings.
var errFindings = errors.New("store has problems")

func runFsck(args []string) error {
	fl := newFlags("fsck")
	repair := fl.Bool("repair", false, "fix what can be fixed without guessing data (bad blocks are only reported)")
	full := fl.Bool("full", false, "also decode every LM block with its model (slow: about 100 KB/s per core); by default LM blocks are checked by their headers and checksums without the model")
	asJSON := fl.Bool("json", false, "print JSON")
	quiet := fl.Bool("quiet", false, "no progress")
	ortLib := fl.String("ort-lib", "", "ONNX Runtime library (default: $LMFS_ORT_LIB, then lib/ next to the executable)")
	pos, err := parseArgs(fl, args, 1, 1)
	if err != nil {
		return err
	}
	store, mounted, err := resolveStore(pos[0])
	if err != nil {
		return err
	}
	var rep report
	if mounted || controlGet(store, "/stats", &rep) == nil {
		return fmt.Errorf("%s is mounted: unmount it first (lmfs umount)", store)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError + 4}))
	st, err := blockstore.Open(store, blockstore.Options{Logger: log})
	var badMarker error
	if errors.Is(err, blockstore.ErrBadMarker) {
		// Badger's files are there: check the store by its own format record; only a
		// repair writes the marker anew (after the store opened, so from that record).
		badMarker = err
		st, err = blockstore.Open(store, blockstore.Options{Logger: log, IgnoreMarker: true, ReadOnly: !*repair})
	}
	var damaged error
	if errors.Is(err, blockstore.ErrDamagedLog) {
		// Check what survives without letting Badger cut the damaged log.
		damaged = err
		st, err = blockstore.Open(store, blockstore.Options{Logger: log, ReadOnly: true, IgnoreMarker: badMarker != nil})
		*repair = false
	}
	if err != nil {
		if badMarker != nil {
			return badMarker // the store cannot be checked read-only: say what a repair would do
		}
		return err
	}
	defer st.Close()
	var markerFinding []blockstore.Finding
	if badMarker != nil {
		f := blockstore.Finding{Kind: blockstore.FindingMarker, Detail: strings.TrimPrefix(badMarker.Error(), "open store "+store+": ")}
		if *repair {
			if err := st.RestoreMarker(); err != nil {
				return fmt.Errorf("restore the marker of %s: %w", store, err)
			}
			f.Detail, f.Repaired = fmt.Sprintf("%s: written anew from the store's format record (format %d)", blockstore.ErrBadMarker, st.Format().Version), true
		}
		markerFinding = append(markerFinding, f)
	}
	if *full {
		// Decode LM blocks with the store's own models only.
		lm, err := openModels(st, lmFlags{ortLib: *ortLib, device: "cpu", noLM: true}, log)
		if err != nil {
			return err
		}
		defer lm.Close()
	}
	o := blockstore.FsckOptions{Repair: *repair, Full: *full}
	start := time.Now()
	var prog *fsckProgress
	if !*quiet && !*asJSON {
		prog = &fsckProgress{w: os.Stderr, tty: isTerminal(os.Stderr), start: start, last: start, unit: "blocks"}
		if *full {
			prog.unit = "LM blocks decoded" // they take the time
		}
		o.Progress = prog.show
	}
	r, err := st.Fsck(o)
	prog.end()
	if err != nil {
		return err
	}
	if damaged != nil {
		r.Findings = append([]blockstore.Finding{{Kind: blockstore.FindingDamagedLog, Detail: damaged.Error() + " (checked read-only; no repair)"}}, r.Findings...)
		r.Clean = false
	}
	if len(markerFinding) > 0 {
		r.Findings = append(markerFinding, r.Findings...)
		r.Clean = r.Clean && markerFinding[0].Repaired
	}
	if *asJSON {
		if r.Findings == nil {
			r.Findings = []blockstore.Finding{} // a clean store: "findings": [], not null
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(r)
	} else {
		for _, f := range r.Findings {
			where := ""
			if f.Path != "" {
				where = " " + f.Path
			}
			if f.Ino != 0 {
				where += fmt.Sprintf(" (inode %d)", f.Ino)
			}
			if f.Kind.HasBlock() {
				where += fmt.Sprintf(" block %d (offset %d)", f.Block, f.Block*codec.BlockSize)
			}
			state := ""
			if f.Repaired {
				state = " [repaired]"
			}
			fmt.Printf("%s%s: %s%s\n", f.Kind, where, f.Detail, state)
		}
		undecoded := ""
		if r.LMUndecoded > 0 {
			undecoded = fmt.Sprintf(" (%d LM blocks by checksums, not decoded: --full decodes them)", r.LMUndecoded)
		}
		fmt.Printf("checked %d inodes, %d entries, %d blocks%s in %s: ", r.Inodes, r.Entries, r.Blocks, undecoded, time.Since(start).Round(time.Millisecond))
		if r.Clean {
			fmt.Println("clean")
		} else {
			fmt.Printf("%d problems\n", len(r.Findings))
		}
	}
	if !r.Clean {
		return errFindings
	}
	return nil
}

// fsckProgress shows fsck's progress on stderr: on a terminal a bar with rate and ETA,
// redrawn in place; otherwise one line every 10 s (logs and pipes get no \r frames).
type fsckProgress struct {
	w     *os.File
	tty   bool
	start time.Time
	last  time.Time // last line written (not a terminal; the first comes 10 s in)
	unit  string    // what done and total count
	drawn bool
}

// show implements FsckOptions.Progress.
func (p *fsckProgress) show(done, total int64) {
	now := time.Now()
	if !p.tty && now.Sub(p.last) < 10*time.Second {
		return
	}
	el := now.Sub(p.start)
	frac := 1.0
	if total > 0 {
		frac = min(1, float64(done)/float64(total))
	}
	text := fmt.Sprintf("%3.0f%% checking: %d/%d %s, %s", 100*frac, done, total, p.unit, el.Round(time.Second))
	if done > 0 && el > time.Second && done < total {
		rate := float64(done) / el.Seconds()
		text += fmt.Sprintf(", %.0f/s, ETA %s", rate, (time.Duration(float64(total-done) / rate * 1e9)).Round(time.Second))
	}
	if !p.tty {
		fmt.Fprintf(p.w, "lmfs fsck: %s\n", text)
		p.last = now
		return
	}
	const width = 30
	filled := int(frac * width)
	fmt.Fprintf(p.w, "\r[%s%s] %s\x1b[K", strings.Repeat("#", filled), strings.Repeat(".", width-filled), text)
	p.drawn = true
}

// end finishes the bar's line (nothing when p is nil or drew nothing).
func (p *fsckProgress) end() {
	if p != nil && p.drawn {
		fmt.Fprintln(p.w)
	}
}
