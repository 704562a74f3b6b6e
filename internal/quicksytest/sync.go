package quicksytest

// Contact discovery as the app does it, from the same source:
//
//   - src/quicksy/java/eu/siacs/conversations/services/QuickConversationsService.java:
//     considerSync sends <iq type='get' to='api.DOMAIN'> with a
//     <phone-book xmlns='im.quicksy.synchronization:0' ver=STATUSQUO>
//     holding an <entry number=N/> for every number of the phone book
//     (PhoneNumberContact.load normalises each to E.164); a result with a
//     phone-book ties each answered JID to the contact of its number
//     (setPhoneContact) and unties every other contact
//     (unsetPhoneContact); a result without one means "remains
//     unchanged".
//   - src/quicksy/java/eu/siacs/conversations/entities/Entry.java:
//     statusQuo is computed over the contacts the app has tied to numbers
//     still in the phone book: entries sorted by number, each the number
//     then U+001E and a bare JID for each of its JIDs (sorted), entries
//     joined by U+001D, SHA-1 over UTF-8, Base64.DEFAULT trimmed (standard
//     alphabet with padding); ofPhoneBook reads every <entry> child of
//     the answer, and every child's text of an entry as a JID.

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/xml"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"dialtone/internal/xmpptest"
)

// NSSynchronization is Namespace.SYNCHRONIZATION.
const NSSynchronization = "im.quicksy.synchronization:0"

// Entry is one entry of an answer (Entry.java): a number and its JIDs.
type Entry struct {
	Number string
	JIDs   []string
}

// StatusQuo is Entry.statusQuo over entries (which it does not change).
// Java's String.compareTo orders by UTF-16 code units; numbers and JIDs
// here are ASCII, where that is byte order. (The app sorts JIDs with
// rocks.xmpp's Jid.compareTo; with one JID per number, as a server of
// phone numbers answers, the order of JIDs never matters.)
func StatusQuo(entries []Entry) string {
	sorted := slices.Clone(entries)
	slices.SortFunc(sorted, func(a, b Entry) int { return strings.Compare(a.Number, b.Number) })
	var s strings.Builder
	for _, e := range sorted {
		if s.Len() != 0 {
			s.WriteRune('\u001d')
		}
		s.WriteString(e.Number)
		jids := slices.Clone(e.JIDs)
		slices.Sort(jids)
		for _, j := range jids {
			s.WriteRune('\u001e')
			s.WriteString(j)
		}
	}
	sum := sha1.Sum([]byte(s.String()))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// SyncResult is what one sync did.
type SyncResult struct {
	// Type is the iq type of the answer: result or error.
	Type string
	// Unchanged: a result without a phone-book ("remains unchanged").
	Unchanged bool
	// Entries are the answer's entries as ofPhoneBook reads them.
	Entries []Entry
	// Error is the stanza error condition of an error answer.
	Error string
}

var syncIDs atomic.Int64

// SyncPhoneBook is considerSync: it sends the phone book (numbers in
// E.164) with the status quo of what the app tied to numbers so far, over
// c, a session of the app's account, and applies the answer as the app
// does. A second sync of the same phone book sends the ver the server
// answered with, so the server answers "unchanged".
func (a *App) SyncPhoneBook(t testing.TB, c *xmpptest.Client, numbers []string) SyncResult {
	t.Helper()
	if a.tied == nil {
		a.tied = map[string][]string{}
	}
	// What the app has tied, for the numbers still in the phone book.
	var known []Entry
	for _, n := range numbers {
		if jids, ok := a.tied[n]; ok {
			known = append(known, Entry{Number: n, JIDs: jids})
		}
	}
	id := "sync" + strconv.FormatInt(syncIDs.Add(1), 10)
	var b strings.Builder
	b.WriteString(`<iq type="get" to="` + a.Host + `" id="` + id + `">`)
	b.WriteString(`<phone-book xmlns="` + NSSynchronization + `" ver="` + StatusQuo(known) + `">`)
	for _, n := range numbers {
		b.WriteString(`<entry number="`)
		xml.EscapeText(&b, []byte(n))
		b.WriteString(`"/>`)
	}
	b.WriteString(`</phone-book></iq>`)
	c.Send(b.String())
	e := c.Expect("phone-book answer "+id, func(e xmpptest.Elem) bool {
		return e.XMLName.Local == "iq" && e.Attr("id") == id
	})
	res := SyncResult{Type: e.Attr("type")}
	var answer struct {
		Book *struct {
			Entries []struct {
				Number   string `xml:"number,attr"`
				Children []struct {
					Text string `xml:",chardata"`
				} `xml:",any"`
			} `xml:"entry"`
		} `xml:"im.quicksy.synchronization:0 phone-book"`
		Error struct {
			Conditions []struct{ XMLName xml.Name } `xml:",any"`
		} `xml:"error"`
	}
	if err := xml.Unmarshal([]byte("<iq>"+e.Inner+"</iq>"), &answer); err != nil {
		t.Fatalf("app: the answer %v does not parse: %v", e, err)
	}
	switch res.Type {
	case "result":
	case "error":
		for _, c := range answer.Error.Conditions {
			if c.XMLName.Space == "urn:ietf:params:xml:ns:xmpp-stanzas" && c.XMLName.Local != "text" {
				res.Error = c.XMLName.Local
			}
		}
		return res
	default:
		t.Fatalf("app: answer of type %q: %v", res.Type, e)
	}
	if answer.Book == nil {
		res.Unchanged = true
		return res
	}
	inBook := map[string]bool{}
	for _, n := range numbers {
		inBook[n] = true
	}
	tied := map[string][]string{}
	for _, en := range answer.Book.Entries {
		entry := Entry{Number: en.Number}
		for _, ch := range en.Children {
			if ch.Text != "" {
				entry.JIDs = append(entry.JIDs, ch.Text)
			}
		}
		res.Entries = append(res.Entries, entry)
		if inBook[entry.Number] {
			tied[entry.Number] = append(tied[entry.Number], entry.JIDs...)
		}
	}
	a.tied = tied // every other contact is untied
	return res
}
