// Command lmfs mounts, inspects and measures lmfs stores. Each command lives in its own file;
// the work itself is done by the fs, blockstore, codec and model packages.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

type command struct {
	name, args, summary string
	run                 func(args []string) error
}

func commands() []command {
	return []command{
		{"mount", "[flags] STORE MOUNTPOINT", "mount a store (created if missing) and serve it in the background", runMount},
		{"umount", "MOUNTPOINT", "flush, unmount and wait until the store is closed", runUmount},
		{"stats", "[--json] STORE|MOUNTPOINT", "show files, logical and stored bytes, and space saved", runStats},
		{"compact", "[--wait] [--model PATH] STORE|MOUNTPOINT", "recode pending blocks with the best codecs (a mount does this in the background)", runCompact},
		{"fsck", "[--repair] [--json] STORE", "check every block and all metadata of an unmounted store", runFsck},
		{"bench", "[--json] [--model PATH] DIR...", "code files in 2 KiB blocks with every codec and compare", runBench},
		{"version", "", "print the version and the store format it reads", runVersion},
	}
}

func usage() {
	fmt.Fprintf(os.Stderr, "lmfs: a FUSE file system that stores files compressed by a language model\n\nUsage: lmfs COMMAND [ARGS]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(os.Stderr, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(os.Stderr, "\nRun 'lmfs COMMAND --help' for a command's flags.\n")
}

// errUsage marks an error already explained by the command's usage text.
var errUsage = errors.New("usage")

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	name := os.Args[1]
	if name == "-h" || name == "--help" || name == "help" {
		usage()
		return
	}
	for _, c := range commands() {
		if c.name == name {
			err := c.run(os.Args[2:])
			switch {
			case err == nil:
			case errors.Is(err, flag.ErrHelp):
			case errors.Is(err, errUsage):
				os.Exit(2)
			case errors.Is(err, errFindings):
				os.Exit(1)
			default:
				fmt.Fprintf(os.Stderr, "lmfs %s: %v\n", name, err)
				os.Exit(1)
			}
			return
		}
	}
	fmt.Fprintf(os.Stderr, "lmfs: unknown command %q (run 'lmfs --help')\n", name)
	os.Exit(2)
}

// newFlags makes a command's flag set with a usage text naming its arguments.
func newFlags(name string) *flag.FlagSet {
	fl := flag.NewFlagSet(name, flag.ContinueOnError)
	fl.Usage = func() {
		for _, c := range commands() {
			if c.name == name {
				fmt.Fprintf(fl.Output(), "Usage: lmfs %s %s\n\n%s.\n", name, c.args, c.summary)
			}
		}
		fl.PrintDefaults()
	}
	return fl
}

// parseArgs parses flags (also after positional arguments) and checks the positional count.
func parseArgs(fl *flag.FlagSet, args []string, min, max int) ([]string, error) {
	var pos []string
	for {
		if err := fl.Parse(args); err != nil {
			return nil, err
		}
		args = fl.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if len(pos) < min || (max >= 0 && len(pos) > max) {
		fl.Usage()
		return nil, errUsage
	}
	return pos, nil
}

func runVersion(args []string) error {
	fl := newFlags("version")
	if _, err := parseArgs(fl, args, 0, 0); err != nil {
		return err
	}
	fmt.Printf("lmfs %s (store format %d)\n", version, storeFormat())
	return nil
}
