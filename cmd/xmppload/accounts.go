package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// parseAccounts reads "jid password" lines; blank lines and lines starting
// with # are skipped. The password is the rest of the line after the first
// run of blanks, so it may not start with a blank.
func parseAccounts(r io.Reader, limit int) ([]account, error) {
	var out []account
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		t := strings.TrimSpace(sc.Text())
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		jid, pw, ok := strings.Cut(t, " ")
		if !ok {
			jid, pw, ok = strings.Cut(t, "\t")
		}
		pw = strings.TrimLeft(pw, " \t")
		if !ok || jid == "" || pw == "" {
			return nil, fmt.Errorf("line %d: want \"jid password\"", line)
		}
		if !strings.Contains(jid, "@") {
			return nil, fmt.Errorf("line %d: %q is no bare JID (user@domain)", line, jid)
		}
		out = append(out, account{jid: jid, password: pw})
		if len(out) >= limit {
			break
		}
	}
	return out, sc.Err()
}

// patternAccounts makes n accounts from a pattern with one %d verb (for
// example "+8210%08d@localhost" or "load%d@example.test"), numbered from
// start, all with the same password.
func patternAccounts(pattern, password string, start, n int) ([]account, error) {
	if strings.Count(pattern, "%") != 1 || !strings.Contains(pattern, "d") {
		return nil, fmt.Errorf("pattern %q: want exactly one %%d verb (%%08d and the like)", pattern)
	}
	out := make([]account, n)
	for i := range out {
		jid := fmt.Sprintf(pattern, start+i)
		if strings.Contains(jid, "%!") || !strings.Contains(jid, "@") {
			return nil, fmt.Errorf("pattern %q gives %q: no JID", pattern, jid)
		}
		out[i] = account{jid: jid, password: password}
	}
	return out, nil
}

// xmppctlAccounts (re)sets the password of every pattern account on a
// Dialtone server with `xmppctl account reset NUMBER --print` (the same
// XMPPD_* environment finds the same store), a few at a time.
func xmppctlAccounts(ctx context.Context, xmppctl string, accs []account, log io.Writer) error {
	const parallel = 4
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		next     int
		done     int
	)
	start := time.Now()
	for range parallel {
		wg.Go(func() {
			for {
				mu.Lock()
				i := next
				next++
				stop := firstErr != nil
				mu.Unlock()
				if i >= len(accs) || stop {
					return
				}
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				out, err := exec.CommandContext(cctx, xmppctl, "account", "reset", accs[i].local(), "--print").Output()
				cancel()
				pw := strings.TrimSpace(string(out))
				mu.Lock()
				if err == nil && (pw == "" || strings.ContainsAny(pw, " \n")) {
					err = errors.New("unexpected output")
				}
				if err != nil && firstErr == nil {
					var ee *exec.ExitError
					if errors.As(err, &ee) {
						err = fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
					}
					firstErr = fmt.Errorf("xmppctl account reset %s: %w", accs[i].local(), err)
				}
				accs[i].password = pw
				done++
				if done%500 == 0 {
					fmt.Fprintf(log, "xmppload: %d/%d accounts made (%.0fs)\n", done, len(accs), time.Since(start).Seconds())
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return firstErr
}

// writeAccounts saves the accounts as "jid password" lines (mode 0600),
// for --accounts in later runs.
func writeAccounts(path string, accs []account) error {
	var b strings.Builder
	for _, a := range accs {
		fmt.Fprintf(&b, "%s %s\n", a.jid, a.password)
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}
