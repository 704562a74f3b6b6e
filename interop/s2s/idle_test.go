package s2s

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"dialtone/internal/xmpptest"

	"mellium.im/sasl"
)

// With XMPPD_S2S_IDLE_TIMEOUT=3s the link Dialtone opened to Prosody 0.12
// (which does not do XEP-0288, so it never authenticates to Dialtone on
// that link) is closed about 3 s after its last stanza, like the link
// Prosody opened to Dialtone; the next message opens a new one (SPEC.md:
// every federation link, incoming or outgoing).
func TestS2SProsodyIdleLinks(t *testing.T) {
	if testing.Short() {
		t.Skip("interop: not with -short (make check); make test runs it")
	}
	require(t, "prosody", have("prosody") && have("prosodyctl"), "install the Debian package prosody")
	const idle = 3 * time.Second
	dir := shortTempDir(t)
	xmppdBin, xmppctl := build(t, dir)
	p := newPKI(t, dir)
	ph := phase{name: "idle", trusted: true}
	pdir := filepath.Join(dir, ph.name)
	os.MkdirAll(pdir, 0o755)
	startProsody(t, pdir, p, ph, map[string]string{"alice": "alice-pw"})
	x := startXmppd(t, xmppdBin, pdir, p, ph.trusted, "XMPPD_S2S_IDLE_TIMEOUT="+idle.String())

	const number = "+821011119901"
	pass := x.account(t, xmppctl, number)
	c := xmpptest.Dial(t, dialtoneIP+":"+strconv.Itoa(x.c2s))
	c.Domain = dialtoneDomain
	c.Open(dialtoneDomain)
	c.StartTLS()
	c.Expect("features", func(e xmpptest.Elem) bool { return e.XMLName.Local == "features" })
	if cond := c.Auth(sasl.ScramSha256, number, pass); cond != "" {
		t.Fatalf("login: %s", cond)
	}
	c.Bind("idle")

	links := func(dir string) float64 { return x.metric(t, "xmppd_s2s_links", `direction="`+dir+`"`) }
	// waitLinks polls until the links of dir are want, and returns when.
	waitLinks := func(dir string, want float64, within time.Duration) time.Time {
		t.Helper()
		deadline := time.Now().Add(within)
		for links(dir) != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s links: %v after %v, want %v", dir, links(dir), within, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
		return time.Now()
	}
	// Alice is not online and Prosody keeps no offline messages: the
	// message goes out on Dialtone's link, the error comes back on
	// Prosody's.
	for round := 1; round <= 2; round++ {
		id := "idle" + strconv.Itoa(round)
		c.Send(`<message type='chat' id='` + id + `' to='alice@` + prosodyDomain + `'><body>hi</body></message>`)
		c.Expect("Prosody's answer", func(e xmpptest.Elem) bool { return e.Attr("id") == id })
		last := time.Now()
		waitLinks("out", 1, 10*time.Second)
		closedOut := waitLinks("out", 0, idle+10*time.Second)
		waitLinks("in", 0, idle+10*time.Second)
		if d := closedOut.Sub(last); d > idle+idle/2+time.Second {
			t.Errorf("round %d: the outgoing link closed %v after its last stanza (idle timeout %v)", round, d, idle)
		}
		if n := x.metric(t, "xmppd_s2s_auth_total", `direction="out"`, `result="ok"`); n != float64(round) {
			t.Errorf("round %d: %v outgoing authentications, want %d (a new link each round)", round, n, round)
		}
	}
}
