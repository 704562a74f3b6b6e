package s2s

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Dialtone's component hosts: group chats and contact discovery.
const (
	groupsHost        = "groups." + dialtoneDomain
	apiHost           = "api." + dialtoneDomain
	prosodyConference = "conference." + prosodyDomain
)

// dialtoneRoutes is where the peers find Dialtone's domains: the domain
// and its component hosts, all served by its one s2s listener (in DNS,
// SRV records of each name pointing at it).
func dialtoneRoutes() map[string]route {
	r := route{dialtoneIP, 5269}
	return map[string]route{dialtoneDomain: r, groupsHost: r, apiHost: r}
}

// mucUser is a user of s2s_muc.py: an account and a nickname.
type mucUser struct {
	user
	nick string
}

type mucResult struct {
	OK          bool                      `json:"ok"`
	Error       string                    `json:"error"`
	Steps       []json.RawMessage         `json:"steps"`
	Received    map[string]map[string]int `json:"received"`
	Condition   string                    `json:"condition"`
	ErrorFrom   string                    `json:"error_from"`
	NamesNumber bool                      `json:"names_number"`
}

// runMUC runs testdata/s2s_muc.py with users (the first makes the room)
// and more arguments, and returns its result.
func runMUC(t *testing.T, users []mucUser, args ...string) mucResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	argv := []string{filepath.Join(testdata(t), "s2s_muc.py"), "--step-timeout", "20", "--debug"}
	for _, u := range users {
		argv = append(argv, "--user", strings.Join([]string{u.jid, u.password, u.host, strconv.Itoa(u.port), u.nick}, "|"))
	}
	cmd := exec.CommandContext(ctx, python, append(argv, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var res mucResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil || runErr != nil || !res.OK {
		e := stderr.Bytes()
		if len(e) > 20000 {
			e = e[len(e)-20000:]
		}
		t.Fatalf("s2s_muc.py: %s (exit %v)\nstdout: %s\nslixmpp log (end):\n%s", res.Error, runErr, stdout.String(), e)
	}
	return res
}

// checkCounts checks that every user got exactly count messages from
// every other user through the room.
func checkCounts(t *testing.T, res mucResult, users []mucUser, count int) {
	t.Helper()
	for _, u := range users {
		for _, v := range users {
			if got := res.Received[u.nick][v.nick]; got != count {
				t.Errorf("%s (%s) got %d messages from %s (%s), want %d", u.nick, u.jid, got, v.nick, v.jid, count)
			}
		}
	}
	t.Logf("messages received, by receiver and sender: %v", res.Received)
}

// Group chats across servers: a Prosody user and an ejabberd user join a
// room at groups.dialtone.test and talk with a Dialtone user; a Dialtone
// user joins a room on Prosody's MUC; a Prosody user asking api.DOMAIN
// for a phone book is refused with not-authorized. Links are
// authenticated by dialback: every certificate is self-signed for its
// domain only, and each peer domain (conference.prosody.test too) is
// listed in XMPPD_S2S_INSECURE_DOMAINS.
func TestS2SGroupChat(t *testing.T) {
	if testing.Short() {
		t.Skip("interop: not with -short (make check); make test runs it")
	}
	require(t, "prosody", have("prosody") && have("prosodyctl"), "install the Debian package prosody")
	requireEjabberd(t)
	requireSlixmpp(t)
	dir := shortTempDir(t)
	xmppdBin, xmppctl := build(t, dir)
	p := newPKI(t, dir)
	e := startEjabberd(t, dir, p, map[string]string{"carol": "carol-pw-muc"})
	carol := mucUser{user{jid: "carol@" + ejabberdDomain, password: "carol-pw-muc", host: ejabberdIP, port: e.c2s}, "carol"}
	routes := "XMPPD_S2S_ROUTES=" + prosodyDomain + "=" + prosodyIP + ":5269," + prosodyConference + "=" + prosodyIP + ":5269," + ejabberdDomain + "=" + ejabberdIP + ":5269"
	for i, ph := range []phase{phases[1], phases[0]} { // dialback, sasl-external
		t.Run(ph.name, func(t *testing.T) {
			pdir := filepath.Join(dir, "muc-"+ph.name) // the binaries are in dir
			os.MkdirAll(pdir, 0o755)
			pusers := map[string]string{"alice": "alice-pw-muc", "bob": "bob-pw-muc"}
			pc2s := startProsody(t, pdir, p, ph, pusers)
			env := []string{routes}
			if !ph.trusted {
				env = append(env, "XMPPD_S2S_INSECURE_DOMAINS="+prosodyDomain+","+prosodyConference+","+ejabberdDomain)
			}
			x := startXmppd(t, xmppdBin, pdir, p, ph.trusted, env...)
			groupChats(t, x, xmppctl, ph, carol,
				mucUser{user{jid: "alice@" + prosodyDomain, password: pusers["alice"], host: prosodyIP, port: pc2s}, "alice"},
				mucUser{user{jid: "bob@" + prosodyDomain, password: pusers["bob"], host: prosodyIP, port: pc2s}, "bob"},
				[]string{"+82105555" + strconv.Itoa(i) + "001", "+82105555" + strconv.Itoa(i) + "002"})
			x.stop(t)
		})
	}
}

// groupChats runs the group chats and the phone-book request of one
// phase and checks how xmppd authenticated its links.
func groupChats(t *testing.T, x *xmppd, xmppctl string, ph phase, carol, alice, bob mucUser, numbers []string) {
	t.Helper()
	dialtone := make([]mucUser, len(numbers))
	for i, n := range numbers {
		dialtone[i] = mucUser{user{jid: n + "@" + dialtoneDomain, password: x.account(t, xmppctl, n), host: dialtoneIP, port: x.c2s}, "dialtone" + strconv.Itoa(i)}
	}
	const count = 5
	t.Run("room at groups.DOMAIN", func(t *testing.T) {
		users := []mucUser{dialtone[0], alice, carol}
		res := runMUC(t, users, "--room", "federated@"+groupsHost, "--count", strconv.Itoa(count))
		checkCounts(t, res, users, count)
	})
	t.Run("room on Prosody", func(t *testing.T) {
		users := []mucUser{bob, dialtone[1]}
		res := runMUC(t, users, "--room", "visit@"+prosodyConference, "--count", strconv.Itoa(count))
		checkCounts(t, res, users, count)
	})
	t.Run("phone book from another server", func(t *testing.T) {
		res := runMUC(t, []mucUser{alice}, "--phonebook", apiHost, "--number", numbers[0])
		if res.Condition != "not-authorized" || res.ErrorFrom != apiHost || res.NamesNumber {
			t.Errorf("a Prosody user's phone book: %s from %s (names the number: %v), want not-authorized from %s", res.Condition, res.ErrorFrom, res.NamesNumber, apiHost)
		}
	})
	other := "dialback"
	if ph.method == "dialback" {
		other = "external"
	}
	in := x.metric(t, "xmppd_s2s_auth_total", `direction="in"`, `method="`+ph.method+`"`, `result="ok"`)
	out := x.metric(t, "xmppd_s2s_auth_total", `direction="out"`, `method="`+ph.method+`"`, `result="ok"`)
	wrong := x.metric(t, "xmppd_s2s_auth_total", `method="`+other+`"`, `result="ok"`)
	t.Logf("xmppd %s authentications: incoming %v, outgoing %v; %s %v; rejected %v", ph.method, in, out, other, wrong, x.metric(t, "xmppd_s2s_rejected_total"))
	// Outgoing at least: groups.DOMAIN to prosody.test and ejabberd.test,
	// DOMAIN to conference.prosody.test, api.DOMAIN to prosody.test.
	if out < 4 {
		t.Errorf("xmppd authenticated %v outgoing links by %s, want one per pair of domains (at least 4)", out, ph.method)
	}
	if wrong != 0 {
		t.Errorf("xmppd used %s %v times in the %s phase", other, wrong, ph.name)
	}
}
