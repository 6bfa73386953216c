package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"lmfs/blockstore"
)

// `lmfs compact --recode`: move the blocks an older model coded (a store keeps every model its
// blocks need, so they stay readable) to the model new blocks get, keeping each old block
// unless its new record is smaller. Offline it runs here; on a mounted store the mount runs it
// in the background (the control socket's /recode) and --wait follows it.

// recodeStatus is the answer of /recode.
type recodeStatus struct {
	Running  bool                      `json:"running"`
	Done     bool                      `json:"done"`
	Error    string                    `json:"error,omitempty"`
	Progress blockstore.RecodeProgress `json:"progress"`
	Seconds  float64                   `json:"seconds"`
}

// recoder runs one RecodeStale at a time inside a mount.
type recoder struct {
	mu     sync.Mutex
	st     recodeStatus
	start  time.Time
	cancel context.CancelFunc
}

func (rc *recoder) status() recodeStatus {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	s := rc.st
	if s.Running {
		s.Seconds = time.Since(rc.start).Seconds()
	}
	return s
}

// begin starts a recode unless one is running.
func (rc *recoder) begin(st *blockstore.Store) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.st.Running {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	rc.cancel = cancel
	rc.start = time.Now()
	rc.st = recodeStatus{Running: true}
	go func() {
		p, err := st.RecodeStale(ctx, func(p blockstore.RecodeProgress) {
			rc.mu.Lock()
			rc.st.Progress = p
			rc.mu.Unlock()
		})
		rc.mu.Lock()
		defer rc.mu.Unlock()
		rc.st = recodeStatus{Done: err == nil, Progress: p, Seconds: time.Since(rc.start).Seconds()}
		if err != nil {
			rc.st.Error = err.Error()
		}
	}()
}

// stop cancels a running recode (the store is closing).
func (rc *recoder) stop() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.cancel != nil {
		rc.cancel()
	}
}

// serveRecode answers /recode (status) and /recode?start=1 (start, then status).
func (rc *recoder) serve(st *blockstore.Store, w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("start") == "1" {
		rc.begin(st)
	}
	writeJSON(w, rc.status())
}

// recodeMounted asks the mount of store to recode; with wait it follows until done.
func recodeMounted(store string, pid int, wait bool, show int) error {
	var s recodeStatus
	if err := controlGet(store, "/recode?start=1", &s); err != nil {
		var se *statusError
		if errors.As(err, &se) && se.code == http.StatusNotFound {
			return fmt.Errorf("the mount (pid %d) is of an older lmfs without --recode: unmount and run lmfs compact --recode %s", pid, store)
		}
		return err
	}
	if !wait {
		fmt.Printf("the mount (pid %d) is recoding the blocks of older models in the background (lmfs compact --recode --wait follows it)\n", pid)
		return nil
	}
	for {
		if err := controlGet(store, "/recode", &s); err != nil {
			return err
		}
		if !s.Running {
			break
		}
		showRecode(show, s.Progress, time.Duration(s.Seconds*float64(time.Second)), false)
		time.Sleep(500 * time.Millisecond)
	}
	showRecode(show, s.Progress, time.Duration(s.Seconds*float64(time.Second)), true)
	if s.Error != "" {
		return fmt.Errorf("recode: %s", s.Error)
	}
	printRecode(s.Progress)
	return nil
}

var lastRecodeLine time.Time

// showRecode draws the scan's progress (groups scanned of the store's groups).
func showRecode(show int, p blockstore.RecodeProgress, elapsed time.Duration, final bool) {
	text := fmt.Sprintf("recode: %d/%d groups scanned, %d blocks of older models, %d recoded, %s saved, %s",
		p.Groups, p.TotalGroups, p.StaleBlocks, p.Recoded, human(p.BytesSaved), elapsed.Round(time.Second))
	switch {
	case show == showBar:
		progressLine(os.Stderr, float64(p.Groups), float64(p.TotalGroups), text)
		if final {
			fmt.Fprintln(os.Stderr)
		}
	case show == showLines && (final || time.Since(lastRecodeLine) >= progressLineEvery):
		lastRecodeLine = time.Now()
		fmt.Fprintln(os.Stderr, text)
	}
}

func printRecode(p blockstore.RecodeProgress) {
	fmt.Printf("recode to model %08x: %d block groups scanned, %d blocks of older models, %d recoded (the rest kept: no smaller), saved %s\n",
		p.CurrentModel, p.Groups, p.StaleBlocks, p.Recoded, human(p.BytesSaved))
}

// recodeOffline runs the recode in this process on an opened store with a started compactor.
func recodeOffline(ctx context.Context, st *blockstore.Store, show int) error {
	start := time.Now()
	p, err := st.RecodeStale(ctx, func(p blockstore.RecodeProgress) { showRecode(show, p, time.Since(start), false) })
	showRecode(show, p, time.Since(start), true)
	if err != nil {
		return err
	}
	printRecode(p)
	return nil
}
