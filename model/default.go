package model

import (
	_ "embed"
	"fmt"
)

// The shipped default model, built into the binary so every lmfs can code and decode with it
// without a model file at hand. How it was trained: model/README.md.
//
//go:embed default.lmfsm
var defaultModel []byte

// Default returns the shipped default model.
func Default() (*Model, error) {
	m, err := Parse(defaultModel)
	if err != nil {
		return nil, fmt.Errorf("built-in default model: %w", err)
	}
	return m, nil
}
