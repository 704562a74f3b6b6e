//go:build pprof

package main

// Built with -tags pprof (profiling only, never in a release): the
// runtime profiles at http://$XMPPD_PPROF_ADDR/debug/pprof/, an address
// that must be loopback, for measuring the server under load (issue 15).

import (
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	addr := os.Getenv("XMPPD_PPROF_ADDR")
	if addr == "" {
		return
	}
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		fmt.Fprintf(os.Stderr, "XMPPD_PPROF_ADDR %q: want a loopback host:port\n", addr)
		os.Exit(2)
	}
	go http.ListenAndServe(addr, nil)
}
