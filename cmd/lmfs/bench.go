package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"lmfs/codec"
	"lmfs/codec/bench"
	"lmfs/model"
)

// defaultModelRel is where lmfs looks for its model, relative to the executable's directory,
// its parent, and the working directory.
const defaultModelRel = "model/default.lmfsm"

func runBench(args []string) error {
	fl := newFlags("bench")
	jsonOut := fl.Bool("json", false, "print the result as JSON")
	modelPath := fl.String("model", "", "model file (.lmfsm); default "+defaultModelRel+" next to the executable or in the working directory")
	ortLib := fl.String("ort-lib", "", "ONNX Runtime library (default: $LMFS_ORT_LIB, then lib/ next to the executable)")
	device := fl.String("device", "auto", "model device: auto, cpu or cuda")
	noLM := fl.Bool("no-lm", false, "leave the language-model codec out")
	batch := fl.Int("batch", 256, "blocks per LM batch (one model call per byte position for all of them)")
	quiet := fl.Bool("quiet", false, "no progress bar")
	dirs, err := parseArgs(fl, args, 1, -1)
	if err != nil {
		return err
	}
	o := bench.Options{LMBatch: *batch}
	if !*quiet {
		o.Progress = os.Stderr
	}
	if !*noLM {
		path := *modelPath
		if path == "" {
			if path = findDefaultModel(); path == "" {
				return fmt.Errorf("no model: %s not found next to the executable or in the working directory; pass --model PATH (or --no-lm)", defaultModelRel)
			}
		}
		m, err := model.Load(path)
		if err != nil {
			return fmt.Errorf("load model: %w", err)
		}
		logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		r, err := model.Open(m, model.Options{LibPath: *ortLib, Device: *device, Logger: logger})
		if err != nil {
			return fmt.Errorf("open model %s: %w", path, err)
		}
		defer r.Close()
		if !*jsonOut {
			fmt.Printf("model %s (%08x, order %d) on %s\n", path, m.ShortID(), m.Order(), r.Backend())
		}
		o.LM = codec.NewLMCodec(r, m.ShortID())
	}
	res, err := bench.Run(dirs, o)
	if err != nil {
		return err
	}
	if *jsonOut {
		return res.WriteJSON(os.Stdout)
	}
	return res.WriteText(os.Stdout)
}

// findDefaultModel returns the first existing default model path, or "".
func findDefaultModel() string {
	var cands []string
	if exe, err := os.Executable(); err == nil {
		if exe, err := filepath.EvalSymlinks(exe); err == nil {
			d := filepath.Dir(exe)
			cands = append(cands, filepath.Join(d, defaultModelRel), filepath.Join(d, "..", defaultModelRel))
		}
	}
	cands = append(cands, defaultModelRel)
	for _, c := range cands {
		if st, err := os.Stat(c); err == nil && st.Mode().IsRegular() {
			return c
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			continue
		}
	}
	return ""
}
