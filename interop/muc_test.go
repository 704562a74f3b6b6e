package interop

import (
	"testing"
	"time"
)

// TestSlixmppGroups runs slixmpp's XEP-0045 plugin against a real xmppd:
// a room made by joining and configured from the owner's form, a second
// user, groupchat, a nick change, the member list, a kick and destroy.
func TestSlixmppGroups(t *testing.T) {
	if testing.Short() {
		t.Skip("interop: not with -short (make check); make test runs it")
	}
	requireSlixmpp(t)
	const a, b = "+821012345678", "+821098765432"
	s, _, pw := serverWithAccounts(t, nil, a, b)
	aPassword, bPassword := pw[0], pw[1]
	var res struct {
		OK    bool             `json:"ok"`
		Error string           `json:"error"`
		Steps []map[string]any `json:"steps"`
	}
	runPython(t, 90*time.Second, &res, "slixmpp_muc.py", "--host", "127.0.0.1", "--port", s.c2s,
		"--a", a, "--a-password", aPassword, "--b", b, "--b-password", bPassword, "--timeout", "60")
	if !res.OK || len(res.Steps) < 10 {
		t.Fatalf("slixmpp groups: %s after %d steps: %v", res.Error, len(res.Steps), res.Steps)
	}
	t.Logf("steps: %v", res.Steps)
	s.stop(t)
}
