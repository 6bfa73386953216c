// Command loopback serves a directory unchanged through go-fuse (its fs.NewLoopbackRoot) with
// the same mount options lmfs uses: the passthrough baseline of `make bench`.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: loopback DIR MOUNTPOINT")
		os.Exit(2)
	}
	root, err := gofs.NewLoopbackRoot(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "loopback:", err)
		os.Exit(1)
	}
	sec := time.Second
	srv, err := gofs.Mount(os.Args[2], root, &gofs.Options{
		MountOptions: fuse.MountOptions{MaxWrite: 1 << 20, MaxReadAhead: 1 << 20, DirectMount: true,
			FsName: os.Args[1], Name: "loopback", Options: []string{"default_permissions"}},
		AttrTimeout: &sec, EntryTimeout: &sec,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "loopback:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() { <-sig; srv.Unmount() }()
	srv.Wait()
}
