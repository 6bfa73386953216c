package main

import (
	"crypto/sha256"
	"flag"
	"fmt"
	"log/slog"

	"lmfs/blockstore"
	"lmfs/codec"
	"lmfs/model"
)

// lmFlags are the model options shared by mount, compact and bench.
type lmFlags struct {
	model, ortLib, device string
	noLM                  bool
}

func (lf *lmFlags) register(fl *flag.FlagSet) {
	fl.StringVar(&lf.model, "model", "", "model file (.lmfsm) for new LM blocks; default "+defaultModelRel+" next to the executable or in the working directory")
	fl.StringVar(&lf.ortLib, "ort-lib", "", "ONNX Runtime library (default: $LMFS_ORT_LIB, then lib/ next to the executable)")
	fl.StringVar(&lf.device, "device", "auto", "model device: auto, cpu or cuda (go: the plain-Go evaluator, also for new blocks)")
	fl.BoolVar(&lf.noLM, "no-lm", false, "code new blocks with the classical codecs only")
}

// lmSetup is the models a mount uses: every model the store holds (to decode) and the
// selected one (to code new blocks).
type lmSetup struct {
	set     *codec.LMSet
	encoder *codec.LMCodec // nil with --no-lm or when no model is found
	info    map[string]any
	runners []model.Runner
}

func (l *lmSetup) Close() {
	for _, r := range l.runners {
		r.Close()
	}
}

// openModels loads the store's models and the selected one, records the selected one in the
// store, and makes the store decode LM blocks with them.
func openModels(st *blockstore.Store, lf lmFlags, log *slog.Logger) (*lmSetup, error) {
	l := &lmSetup{set: codec.NewLMSet(), info: map[string]any{}}
	opts := model.Options{LibPath: lf.ortLib, Device: lf.device, Logger: log}
	add := func(data []byte, what string) (*model.Model, *codec.LMCodec, error) {
		m, err := model.Parse(data)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", what, err)
		}
		if c, ok := l.set.Get(m.ShortID()); ok {
			return m, c, nil
		}
		var r model.Runner
		if lf.device == "go" {
			r = model.NewGoRunner(m)
		} else if r, err = model.Open(m, opts); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", what, err)
		}
		l.runners = append(l.runners, r)
		c := codec.NewLMCodec(r, m.ShortID())
		l.set.Add(c)
		l.info["model_backend"] = r.Backend()
		return m, c, nil
	}
	stored, err := st.Models()
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("read the store's models: %w", err)
	}
	for _, data := range stored {
		if _, _, err := add(data, fmt.Sprintf("stored model %x", sha256.Sum256(data))); err != nil {
			l.Close()
			return nil, err
		}
	}
	if !lf.noLM {
		path := lf.model
		if path == "" {
			path = findDefaultModel()
		}
		if path == "" && lf.model == "" {
			log.Warn("no default model found: new blocks get the classical codecs only", "looked_for", defaultModelRel)
		} else {
			m, err := model.Load(path)
			if err != nil {
				l.Close()
				return nil, fmt.Errorf("load model: %w", err)
			}
			_, c, err := add(m.Bytes(), path)
			if err != nil {
				l.Close()
				return nil, err
			}
			if err := st.PutModel(m.Bytes()); err != nil {
				l.Close()
				return nil, fmt.Errorf("record model in store: %w", err)
			}
			l.info["model"] = fmt.Sprintf("%s (%08x)", m.Name(), m.ShortID())
			if l.info["model_backend"] == "go" && lf.device != "go" {
				// The Go evaluator decodes fine but is too slow to code a whole store.
				log.Warn("ONNX Runtime unavailable: new blocks get the classical codecs; LM blocks still decode (Go evaluator)")
				l.info["model"] = fmt.Sprintf("%s (%08x), decode only: no ONNX Runtime", m.Name(), m.ShortID())
			} else {
				l.encoder = c
			}
		}
	}
	if _, ok := l.info["model"]; !ok {
		l.info["model"] = "none (classical codecs only)"
	}
	st.SetLM(l.set)
	return l, nil
}
