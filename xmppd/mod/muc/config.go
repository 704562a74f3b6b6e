package muc

import (
	"encoding/json"
	"encoding/xml"
	"strconv"

	"dialtone/xmppd/wire"
)

// Namespaces of XEP-0045 and the forms it uses.
const (
	NS          = "http://jabber.org/protocol/muc"
	NSUser      = NS + "#user"
	NSAdmin     = NS + "#admin"
	NSOwner     = NS + "#owner"
	nsData      = "jabber:x:data"
	nsRoomCfg   = NS + "#roomconfig"
	nsRoomInfo  = NS + "#roominfo"
	nsConfVar   = "muc#roomconfig_"
	nsSID       = "urn:xmpp:sid:0"
	nsDelay     = "urn:xmpp:delay"
	nsConf      = "jabber:x:conference" // XEP-0249
	nsVCard     = "vcard-temp"
	nsPing      = "urn:xmpp:ping"
	nsDiscoInfo = "http://jabber.org/protocol/disco#info"
	nsDiscoItem = "http://jabber.org/protocol/disco#items"
)

// Config is a room's configuration (the owner's form, XEP-0045 §10.2).
type Config struct {
	Name          string `json:"name,omitempty"`
	Description   string `json:"description,omitempty"`
	Persistent    bool   `json:"persistent,omitempty"`
	Public        bool   `json:"public,omitempty"`
	MembersOnly   bool   `json:"members_only,omitempty"`
	Moderated     bool   `json:"moderated,omitempty"`
	Password      string `json:"password,omitempty"`
	MaxUsers      int    `json:"max_users,omitempty"` // 0: the service's limit
	WhoisAnyone   bool   `json:"whois_anyone,omitempty"`
	MAM           bool   `json:"mam,omitempty"`
	AllowInvites  bool   `json:"allow_invites,omitempty"`
	ChangeSubject bool   `json:"change_subject,omitempty"`
}

// DefaultConfig is an instant room's: temporary, public, open, archived,
// anyone may invite (a phone user's group grows by invitation).
func DefaultConfig() Config {
	return Config{Public: true, MAM: true, AllowInvites: true}
}

func (c Config) encode() []byte {
	b, _ := json.Marshal(c) // plain fields: cannot fail
	return b
}

func decodeConfig(b []byte) (Config, error) {
	c := DefaultConfig()
	if len(b) == 0 {
		return c, nil
	}
	err := json.Unmarshal(b, &c)
	return c, err
}

func boolValue(v bool) string {
	if v {
		return "1"
	}
	return "0"
}

// form writes the configuration form (type form) for an owner.
func (c Config) form(b *wire.Builder, maxOccupants int) {
	b.StartNS("x", nsData, "type", "form")
	b.Element("title", "", "Configuration of the group")
	field := func(v, typ, label, value string) {
		b.Start("field", "var", v, "type", typ, "label", label)
		b.Element("value", "", value)
		b.End()
	}
	b.Start("field", "var", "FORM_TYPE", "type", "hidden").Element("value", "", nsRoomCfg).End()
	field(nsConfVar+"roomname", "text-single", "Name", c.Name)
	field(nsConfVar+"roomdesc", "text-single", "Description", c.Description)
	field(nsConfVar+"persistentroom", "boolean", "Keep the group when everyone has left", boolValue(c.Persistent))
	field(nsConfVar+"publicroom", "boolean", "List the group publicly", boolValue(c.Public))
	field(nsConfVar+"membersonly", "boolean", "Only members may enter", boolValue(c.MembersOnly))
	field(nsConfVar+"moderatedroom", "boolean", "Only participants with voice may speak", boolValue(c.Moderated))
	field(nsConfVar+"passwordprotectedroom", "boolean", "Password required to enter", boolValue(c.Password != ""))
	field(nsConfVar+"roomsecret", "text-private", "Password", c.Password)
	b.Start("field", "var", nsConfVar+"maxusers", "type", "list-single", "label", "Maximum number of occupants")
	b.Element("value", "", strconv.Itoa(c.maxUsers(maxOccupants)))
	for _, n := range []int{10, 20, 50, 100, 200, 500, 1000} {
		if n <= maxOccupants || maxOccupants <= 0 {
			b.Start("option", "label", strconv.Itoa(n)).Element("value", "", strconv.Itoa(n)).End()
		}
	}
	b.End()
	b.Start("field", "var", nsConfVar+"whois", "type", "list-single", "label", "Who may see the real addresses")
	whois := "moderators"
	if c.WhoisAnyone {
		whois = "anyone"
	}
	b.Element("value", "", whois)
	b.Start("option", "label", "Moderators").Element("value", "", "moderators").End()
	b.Start("option", "label", "Anyone").Element("value", "", "anyone").End()
	b.End()
	field(nsConfVar+"mam", "boolean", "Archive the messages (MAM)", boolValue(c.MAM))
	field(nsConfVar+"allowinvites", "boolean", "Occupants may invite others", boolValue(c.AllowInvites))
	field(nsConfVar+"changesubject", "boolean", "Occupants may change the subject", boolValue(c.ChangeSubject))
	b.End()
}

func (c Config) maxUsers(service int) int {
	if c.MaxUsers > 0 && (service <= 0 || c.MaxUsers < service) {
		return c.MaxUsers
	}
	return service
}

// dataForm is a submitted jabber:x:data form.
type dataForm struct {
	XMLName xml.Name `xml:"jabber:x:data x"`
	Type    string   `xml:"type,attr"`
	Fields  []struct {
		Var    string   `xml:"var,attr"`
		Values []string `xml:"value"`
	} `xml:"field"`
}

func (f *dataForm) values() map[string][]string {
	out := make(map[string][]string, len(f.Fields))
	for _, fl := range f.Fields {
		out[fl.Var] = fl.Values
	}
	return out
}

func formBool(s string) (bool, bool) {
	switch s {
	case "1", "true":
		return true, true
	case "0", "false":
		return false, true
	}
	return false, false
}

// apply applies a submitted form to c; fields it does not carry keep their
// values. ok is false for a malformed value.
func (c Config) apply(f *dataForm, maxOccupants int) (Config, bool) {
	v := f.values()
	first := func(name string) (string, bool) {
		vals, ok := v[nsConfVar+name]
		if !ok {
			return "", false
		}
		if len(vals) == 0 {
			return "", true
		}
		return vals[0], true
	}
	for name, dst := range map[string]*string{"roomname": &c.Name, "roomdesc": &c.Description, "roomsecret": &c.Password} {
		if s, ok := first(name); ok {
			*dst = s
		}
	}
	for name, dst := range map[string]*bool{"persistentroom": &c.Persistent, "publicroom": &c.Public,
		"membersonly": &c.MembersOnly, "moderatedroom": &c.Moderated, "mam": &c.MAM,
		"allowinvites": &c.AllowInvites, "changesubject": &c.ChangeSubject} {
		if s, ok := first(name); ok {
			b, good := formBool(s)
			if !good {
				return c, false
			}
			*dst = b
		}
	}
	if s, ok := first("passwordprotectedroom"); ok {
		if on, good := formBool(s); !good {
			return c, false
		} else if !on {
			c.Password = ""
		}
	}
	if s, ok := first("maxusers"); ok && s != "" && s != "none" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return c, false
		}
		if maxOccupants > 0 && n > maxOccupants {
			n = maxOccupants
		}
		c.MaxUsers = n
	}
	if s, ok := first("whois"); ok {
		switch s {
		case "anyone":
			c.WhoisAnyone = true
		case "moderators", "":
			c.WhoisAnyone = false
		default:
			return c, false
		}
	}
	return c, true
}
