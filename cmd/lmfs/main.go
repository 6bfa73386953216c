// Command lmfs mounts, inspects and measures lmfs stores. Each command lives in its own file;
// the work itself is done by the fs, blockstore, codec and model packages.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
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
		{"stats", "[--json] STORE|MOUNTPOINT|PATH", "show files, logical and stored bytes, space saved and the compactor's progress; for a PATH in a mount, what it takes per codec", runStats},
		{"compact", "[--wait] [--model PATH] STORE|MOUNTPOINT", "recode pending blocks with the best codecs (a mount does this in the background)", runCompact},
		{"fsck", "[--repair] [--json] STORE", "check every block and all metadata of an unmounted store", runFsck},
		{"bench", "[--json] [--model PATH] DIR...", "code files in 2 KiB blocks with every codec and compare", runBench},
		{"version", "", "print the version and the store format it reads", runVersion},
	}
}

// usage prints the command list: to stdout when asked for (--help, help), to stderr when
// the command line was wrong.
func usage(w io.Writer) {
	fmt.Fprintf(w, "lmfs: a FUSE file system that stores files compressed by a language model\n\nUsage: lmfs COMMAND [ARGS]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'lmfs COMMAND --help' (or 'lmfs help COMMAND') for a command's flags.\n")
}

// errUsage marks an error already explained by the command's usage text.
var errUsage = errors.New("usage")

func main() {
	if len(os.Args) < 2 {
		usage(os.Stderr)
		os.Exit(2)
	}
	name, args := os.Args[1], os.Args[2:]
	if name == "-h" || name == "--help" || name == "help" {
		if name != "help" || len(args) == 0 {
			usage(os.Stdout)
			return
		}
		// lmfs help COMMAND is lmfs COMMAND --help.
		name, args = args[0], []string{"--help"}
	}
	for _, c := range commands() {
		if c.name == name {
			err := c.run(args)
			switch {
			case err == nil:
			case errors.Is(err, flag.ErrHelp):
			case errors.Is(err, errUsage):
				os.Exit(2)
			case errors.Is(err, errFindings):
				os.Exit(1)
			case errors.Is(err, errInterrupted):
				fmt.Fprintf(os.Stderr, "lmfs %s: %v\n", name, err)
				os.Exit(130) // as a shell reports a command ended by ^C

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

// newFlags makes a command's flag set. The flag package prints nothing itself: parseArgs
// prints the help (stdout) or a one-line error.
func newFlags(name string) *flag.FlagSet {
	fl := flag.NewFlagSet(name, flag.ContinueOnError)
	fl.SetOutput(io.Discard)
	fl.Usage = func() {}
	return fl
}

// internalFlag starts the usage text of flags lmfs passes to itself; help leaves them out.
const internalFlag = "internal:"

// printUsage writes a command's usage: its arguments, what it does and its flags (long ones
// as --name, as the README writes them; internal ones left out).
func printUsage(w io.Writer, fl *flag.FlagSet) {
	for _, c := range commands() {
		if c.name == fl.Name() {
			fmt.Fprintf(w, "Usage: lmfs %s %s\n\n%s.\n\n", c.name, c.args, c.summary)
		}
	}
	fl.VisitAll(func(f *flag.Flag) {
		if strings.HasPrefix(f.Usage, internalFlag) {
			return
		}
		kind, text := flag.UnquoteUsage(f)
		dash := "--"
		if len(f.Name) == 1 {
			dash = "-"
		}
		line := "  " + dash + f.Name
		if kind != "" {
			line += " " + kind
		}
		if def := f.DefValue; def != "" && def != "false" && def != "0" {
			text += fmt.Sprintf(" (default %s)", def)
		}
		fmt.Fprintf(w, "%s\n    \t%s\n", line, text)
	})
}

// parseArgs parses flags (also after positional arguments) and checks the positional count.
// --help prints the usage on stdout and returns flag.ErrHelp (exit 0); a bad flag is one
// line (exit 2); a wrong number of arguments prints the usage on stderr (exit 2).
func parseArgs(fl *flag.FlagSet, args []string, min, max int) ([]string, error) {
	var pos []string
	for {
		if err := fl.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				printUsage(os.Stdout, fl)
				return nil, err
			}
			fmt.Fprintf(os.Stderr, "lmfs %s: %v (see 'lmfs %s --help')\n", fl.Name(), err, fl.Name())
			return nil, errUsage
		}
		args = fl.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if len(pos) < min || (max >= 0 && len(pos) > max) {
		printUsage(os.Stderr, fl)
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
