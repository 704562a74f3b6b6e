// Command xmppctl is Dialtone's admin command line (SPEC.md "xmppctl"). It
// reads the same environment as xmppd, works on the store directly (also
// while the server runs), and reaches the running server through
// XMPPD_ADMIN_SOCKET for what only the server can do: closing sessions.
//
// Exit status: 0 on success and for --help, 1 when the thing asked for does
// not exist or cannot be done, 2 for a usage error (an invalid number too).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"dialtone/auth"
	"dialtone/internal/admin"
	"dialtone/internal/config"
	"dialtone/internal/secret"
	"dialtone/sms"
	"dialtone/storage"
)

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// kickTimeout bounds asking the server to close sessions or to send.
const kickTimeout = 15 * time.Second

// flushTimeout bounds sending the queued SMS when no server runs; what is
// not sent by then stays queued for the server.
const flushTimeout = 15 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, config.Load)
	stop()
	os.Exit(code)
}

// errHelp means help was asked for and printed: exit 0.
var errHelp = errors.New("help")

// usageError is a mistake on the command line (exit 2); usage is the
// synopsis of the command it concerns.
type usageError struct {
	msg, usage string
}

func (e *usageError) Error() string { return e.msg }

// cli holds what the commands share; the config, store and parser are made
// on first use, so that --help and usage errors need no environment.
type cli struct {
	stdout, stderr io.Writer
	loadConfig     func() (config.Config, error)

	cfg    *config.Config
	db     *storage.DB
	parser *auth.NumberParser
}

// command is one leaf of the command tree.
type command struct {
	path     string // "account reset"
	synopsis string // "account reset NUMBER [--print]"
	summary  string // one line for the top-level help
	help     string // the rest of its --help
	run      func(c *cli, ctx context.Context, cmd *command, args []string) error
}

// commands are in the order the top-level help lists them.
var commands = []*command{
	{
		path: "account show", synopsis: "account show NUMBER",
		summary: "state, created, last login, stored messages and opt-out of an account",
		help: `Prints key: value lines: number, state, created, last_login (never when
the account never logged in), stored_messages and hidden (yes when the
account opted out of contact discovery). Exit 1 when the number has no
account.`,
		run: (*cli).accountShow,
	},
	{
		path: "account list", synopsis: "account list [--state unclaimed|active]",
		summary: "one account a line: NUMBER<tab>STATE",
		help:    `Lists the stored accounts ordered by number, all or those in one state.`,
		run:     (*cli).accountList,
	},
	{
		path: "account reset", synopsis: "account reset NUMBER [--print]",
		summary: "a new password, texted (or printed); makes the account if needed",
		help: `Gives the number a new random password, creating an unclaimed account
when there is none. The password is texted through XMPPD_SMS_GATEWAY, or
with --print written alone on one line to stdout and not texted. The old
password stops working and the running server (if any) closes the
account's sessions with the stream error not-authorized.

The SMS is queued (encrypted) with the new password and sent by the
running server; when none runs, xmppctl sends it itself, waiting at most
15 seconds for the gateway. An SMS the gateway did not take stays queued
(exit 1) and goes out when the server runs. The password limits do not
apply to xmppctl.`,
		run: (*cli).accountReset,
	},
	{
		path: "account delete", synopsis: "account delete NUMBER",
		summary: "removes the account and everything stored for it",
		help: `Removes the account with its roster, vCard, private data, blocklist and
stored messages, and closes its sessions on the running server. Exit 1
when the number has no account.`,
		run: (*cli).accountDelete,
	},
	{
		path: "account hide", synopsis: "account hide NUMBER",
		summary: "opts the account out of contact discovery",
		help: `The account is no longer found by contact discovery: apps that send their
phone book to api.DOMAIN are not told that this number is here, whoever
asks. Messages still reach it. Undo with account unhide. Exit 1 when the
number has no account.`,
		run: (*cli).accountHide,
	},
	{
		path: "account unhide", synopsis: "account unhide NUMBER",
		summary: "lets contact discovery find the account again",
		help: `Undoes account hide: once the account is active, apps whose phone book
has this number learn that it is here. Exit 1 when the number has no
account.`,
		run: (*cli).accountUnhide,
	},
	{
		path: "account import", synopsis: "account import FILE [--notify | --print]",
		summary: "makes unclaimed accounts for the numbers in FILE",
		help: `Reads one number a line from FILE ("-" for stdin), in any accepted form.
Blank lines are skipped, and so is everything from a "#" to the end of a
line. Each number without an account gets one, unclaimed, with a fresh
random password:
  (neither)  the password is not shown; the owner asks for a new one
  --notify   the password is texted to each number
  --print    "NUMBER PASSWORD" lines (canonical number) go to stdout, for
             operators who hand passwords out another way
Numbers that already have an account are left as they are (use account
reset for them) and reported on stderr; a number repeated in FILE is
imported once.

All or nothing: FILE is checked first, and if any line is not a valid
number, every bad line is reported on stderr with its line number, nothing
is imported, and the exit status is 2. Fix the file and run it again.`,
		run: (*cli).accountImport,
	},
	{
		path: "accounts sweep", synopsis: "accounts sweep",
		summary: "releases expired unclaimed accounts now",
		help: `Releases, with everything stored for them, the unclaimed accounts that
were last texted a password or sent a message longer ago than
XMPPD_UNCLAIMED_ACCOUNT_TTL (the server does this by itself at least
hourly), and prints how many it released.`,
		run: (*cli).accountsSweep,
	},
	{
		path: "sms test", synopsis: "sms test NUMBER",
		summary: "sends a test SMS (purpose test) through the configured gateway",
		help: `Sends one SMS with purpose test to NUMBER through XMPPD_SMS_GATEWAY: it is
queued and sent by the running server, or, when none runs, by xmppctl
itself (exit 1 when the gateway did not accept it).`,
		run: (*cli).smsTest,
	},
}

