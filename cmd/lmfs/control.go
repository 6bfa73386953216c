package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"

	"lmfs/blockstore"
)

// The control socket: a running mount answers `lmfs stats`, `lmfs umount`, `lmfs compact` (and --recode)
// over HTTP on a unix socket next to its store (Badger lets only one process open a store).

// serveControl starts answering on the store's socket; the returned func stops it.
func serveControl(st *blockstore.Store, extra func() map[string]any, state *serverState) (func(), error) {
	path := socketPath(st.Dir())
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s is answering: is the store mounted elsewhere?", path)
	}
	os.Remove(path)
	// The socket is made 0700 (blockstore.Open set the umask to 077): only the store's
	// owner can ask. bind(2) never follows a symlink.
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/state", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(state.report())
	})
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		if state.Phase() != phaseServing {
			http.Error(w, "the store is closing", http.StatusServiceUnavailable)
			return
		}
		rep := buildReport(st, true)
		if extra != nil {
			rep.Extra = extra()
		}
		writeJSON(w, rep)
	})
	// What a file or directory tree takes (lmfs stats PATH, statspath.go).
	mux.HandleFunc("/usage", func(w http.ResponseWriter, r *http.Request) {
		if state.Phase() != phaseServing {
			http.Error(w, "the store is closing", http.StatusServiceUnavailable)
			return
		}
		serveUsage(st, w, r)
	})
	// lmfs compact --recode on a mounted store (recode.go).
	rc := &recoder{}
	mux.HandleFunc("/recode", func(w http.ResponseWriter, r *http.Request) {
		if state.Phase() != phaseServing {
			http.Error(w, "the store is closing", http.StatusServiceUnavailable)
			return
		}
		rc.serve(st, w, r)
	})
	// Profiles of the running mount, for performance work: go tool pprof over the socket.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	return func() {
		rc.stop()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		os.Remove(path)
	}, nil
}

// controlGet asks the mount of store for path and decodes the JSON answer into v.
func controlGet(store, path string, v any) error {
	sock := socketPath(store)
	if err := checkSocketOwner(store, sock); err != nil {
		return err
	}
	c := &http.Client{
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}},
		Timeout: 30 * time.Second,
	}
	resp, err := c.Get("http://lmfs" + path)
	if err != nil {
		return fmt.Errorf("ask the mount of %s: %w", store, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return &statusError{code: resp.StatusCode, msg: fmt.Sprintf("mount of %s answered %s: %s", store, resp.Status, bytes.TrimSpace(b))}
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("mount of %s: bad answer: %w", store, err)
	}
	return nil
}

// statusError is an answer of the mount other than 200 OK.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
