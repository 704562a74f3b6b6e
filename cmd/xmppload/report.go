package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
)

// result is the summary of one run: one JSON line, and a table for people.
type result struct {
	Scenario    string  `json:"scenario"`
	Label       string  `json:"label,omitempty"`
	Addr        string  `json:"addr"`
	TLS         string  `json:"tls"`
	Mech        string  `json:"mech"`
	Clients     int     `json:"clients"`
	Concurrency int     `json:"concurrency,omitempty"`
	CPUs        int     `json:"cpus"`
	Seconds     float64 `json:"seconds"`

	Logins        int     `json:"logins"`
	LoginFailures int     `json:"login_failures"`
	LoginsPerSec  float64 `json:"logins_per_s,omitempty"`
	LoginP50ms    float64 `json:"login_p50_ms,omitempty"`
	LoginP99ms    float64 `json:"login_p99_ms,omitempty"`
	LoginMaxms    float64 `json:"login_max_ms,omitempty"`

	Size       int     `json:"size,omitempty"`
	Window     int     `json:"window,omitempty"`
	TargetRate float64 `json:"target_rate,omitempty"`
	Sent       int64   `json:"sent,omitempty"`
	Received   int64   `json:"received,omitempty"`
	Lost       int64   `json:"lost,omitempty"`
	Errors     int64   `json:"errors,omitempty"`
	Duplicates int64   `json:"duplicates,omitempty"`
	MsgsPerSec float64 `json:"msgs_per_s,omitempty"`
	// The room scenario: MsgsPerSec counts deliveries, SentPerSec the
	// messages sent to the room.
	Room         string  `json:"room,omitempty"`
	MessagesEach int     `json:"messages_each,omitempty"`
	SentPerSec   float64 `json:"sent_per_s,omitempty"`
	// The offline scenario: messages stored per second, up to the
	// answer to the ping that follows them.
	StoresPerSec float64 `json:"stores_per_s,omitempty"`
	LatP50ms     float64 `json:"lat_p50_ms,omitempty"`
	LatP90ms     float64 `json:"lat_p90_ms,omitempty"`
	LatP99ms     float64 `json:"lat_p99_ms,omitempty"`
	LatMaxms     float64 `json:"lat_max_ms,omitempty"`

	ClientCPUs          float64 `json:"client_cpu_s,omitempty"`
	ServerCPUs          float64 `json:"server_cpu_s,omitempty"`
	ServerCPUPerMsgUs   float64 `json:"server_cpu_us_per_msg,omitempty"`
	ServerCPUPerLoginUs float64 `json:"server_cpu_us_per_login,omitempty"`

	ServerProcs          int     `json:"server_procs,omitempty"`
	RSSBeforeKiB         uint64  `json:"server_rss_before_kib,omitempty"`
	RSSAfterKiB          uint64  `json:"server_rss_after_kib,omitempty"`
	KiBPerSession        float64 `json:"kib_per_session,omitempty"`
	KiBPerSessionSettled float64 `json:"kib_per_session_settled,omitempty"`
	// Ramp is the idle scenario's --ramp table, a row per interval.
	Ramp []rampRow `json:"ramp,omitempty"`
}

func (r *result) print(stdout, stderr io.Writer) {
	b, _ := json.Marshal(r)
	fmt.Fprintf(stdout, "%s\n", b)
	tw := tabwriter.NewWriter(stderr, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(name, format string, v ...any) {
		fmt.Fprintf(tw, "%s\t"+format+"\t\n", append([]any{name}, v...)...)
	}
	row("scenario", "%s %s", r.Scenario, r.Label)
	row("server", "%s (%s, %s)", r.Addr, r.TLS, r.Mech)
	row("clients", "%d (%d logged in, %d failed)", r.Clients, r.Logins, r.LoginFailures)
	if r.LoginsPerSec > 0 {
		row("logins/s", "%.0f", r.LoginsPerSec)
		row("login p50 / p99", "%.1f / %.1f ms", r.LoginP50ms, r.LoginP99ms)
	}
	if r.Scenario == "route" {
		row("sent / received", "%d / %d", r.Sent, r.Received)
		row("lost / errors / dup", "%d / %d / %d", r.Lost, r.Errors, r.Duplicates)
		row("msgs/s", "%.0f", r.MsgsPerSec)
		row("latency p50/p90/p99/max", "%.2f / %.2f / %.2f / %.1f ms", r.LatP50ms, r.LatP90ms, r.LatP99ms, r.LatMaxms)
	}
	if r.Scenario == "room" {
		row("room", "%s (%d messages each)", r.Room, r.MessagesEach)
		row("sent / deliveries", "%d / %d", r.Sent, r.Received)
		row("lost / errors / dup", "%d / %d / %d", r.Lost, r.Errors, r.Duplicates)
		row("sent/s / deliveries/s", "%.0f / %.0f", r.SentPerSec, r.MsgsPerSec)
		row("latency p50/p90/p99/max", "%.2f / %.2f / %.2f / %.1f ms", r.LatP50ms, r.LatP90ms, r.LatP99ms, r.LatMaxms)
	}
	if r.Scenario == "offline" {
		row("sent / stored-then-received", "%d / %d", r.Sent, r.Received)
		row("lost / errors / dup", "%d / %d / %d", r.Lost, r.Errors, r.Duplicates)
		row("stores/s", "%.0f (%.3f s to the ping's answer)", r.StoresPerSec, r.Seconds)
	}
	if r.ServerCPUPerMsgUs > 0 {
		unit := "msg"
		if r.Scenario == "room" {
			unit = "delivery"
		}
		row("server CPU / "+unit, "%.1f µs", r.ServerCPUPerMsgUs)
	}
	if r.ServerCPUPerLoginUs > 0 {
		row("server CPU / login", "%.0f µs", r.ServerCPUPerLoginUs)
	}
	if r.ServerCPUs > 0 || r.ClientCPUs > 0 {
		row("CPU server / client", "%.2f / %.2f s (%d cores shared)", r.ServerCPUs, r.ClientCPUs, r.CPUs)
	}
	if r.Scenario == "idle" && r.RSSAfterKiB > 0 {
		row("server RSS before / after", "%d / %d KiB", r.RSSBeforeKiB, r.RSSAfterKiB)
		row("KiB / session", "%.1f (%.1f 2 s after login)", r.KiBPerSession, r.KiBPerSessionSettled)
	}
	tw.Flush()
}
