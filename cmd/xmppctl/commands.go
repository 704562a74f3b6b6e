package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"dialtone/auth"
	"dialtone/sms"
	"dialtone/storage"
)

// conditionReset is the stream error that closes the sessions of a reset or
// deleted account (SPEC.md "xmppctl").
const conditionReset = "not-authorized"

// oneNumber reads the arguments of a command that takes one NUMBER and
// no flags of its own.
func (c *cli) oneNumber(cmd *command, args []string) (auth.Number, error) {
	pos, err := c.parse(cmd, cmd.flags(), args, 1)
	if err != nil {
		return "", err
	}
	return c.number(cmd, pos[0])
}

// numberAndStore reads the one NUMBER of a command and opens the store.
func (c *cli) numberAndStore(ctx context.Context, cmd *command, args []string) (auth.Number, *storage.DB, error) {
	n, err := c.oneNumber(cmd, args)
	if err != nil {
		return "", nil, err
	}
	db, err := c.store(ctx)
	return n, db, err
}

// noAccount says that n has no account when err is auth.ErrNotFound.
func noAccount(n auth.Number, err error) error {
	if errors.Is(err, auth.ErrNotFound) {
		return fmt.Errorf("%s has no account", n)
	}
	return err
}

func (c *cli) accountShow(ctx context.Context, cmd *command, args []string) error {
	n, db, err := c.numberAndStore(ctx, cmd, args)
	if err != nil {
		return err
	}
	a, err := db.Account(ctx, n)
	if err != nil {
		return noAccount(n, err)
	}
	stored, err := db.CountOffline(ctx, string(n))
	if err != nil {
		return err
	}
	hidden, err := db.Hidden(ctx, n)
	if err != nil {
		return err
	}
	lastLogin := "never"
	if !a.LastLogin.IsZero() {
		lastLogin = a.LastLogin.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(c.stdout, "number: %s\nstate: %s\ncreated: %s\nlast_login: %s\nstored_messages: %d\nhidden: %s\n",
		a.Number, a.State, a.Created.UTC().Format(time.RFC3339), lastLogin, stored, yesNo(hidden))
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func (c *cli) accountHide(ctx context.Context, cmd *command, args []string) error {
	return c.setHidden(ctx, cmd, args, true, "hidden from contact discovery")
}

func (c *cli) accountUnhide(ctx context.Context, cmd *command, args []string) error {
	return c.setHidden(ctx, cmd, args, false, "found by contact discovery")
}

// setHidden opts the account of NUMBER out of contact discovery, or back
// in, and says which.
func (c *cli) setHidden(ctx context.Context, cmd *command, args []string, hidden bool, what string) error {
	n, db, err := c.numberAndStore(ctx, cmd, args)
	if err != nil {
		return err
	}
	if err := db.SetHidden(ctx, n, hidden); err != nil {
		return noAccount(n, err)
	}
	fmt.Fprintf(c.stdout, "%s: %s\n", n, what)
	return nil
}

func (c *cli) accountList(ctx context.Context, cmd *command, args []string) error {
	fs := cmd.flags()
	state := fs.String("state", "", "only accounts in this state: unclaimed or active")
	if _, err := c.parse(cmd, fs, args, 0); err != nil {
		return err
	}
	switch auth.State(*state) {
	case "", auth.StateUnclaimed, auth.StateActive:
	default:
		return &usageError{msg: fmt.Sprintf("unknown state %q (want unclaimed or active)", *state), usage: cmd.synopsis}
	}
	db, err := c.store(ctx)
	if err != nil {
		return err
	}
	accounts, err := db.ListAccounts(ctx, auth.State(*state))
	if err != nil {
		return err
	}
	w := bufio.NewWriter(c.stdout)
	for _, a := range accounts {
		fmt.Fprintf(w, "%s\t%s\n", a.Number, a.State)
	}
	return w.Flush()
}

func (c *cli) accountReset(ctx context.Context, cmd *command, args []string) error {
	fs := cmd.flags()
	print := fs.Bool("print", false, "write the password to stdout instead of texting it")
	pos, err := c.parse(cmd, fs, args, 1)
	if err != nil {
		return err
	}
	n, err := c.number(cmd, pos[0])
	if err != nil {
		return err
	}
	var gw sms.Gateway
	if !*print {
		// Before the password changes: a reset that cannot be texted must
		// not lock the owner out.
		if gw, err = c.gateway(); err != nil {
			return fmt.Errorf("%w; nothing changed (--print shows the password instead)", err)
		}
	}
	db, err := c.store(ctx)
	if err != nil {
		return err
	}
	if *print {
		cfg, err := c.config()
		if err != nil {
			return err
		}
		password, err := setPassword(ctx, db, n, cfg.PasswordLength, true)
		if err != nil {
			return err
		}
		fmt.Fprintln(c.stdout, password)
		return c.kickReset(ctx, n)
	}

	// The password and its SMS are stored together (sealed, in the
	// outbox); then the server's worker, or this command, sends it.
	_, err = db.Account(ctx, n)
	created := errors.Is(err, auth.ErrNotFound)
	if err != nil && !created {
		return err
	}
	pw, err := c.passwords(ctx)
	if err != nil {
		return err
	}
	if _, err := pw.Issue(ctx, n); err != nil {
		return err
	}
	if err := c.kickReset(ctx, n); err != nil {
		return err
	}
	if _, err := c.deliver(ctx, gw); err != nil {
		return fmt.Errorf("the password of %s was changed, but its SMS was not sent yet: %w", n, err)
	}
	what := "new password texted"
	if created {
		what = "unclaimed account created, password texted"
	}
	fmt.Fprintf(c.stdout, "%s: %s\n", n, what)
	return nil
}

// setPassword gives n a new random password that is not texted, making
// the account unclaimed when there is none, and returns the password.
// printed marks it as handed out (--print), so that no notice replaces it
// (SPEC.md "SMS texts"); otherwise nobody knows it, and the first notice
// brings a new one.
func setPassword(ctx context.Context, db *storage.DB, n auth.Number, length int, printed bool) (string, error) {
	password, err := auth.GeneratePassword(length)
	if err != nil {
		return "", err
	}
	creds, err := auth.NewCredentials(password)
	if err != nil {
		return "", err
	}
	set := db.SetCredentials
	if printed {
		set = db.SetDeliveredCredentials
	}
	if _, err := set(ctx, n, creds); err != nil {
		return "", err
	}
	return password, nil
}

// kickReset closes the sessions of n after its password changed.
func (c *cli) kickReset(ctx context.Context, n auth.Number) error {
	closed, err := c.kick(ctx, n, conditionReset)
	if err != nil {
		return fmt.Errorf("the password of %s was changed, but the running server did not close its sessions: %w", n, err)
	}
	if closed > 0 {
		c.warn("%s: closed %d session(s)", n, closed)
	}
	return nil
}

func (c *cli) accountDelete(ctx context.Context, cmd *command, args []string) error {
	n, db, err := c.numberAndStore(ctx, cmd, args)
	if err != nil {
		return err
	}
	if err := db.DeleteAccount(ctx, n); err != nil {
		return noAccount(n, err)
	}
	closed, err := c.kick(ctx, n, conditionReset)
	if err != nil {
		return fmt.Errorf("%s was deleted, but the running server did not close its sessions: %w", n, err)
	}
	c.forget(ctx, n)
	fmt.Fprintf(c.stdout, "%s: deleted", n)
	if closed > 0 {
		fmt.Fprintf(c.stdout, ", %d session(s) closed", closed)
	}
	fmt.Fprintln(c.stdout)
	return nil
}

// importBatchSize is how many accounts an import commits at once: a large
// import (100,000 numbers for a load test) is then a few hundred commits,
// not one per number.
const importBatchSize = 1000

// importBatch makes the accounts of batch with fresh passwords, derived
// on every core (three PBKDF2s each, the slow part), in one transaction,
// and prints them with --print once committed.
func (c *cli) importBatch(ctx context.Context, db *storage.DB, batch []importLine, print bool, imported *int) error {
	if len(batch) == 0 {
		return nil
	}
	cfg, err := c.config()
	if err != nil {
		return err
	}
	creds := make([]storage.NumberCredentials, len(batch))
	passwords := make([]string, len(batch))
	errs := make([]error, len(batch))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(batch)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(batch) || ctx.Err() != nil {
					return
				}
				passwords[i], errs[i] = auth.GeneratePassword(cfg.PasswordLength)
				if errs[i] == nil {
					creds[i].Number = batch[i].number
					creds[i].Credentials, errs[i] = auth.NewCredentials(passwords[i])
				}
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("interrupted after %d imported: %w", *imported, err)
	}
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("line %d: %w (%d imported before it)", batch[i].line, err, *imported)
		}
	}
	if err := db.SetCredentialsBatch(ctx, creds, print); err != nil {
		return fmt.Errorf("lines %d-%d: %w (%d imported before them)", batch[0].line, batch[len(batch)-1].line, err, *imported)
	}
	*imported += len(batch)
	if print {
		for i, l := range batch {
			fmt.Fprintf(c.stdout, "%s %s\n", l.number, passwords[i])
		}
	}
	return nil
}

