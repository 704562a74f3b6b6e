package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// maxSources bounds --src: 256 addresses give ~7M ephemeral ports, far
// more than maxClients needs.
const maxSources = 256

// parseSources reads --src: comma-separated IPv4 loopback addresses or
// ranges ("127.0.0.2-127.0.0.9"). Connections bind to them round-robin:
// Linux gives each source address its own ~28k ephemeral ports
// (ip_local_port_range) towards one server address, so 100,000
// connections need at least four.
func parseSources(s string) ([]net.IP, error) {
	var out []net.IP
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := sourceIP(lo)
		if err != nil {
			return nil, fmt.Errorf("--src %q: %w", part, err)
		}
		b := a
		if isRange {
			if b, err = sourceIP(hi); err != nil {
				return nil, fmt.Errorf("--src %q: %w", part, err)
			}
		}
		from, to := binary.BigEndian.Uint32(a), binary.BigEndian.Uint32(b)
		if to < from {
			return nil, fmt.Errorf("--src %q: the range ends before it starts", part)
		}
		if uint64(to-from)+1+uint64(len(out)) > maxSources {
			return nil, fmt.Errorf("--src %q: more than %d addresses", s, maxSources)
		}
		for v := uint64(from); v <= uint64(to); v++ {
			ip := make(net.IP, 4)
			binary.BigEndian.PutUint32(ip, uint32(v))
			out = append(out, ip)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--src %q: no address", s)
	}
	return out, nil
}

func sourceIP(s string) (net.IP, error) {
	ip := net.ParseIP(strings.TrimSpace(s)).To4()
	if ip == nil {
		return nil, fmt.Errorf("%q is not an IPv4 address", s)
	}
	if !isLoopback(ip) {
		return nil, fmt.Errorf("%s is not a loopback address", ip)
	}
	return ip, nil
}

// raiseFileLimit makes room for need descriptors: the soft limit up to
// the hard one (Go's runtime does that much at start), and past the hard
// one when the process may (root, or CAP_SYS_RESOURCE; up to
// fs.nr_open). It returns the limit in force.
func raiseFileLimit(need uint64) (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	if rl.Cur >= need {
		return rl.Cur, nil
	}
	want := rl
	want.Cur = need
	if want.Max < need {
		want.Max = need
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err == nil {
		return need, nil
	}
	// Not allowed past the hard limit: as far as it goes.
	want = syscall.Rlimit{Cur: rl.Max, Max: rl.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		return rl.Cur, fmt.Errorf("setrlimit: %w", err)
	}
	return rl.Max, nil
}

// checkFileLimit raises the file limit for clients connections (and a
// margin for the process's own files), or says what is missing.
func checkFileLimit(clients int) error {
	need := uint64(clients) + 256
	got, err := raiseFileLimit(need)
	if err != nil {
		return err
	}
	if got < need {
		return fmt.Errorf("--clients %d needs %d open files; the limit is %d (raise it with `ulimit -Hn %d` as root, or run as root)", clients, need, got, need)
	}
	return nil
}

// rampRow is one second of a ramp: how many sessions are up, how fast
// they came, and what the server holds.
type rampRow struct {
	Second   float64 `json:"s"`
	Sessions int64   `json:"sessions"`
	LoginsPS float64 `json:"logins_per_s"`
	RSSKiB   uint64  `json:"rss_kib,omitempty"`
	KiBEach  float64 `json:"kib_per_session,omitempty"`
	CPUPct   float64 `json:"server_cpu_pct,omitempty"`
	// ClientCPUPct is this process's CPU over the row's interval: on a
	// shared machine, whether the load generator or the server is short.
	ClientCPUPct float64 `json:"client_cpu_pct"`
}

// ramp samples the sessions up (and, with --pid, the server) every
// interval until stop is closed, printing a row each time.
type ramp struct {
	up       *atomic.Int64
	m        *serverMeter
	base     usage
	interval time.Duration
	log      io.Writer
	rows     []rampRow
	// seen, when set, is handed each row as it is taken (for tests).
	seen chan<- rampRow
}

func (rp *ramp) run(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	start := time.Now()
	t := time.NewTicker(rp.interval)
	defer t.Stop()
	fmt.Fprintf(rp.log, "%8s %9s %9s %10s %9s %7s %7s\n", "second", "sessions", "logins/s", "RSS MiB", "KiB/sess", "srv CPU", "cli CPU")
	lastN, lastT, lastCPU, lastSelf := int64(0), start, rp.base.cpuTicks, selfCPUTicks()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			n := rp.up.Load()
			u, self := rp.m.read(), selfCPUTicks()
			row := rampRow{Second: now.Sub(start).Seconds(), Sessions: n}
			if dt := now.Sub(lastT).Seconds(); dt > 0 {
				row.LoginsPS = float64(n-lastN) / dt
				if rp.m.pid != 0 && u.cpuTicks >= lastCPU {
					row.CPUPct = 100 * ticksToSec(u.cpuTicks-lastCPU) / dt
				}
				if self >= lastSelf {
					row.ClientCPUPct = 100 * ticksToSec(self-lastSelf) / dt
				}
			}
			if rp.m.pid != 0 && rp.m.err == nil {
				row.RSSKiB = u.rssKiB
				if n > 0 {
					row.KiBEach = (float64(u.rssKiB) - float64(rp.base.rssKiB)) / float64(n)
				}
			}
			lastN, lastT, lastCPU, lastSelf = n, now, u.cpuTicks, self
			rp.rows = append(rp.rows, row)
			if rp.seen != nil {
				select {
				case rp.seen <- row:
				case <-stop:
					return
				}
			}
			fmt.Fprintf(rp.log, "%8.0f %9d %9.0f %10.1f %9.1f %6.0f%% %6.0f%%\n", row.Second, row.Sessions, row.LoginsPS, float64(row.RSSKiB)/1024, row.KiBEach, row.CPUPct, row.ClientCPUPct)
			if len(rp.rows) >= maxRampRows {
				return
			}
		}
	}
}

// maxRampRows bounds the table: maxRun at one row a second.
const maxRampRows = int(maxRun / time.Second)
