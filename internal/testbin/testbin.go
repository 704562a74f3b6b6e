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
