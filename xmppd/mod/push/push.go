// Package push is XEP-0357 Push Notifications: a client registers an app
// server (its JID, a node and a publish-options form) with <enable/>; while
// the account has no active session (none, or only hibernating ones), each
// message that arrives for it is announced to every registered app server
// by a pubsub publish from the account's bare JID, over federation, with
// the urn:xmpp:push:summary form. An app server that answers with errors
// MaxErrors times in a row loses its registration.
package push

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	pushreg "dialtone/push"
	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"
)

// Namespaces.
const (
	NS               = "urn:xmpp:push:0"
	NSSummary        = "urn:xmpp:push:summary"
	NSPubsub         = "http://jabber.org/protocol/pubsub"
	NSData           = "jabber:x:data"
	NSPublishOptions = "http://jabber.org/protocol/pubsub#publish-options"
)

// DefaultMaxErrors is how many error answers in a row drop a registration.
const DefaultMaxErrors = 3

// Config configures the module.
type Config struct {
	Store pushreg.Store
	// MaxErrors: error answers in a row that drop a registration; 0:
	// DefaultMaxErrors.
	MaxErrors int
	// Log: nil discards.
	Log *slog.Logger
}

// hibernating marks a session that stream management keeps for
// resumption while its connection is gone: it counts as inactive.
var hibernating = router.NewKey[atomic.Bool]()

// Module is the push module.
type Module struct {
	cfg Config
	r   router.Routing

	accounts  sync.Map // owner → *account
	accountsN atomic.Int64

	seq     atomic.Uint64
	mu      sync.Mutex
	pending map[string]sent // publish iq id → what it was for
}

// account is what the module keeps of one account: its registrations (as
// loaded from the store) and the messages announced since it was last
// online.
type account struct {
	mu    sync.Mutex
	regs  []*registration
	count int
}

type registration struct {
	pushreg.Registration
	includeBody bool
	errors      int
	// lastError is the sequence number of the latest publish answered
	// with an error: a result for an older publish (answers may come back
	// over another link, out of order) does not clear the errors.
	lastError uint64
}

// sent is a publish waiting for its answer.
type sent struct {
	owner string
	reg   *registration
	seq   uint64 // the publish's place in the order they were sent
}

