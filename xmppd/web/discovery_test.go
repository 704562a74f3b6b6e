package web

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// The account page's contact discovery switch: on by default, off and
// on again with the form; only with this session's form token.
func TestDiscoverySwitch(t *testing.T) {
	f := newFixture(t, false)
	f.store.setPassword(t, testNumber, "right-password")
	b := f.browser(t)
	b.login(testNational, "right-password")
	mustContain(t, "account page", b.get("/account").body, `id="discovery-state">On:`, `name="findable" value="no"`)

	post := func(findable string) answer {
		t.Helper()
		return b.post("/account/discovery", url.Values{"csrf": {b.token("/account")}, "findable": {findable}})
	}
	a := post("no")
	if a.code != http.StatusSeeOther || a.header.Get("Location") != "/account?done=discovery" {
		t.Fatal(a)
	}
	if !f.discovery.hidden[testNumber] {
		t.Fatal("not hidden after switching off")
	}
	mustContain(t, "after switching off", b.get("/account?done=discovery").body,
		`id="discovery-state">Off:`, `name="findable" value="yes"`, "Saved.")
	if a := post("yes"); a.code != http.StatusSeeOther || f.discovery.hidden[testNumber] {
		t.Fatalf("switching on: %v, hidden %v", a, f.discovery.hidden[testNumber])
	}
	mustContain(t, "after switching on", b.get("/account").body, `id="discovery-state">On:`)

	for _, v := range []string{"", "maybe"} {
		if a := post(v); a.code != http.StatusBadRequest || !strings.Contains(a.body, "Choose whether") {
			t.Errorf("findable=%q: %v", v, a)
		}
	}

	// Forged posts change nothing.
	sets := f.discovery.sets
	attacker := f.browser(t)
	for _, form := range []url.Values{
		{"findable": {"no"}},
		{"findable": {"no"}, "csrf": {attacker.token("/")}},
	} {
		if a := b.post("/account/discovery", form); a.code != http.StatusForbidden {
			t.Errorf("forged %v: %v", form, a)
		}
	}
	if a := attacker.post("/account/discovery", url.Values{"findable": {"no"}, "csrf": {attacker.token("/")}}); a.code == http.StatusSeeOther {
		t.Errorf("logged out: %v", a)
	}
	if f.discovery.sets != sets || f.discovery.hidden[testNumber] {
		t.Fatalf("a forged post changed the setting")
	}

	// The store down: a friendly page, and the switch says it cannot tell.
	f.discovery.mu.Lock()
	f.discovery.err = errors.New("database is locked")
	f.discovery.mu.Unlock()
	if a := post("no"); a.code != http.StatusServiceUnavailable || !strings.Contains(a.body, msgUnavailable) {
		t.Errorf("store down: %v", a)
	}
	mustContain(t, "store down", b.get("/account").body, "could not read this setting")
}

// Without Options.Discovery there is no switch and no such form.
func TestDiscoverySwitchOff(t *testing.T) {
	f := newFixtureWith(t, false, func(o *Options) { o.Discovery = nil })
	f.store.setPassword(t, testNumber, "right-password")
	b := f.browser(t)
	b.login(testNational, "right-password")
	if body := b.get("/account").body; strings.Contains(body, "discovery") {
		t.Errorf("a switch without Discovery:\n%s", body)
	}
	if a := b.post("/account/discovery", url.Values{"csrf": {b.token("/account")}, "findable": {"no"}}); a.code != http.StatusNotFound {
		t.Errorf("post without Discovery: %v", a)
	}
}
