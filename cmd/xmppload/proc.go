package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// The server's resources, read from /proc: the process and its
// descendants (ejabberd's Erlang VM runs under ejabberdctl's shell).

// clockTicks is USER_HZ, which Linux fixes at 100 for /proc.
const clockTicks = 100

// procStat is the part of /proc/PID/stat used here.
type procStat struct {
	ppid       int
	cpuTicks   uint64 // utime + stime
	rssKiB     uint64
	descendant bool
}

// parseStat reads /proc/PID/stat text: the fields after the command name,
// which is in parentheses and may hold spaces.
func parseStat(text string) (ppid int, cpuTicks uint64, err error) {
	rp := strings.LastIndexByte(text, ')')
	if rp < 0 {
		return 0, 0, fmt.Errorf("malformed stat")
	}
	f := strings.Fields(text[rp+1:])
	// f[0] is the state (field 3); ppid is field 4, utime 14, stime 15.
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("short stat")
	}
	ppid, err = strconv.Atoi(f[1])
	if err != nil {
		return 0, 0, err
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("bad cpu times")
	}
	return ppid, ut + st, nil
}

// parseRSS returns VmRSS in KiB from /proc/PID/status text.
func parseRSS(text string) uint64 {
	for line := range strings.SplitSeq(text, "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseUint(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// usage is the CPU time and resident memory of a process tree.
type usage struct {
	cpuTicks uint64
	rssKiB   uint64
	procs    int
}

// treeUsage sums pid and its descendants (a bounded walk of /proc).
func treeUsage(pid int) (usage, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return usage{}, err
	}
	stats := map[int]*procStat{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		ppid, ticks, err := parseStat(string(b))
		if err != nil {
			continue
		}
		stats[p] = &procStat{ppid: ppid, cpuTicks: ticks}
	}
	if _, ok := stats[pid]; !ok {
		return usage{}, fmt.Errorf("no process %d", pid)
	}
	var u usage
	for p, st := range stats {
		q := p
		for range 64 { // depth bound
			if q == pid {
				st.descendant = true
				break
			}
			parent, ok := stats[q]
			if !ok || q <= 1 {
				break
			}
			q = parent.ppid
		}
		if !st.descendant {
			continue
		}
		u.procs++
		u.cpuTicks += st.cpuTicks
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/status"); err == nil {
			u.rssKiB += parseRSS(string(b))
		}
	}
	return u, nil
}

// selfCPUTicks is this process's CPU time, to show what the client costs.
func selfCPUTicks() uint64 {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	_, t, _ := parseStat(string(bytes.TrimSpace(b)))
	return t
}