// New returns the module.
func New(cfg Config) *Module {
	if cfg.MaxErrors <= 0 {
		cfg.MaxErrors = DefaultMaxErrors
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Module{cfg: cfg, pending: map[string]sent{}}
}

// Register answers <enable/> and <disable/> for the sender's own account,
// advertises urn:xmpp:push:0, watches messages arriving for accounts and
// the answers of app servers, and follows sessions that hibernate.
func (m *Module) Register(h *router.Hooks) error {
	if m.cfg.Store == nil {
		return errors.New("push: no store")
	}
	if r := h.Router(); r != nil {
		m.r = r
	}
	h.HandleIQ(router.ScopeAccount, router.IQSet, xml.Name{Space: NS, Local: "enable"}, m.enable)
	h.HandleIQ(router.ScopeAccount, router.IQSet, xml.Name{Space: NS, Local: "disable"}, m.disable)
	h.AddFeature(router.ScopeServer|router.ScopeAccount, NS)
	// Below the archive (mam.Priority), so that the stanza-id is settled.
	h.Hook(router.Inbound, router.Messages, 50, m.message)
	h.Hook(router.Inbound, router.IQs, 50, m.answer)
	h.OnSession(router.Hibernated, 0, func(_ context.Context, s *router.Session) { hibernating.Get(s).Store(true) })
	h.OnSession(router.Resumed, 0, func(_ context.Context, s *router.Session) { hibernating.Get(s).Store(false) })
	h.OnSession(router.Available, 0, func(_ context.Context, s *router.Session) {
		if v, ok := m.accounts.Load(s.Bare().Localpart()); ok {
			acc := v.(*account)
			acc.mu.Lock()
			acc.count = 0
			acc.mu.Unlock()
		}
	})
	return nil
}

// Forget drops what the module cached of an account that was recycled or
// released (account.BlockCache).
func (m *Module) Forget(bare jid.JID) { m.accounts.Delete(bare.Localpart()) }

// enablePayload is <enable/> (XEP-0357 §5).
type enablePayload struct {
	JID  string `xml:"jid,attr"`
	Node string `xml:"node,attr"`
	Form *struct {
		Type   string `xml:"type,attr"`
		Fields []struct {
			Var    string   `xml:"var,attr"`
			Type   string   `xml:"type,attr"`
			Values []string `xml:"value"`
		} `xml:"field"`
	} `xml:"jabber:x:data x"`
}

func badRequest(text string) error { return router.NewError(stanza.Modify, stanza.BadRequest, text) }

// appServer reads the jid attribute.
func appServer(s string) (jid.JID, error) {
	if s == "" {
		return jid.JID{}, badRequest("jid is required")
	}
	j, err := jid.Parse(s)
	if err != nil {
		return jid.JID{}, router.NewError(stanza.Modify, stanza.JIDMalformed, "")
	}
	return j, nil
}

func own(iq *router.Stanza) error {
	if !iq.ToOwnAccount() {
		return router.NewError(stanza.Cancel, stanza.Forbidden, "")
	}
	return nil
}

// enable stores a registration: the app server, the node and the
// publish-options form (rebuilt from its fields).
func (m *Module) enable(ctx context.Context, iq *router.Stanza) ([]byte, error) {
	if err := own(iq); err != nil {
		return nil, err
	}
	var p enablePayload
	if err := iq.DecodePayload(&p); err != nil {
		return nil, badRequest("enable does not parse")
	}
	app, err := appServer(p.JID)
	if err != nil {
		return nil, err
	}
	reg := pushreg.Registration{Owner: iq.To.Localpart(), JID: app.String(), Node: p.Node}
	if f := p.Form; f != nil {
		if f.Type != "submit" {
			return nil, badRequest("the publish-options form must be of type submit")
		}
		b := wire.NewBuilder(nil)
		b.StartNS("x", NSData, "type", "submit")
		for _, fd := range f.Fields {
			b.Start("field", "var", fd.Var, "type", fd.Type)
			for _, v := range fd.Values {
				b.Element("value", "", v)
			}
			b.End()
		}
		reg.Options = b.End().Bytes()
	}
	sctx, cancel := m.r.StoreContext(ctx)
	defer cancel()
	if err := m.cfg.Store.AddPush(sctx, reg); err != nil {
		return nil, err
	}
	m.accounts.Delete(reg.Owner)
	return nil, nil
}

// disable removes the registration of the app server with the node, or
// with every node when none is given.
func (m *Module) disable(ctx context.Context, iq *router.Stanza) ([]byte, error) {
	if err := own(iq); err != nil {
		return nil, err
	}
	var p enablePayload
	if err := iq.DecodePayload(&p); err != nil {
		return nil, badRequest("disable does not parse")
	}
	app, err := appServer(p.JID)
	if err != nil {
		return nil, err
	}
	owner := iq.To.Localpart()
	sctx, cancel := m.r.StoreContext(ctx)
	defer cancel()
	if err := m.cfg.Store.RemovePush(sctx, owner, app.String(), p.Node); err != nil {
		return nil, err
	}
	m.accounts.Delete(owner)
	return nil, nil
}

// accountsMax bounds the accounts cached; past it the cache starts afresh.
const accountsMax = 100_000

// account returns owner's registrations, from the cache or the store.
func (m *Module) account(ctx context.Context, owner string) (*account, error) {
	if v, ok := m.accounts.Load(owner); ok {
		return v.(*account), nil
	}
	sctx, cancel := m.r.StoreContext(ctx)
	defer cancel()
	regs, err := m.cfg.Store.PushRegistrations(sctx, owner)
	if err != nil {
		return nil, err
	}
	acc := &account{}
	for _, r := range regs {
		acc.regs = append(acc.regs, &registration{Registration: r, includeBody: includesBody(r.Options)})
	}
	if m.accountsN.Add(1) > accountsMax {
		m.accounts.Clear()
		m.accountsN.Store(1)
	}
	v, _ := m.accounts.LoadOrStore(owner, acc)
	return v.(*account), nil
}

// includesBody reads include-body from a publish-options form.
func includesBody(form []byte) bool {
	if form == nil {
		return false
	}
	var x struct {
		Fields []struct {
			Var   string `xml:"var,attr"`
			Value string `xml:"value"`
		} `xml:"field"`
	}
	if xml.Unmarshal(form, &x) != nil {
		return false
	}
	for _, f := range x.Fields {
		if f.Var == "include-body" {
			return f.Value == "true" || f.Value == "1"
		}
	}
	return false
}

// active reports whether the account has a session that is available and
// not hibernating: then there is nothing to push.
func (m *Module) active(bare jid.JID) bool {
	for _, s := range m.r.Sessions(bare) {
		if s.Available() && !hibernating.Get(s).Load() {
			return true
		}
	}
	return false
}

// message announces a message for an account without an active session
// to its app servers.
func (m *Module) message(ctx context.Context, ev *router.Event) error {
	st := ev.Stanza
	if st.Type == "error" || st.Type == "groupchat" || st.Type == "headline" ||
		!bytes.Contains(st.Inner, []byte("<body")) && !bytes.Contains(st.Inner, []byte("encrypted")) {
		return nil
	}
	bare := st.To.Bare()
	if m.active(bare) {
		return nil
	}
	acc, err := m.account(ctx, bare.Localpart())
	if err != nil {
		m.cfg.Log.Error("push registrations", "owner", bare.Localpart(), "err", err)
		return nil
	}
	acc.mu.Lock()
	if len(acc.regs) == 0 {
		acc.mu.Unlock()
		return nil
	}
	acc.count++
	count := acc.count
	regs := append([]*registration(nil), acc.regs...)
	acc.mu.Unlock()
	body := ""
	for _, r := range regs {
		if r.includeBody {
			var msg struct {
				Body string `xml:"body"`
			}
			if st.Decode(&msg) == nil {
				body = msg.Body
			}
			break
		}
	}
	for _, r := range regs {
		m.publish(ctx, bare, r, count, st.FromString(), body)
	}
	return nil
}

// pendingMax bounds the publishes waiting for an answer; past it the
// oldest are forgotten (an app server that never answers is not dropped,
// only one that answers with errors).
const pendingMax = 10_000

// publish sends the notification of XEP-0357 §7 to one app server.
func (m *Module) publish(ctx context.Context, bare jid.JID, r *registration, count int, sender, body string) {
	to, err := jid.Parse(r.JID)
	if err != nil {
		return
	}
	b := wire.NewBuilder(nil)
	b.StartNS("pubsub", NSPubsub)
	b.Start("publish", "node", r.Node).Start("item").StartNS("notification", NS)
	b.StartNS("x", NSData, "type", "submit")
	b.Start("field", "var", "FORM_TYPE", "type", "hidden").Element("value", "", NSSummary).End()
	b.Start("field", "var", "message-count").Element("value", "", strconv.Itoa(count)).End()
	b.Start("field", "var", "last-message-sender").Element("value", "", sender).End()
	if r.includeBody && body != "" {
		b.Start("field", "var", "last-message-body").Element("value", "", body).End()
	}
	b.End().End().End().End() // x, notification, item, publish
	if r.Options != nil {
		b.Start("publish-options").Raw(r.Options).End()
	}
	seq := m.seq.Add(1)
	id := "push-" + strconv.FormatUint(seq, 36)
	m.mu.Lock()
	if len(m.pending) >= pendingMax {
		n := 0
		for k := range m.pending {
			delete(m.pending, k)
			if n++; n >= pendingMax/2 {
				break
			}
		}
	}
	m.pending[id] = sent{owner: bare.Localpart(), reg: r, seq: seq}
	m.mu.Unlock()
	m.r.Route(ctx, &router.Stanza{Kind: router.KindIQ, Type: "set", ID: id, To: to, From: bare,
		Payload: xml.Name{Space: NSPubsub, Local: "pubsub"}, Inner: b.Bytes()})
}

// answer takes an app server's answer to a publish: a result clears the
// registration's errors, an error counts, and MaxErrors in a row drop it.
func (m *Module) answer(ctx context.Context, ev *router.Event) error {
	st := ev.Stanza
	if st.Type != "result" && st.Type != "error" || st.To.Resourcepart() != "" {
		return nil
	}
	m.mu.Lock()
	p, ok := m.pending[st.ID]
	if ok && p.reg.JID == st.From.String() {
		delete(m.pending, st.ID)
	} else {
		ok = false
	}
	m.mu.Unlock()
	if !ok {
		return nil
	}
	v, cached := m.accounts.Load(p.owner)
	if !cached {
		return router.ErrHandled
	}
	acc := v.(*account)
	acc.mu.Lock()
	if st.Type == "result" {
		if p.seq > p.reg.lastError {
			p.reg.errors = 0
		}
		acc.mu.Unlock()
		return router.ErrHandled
	}
	p.reg.errors++
	p.reg.lastError = max(p.reg.lastError, p.seq)
	drop := p.reg.errors >= m.cfg.MaxErrors
	if drop {
		acc.regs = slicesDelete(acc.regs, p.reg)
	}
	acc.mu.Unlock()
	if drop {
		sctx, cancel := m.r.StoreContext(ctx)
		defer cancel()
		if err := m.cfg.Store.RemovePush(sctx, p.owner, p.reg.JID, p.reg.Node); err != nil {
			m.cfg.Log.Error("dropping a failing push registration", "owner", p.owner, "err", err)
		}
		m.cfg.Log.Info("push registration dropped after errors", "owner", p.owner, "app_server", p.reg.JID)
	}
	return router.ErrHandled
}

func slicesDelete(regs []*registration, r *registration) []*registration {
	out := regs[:0:0]
	for _, x := range regs {
		if x != r {
			out = append(out, x)
		}
	}
	return out
}
