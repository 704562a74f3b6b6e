package interop

import (
	"slices"
	"testing"
)

// Two slixmpp clients exchange an avatar (XEP-0084) and a nick
// (XEP-0172) through PEP: notifications by caps interest, the avatar's
// data fetched by id, the same avatar in the vCard (XEP-0398) and its
// hash in presence (XEP-0153), items read with xep_0060, and
// item-not-found for a node that does not exist.
func TestSlixmppPEP(t *testing.T) {
	if testing.Short() {
		t.Skip("interop: not with -short (make check); make test runs it")
	}
	requirePlugin(t, "xep_0084")
	requirePlugin(t, "xep_0153")
	const a, b = "+821012345678", "+821098765432"
	s, _, pw := serverWithAccounts(t, nil, a, b)
	aPass, bPass := pw[0], pw[1]
	var res struct {
		OK          bool     `json:"ok"`
		Error       string   `json:"error"`
		Steps       []string `json:"steps"`
		Nick        string   `json:"nick"`
		NickItems   []string `json:"nick_items"`
		MissingNode string   `json:"missing_node"`
		Hash        string   `json:"presence_hash"`
	}
	runScript(t, "slixmpp_pep.py", &res, "--port", s.c2s, "--a", a+"@localhost", "--a-password", aPass,
		"--b", b+"@localhost", "--b-password", bPass)
	if !res.OK || res.Nick != "Alice" || !slices.Equal(res.NickItems, []string{"Alice"}) || res.MissingNode != "item-not-found" ||
		!slices.Contains(res.Steps, "vcard") || res.Hash == "" {
		t.Fatalf("PEP between slixmpp clients: %+v", res)
	}
	s.stop(t)
}
