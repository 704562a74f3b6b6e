package mam

import (
	"context"
	"strconv"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"dialtone/archive"
	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"
)

// queryPayload is <query/> as a client sends it.
type queryPayload struct {
	QueryID string `xml:"queryid,attr"`
	Form    *struct {
		Type   string `xml:"type,attr"`
		Fields []struct {
			Var    string   `xml:"var,attr"`
			Values []string `xml:"value"`
		} `xml:"field"`
	} `xml:"jabber:x:data x"`
	// FlipPage (#extended) sends the page's messages in reverse order.
	FlipPage *struct{} `xml:"flip-page"`
	Set      *struct {
		Max    *string `xml:"max"`
		After  *string `xml:"after"`
		Before *string `xml:"before"`
	} `xml:"http://jabber.org/protocol/rsm set"`
}

func badRequest(text string) error {
	return router.NewError(stanza.Modify, stanza.BadRequest, text)
}

// own answers forbidden unless the iq is to the sender's own account:
// nobody reads or changes another's archive.
func own(iq *router.Stanza) error {
	if !iq.ToOwnAccount() {
		return router.NewError(stanza.Cancel, stanza.Forbidden, "")
	}
	return nil
}

// query answers a MAM query (XEP-0313 §4): a get with the form's fields,
// a set with the results as messages to the requesting session, then the
// <fin/>.
func (m *Module) query(ctx context.Context, iq *router.Stanza) ([]byte, error) {
	if err := own(iq); err != nil {
		return nil, err
	}
	if iq.Type == "get" {
		return queryForm(), nil
	}
	sess := m.r.Session(iq.From)
	if sess == nil {
		return nil, router.NewError(stanza.Cancel, stanza.ServiceUnavailable, "")
	}
	var p queryPayload
	if err := iq.DecodePayload(&p); err != nil {
		return nil, badRequest("the query does not parse")
	}
	q, err := m.parseQuery(iq, &p)
	if err != nil {
		return nil, err
	}
	// What was routed before the query is in the archive before it is
	// read.
	if err := m.flush(ctx); err != nil {
		return nil, err
	}
	sctx, cancel := m.r.StoreContext(ctx)
	page, more, err := m.cfg.Store.QueryArchive(sctx, q)
	cancel()
	if err != nil {
		return nil, err
	}
	queried.Get(sess).Store(true)
	if p.Set != nil && p.Set.Max != nil && *p.Set.Max == "0" {
		// <max>0</max>: no items, only whether there are any.
		page, more = nil, len(page) > 0
	}
	from := ""
	if !iq.ToAbsent {
		from = iq.To.String()
	}
	for i := range page {
		msg := page[i]
		if p.FlipPage != nil {
			msg = page[len(page)-1-i]
		}
		sess.Send(result(msg, sess.String(), from, p.QueryID))
	}
	b := wire.NewBuilder(nil)
	b.StartNS("fin", NS, "complete", strconv.FormatBool(!more), "queryid", p.QueryID)
	b.StartNS("set", NSRSM)
	if len(page) > 0 {
		b.Element("first", "", archive.FormatID(page[0].ID))
		b.Element("last", "", archive.FormatID(page[len(page)-1].ID))
	}
	return b.End().End().Bytes(), nil
}

// parseQuery reads the form and the RSM set into a store query.
func (m *Module) parseQuery(iq *router.Stanza, p *queryPayload) (archive.Query, error) {
	q := archive.Query{Owner: iq.To.Localpart(), Max: DefaultMax}
	after := func(id int64) { q.After = max(q.After, id) }
	before := func(id int64) {
		if q.Before == 0 || id < q.Before {
			q.Before = id
		}
	}
	if f := p.Form; f != nil {
		if f.Type != "submit" {
			return q, badRequest("the form must be of type submit")
		}
		for _, fd := range f.Fields {
			one := ""
			if len(fd.Values) > 0 {
				one = fd.Values[0]
			}
			switch fd.Var {
			case "FORM_TYPE":
				if one != NS {
					return q, badRequest("FORM_TYPE must be " + NS)
				}
			case "with":
				j, err := jid.Parse(one)
				if err != nil {
					return q, router.NewError(stanza.Modify, stanza.JIDMalformed, "")
				}
				if j, err = m.r.Normalize(j); err != nil {
					return q, err
				}
				q.With, q.WithResource = j.Bare().String(), j.Resourcepart()
			case "start", "end":
				t, err := time.Parse(time.RFC3339, one)
				if err != nil {
					return q, badRequest(fd.Var + " must be a date and time (XEP-0082)")
				}
				if fd.Var == "start" {
					after(archive.FirstID(t) - 1)
				} else {
					before(archive.LastID(t) + 1)
				}
			case "after-id", "before-id":
				id, err := archive.ParseID(one)
				if err != nil {
					return q, router.NewError(stanza.Cancel, stanza.ItemNotFound, "no such archive id")
				}
				if fd.Var == "after-id" {
					after(id)
				} else {
					before(id)
				}
			case "ids":
				for _, v := range fd.Values {
					id, err := archive.ParseID(v)
					if err != nil {
						return q, router.NewError(stanza.Cancel, stanza.ItemNotFound, "no such archive id")
					}
					q.IDs = append(q.IDs, id)
				}
				if len(q.IDs) > MaxPage {
					return q, router.NewError(stanza.Modify, stanza.PolicyViolation, "too many ids")
				}
			default:
				return q, badRequest("unknown field " + fd.Var)
			}
		}
	}
	if s := p.Set; s != nil {
		if s.Max != nil {
			n, err := strconv.Atoi(*s.Max)
			if err != nil || n < 0 {
				return q, badRequest("max must be a number")
			}
			q.Max = min(n, MaxPage)
		}
		if s.After != nil && *s.After != "" {
			id, err := archive.ParseID(*s.After)
			if err != nil {
				return q, router.NewError(stanza.Cancel, stanza.ItemNotFound, "no such archive id")
			}
			after(id)
		}
		if s.Before != nil {
			q.Last = true // <before/>: the newest page
			if *s.Before != "" {
				id, err := archive.ParseID(*s.Before)
				if err != nil {
					return q, router.NewError(stanza.Cancel, stanza.ItemNotFound, "no such archive id")
				}
				before(id)
			}
		}
	}
	if len(q.IDs) > 0 {
		q.Max = max(q.Max, len(q.IDs))
	}
	if q.Max == 0 {
		q.Max = 1 // <max>0</max> asks for a count only; one row tells complete from not
	}
	return q, nil
}

