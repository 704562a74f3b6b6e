package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"testing"
	"time"
)

// TestSlixmppStreamManagement runs slixmpp's own XEP-0198 and XEP-0352
// plugins against the daemon (interop/slixmpp_sm.py): a connection cut
// mid-flow is resumed with no message lost or doubled, and an inactive
// client gets only the latest chat state.
func TestSlixmppStreamManagement(t *testing.T) {
	if testing.Short() {
		t.Skip("interop: not with -short (make check); make test runs it")
	}
	requireSlixmpp(t)
	const a, b = "+821012345678", "+821098765432"
	s, _, pw := serverWithAccounts(t, nil, a, b)
	aPassword, bPassword := pw[0], pw[1]

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	script := exec.CommandContext(ctx, python, "slixmpp_sm.py", "--port", s.c2s,
		"--a", a, "--a-password", aPassword, "--b", b, "--b-password", bPassword, "--timeout", "60", "--debug")
	var stdout, stderr bytes.Buffer
	script.Stdout, script.Stderr = &stdout, &stderr
	runErr := script.Run()
	t.Logf("slixmpp_sm.py:\n%s", stdout.String())
	var res chatResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil || runErr != nil || !res.OK {
		e := stderr.Bytes()
		if len(e) > 30000 {
			e = e[len(e)-30000:]
		}
		t.Fatalf("slixmpp stream management: %s (exit %v, %v)\nstderr (end):\n%s", res.Error, runErr, err, e)
	}
	if len(res.Steps) != 5 {
		t.Errorf("%d steps ran, want 5", len(res.Steps))
	}
	s.stop(t)
}