// importLine is one number of an import file.
type importLine struct {
	line   int
	number auth.Number
}

func (c *cli) accountImport(ctx context.Context, cmd *command, args []string) error {
	fs := cmd.flags()
	notify := fs.Bool("notify", false, "text each new account its password")
	print := fs.Bool("print", false, `write "NUMBER PASSWORD" lines to stdout`)
	pos, err := c.parse(cmd, fs, args, 1)
	if err != nil {
		return err
	}
	if *notify && *print {
		return &usageError{msg: "--notify and --print exclude each other", usage: cmd.synopsis}
	}
	lines, err := c.readImport(cmd, pos[0])
	if err != nil {
		return err
	}
	var gw sms.Gateway
	if *notify {
		if gw, err = c.gateway(); err != nil {
			return fmt.Errorf("%w; nothing imported", err)
		}
	}
	db, err := c.store(ctx)
	if err != nil {
		return err
	}
	var pw *sms.Passwords
	if *notify {
		if pw, err = c.passwords(ctx); err != nil {
			return err
		}
	}
	var imported, existing int
	var batch []importLine
	for _, l := range lines {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("interrupted after %d imported: %w", imported, err)
		}
		// Only new numbers: an existing account's password belongs to its owner.
		if _, err := db.Account(ctx, l.number); err == nil {
			c.warn("line %d: %s already has an account; left as it is", l.line, l.number)
			existing++
			continue
		} else if !errors.Is(err, auth.ErrNotFound) {
			return err
		}
		if *notify {
			// The account, its password and the SMS, in one transaction.
			if _, err := pw.Issue(ctx, l.number); err != nil {
				return fmt.Errorf("line %d: %w (%d imported before it)", l.line, err, imported)
			}
			imported++
			continue
		}
		if batch = append(batch, l); len(batch) == importBatchSize {
			if err := c.importBatch(ctx, db, batch, *print, &imported); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := c.importBatch(ctx, db, batch, *print, &imported); err != nil {
		return err
	}
	c.warn("%d imported, %d already had an account", imported, existing)
	if *notify && imported > 0 {
		if _, err := c.deliver(ctx, gw); err != nil {
			return fmt.Errorf("not every password SMS was sent yet: %w", err)
		}
	}
	return nil
}

// readImport reads and checks the whole import file before anything is
// stored: every invalid line is reported, and then it is a usage error.
func (c *cli) readImport(cmd *command, name string) ([]importLine, error) {
	var r io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	var out []importLine
	seen := map[auth.Number]int{}
	bad := 0
	sc := bufio.NewScanner(r)
	for lineNo := 1; sc.Scan(); lineNo++ {
		text, _, _ := strings.Cut(sc.Text(), "#")
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		n, err := c.number(cmd, text)
		if err != nil {
			var ue *usageError
			if !errors.As(err, &ue) {
				return nil, err
			}
			c.warn("%s:%d: %s", name, lineNo, ue.msg)
			bad++
			continue
		}
		if first, dup := seen[n]; dup {
			c.warn("%s:%d: %s repeats line %d; imported once", name, lineNo, n, first)
			continue
		}
		seen[n] = lineNo
		out = append(out, importLine{line: lineNo, number: n})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if bad > 0 {
		return nil, &usageError{msg: fmt.Sprintf("%s: %d invalid line(s); nothing imported", name, bad)}
	}
	return out, nil
}

func (c *cli) accountsSweep(ctx context.Context, cmd *command, args []string) error {
	if _, err := c.parse(cmd, cmd.flags(), args, 0); err != nil {
		return err
	}
	cfg, err := c.config()
	if err != nil {
		return err
	}
	db, err := c.store(ctx)
	if err != nil {
		return err
	}
	if cfg.UnclaimedAccountTTL == 0 {
		c.warn("XMPPD_UNCLAIMED_ACCOUNT_TTL is 0: unclaimed accounts are never released")
	}
	s := &auth.Sweeper{
		Store: db,
		TTL:   cfg.UnclaimedAccountTTL,
		Log:   cfg.Logger(c.stderr),
		// An unclaimed account has sessions only in a race with the sweep.
		OnRelease: func(ctx context.Context, n auth.Number) {
			if _, err := c.kick(ctx, n, conditionReset); err != nil {
				c.warn("%s: released, but the running server did not close its sessions: %v", n, err)
			}
			c.forget(ctx, n)
		},
	}
	released, err := s.SweepOnce(ctx)
	if err != nil {
		return fmt.Errorf("%d released before: %w", released, err)
	}
	fmt.Fprintf(c.stdout, "%d unclaimed account(s) released\n", released)
	return nil
}

func (c *cli) smsTest(ctx context.Context, cmd *command, args []string) error {
	n, err := c.oneNumber(cmd, args)
	if err != nil {
		return err
	}
	gw, err := c.gateway()
	if err != nil {
		return err
	}
	cfg, db, _, err := c.outbox(ctx)
	if err != nil {
		return err
	}
	p, err := sms.NewPending(sms.SMS{To: string(n), Text: sms.TestText(cfg.Domain), Purpose: sms.PurposeTest}, time.Now(), nil)
	if err != nil {
		return err
	}
	if err := db.EnqueueSMS(ctx, p); err != nil {
		return err
	}
	flushed, err := c.deliver(ctx, gw)
	if err != nil {
		return fmt.Errorf("test SMS %s: %w", p.ID, err)
	}
	if flushed {
		fmt.Fprintf(c.stdout, "%s: test SMS %s accepted by the %s gateway\n", n, p.ID, cfg.SMSGateway)
	} else {
		fmt.Fprintf(c.stdout, "%s: test SMS %s queued; the running server sends it through the %s gateway\n", n, p.ID, cfg.SMSGateway)
	}
	return nil
}