// result is one message of a query's answer (XEP-0313 §4.2): the stored
// stanza, unchanged, forwarded with its archive id and time.
func result(msg archive.Message, to, from, queryID string) []byte {
	b := wire.NewBuilder(make([]byte, 0, len(msg.Stanza)+320))
	b.Start("message", "to", to, "from", from)
	b.StartNS("result", NS, "queryid", queryID, "id", archive.FormatID(msg.ID))
	b.StartNS("forwarded", NSForward)
	b.StartNS("delay", NSDelay, "stamp", archive.Time(msg.ID).Format("2006-01-02T15:04:05.000Z")).End()
	b.Raw(inClientNS(msg.Stanza))
	return b.Bytes()
}

// inClientNS returns a stored stanza (written without a namespace, as on
// a stream) declaring jabber:client, so that it stands inside
// <forwarded/>.
func inClientNS(st []byte) []byte {
	const open = "<message"
	if len(st) < len(open) || string(st[:len(open)]) != open {
		return st
	}
	out := make([]byte, 0, len(st)+24)
	out = append(out, open...)
	out = wire.AppendAttr(out, "xmlns", router.NSClient)
	return append(out, st[len(open):]...)
}

// queryForm is the answer to a query get (XEP-0313 §4.1.1): the fields
// a query may use.
func queryForm() []byte {
	b := wire.NewBuilder(nil)
	b.StartNS("query", NS)
	b.StartNS("x", NSData, "type", "form")
	b.Start("field", "var", "FORM_TYPE", "type", "hidden").Element("value", "", NS).End()
	for _, f := range [][2]string{
		{"with", "jid-single"}, {"start", "text-single"}, {"end", "text-single"},
		{"before-id", "text-single"}, {"after-id", "text-single"}, {"ids", "text-multi"},
	} {
		b.Start("field", "var", f[0], "type", f[1]).End()
	}
	return b.End().End().Bytes()
}

// prefsPayload is <prefs/> (XEP-0313 §6).
type prefsPayload struct {
	Default string    `xml:"default,attr"`
	Always  *jidsList `xml:"always"`
	Never   *jidsList `xml:"never"`
}

type jidsList struct {
	JIDs []string `xml:"jid"`
}

// prefsIQ reads or replaces the account's preferences; both answer with
// them.
func (m *Module) prefsIQ(ctx context.Context, iq *router.Stanza) ([]byte, error) {
	if err := own(iq); err != nil {
		return nil, err
	}
	owner := iq.To.Localpart()
	sctx, cancel := m.r.StoreContext(ctx)
	defer cancel()
	if iq.Type == "get" {
		p, err := m.cfg.Store.ArchivePrefs(sctx, owner)
		if err != nil {
			return nil, err
		}
		return prefsXML(p), nil
	}
	var in prefsPayload
	if err := iq.DecodePayload(&in); err != nil {
		return nil, badRequest("the preferences do not parse")
	}
	p := archive.Prefs{Default: in.Default}
	switch in.Default {
	case archive.Always, archive.Never:
	case archive.Roster:
		return nil, router.NewError(stanza.Cancel, stanza.FeatureNotImplemented, "default 'roster' is not supported; use always or never with lists")
	default:
		return nil, badRequest("default must be always or never")
	}
	for _, l := range []struct {
		in  *jidsList
		out *[]string
	}{{in.Always, &p.Always}, {in.Never, &p.Never}} {
		if l.in == nil {
			continue
		}
		for _, s := range l.in.JIDs {
			j, err := jid.Parse(s)
			if err != nil {
				return nil, router.NewError(stanza.Modify, stanza.JIDMalformed, "")
			}
			if j, err = m.r.Normalize(j); err != nil {
				return nil, err
			}
			*l.out = append(*l.out, j.Bare().String())
		}
	}
	// What was routed before the change is written under the old
	// preferences: the writer applies the cached ones to what it takes.
	if err := m.flush(sctx); err != nil {
		return nil, err
	}
	if err := m.cfg.Store.SetArchivePrefs(sctx, owner, p); err != nil {
		return nil, err
	}
	m.prefs.Store(owner, p)
	return prefsXML(p), nil
}

func prefsXML(p archive.Prefs) []byte {
	b := wire.NewBuilder(nil)
	b.StartNS("prefs", NS, "default", p.Default)
	for _, l := range []struct {
		name string
		jids []string
	}{{"always", p.Always}, {"never", p.Never}} {
		b.Start(l.name)
		for _, j := range l.jids {
			b.Element("jid", "", j)
		}
		b.End()
	}
	return b.End().Bytes()
}
