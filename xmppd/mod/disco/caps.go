package disco

import (
	"crypto/sha1"
	"encoding/base64"
	"sort"
	"strings"

	"dialtone/xmppd/wire"

	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/disco/info"
)

// CapsNode is the node (XEP-0115 §4) under which the server advertises its
// entity capabilities; disco#info to CapsNode+"#"+ver is answered like a
// request without a node.
const CapsNode = "https://dialtone.im"

// CapsVer computes the XEP-0115 §5.1 verification string of an entity with
// the given identities and features (no extended forms): SHA-1 over the
// sorted identities ("category/type/lang/name<") and sorted features
// ("var<"), base64-encoded. The arguments are not modified.
func CapsVer(identities []info.Identity, features []string) string {
	ids := append([]info.Identity(nil), identities...)
	sort.Slice(ids, func(i, j int) bool {
		a, b := ids[i], ids[j]
		if a.Category != b.Category {
			return a.Category < b.Category
		}
		if a.Type != b.Type {
			return a.Type < b.Type
		}
		if a.Lang != b.Lang {
			return a.Lang < b.Lang
		}
		return a.Name < b.Name
	})
	feats := append([]string(nil), features...)
	sort.Strings(feats)

	var s strings.Builder
	for _, id := range ids {
		s.WriteString(id.Category)
		s.WriteByte('/')
		s.WriteString(id.Type)
		s.WriteByte('/')
		s.WriteString(id.Lang)
		s.WriteByte('/')
		s.WriteString(id.Name)
		s.WriteByte('<')
	}
	for _, f := range feats {
		s.WriteString(f)
		s.WriteByte('<')
	}
	sum := sha1.Sum([]byte(s.String()))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// CapsElement returns the <c xmlns='http://jabber.org/protocol/caps'/>
// element advertising the server's capabilities, for the stream features
// (XEP-0115 §6.3). Call it only after every module has registered.
func (d *Module) CapsElement() []byte {
	d.init()
	return d.capsElem
}

func capsElement(ver string) []byte {
	return wire.NewBuilder(nil).StartNS("c", disco.NSCaps, "hash", "sha-1", "node", CapsNode, "ver", ver).End().Bytes()
}
