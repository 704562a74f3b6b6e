package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"dialtone/auth"
	"dialtone/sms"
)

// passwordLength of the passwords xmppctl makes.
const passwordLength = 12

// conditionReset is the stream error that closes the sessions of a reset or
// deleted account (SPEC.md "xmppctl").
const conditionReset = "not-authorized"

func (c *cli) accountShow(ctx context.Context, cmd *command, args []string) error {
	pos, err := c.parse(cmd, cmd.flags(), args, 1)
	if err != nil {
		return err
	}
	n, err := c.number(cmd, pos[0])
	if err != nil {
		return err
	}
	db, err := c.store(ctx)
	if err != nil {
		return err
	}
	a, err := db.Account(ctx, n)
	if errors.Is(err, auth.ErrNotFound) {
		return fmt.Errorf("%s has no account", n)
	}
	if err != nil {
		return err
	}
	stored, err := db.CountOffline(ctx, string(n))
	if err != nil {
		return err
	}
	lastLogin := "never"
	if !a.LastLogin.IsZero() {
		lastLogin = a.LastLogin.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(c.stdout, "number: %s\nstate: %s\ncreated: %s\nlast_login: %s\nstored_messages: %d\n",
		a.Number, a.State, a.Created.UTC().Format(time.RFC3339), lastLogin, stored)
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
	password, err := auth.GeneratePassword(passwordLength)
	if err != nil {
		return err
	}
	creds, err := auth.NewCredentials(password)
	if err != nil {
		return err
	}
	created, err := db.SetCredentials(ctx, n, creds)
	if err != nil {
		return err
	}
	if *print {
		fmt.Fprintln(c.stdout, password)
	} else {
		if err := c.sendPassword(ctx, gw, n, password); err != nil {
			return fmt.Errorf("the password of %s was changed but the SMS failed: %w (run reset again)", n, err)
		}
		what := "new password texted"
		if created {
			what = "unclaimed account created, password texted"
		}
		fmt.Fprintf(c.stdout, "%s: %s\n", n, what)
	}
	if closed, err := c.kick(ctx, n, conditionReset); err != nil {
		return fmt.Errorf("the password of %s was changed, but the running server did not close its sessions: %w", n, err)
	} else if closed > 0 {
		c.warn("%s: closed %d session(s)", n, closed)
	}
	return nil
}

func (c *cli) accountDelete(ctx context.Context, cmd *command, args []string) error {
	pos, err := c.parse(cmd, cmd.flags(), args, 1)
	if err != nil {
		return err
	}
	n, err := c.number(cmd, pos[0])
	if err != nil {
		return err
	}
	db, err := c.store(ctx)
	if err != nil {
		return err
	}
	err = db.DeleteAccount(ctx, n)
	if errors.Is(err, auth.ErrNotFound) {
		return fmt.Errorf("%s has no account", n)
	}
	if err != nil {
		return err
	}
	closed, err := c.kick(ctx, n, conditionReset)
	if err != nil {
		return fmt.Errorf("%s was deleted, but the running server did not close its sessions: %w", n, err)
	}
	fmt.Fprintf(c.stdout, "%s: deleted", n)
	if closed > 0 {
		fmt.Fprintf(c.stdout, ", %d session(s) closed", closed)
	}
	fmt.Fprintln(c.stdout)
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
	var imported, existing, failed int
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
		password, err := auth.GeneratePassword(passwordLength)
		if err != nil {
			return err
		}
		creds, err := auth.NewCredentials(password)
		if err != nil {
			return err
		}
		if _, err := db.SetCredentials(ctx, l.number, creds); err != nil {
			return fmt.Errorf("line %d: %w (%d imported before it)", l.line, err, imported)
		}
		imported++
		switch {
		case *print:
			fmt.Fprintf(c.stdout, "%s %s\n", l.number, password)
		case *notify:
			if err := c.sendPassword(ctx, gw, l.number, password); err != nil {
				c.warn("line %d: %s was imported but the SMS failed: %v", l.line, l.number, err)
				failed++
			}
		}
	}
	c.warn("%d imported, %d already had an account", imported, existing)
	if failed > 0 {
		return fmt.Errorf("%d password SMS failed; account reset sends them again", failed)
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
	return errors.New("accounts sweep: not implemented yet")
}

func (c *cli) smsTest(ctx context.Context, cmd *command, args []string) error {
	pos, err := c.parse(cmd, cmd.flags(), args, 1)
	if err != nil {
		return err
	}
	n, err := c.number(cmd, pos[0])
	if err != nil {
		return err
	}
	gw, err := c.gateway()
	if err != nil {
		return err
	}
	cfg, err := c.config()
	if err != nil {
		return err
	}
	id := smsID()
	if err := gw.Send(ctx, sms.SMS{ID: id, To: string(n), Text: sms.TestText(cfg.Domain), Purpose: sms.PurposeTest}); err != nil {
		return fmt.Errorf("the gateway did not accept the SMS: %w", err)
	}
	fmt.Fprintf(c.stdout, "%s: test SMS %s accepted by the %s gateway\n", n, id, cfg.SMSGateway)
	return nil
}

// smsID returns a fresh unique SMS id.
func smsID() string { return rand.Text() }