const topHelp = `xmppctl is the admin command line of Dialtone, the XMPP server on which a
phone number is the address. It reads the same XMPPD_* environment as xmppd
and works while the server runs.

Usage: xmppctl COMMAND [ARGS]

Commands:
%s
NUMBER is a phone number in any accepted form: +821012345678,
"+82 10-1234-5678", or a national form such as 010-1234-5678 read in
XMPPD_DEFAULT_REGION.

Every command takes --help. Exit status: 0 success, 1 the thing asked for
does not exist or cannot be done, 2 usage error (an invalid number too).
`

// run executes one xmppctl invocation and returns its exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, loadConfig func() (config.Config, error)) int {
	c := &cli{stdout: stdout, stderr: stderr, loadConfig: loadConfig}
	defer c.close()
	err := c.dispatch(ctx, args)
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, errHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "xmppctl: %s\n", ue.msg)
		if ue.usage != "" {
			fmt.Fprintf(stderr, "usage: xmppctl %s\n", ue.usage)
		}
		return exitUsage
	default:
		fmt.Fprintf(stderr, "xmppctl: %v\n", err)
		return exitFail
	}
}

func (c *cli) dispatch(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return &usageError{msg: "no command (xmppctl --help lists them)", usage: "COMMAND [ARGS]"}
	}
	if isHelp(args[0]) || args[0] == "help" {
		c.printTopHelp(c.stdout)
		return errHelp
	}
	group := args[0]
	var inGroup []*command
	for _, cmd := range commands {
		g, _, _ := strings.Cut(cmd.path, " ")
		if g == group {
			inGroup = append(inGroup, cmd)
		}
	}
	if len(inGroup) == 0 {
		return &usageError{msg: fmt.Sprintf("unknown command %q (xmppctl --help lists them)", group), usage: "COMMAND [ARGS]"}
	}
	groupUsage := func() string {
		var b strings.Builder
		for _, cmd := range inGroup {
			fmt.Fprintf(&b, "\n  xmppctl %s", cmd.synopsis)
		}
		return b.String()
	}
	if len(args) < 2 || isHelp(args[1]) {
		if len(args) >= 2 {
			fmt.Fprintf(c.stdout, "Usage:%s\n\nxmppctl %s SUBCOMMAND --help tells more.\n", groupUsage(), group)
			return errHelp
		}
		return &usageError{msg: fmt.Sprintf("%s needs a subcommand:%s", group, groupUsage())}
	}
	for _, cmd := range inGroup {
		if cmd.path == group+" "+args[1] {
			return cmd.run(c, ctx, cmd, args[2:])
		}
	}
	return &usageError{msg: fmt.Sprintf("unknown command %q; %s has:%s", group+" "+args[1], group, groupUsage())}
}

