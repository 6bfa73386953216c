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
	asJSON := fl.Bool("json", false, "print JSON")
	quiet := fl.Bool("quiet", false, "no progress bar")
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
	// Decode LM blocks with the store's own models only.
	lm, err := openModels(st, lmFlags{ortLib: *ortLib, device: "cpu", noLM: true}, log)
	if err != nil {
		return err
	}
	defer lm.Close()
	o := blockstore.FsckOptions{Repair: *repair}
	start := time.Now()
	if !*quiet && isTerminal(os.Stderr) {
		o.Progress = func(done, total int64) { progressBar(os.Stderr, "checking", done, total, time.Since(start)) }
	}
	r, err := st.Fsck(o)
	if o.Progress != nil {
		fmt.Fprintln(os.Stderr)
	}
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
		fmt.Printf("checked %d inodes, %d entries, %d blocks in %s: ", r.Inodes, r.Entries, r.Blocks, time.Since(start).Round(time.Millisecond))
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
