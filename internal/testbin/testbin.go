// Package testbin serves the tests that run the built programs against
// outside clients: it builds the commands, finds free loopback ports, and
// knows which python has slixmpp. Only tests import it.
package testbin

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Python is Debian's interpreter, the one that python3-slixmpp installs
// into; a pyenv python3 earlier on PATH would not have it.
const Python = "/usr/bin/python3"

// RequireSlixmpp skips the test when slixmpp is missing, except in CI
// (CI=true), where a missing client is a broken set-up and fails.
func RequireSlixmpp(t testing.TB) {
	t.Helper()
	out, err := exec.Command(Python, "-c", "import slixmpp; print(slixmpp.__version__)").CombinedOutput()
	if err == nil {
		t.Logf("slixmpp %s", strings.TrimSpace(string(out)))
		return
	}
	msg := fmt.Sprintf("%s cannot import slixmpp (%v: %s); install the Debian package python3-slixmpp", Python, err, strings.TrimSpace(string(out)))
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip("!!! SKIPPED, NOT PASSED: " + msg)
}

// RequirePrograms skips the test when one of the programs is not on PATH,
// except in CI (CI=true), where it fails; hint says what to install.
func RequirePrograms(t testing.TB, hint string, names ...string) {
	t.Helper()
	var missing []string
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			missing = append(missing, n)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("missing %s (%s)", strings.Join(missing, ", "), hint)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip("!!! SKIPPED, NOT PASSED: " + msg)
}

// WaitListening polls until a TCP connection to addr succeeds, for at most
// timeout; it fails the test at once when exited (the server's process
// ended) is closed first.
func WaitListening(t testing.TB, addr string, timeout time.Duration, exited <-chan struct{}, what string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			t.Fatalf("%s exited before listening on %s", what, addr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not listening on %s after %v: %v", what, addr, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Build compiles the named commands of this module (cmd/NAME) into dir and
// returns their paths by name.
func Build(t testing.TB, dir string, cmds ...string) map[string]string {
	t.Helper()
	bins := map[string]string{}
	for _, c := range cmds {
		bin := filepath.Join(dir, c)
		out, err := exec.Command("go", "build", "-o", bin, "dialtone/cmd/"+c).CombinedOutput()
		if err != nil {
			t.Fatalf("go build cmd/%s: %v\n%s", c, err, out)
		}
		bins[c] = bin
	}
	return bins
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}
