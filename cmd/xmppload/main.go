// Command xmppload is a load generator for any XMPP server on loopback: it
// logs in real clients (TCP, STARTTLS or direct TLS, SASL SCRAM-SHA-256,
// SCRAM-SHA-1 or PLAIN, resource binding, presence) and measures login
// rate, message routing (every message counted end to end by its id,
// latency from a timestamp in its body) and the memory an idle session
// costs the server. It prints one JSON line on stdout and a table on
// stderr. See README.md "Measuring".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Hard caps: every run is bounded in size and time.
const (
	maxClients     = 200_000
	maxDuration    = 5 * time.Minute
	maxConcurrency = 1000
	maxSize        = 64 << 10
	maxRate        = 1_000_000
	maxWindow      = 100_000
	loginTimeout   = 30 * time.Second
	// maxRun bounds a whole run: logins, the scenario, draining, closing.
	maxRun = 15 * time.Minute
)

type config struct {
	addr        string
	domain      string
	tls         string // starttls or direct
	mech        string
	accounts    string
	pattern     string
	password    string
	start       int
	xmppctl     string
	saveAccts   string
	clients     int
	concurrency int
	scenario    string
	duration    time.Duration
	rate        float64
	size        int
	window      int
	drain       time.Duration
	pid         int
	label       string
	muc         string
	room        string
	messages    int
	scramCache  string
	src         string
	ramp        time.Duration
	tlsGroups   string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("xmppload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:5222", "server host:port (loopback only: 127.0.0.0/8 or ::1); several, comma-separated, spread the clients over the nodes of a cluster (client i on address i mod n)")
	fs.StringVar(&c.domain, "domain", "localhost", "XMPP domain (stream 'to' and TLS server name)")
	fs.StringVar(&c.tls, "tls", "starttls", "starttls, or direct (TLS from the first byte, XEP-0368); any certificate is accepted")
	fs.StringVar(&c.mech, "mech", "SCRAM-SHA-256", "SASL mechanism: SCRAM-SHA-256, SCRAM-SHA-1 or PLAIN")
	fs.StringVar(&c.accounts, "accounts", "", `file of "jid password" lines`)
	fs.StringVar(&c.pattern, "pattern", "+8210%08d@localhost", "accounts made in advance: JID pattern with one %d verb (used without --accounts)")
	fs.StringVar(&c.password, "password", "", "password of every --pattern account")
	fs.IntVar(&c.start, "start", 55000000, "first number of --pattern")
	fs.StringVar(&c.xmppctl, "dialtone-xmppctl", "", "path of Dialtone's xmppctl: make the --pattern accounts with `account reset NUMBER --print` (same XMPPD_* environment as the server)")
	fs.StringVar(&c.saveAccts, "save-accounts", "", "write the accounts used to this file (for --accounts later)")
	fs.IntVar(&c.clients, "clients", 100, fmt.Sprintf("clients (route: an even number, in pairs; max %d)", maxClients))
	fs.IntVar(&c.concurrency, "concurrency", 32, "logins in progress at once (Dialtone allows 50 unauthenticated connections per IP)")
	fs.StringVar(&c.scenario, "scenario", "route", "login, route, idle, room or offline")
	fs.StringVar(&c.muc, "muc", "", "room: the MUC service's domain (e.g. groups.localhost)")
	fs.StringVar(&c.room, "room", "", "room: the room's local part; default a new name per run")
	fs.IntVar(&c.messages, "messages", 100, "room: groupchat messages each client sends (within --duration); offline: messages to the offline receiver")
	fs.DurationVar(&c.duration, "duration", 20*time.Second, "route: sending time; room: most sending time; idle: holding time (max 5m)")
	fs.Float64Var(&c.rate, "rate", 0, "route: total messages/s over all senders; 0: as fast as possible (within --window)")
	fs.IntVar(&c.size, "size", 100, "route: body bytes")
	fs.IntVar(&c.window, "window", 128, "route: most messages of one sender not yet received by its peer; room: not yet reflected to it")
	fs.DurationVar(&c.drain, "drain", 5*time.Second, "route: how long to wait for messages in flight after sending stops")
	fs.IntVar(&c.pid, "pid", 0, "server PID: report its (and its descendants') RSS and CPU time from /proc")
	fs.StringVar(&c.label, "label", "", "name of the server, copied into the JSON")
	fs.StringVar(&c.scramCache, "scram-cache", "", "file of SCRAM SaltedPasswords, read before and written after the run (as a client keeps them: PBKDF2 once per account, not per login)")
	fs.StringVar(&c.tlsGroups, "tls-groups", "", "TLS key exchange groups the client offers, comma-separated (x25519, x25519mlkem768, p256); default Go's (X25519MLKEM768 first): x25519 makes every server do the same handshake, as servers without ML-KEM (OpenSSL 3.0) do anyway")
	fs.StringVar(&c.src, "src", "", "local loopback addresses to connect from, round-robin: comma-separated addresses or ranges (127.0.0.2-127.0.0.9); each gives ~28k ports towards one server address, so 100,000 clients need four or more")
	fs.DurationVar(&c.ramp, "ramp", 0, "idle: print a row every RAMP while logging in (sessions up, logins/s, and with --pid the server's RSS, KiB per session and CPU); 0: none")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if c.scenario == "room" && c.room == "" {
		c.room = fmt.Sprintf("load%d", time.Now().UnixNano())
	}
	return c, c.check()
}

