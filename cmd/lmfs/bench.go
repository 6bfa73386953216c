package main

import (
	"fmt"
	"log/slog"
	"os"

	"lmfs/codec"
	"lmfs/codec/bench"
)

func runBench(args []string) error {
	fl := newFlags("bench")
	var lf lmFlags
	lf.register(fl)
	jsonOut := fl.Bool("json", false, "print the result as JSON")
	batch := fl.Int("batch", 256, "blocks per LM batch (one model call per byte position for all of them)")
	quiet := fl.Bool("quiet", false, "no progress bar")
	dirs, err := parseArgs(fl, args, 1, -1)
	if err != nil {
		return err
	}
	if _, err := lf.check(); err != nil {
		return err
	}
	o := bench.Options{LMBatch: *batch}
	if !*quiet && isTerminal(os.Stderr) {
		o.Progress = os.Stderr // a redirected stderr gets no \r frames
	}
	if !lf.noLM {
		m, err := lf.load()
		if err != nil {
			return err
		}
		logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		r, fallback, err := lf.runner(m, logger)
		if err != nil {
			return fmt.Errorf("open model %s: %w", m.Name(), err)
		}
		if fallback != nil {
			logger.Warn("ONNX Runtime not usable: the model runs on the slower Go evaluator", "err", fallback)
		}
		defer r.Close()
		if !*jsonOut {
			fmt.Printf("model %s (%08x, order %d) on %s\n", m.Name(), m.ShortID(), m.Order(), r.Backend())
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