func (c *cli) printTopHelp(w io.Writer) {
	var b strings.Builder
	for _, cmd := range commands {
		fmt.Fprintf(&b, "  %-42s %s\n", cmd.synopsis, cmd.summary)
	}
	fmt.Fprintf(w, topHelp, b.String())
}

func isHelp(s string) bool { return s == "-h" || s == "--help" || s == "-help" }

// flags returns an empty flag set for cmd; parse fills it.
func (cmd *command) flags() *flag.FlagSet {
	fs := flag.NewFlagSet(cmd.path, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parse parses args with fs, allowing flags after positional arguments
// ("account reset NUMBER --print"), and returns the positional ones. It
// prints cmd's help and returns errHelp for -h/--help, and checks that
// there are exactly npos positional arguments.
func (c *cli) parse(cmd *command, fs *flag.FlagSet, args []string, npos int) ([]string, error) {
	var pos []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				c.printHelp(cmd, fs)
				return nil, errHelp
			}
			return nil, &usageError{msg: err.Error(), usage: cmd.synopsis}
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			pos = append(pos, rest...) // after "--" nothing is a flag
			break
		}
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	switch {
	case len(pos) < npos:
		return nil, &usageError{msg: "missing argument", usage: cmd.synopsis}
	case len(pos) > npos:
		return nil, &usageError{msg: fmt.Sprintf("unexpected argument %q", pos[npos]), usage: cmd.synopsis}
	}
	return pos, nil
}

func (c *cli) printHelp(cmd *command, fs *flag.FlagSet) {
	fmt.Fprintf(c.stdout, "Usage: xmppctl %s\n\n%s\n", cmd.synopsis, cmd.help)
	var flags strings.Builder
	fs.VisitAll(func(f *flag.Flag) {
		fmt.Fprintf(&flags, "  --%-8s %s\n", f.Name, f.Usage)
	})
	if flags.Len() > 0 {
		fmt.Fprintf(c.stdout, "\nOptions:\n%s", flags.String())
	}
	fmt.Fprintln(c.stdout, "  --help     this text")
}

// config loads the configuration once.
func (c *cli) config() (config.Config, error) {
	if c.cfg == nil {
		cfg, err := c.loadConfig()
		if err != nil {
			return config.Config{}, err
		}
		c.cfg = &cfg
	}
	return *c.cfg, nil
}

// number parses s as a phone number under the configured regions; an
// invalid number is a usage error.
func (c *cli) number(cmd *command, s string) (auth.Number, error) {
	if c.parser == nil {
		cfg, err := c.config()
		if err != nil {
			return "", err
		}
		p, err := auth.NewNumberParser(cfg.DefaultRegion, cfg.AllowedRegions)
		if err != nil {
			return "", err
		}
		c.parser = p
	}
	n, err := c.parser.Parse(s)
	if err != nil {
		return "", &usageError{msg: fmt.Sprintf("%q is not a valid number: %v", s, err), usage: cmd.synopsis}
	}
	return n, nil
}

// store opens the store once.
func (c *cli) store(ctx context.Context) (*storage.DB, error) {
	if c.db == nil {
		cfg, err := c.config()
		if err != nil {
			return nil, err
		}
		db, err := storage.Open(ctx, cfg.DatabaseURL, cfg.DataDir)
		if err != nil {
			return nil, err
		}
		c.db = db
	}
	return c.db, nil
}

func (c *cli) close() {
	if c.db != nil {
		c.db.Close()
	}
}