func (c *config) check() error {
	switch {
	case c.scenario != "login" && c.scenario != "route" && c.scenario != "idle" && c.scenario != "room" && c.scenario != "offline":
		return fmt.Errorf("--scenario %q: want login, route, idle, room or offline", c.scenario)
	case c.scenario == "offline" && c.clients != 2:
		return fmt.Errorf("--clients %d: offline takes 2 (a sender and an offline receiver)", c.clients)
	case c.scenario == "offline" && (c.messages < 1 || c.messages > maxWindow):
		return fmt.Errorf("--messages %d: want 1..%d", c.messages, maxWindow)
	case c.tls != "starttls" && c.tls != "direct":
		return fmt.Errorf("--tls %q: want starttls or direct", c.tls)
	case c.clients < 1 || c.clients > maxClients:
		return fmt.Errorf("--clients %d: want 1..%d", c.clients, maxClients)
	case c.scenario == "route" && c.clients%2 != 0:
		return fmt.Errorf("--clients %d: route pairs the clients, want an even number", c.clients)
	case c.concurrency < 1 || c.concurrency > maxConcurrency:
		return fmt.Errorf("--concurrency %d: want 1..%d", c.concurrency, maxConcurrency)
	case c.duration <= 0 || c.duration > maxDuration:
		return fmt.Errorf("--duration %s: want more than 0 and at most %s", c.duration, maxDuration)
	case c.drain < 0 || c.drain > maxDuration:
		return fmt.Errorf("--drain %s: want 0..%s", c.drain, maxDuration)
	case c.rate < 0 || c.rate > maxRate:
		return fmt.Errorf("--rate %g: want 0..%d", c.rate, maxRate)
	case c.size < 32 || c.size > maxSize:
		return fmt.Errorf("--size %d: want 32..%d (the body carries a timestamp)", c.size, maxSize)
	case c.window < 1 || c.window > maxWindow:
		return fmt.Errorf("--window %d: want 1..%d", c.window, maxWindow)
	case c.ramp < 0 || (c.ramp > 0 && c.ramp < 100*time.Millisecond):
		return fmt.Errorf("--ramp %s: want 0 or at least 100ms", c.ramp)
	case c.accounts == "" && c.password == "" && c.xmppctl == "":
		return errors.New("give --accounts FILE, or --pattern with --password, or --dialtone-xmppctl PATH")
	case c.accounts != "" && c.xmppctl != "":
		return errors.New("--accounts and --dialtone-xmppctl exclude each other")
	}
	if _, err := mechanism(c.mech); err != nil {
		return err
	}
	if c.src != "" {
		if _, err := parseSources(c.src); err != nil {
			return err
		}
	}
	if c.scenario == "room" {
		return c.checkRoom()
	}
	return nil
}

func (c *config) checkRoom() error {
	switch {
	case c.muc == "" || strings.ContainsAny(c.muc, "@/'<>&\" \t"):
		return fmt.Errorf("--muc %q: want the MUC service's domain", c.muc)
	case c.room == "" || strings.ContainsAny(c.room, "@/'<>&\" \t") || strings.Contains(c.room, idMarker):
		return fmt.Errorf("--room %q: want a room's local part", c.room)
	case c.messages < 1 || c.messages > maxDeliveries:
		return fmt.Errorf("--messages %d: want 1..%d", c.messages, maxDeliveries)
	case int64(c.clients)*int64(c.clients)*int64(c.messages) > maxDeliveries:
		return fmt.Errorf("--clients %d × --clients × --messages %d: more than %d deliveries", c.clients, c.messages, maxDeliveries)
	}
	return nil
}

