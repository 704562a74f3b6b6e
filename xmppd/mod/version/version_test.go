package version

import (
	"context"
	"dialtone/xmppd/mod/internal/modtest"
	"encoding/xml"
	"testing"

	"mellium.im/xmpp/stanza"
)

const (
	domain = modtest.Domain
	alice  = modtest.Alice
	bob    = modtest.Bob
)

func aliceFull() string { return alice + "@" + domain + "/phone" }

func TestVersion(t *testing.T) {
	tests := []struct {
		name, version, typ string
		cond               stanza.Condition
	}{
		{name: "get", version: "1.2.3", typ: "get"},
		{name: "escaped", version: "1<2&\"3\"", typ: "get"},
		{name: "set", version: "1", typ: "set", cond: stanza.BadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := New(tt.version)
			b, err := v.handle(context.Background(), modtest.IQ(t, "+15550001111@"+domain+"/a", domain, tt.typ, `<query xmlns="jabber:iq:version"/>`))
			if got := modtest.Condition(t, err); got != tt.cond {
				t.Fatalf("condition %q, want %q", got, tt.cond)
			}
			if tt.cond != "" {
				return
			}
			var q struct {
				XMLName xml.Name `xml:"jabber:iq:version query"`
				Name    string   `xml:"name"`
				Version string   `xml:"version"`
				OS      *string  `xml:"os"`
			}
			modtest.Unmarshal(t, b, &q)
			if q.Name != "Dialtone" || q.Version != tt.version || q.OS != nil {
				t.Errorf("result %s", b)
			}
		})
	}
}
