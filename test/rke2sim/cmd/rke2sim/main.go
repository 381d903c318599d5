// Command rke2sim is a test stand-in for the rke2 binary; see package rke2sim.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/rke2-hanode/rke2-hanode/test/rke2sim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	exe, _ := os.Executable()
	code := rke2sim.Main(ctx, rke2sim.Options{Args: os.Args[1:], Executable: exe})
	stop()
	os.Exit(code)
}