// gateway returns the configured SMS gateway; the log gateway prints to
// stderr, since xmppctl's log is its stderr.
func (c *cli) gateway() (sms.Gateway, error) {
	cfg, err := c.config()
	if err != nil {
		return nil, err
	}
	gw, err := sms.NewGateway(cfg.Gateway(), cfg.Logger(c.stderr))
	if err != nil {
		return nil, fmt.Errorf("XMPPD_SMS_GATEWAY: %w", err)
	}
	return gw, nil
}

// passwords returns the password service on the store, as the server has
// it but without limits (Issue), and the secret key it seals with.
func (c *cli) passwords(ctx context.Context) (*sms.Passwords, error) {
	cfg, db, key, err := c.outbox(ctx)
	if err != nil {
		return nil, err
	}
	return &sms.Passwords{Domain: cfg.Domain, Store: db, Key: key, Length: cfg.PasswordLength,
		Links: sms.NewLoginLinks(cfg.PublicURL, cfg.LoginLinkTTL, db)}, nil
}

// outbox returns the configuration, the store (which holds the SMS
// outbox) and the secret key that seals and opens SMS with passwords: the
// server's, made in the data dir on first use by whichever comes first.
func (c *cli) outbox(ctx context.Context) (config.Config, *storage.DB, []byte, error) {
	cfg, err := c.config()
	if err != nil {
		return config.Config{}, nil, nil, err
	}
	db, err := c.store(ctx)
	if err != nil {
		return config.Config{}, nil, nil, err
	}
	// The cluster's key when the store is shared, as the server does.
	key, err := secret.SharedKey(ctx, cfg, db)
	if err != nil {
		return config.Config{}, nil, nil, err
	}
	return cfg, db, key, nil
}

// deliver gets what was queued in the outbox on its way: the running
// server's worker is woken; when no server runs, the queue is sent from
// here with gw, for at most flushTimeout. It reports whether it was sent
// from here. An error means some SMS are still queued: the server sends
// them when it runs.
func (c *cli) deliver(ctx context.Context, gw sms.Gateway) (flushed bool, err error) {
	cfg, err := c.config()
	if err != nil {
		return false, err
	}
	wctx, cancel := context.WithTimeout(ctx, kickTimeout)
	err = admin.Wake(wctx, cfg.AdminSocket)
	cancel()
	if err == nil {
		return false, nil
	}
	if !errors.Is(err, admin.ErrNoServer) {
		// Queued all the same; the worker finds it on its next pass.
		c.warn("the running server was not told to send now: %v", err)
		return false, nil
	}
	_, db, key, err := c.outbox(ctx)
	if err != nil {
		return false, err
	}
	fctx, cancel := context.WithTimeout(ctx, flushTimeout)
	defer cancel()
	s := &sms.Sender{Outbox: db, Gateway: gw, Key: key, Log: cfg.Logger(c.stderr)}
	if err := s.Flush(fctx); err != nil {
		return true, fmt.Errorf("%w (queued: the server sends it when it runs)", err)
	}
	return true, nil
}

// kick asks the running server to close n's sessions with condition; no
// running server is fine, since then there are no sessions.
func (c *cli) kick(ctx context.Context, n auth.Number, condition string) (int, error) {
	cfg, err := c.config()
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, kickTimeout)
	defer cancel()
	closed, err := admin.Kick(ctx, cfg.AdminSocket, string(n), condition)
	if errors.Is(err, admin.ErrNoServer) {
		return 0, nil
	}
	return closed, err
}

// forget asks the running server to drop what it keeps in memory of n,
// which was deleted or released (its group memberships, its block list);
// a failure is a warning: the store no longer has the account, and a
// restart forgets it too.
func (c *cli) forget(ctx context.Context, n auth.Number) {
	cfg, err := c.config()
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, kickTimeout)
	defer cancel()
	if err := admin.Forget(ctx, cfg.AdminSocket, string(n)); err != nil && !errors.Is(err, admin.ErrNoServer) {
		c.warn("%s: the running server may keep its group memberships until it restarts: %v", n, err)
	}
}

// warn writes a note on stderr (used for things that do not change the
// exit status).
func (c *cli) warn(format string, args ...any) {
	fmt.Fprintf(c.stderr, "xmppctl: "+format+"\n", args...)
}
