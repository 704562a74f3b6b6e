// Command xmppd is the Dialtone XMPP server. It is configured only by
// environment variables (see SPEC.md and README.md).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"dialtone/internal/config"
	"dialtone/internal/daemon"
	"dialtone/internal/memory"
)

func main() {
	os.Exit(run())
}

func run() int {
	cfg, err := config.Load()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	log := cfg.Logger(os.Stderr)
	// Process-wide, so here and not in the daemon (tests run many).
	memory.Apply(cfg.GCPercent, cfg.MemoryLimit)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	d, err := daemon.New(ctx, cfg, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go memory.NewReturner().Run(ctx)
	if err := d.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