// isLoopback reports whether ip is in 127.0.0.0/8 or is ::1.
func isLoopback(ip net.IP) bool {
	if v4 := ip.To4(); v4 != nil {
		return v4[0] == 127
	}
	return ip.Equal(net.IPv6loopback)
}

// resolveLoopback resolves host:port and refuses it unless every address
// the name has is loopback. It returns the address to dial.
func resolveLoopback(ctx context.Context, hostport string, lookup func(context.Context, string) ([]net.IPAddr, error)) (string, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", fmt.Errorf("--addr %q: %w", hostport, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("--addr %q: bad port", hostport)
	}
	var ips []net.IP
	if ip := net.ParseIP(strings.Trim(host, "[]")); ip != nil {
		ips = []net.IP{ip}
	} else {
		addrs, err := lookup(ctx, host)
		if err != nil {
			return "", fmt.Errorf("--addr %q: %w", hostport, err)
		}
		for _, a := range addrs {
			ips = append(ips, a.IP)
		}
	}
	if len(ips) == 0 {
		return "", fmt.Errorf("--addr %q: no address", hostport)
	}
	for _, ip := range ips {
		if !isLoopback(ip) {
			return "", fmt.Errorf("--addr %q: %s is not a loopback address; xmppload only loads servers on 127.0.0.0/8 or ::1", hostport, ip)
		}
	}
	return net.JoinHostPort(ips[0].String(), port), nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "xmppload:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, maxRun)
	defer cancel()
	var addrs []string
	for _, a := range strings.Split(c.addr, ",") {
		addr, err := resolveLoopback(ctx, strings.TrimSpace(a), net.DefaultResolver.LookupIPAddr)
		if err != nil {
			fmt.Fprintln(stderr, "xmppload:", err)
			return 2
		}
		addrs = append(addrs, addr)
	}
	if err := checkFileLimit(c.clients); err != nil {
		fmt.Fprintln(stderr, "xmppload:", err)
		return 1
	}
	accs, err := loadAccounts(ctx, &c, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "xmppload:", err)
		return 1
	}
	if c.scramCache != "" {
		if err := loadScramCache(c.scramCache); err != nil {
			fmt.Fprintln(stderr, "xmppload:", err)
			return 1
		}
		defer func() {
			if err := saveScramCache(c.scramCache); err != nil {
				fmt.Fprintln(stderr, "xmppload:", err)
			}
		}()
	}
	groups, err := parseGroups(c.tlsGroups)
	if err != nil {
		fmt.Fprintln(stderr, "xmppload: --tls-groups:", err)
		return 2
	}
	d := &dialer{addr: addrs[0], domain: c.domain, direct: c.tls == "direct", mech: strings.ToUpper(c.mech), groups: groups}
	if len(addrs) > 1 {
		d.spread(addrs, accs)
	}
	if c.src != "" {
		d.src, _ = parseSources(c.src) // checked by parseFlags
		d.nextSrc = new(atomic.Uint64)
	}
	var res *result
	switch c.scenario {
	case "login":
		res, err = runLogin(ctx, &c, d, accs)
	case "route":
		res, err = runRoute(ctx, &c, d, accs, stderr)
	case "idle":
		res, err = runIdle(ctx, &c, d, accs, stderr)
	case "room":
		res, err = runRoom(ctx, &c, d, accs, stderr)
	case "offline":
		res, err = runOffline(ctx, &c, d, accs, stderr)
	}
	if res != nil {
		res.print(stdout, stderr)
	}
	if err != nil {
		fmt.Fprintln(stderr, "xmppload:", err)
		return 1
	}
	return 0
}

func loadAccounts(ctx context.Context, c *config, log io.Writer) ([]account, error) {
	var accs []account
	var err error
	if c.accounts != "" {
		f, err := os.Open(c.accounts)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if accs, err = parseAccounts(f, c.clients); err != nil {
			return nil, fmt.Errorf("%s: %w", c.accounts, err)
		}
	} else {
		if accs, err = patternAccounts(c.pattern, c.password, c.start, c.clients); err != nil {
			return nil, err
		}
		if c.xmppctl != "" {
			if err := xmppctlAccounts(ctx, c.xmppctl, accs, log); err != nil {
				return nil, err
			}
		}
	}
	if len(accs) < c.clients {
		return nil, fmt.Errorf("%d accounts for %d clients", len(accs), c.clients)
	}
	if c.saveAccts != "" {
		if err := writeAccounts(c.saveAccts, accs); err != nil {
			return nil, err
		}
	}
	return accs, nil
}
