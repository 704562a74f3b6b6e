package s2s

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// startProsody starts prosody.test on 127.0.0.2 with the configuration
// rendered from testdata/prosody.cfg.lua.tmpl, and registers users.
func startProsody(t *testing.T, dir string, p *pki, ph phase, users map[string]string) (c2s int) {
	t.Helper()
	pdir := filepath.Join(dir, "prosody")
	os.MkdirAll(filepath.Join(pdir, "data"), 0o750)
	cert, key := p.issue(t, prosodyDomain, prosodyConference)
	c2s = freePort(t, prosodyIP)
	cfg := filepath.Join(pdir, "prosody.cfg.lua")
	render(t, filepath.Join(testdata(t), "prosody.cfg.lua.tmpl"), cfg, map[string]any{
		"Dir":      pdir,
		"Testdata": testdata(t),
		"IP":       prosodyIP,
		"C2SPort":  c2s,
		"Domain":   prosodyDomain,
		"Cert":     cert,
		"Key":      key,
		"CA":       p.caFile,
		// With valid certificates Prosody insists on them; in the
		// dialback phase Dialtone's self-signed one is not, and Prosody
		// falls back to dialback.
		"SecureAuth": ph.trusted,
		// Without XEP-0288 each side opens its own link, so both of
		// xmppd's roles are exercised.
		"Bidi":   ph.bidi,
		"Routes": dialtoneRoutes(),
	})
	for u, pw := range users {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, "prosodyctl", "--config", cfg, "register", u, prosodyDomain, pw).CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("prosodyctl register %s: %v\n%s", u, err, out)
		}
	}
	proc := start(t, "prosody", exec.Command("prosody", "--config", cfg, "-F"),
		filepath.Join(pdir, "stdout.log"), filepath.Join(pdir, "prosody.log"))
	waitListening(t, prosodyIP+":5269", 20*time.Second, proc.done, "prosody")
	waitListening(t, prosodyIP+":"+strconv.Itoa(c2s), 5*time.Second, proc.done, "prosody")
	return c2s
}

func TestS2SProsody(t *testing.T) {
	if testing.Short() {
		t.Skip("interop: not with -short (make check); make test runs it")
	}
	require(t, "prosody", have("prosody") && have("prosodyctl"), "install the Debian package prosody")
	requireSlixmpp(t)
	dir := shortTempDir(t)
	xmppdBin, xmppctl := build(t, dir)
	p := newPKI(t, dir)
	for i, ph := range phases {
		t.Run(ph.name, func(t *testing.T) {
			pdir := filepath.Join(dir, ph.name)
			os.MkdirAll(pdir, 0o755)
			users := map[string]string{"alice": "alice-pw-" + ph.name, "bob": "bob-pw-" + ph.name}
			c2s := startProsody(t, pdir, p, ph, users)
			x := startXmppd(t, xmppdBin, pdir, p, ph.trusted)
			peer := []user{
				{jid: "alice@" + prosodyDomain, password: users["alice"], host: prosodyIP, port: c2s},
				{jid: "bob@" + prosodyDomain, password: users["bob"], host: prosodyIP, port: c2s},
			}
			exercise(t, x, xmppctl, peer, ph, [2]string{"+8210111100" + strconv.Itoa(i) + "1", "+8210111100" + strconv.Itoa(i) + "2"},
				[2]string{"010-3333-0" + strconv.Itoa(i) + "01", "010-3333-0" + strconv.Itoa(i) + "02"})
		})
	}
}
