package account

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/net/publicsuffix"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"dialtone/auth"
	"dialtone/offline"
	"dialtone/sms"
)

// Notifier decides what storing a message means for the receiver's
// notices and has write store the message with that plan in one
// transaction; *sms.Notices is one.
type Notifier interface {
	Notify(ctx context.Context, in sms.Incoming, write sms.NoticeWrite) (sms.NoticeResult, error)
}

// OfflineStore stores a message for an offline receiver together with
// what its notice plan writes, in one transaction (offline.ErrFull at
// either limit, sms.ErrTooManyNewNumbers when the plan's cap refuses it).
type OfflineStore interface {
	StoreOffline(ctx context.Context, m offline.Message, limits offline.Limits, plan sms.NoticePlan) (id int64, err error)
	// StoreNotice writes only the plan: the message is kept elsewhere.
	StoreNotice(ctx context.Context, owner string, plan sms.NoticePlan) error
}

// Offline keeps messages for receivers without an available session,
// each with its notice, and tells the sender what it should know: that
// no SMS went out, or that the message was not stored at all (SPEC.md
// "Offline messages", "SMS texts"). Set the fields before first use.
type Offline struct {
	Domain  string
	Store   OfflineStore
	Notices Notifier
	// Bytes caps the bytes of one account's stored messages
	// (XMPPD_OFFLINE_BYTES); <= 0: no cap.
	Bytes int
	// StoreTimeout bounds keeping one message, notice included
	// (XMPPD_STORE_TIMEOUT): a database that hangs costs the sender an
	// error after that long, not its session. 0: only the caller's
	// context does.
	StoreTimeout time.Duration
	// HasSession reports whether a bare JID has a session on this
	// server; nil: none has.
	HasSession func(bare jid.JID) bool
}

// Message is a message about to be stored for an offline receiver.
type Message struct {
	offline.Message
	From jid.JID // the sender's full JID
	Body string  // its text, for the notice's preview
}

// Kept is what keeping a message did.
type Kept struct {
	ID int64 // the stored message's; 0 when it was not stored
	// Warning, when not nil, is a stanza.Error for the sender: the
	// message was stored but no SMS told the receiver, or (ID 0) it was
	// not stored because the sender wrote to too many new numbers.
	Warning error
}

// Keep stores m for its receiver (offline.ErrFull when the receiver has
// limit messages, <= 0: no limit, or Bytes of them) together with its
// notice, all under StoreTimeout.
func (o *Offline) Keep(ctx context.Context, m Message, limit int) (Kept, error) {
	limits := offline.Limits{Messages: limit, Bytes: o.Bytes}
	var id int64
	kept, err := o.notify(ctx, m, func(ctx context.Context, plan sms.NoticePlan) (err error) {
		id, err = o.Store.StoreOffline(ctx, m.Message, limits, plan)
		return err
	})
	kept.ID = id // 0 when it was not stored
	return kept, err
}

// Notice runs the notice rules for m as Keep does, without storing it:
// the receiver's client reads it from elsewhere (the message archive),
// but the receiver is offline and must be told as for a stored message.
func (o *Offline) Notice(ctx context.Context, m Message) (Kept, error) {
	return o.notify(ctx, m, func(ctx context.Context, plan sms.NoticePlan) error {
		return o.Store.StoreNotice(ctx, m.Owner, plan)
	})
}

// notify runs the notice rules for m with write, under StoreTimeout.
func (o *Offline) notify(ctx context.Context, m Message, write sms.NoticeWrite) (Kept, error) {
	ctx, cancel := storeContext(ctx, o.StoreTimeout)
	defer cancel()
	in, s := o.incoming(m)
	res, err := o.Notices.Notify(ctx, in, write)
	return o.outcome(m, s, res, err)
}

// incoming is m as the notices see it, and its sender.
func (o *Offline) incoming(m Message) (sms.Incoming, Sender) {
	s := SenderOf(m.From, o.Domain)
	return sms.Incoming{To: auth.Number(m.Owner), Sender: s.Name, Counter: s.Counter, Body: m.Body}, s
}

// outcome is what the sender of m learns from what its notice did.
func (o *Offline) outcome(m Message, s Sender, res sms.NoticeResult, err error) (Kept, error) {
	var kept Kept
	if errors.Is(err, sms.ErrTooManyNewNumbers) {
		// Not stored, so the sender gets this back instead.
		return Kept{Warning: policyViolation("The message was not stored for " + m.Owner + ": " + s.Who +
			" reached today's limit of new numbers written to (numbers that have not logged in here yet).")}, nil
	}
	if err != nil {
		return Kept{}, fmt.Errorf("account: keeping a message for %s: %w", m.Owner, err)
	}
	switch {
	case errors.Is(res.Refused, sms.ErrNewNumbersCap):
		kept.Warning = policyViolation("The message is stored for " + m.Owner + ", but no SMS was sent to tell them: " + s.Who +
			" reached today's limit of new numbers notified. It will be delivered when they log in.")
	case errors.Is(res.Refused, sms.ErrNoSMS):
		kept.Warning = stanza.Error{Type: stanza.Cancel, Condition: stanza.RecipientUnavailable, Text: map[string]string{
			"": "The message is stored for " + m.Owner + ", but no SMS was sent to tell them: the number is a landline, which cannot receive SMS. It will be delivered when they log in."}}
	}
	return kept, nil
}

func policyViolation(text string) stanza.Error {
	return stanza.Error{Type: stanza.Cancel, Condition: stanza.PolicyViolation, Text: map[string]string{"": text}}
}

// IsOnline reports whether the account of n has a session: then it gets
// no notice (sms.Notices.IsOnline).
func (o *Offline) IsOnline(n auth.Number) bool {
	if o.HasSession == nil {
		return false
	}
	j, err := auth.CanonicalJID(n, o.Domain)
	return err == nil && o.HasSession(j)
}

// Sender is how the notices and the caps on senders see a message's
// sender.
type Sender struct {
	// Name is whom the notice names: a local sender's number, else the
	// sender's bare JID (it has no number, and its domain shows that it
	// is not one of this server's numbers).
	Name string
	// Counter is whom the caps on senders count: a local sender's
	// number, else the registrable domain of the sender's server.
	Counter string
	// Who names the counted sender to the sender, in the warnings.
	Who string
}

// SenderOf is the Sender of a message from the full JID from, on a
// server whose domain is domain.
func SenderOf(from jid.JID, domain string) Sender {
	if from.Domainpart() == domain && from.Localpart() != "" {
		return Sender{Name: from.Localpart(), Counter: from.Localpart(), Who: "you"}
	}
	// A remote sender: the caps count its whole registrable domain.
	d := RegistrableDomain(from.Domainpart())
	return Sender{Name: from.Bare().String(), Counter: d, Who: "senders from " + d}
}

// RegistrableDomain is whom the caps on senders count for a sender on
// another server: its registrable domain by the public suffix list, so
// that the subdomains of one domain (a wildcard DNS entry makes any
// number of them) share the caps. A domain without one (an IP literal, a
// single label, a public suffix itself) counts as itself.
func RegistrableDomain(domain string) string {
	d := strings.TrimSuffix(strings.ToLower(domain), ".")
	if _, err := netip.ParseAddr(strings.Trim(d, "[]")); err == nil {
		return d
	}
	if r, err := publicsuffix.EffectiveTLDPlusOne(d); err == nil {
		return r
	}
	return d
}
