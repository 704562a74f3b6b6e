package sms

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
	"sync"
	"time"

	"dialtone/auth"
)

// NoticeWindow is the open notice window of one receiver: its notice went
// out at Opened; the messages stored for it since are counted and, when
// the window closes, folded into one notice (SPEC.md "SMS texts").
type NoticeWindow struct {
	To     string    // the receiver's canonical number
	Opened time.Time // when the notice that opened it was queued
	Closes time.Time // Opened + XMPPD_NOTICE_WINDOW
	Count  int       // messages stored since, for the folded notice
	// Sender is the one sender of the counted messages; empty when Count
	// is 0 or several people wrote.
	Sender string
}

// Receiver is what the notices need to know of a receiver's account.
type Receiver struct {
	Exists  bool // false: a latent number, which a message makes unclaimed
	Claimed bool // it has logged in once (active)
	// FirstNoticed: the first notice to this unclaimed account went out
	// (with a password, or saying how to log in); later ones are plain.
	FirstNoticed bool
	// PasswordDelivered: a password of the account was given to someone
	// (texted, printed by xmppctl), so no notice replaces it (SPEC.md
	// "SMS texts").
	PasswordDelivered bool
}

// NoticeStore is what Notices needs from the store. Implemented by package
// storage.
type NoticeStore interface {
	// NoticeReceiver returns the receiver's account as the notices see it
	// (Exists false, no error, for a number without an account).
	NoticeReceiver(ctx context.Context, n auth.Number) (Receiver, error)
	// NoticeWindow returns the open window of to, or auth.ErrNotFound.
	NoticeWindow(ctx context.Context, to string) (NoticeWindow, error)
	// DueNoticeWindows returns up to limit windows that close at or before
	// now, the earliest first (through an index on the closing time).
	DueNoticeWindows(ctx context.Context, now time.Time, limit int) ([]NoticeWindow, error)
	// CloseNoticeWindow removes w (if it is still the window opened at
	// w.Opened) and, in the same transaction, queues p when not nil. It
	// reports whether w was still there.
	CloseNoticeWindow(ctx context.Context, w NoticeWindow, p *Pending) (bool, error)
	// DropNoticeWindow removes the window of to, if any.
	DropNoticeWindow(ctx context.Context, to string) error
	// QueuedTimes returns when SMS of purpose were queued for to since
	// the given time, oldest first.
	QueuedTimes(ctx context.Context, to, purpose string, since time.Time) ([]time.Time, error)
	// NoticedNumbers returns the distinct never-claimed numbers that
	// sender caused notices to after since.
	NoticedNumbers(ctx context.Context, sender string, since time.Time) ([]string, error)
	// PruneNoticedNumbers forgets what the new-numbers caps (of notices,
	// NoticePlan.CountFor, and of stored messages, NoticePlan.NewNumber)
	// counted before before.
	PruneNoticedNumbers(ctx context.Context, before time.Time) error
}

// ErrStale is returned by a NoticeWrite when the receiver's account
// changed since the plan was made (made by someone else, or claimed);
// Notices then plans again.
var ErrStale = errors.New("sms: receiver changed since the notice was planned")

// Why a stored message got no notice, for its sender (Result.Refused).
var (
	// ErrNewNumbersCap: the sender (or its domain) reached
	// XMPPD_NOTICE_NEW_NUMBERS_PER_SENDER_DAY.
	ErrNewNumbersCap = errors.New("too many new numbers notified for this sender today")
	// ErrNoSMS: the receiver's number is a fixed line and the gateway
	// makes no calls.
	ErrNoSMS = errors.New("the number is a landline and cannot receive SMS")
)

// ErrTooManyNewNumbers is returned by a NoticeWrite (and so by Notify)
// that did not store the message: its sender (or domain) left messages for
// XMPPD_NEW_NUMBERS_PER_SENDER_DAY other never-logged-in numbers already.
var ErrTooManyNewNumbers = errors.New("sms: too many never-used numbers written to by this sender today")

// NewNumberCap is XMPPD_NEW_NUMBERS_PER_SENDER_DAY as the store applies
// it to one message for a number that has never logged in.
type NewNumberCap struct {
	// Sender is whom the cap counts (Incoming.Counter).
	Sender string
	// Limit is how many other such numbers Sender may have left messages
	// for since Since; the store counts and refuses in one transaction.
	Limit int
	Since time.Time
}

// NoticePlan is what storing one message for an offline receiver writes
// besides the message, in the message's transaction (a crash leaves both
// or neither).
type NoticePlan struct {
	To auth.Number
	// At is now: the unclaimed account's touched time moves to it (the
	// TTL counts from the last message), and what is queued is stamped so.
	At time.Time
	// Create: the receiver has no account; make it unclaimed with
	// Credentials. The store returns ErrStale if it exists by now.
	Create bool
	// Credentials, without Create, replace those of the unclaimed account
	// (its first notice carries the new password) and drop any pending
	// one; the store returns ErrStale when the account is no longer
	// unclaimed.
	Credentials *auth.Credentials
	// FirstNotice marks the account as having had its first notice.
	FirstNotice bool
	// PasswordDelivered marks the account's password as delivered: this
	// notice carries it.
	PasswordDelivered bool
	// SMS are the notices to queue (a folded notice of an overdue window,
	// then this message's).
	SMS []Pending
	// Window, when set, becomes the receiver's window (opened or counted).
	Window *NoticeWindow
	// DropWindow removes the receiver's window (an overdue one closed here).
	DropWindow bool
	// CountFor, when set, is the sender key (XMPPD_NOTICE_NEW_NUMBERS_PER_SENDER_DAY)
	// whose never-claimed numbers the receiver now counts among.
	CountFor string
	// NewNumber, when set, is the cap on the numbers that have never
	// logged in that the sender leaves messages for: the store counts the
	// receiver, or refuses with ErrTooManyNewNumbers and writes nothing.
	NewNumber *NewNumberCap
}

// NoticeWrite stores the message together with plan in one transaction.
type NoticeWrite func(ctx context.Context, plan NoticePlan) error

// Incoming is a message about to be stored for an offline receiver.
type Incoming struct {
	To auth.Number
	// Sender is who the notice names: a local sender's canonical number,
	// else the sender's bare address.
	Sender string
	// Counter is whom the new-numbers caps count: a local sender's
	// number, or the registrable domain of the remote sender.
	Counter string
	// Body is the message text, for the preview.
	Body string
}

// NoticeResult tells what storing a message did about notices.
type NoticeResult struct {
	Notified bool // a notice was queued for this message
	Counted  bool // the message was counted in the open window
	// Refused, when not nil, is ErrNewNumbersCap or ErrNoSMS: the sender
	// should learn that no notice went out.
	Refused error
}

// Notices texts receivers that messages wait for them (SPEC.md "SMS
// texts"): the first message to an offline receiver at once, further ones
// folded when the window closes, within the caps. Set the fields before
// first use; a zero limit or window means none. Run closes the windows.
type Notices struct {
	Domain string
	Store  NoticeStore
	// Parser tells fixed lines (no SMS; a call when Voice); nil: none are.
	Parser *auth.NumberParser
	// Voice: the gateway can call (a VoiceGateway), so landlines get the
	// notice read out.
	Voice bool
	// Key seals a notice that carries a password.
	Key []byte
	// Preview quotes the message in the notice (XMPPD_NOTICE_PREVIEW).
	Preview bool
	// Window: further messages within it fold into one notice
	// (XMPPD_NOTICE_WINDOW); 0: every message is notified.
	Window time.Duration
	// PerDay caps notices to one number in 24 hours (XMPPD_NOTICES_PER_DAY).
	PerDay int
	// NewNumbersPerSenderDay caps the distinct never-claimed numbers one
	// sender causes notices to in 24 hours.
	NewNumbersPerSenderDay int
	// StoredNewNumbersPerSenderDay caps the distinct never-logged-in
	// numbers one sender leaves messages for in 24 hours: beyond it
	// messages are not stored (XMPPD_NEW_NUMBERS_PER_SENDER_DAY; 0: no
	// limit).
	StoredNewNumbersPerSenderDay int
	// PasswordLength of the passwords; 0: DefaultPasswordLength.
	PasswordLength int
	// Minter makes the passwords of new accounts off the sender's
	// goroutine (see auth.Minter), with PasswordLength; nil: they are
	// made on the caller's goroutine (tests, tools).
	Minter *auth.Minter
	// IsOnline reports whether the receiver has a session: then it gets no
	// notice. Nil: never.
	IsOnline func(n auth.Number) bool
	// Wake nudges the SMS worker after a notice was queued; nil: nothing.
	Wake func()
	// Opened, when set, is told that a window opened (committed), besides
	// this node's scheduler (Run): in a cluster the scheduler runs on one
	// node, which another must wake (Poke there), or it would sleep up to a
	// minute past the window's end. Nil: nothing.
	Opened func()
	// Links adds a one-tap login link to a notice that carries a password
	// (not to a call: a landline cannot open it); nil: none.
	Links *LoginLinks
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Log: nil means slog.Default().
	Log *slog.Logger
	// StoreTimeout bounds what CameOnline and the closing of one window
	// do in the store (XMPPD_STORE_TIMEOUT): the first runs for a
	// client's presence, and both hold the receiver's lock meanwhile.
	// Notify runs under its caller's context. 0: no bound.
	StoreTimeout time.Duration

	once sync.Once
	seed maphash.Seed
	// stripes are locks (channels of one slot, so that waiting for one
	// ends with the waiter's context) over hashed keys.
	stripes [64]chan struct{}
	wake    chan struct{}
}

func (n *Notices) init() {
	n.once.Do(func() {
		n.seed = maphash.MakeSeed()
		n.wake = make(chan struct{}, 1)
		for i := range n.stripes {
			n.stripes[i] = make(chan struct{}, 1)
		}
	})
}

// storeContext bounds what one step does in the store by StoreTimeout.
func (n *Notices) storeContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if n.StoreTimeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, n.StoreTimeout)
}

func (n *Notices) now() time.Time {
	if n.Now != nil {
		return n.Now()
	}
	return time.Now()
}

func (n *Notices) log() *slog.Logger {
	if n.Log != nil {
		return n.Log
	}
	return slog.Default()
}

// lock takes the stripes of the given keys, in stripe order, and returns
// the unlock. Decisions about one receiver, and about one sender's cap,
// are made and written under it. It gives up when ctx ends: whoever holds
// a stripe may be waiting for a store that hangs.
func (n *Notices) lock(ctx context.Context, keys ...string) (func(), error) {
	idx := make([]int, 0, len(keys))
	for _, k := range keys {
		if k == "" {
			continue
		}
		i := int(maphash.String(n.seed, k) % uint64(len(n.stripes)))
		if !slices.Contains(idx, i) {
			idx = append(idx, i)
		}
	}
	slices.Sort(idx)
	unlock := func(held []int) {
		for _, i := range slices.Backward(held) {
			<-n.stripes[i]
		}
	}
	for k, i := range idx {
		select {
		case n.stripes[i] <- struct{}{}:
		case <-ctx.Done():
			unlock(idx[:k])
			return nil, fmt.Errorf("sms: waiting for another notice to the same receiver or from the same sender: %w", ctx.Err())
		}
	}
	return func() { unlock(idx) }, nil
}

// Notify decides what storing in means for notices and has write store
// the message with that plan in one transaction. The message is stored
// whatever the result (unless write fails, ErrTooManyNewNumbers
// included): a refused notice is reported in NoticeResult.Refused, not as
// an error.
func (n *Notices) Notify(ctx context.Context, in Incoming, write NoticeWrite) (NoticeResult, error) {
	return n.notify(ctx, in.To, in.Counter, func(now time.Time) (NoticePlan, NoticeResult, error) {
		return n.own().plan(ctx, in, now)
	}, write)
}

// notify makes a plan for a receiver, under the locks of the receiver and
// of the sender's counter, and has write store it (again when the
// receiver changed meanwhile).
func (n *Notices) notify(ctx context.Context, to auth.Number, counter string,
	plan func(now time.Time) (NoticePlan, NoticeResult, error), write NoticeWrite) (NoticeResult, error) {
	n.init()
	unlock, err := n.lock(ctx, "to "+string(to), "from "+counter)
	if err != nil {
		return NoticeResult{}, err
	}
	defer unlock()
	res, wake, poke, err := n.planAndWrite(ctx, plan, write)
	n.kick(wake, poke)
	return res, err
}

// planAndWrite makes a plan and has write store it (again when the
// receiver changed meanwhile), under the locks notify or a Hold took. It
// reports whether the plan queued an SMS (wake) or opened a window (poke).
func (n *Notices) planAndWrite(ctx context.Context,
	plan func(now time.Time) (NoticePlan, NoticeResult, error), write NoticeWrite) (res NoticeResult, wake, poke bool, err error) {
	for attempt := 0; ; attempt++ {
		p, res, err := plan(n.now())
		if err != nil {
			return NoticeResult{}, false, false, err
		}
		err = write(ctx, p)
		if errors.Is(err, ErrStale) && attempt < 3 {
			continue
		}
		if err != nil {
			return NoticeResult{}, false, false, err
		}
		return res, len(p.SMS) > 0, p.Window != nil && p.Window.Count == 0, nil
	}
}

// kick wakes the SMS worker after an SMS was queued, and the window
// scheduler after a window opened (it may sleep past its closing); both
// only once what they read is committed.
func (n *Notices) kick(wake, poke bool) {
	if wake && n.Wake != nil {
		n.Wake()
	}
	if poke {
		n.poke()
		if n.Opened != nil {
			n.Opened()
		}
	}
}

// Poke wakes Run, on this node, to look at the windows again: one opened
// on another node of a cluster (Opened there). It never blocks.
func (n *Notices) Poke() {
	n.init()
	n.poke()
}

// storeView is the Notices reading and writing through Store and Links:
// their own (own), or a group's transaction (Hold.Notify). Its fields
// shadow those of the Notices, so the planning methods read the view's.
type storeView struct {
	*Notices
	Store NoticeStore
	Links *LoginLinks
}

func (n *Notices) own() storeView { return storeView{n, n.Store, n.Links} }

// Invite is an invitation to a group about to be kept for a number
// (SPEC.md "Group chats").
type Invite struct {
	To auth.Number
	// Sender and Counter are as in Incoming.
	Sender, Counter string
	// Group is the group's name.
	Group string
}

// ErrNoticesPerDay: the receiver had XMPPD_NOTICES_PER_DAY notices in the
// last 24 hours (an invitation tells its sender so; a message's notice is
// only folded or skipped).
var ErrNoticesPerDay = errors.New("the number had today's notices already")

// NotifyInvite is Notify for an invitation: the number's account is made
// as for a message, and the invitation SMS goes out under the notice caps
// (a refused one in NoticeResult.Refused). Invitations open no notice
// window.
func (n *Notices) NotifyInvite(ctx context.Context, in Invite, write NoticeWrite) (NoticeResult, error) {
	return n.notify(ctx, in.To, in.Counter, func(now time.Time) (NoticePlan, NoticeResult, error) {
		return n.own().planInvite(ctx, in, now)
	}, write)
}

// planInvite makes the plan for an invitation at now.
func (n storeView) planInvite(ctx context.Context, in Invite, now time.Time) (NoticePlan, NoticeResult, error) {
	p := NoticePlan{To: in.To, At: now}
	var res NoticeResult
	rc, password, err := n.receiver(ctx, in.To, &p)
	if err != nil || n.IsOnline != nil && n.IsOnline(in.To) {
		return p, res, err
	}
	voice, refused, err := n.refusal(ctx, rc, in.To, in.Counter, now)
	if err != nil || refused != nil {
		res.Refused = refused
		return p, res, err
	}
	sent, err := n.sentToday(ctx, in.To, now)
	if err != nil {
		return p, res, err
	}
	if n.PerDay > 0 && sent >= n.PerDay {
		res.Refused = ErrNoticesPerDay
		return p, res, nil
	}
	pend, err := n.noticeSMS(ctx, rc, &p, password, voice, now, Notice{Domain: n.Domain, Sender: in.Sender, Group: in.Group})
	if err != nil {
		return p, res, err
	}
	p.SMS = append(p.SMS, pend)
	res.Notified = true
	if !rc.Claimed {
		p.CountFor = in.Counter
	}
	return p, res, nil
}

// receiver reads the receiver's account; a number without one is made
// unclaimed by the plan, with a new password (returned).
func (n storeView) receiver(ctx context.Context, to auth.Number, p *NoticePlan) (Receiver, string, error) {
	rc, err := n.Store.NoticeReceiver(ctx, to)
	if err != nil {
		return rc, "", fmt.Errorf("sms: notice to %s: %w", to, err)
	}
	password := ""
	if !rc.Exists {
		// The message makes the account unclaimed on the spot, with a
		// password that its first notice carries (if one goes out).
		p.Create = true
		if password, p.Credentials, err = n.newPassword(ctx); err != nil {
			return rc, "", err
		}
	}
	return rc, password, nil
}

// refusal says whether the notice to to is a call (a landline), or why
// none goes out: a landline and no voice gateway (ErrNoSMS), or the
// sender's cap of new numbers (ErrNewNumbersCap).
func (n storeView) refusal(ctx context.Context, rc Receiver, to auth.Number, counter string, now time.Time) (voice bool, refused, err error) {
	voice = n.Parser != nil && n.Parser.IsFixedLine(to)
	if voice && !n.Voice {
		return voice, ErrNoSMS, nil
	}
	refused, err = n.newNumbersCap(ctx, rc, to, counter, now)
	return voice, refused, err
}

// newNumbersCap returns (as its first result) ErrNewNumbersCap when
// counter caused notices to XMPPD_NOTICE_NEW_NUMBERS_PER_SENDER_DAY other
// never-claimed numbers.
func (n storeView) newNumbersCap(ctx context.Context, rc Receiver, to auth.Number, counter string, now time.Time) (refused, err error) {
	if rc.Claimed || n.NewNumbersPerSenderDay <= 0 || counter == "" {
		return nil, nil
	}
	nums, err := n.Store.NoticedNumbers(ctx, counter, now.Add(-day))
	if err != nil {
		return nil, fmt.Errorf("sms: numbers noticed for %s: %w", counter, err)
	}
	if !slices.Contains(nums, string(to)) && len(nums) >= n.NewNumbersPerSenderDay {
		return ErrNewNumbersCap, nil
	}
	return nil, nil
}

// noticeSMS is the notice base says, with what the receiver's account
// calls for: a new password in the first notice to an unclaimed account
// (password, or one made here), how to log in when its password was
// handed out already, nothing for the others; p records it.
func (n storeView) noticeSMS(ctx context.Context, rc Receiver, p *NoticePlan, password string, voice bool, now time.Time, base Notice) (Pending, error) {
	loginHint := false
	switch {
	case rc.Claimed || rc.FirstNoticed:
		password = "" // plain
	case rc.PasswordDelivered:
		// Someone has the password already (texted, printed by xmppctl):
		// replacing it would lock them out.
		password, loginHint = "", true
		p.FirstNotice = true
	default:
		if password == "" {
			var err error
			if password, p.Credentials, err = n.newPassword(ctx); err != nil {
				return Pending{}, err
			}
		}
		p.FirstNotice, p.PasswordDelivered = true, true
	}
	link := ""
	if password != "" && !voice {
		var err error
		if link, err = n.Links.New(ctx, p.To, *p.Credentials, now); err != nil {
			return Pending{}, err
		}
	}
	base.Password, base.Link, base.LoginHint = password, link, loginHint
	var key []byte
	if password != "" {
		key = n.Key
	}
	pend, err := NewPending(SMS{To: string(p.To), Text: NoticeText(base), Purpose: PurposeNotice}, now, key)
	if err != nil {
		return Pending{}, err
	}
	pend.Voice = voice
	return pend, nil
}

// plan makes the plan for in at now.
func (n storeView) plan(ctx context.Context, in Incoming, now time.Time) (NoticePlan, NoticeResult, error) {
	p := NoticePlan{To: in.To, At: now}
	var res NoticeResult
	rc, password, err := n.receiver(ctx, in.To, &p)
	if err != nil {
		return p, res, err
	}
	if !rc.Claimed && n.StoredNewNumbersPerSenderDay > 0 && in.Counter != "" {
		p.NewNumber = &NewNumberCap{Sender: in.Counter, Limit: n.StoredNewNumbersPerSenderDay, Since: now.Add(-day)}
	}
	if n.IsOnline != nil && n.IsOnline(in.To) {
		return p, res, nil // never a notice to a receiver who is online
	}
	sentToday := -1 // notices in the last 24 hours, read when needed
	w, err := n.Store.NoticeWindow(ctx, string(in.To))
	open := err == nil
	if err != nil && !errors.Is(err, auth.ErrNotFound) {
		return p, res, fmt.Errorf("sms: notice window of %s: %w", in.To, err)
	}
	if open && !now.Before(w.Closes) {
		// Overdue (the scheduler has not come to it): close it here, as
		// the scheduler would, before this message opens a new one.
		if sentToday, err = n.sentToday(ctx, in.To, now); err != nil {
			return p, res, err
		}
		if f := n.folded(w, now, sentToday); f != nil {
			p.SMS = append(p.SMS, *f)
			sentToday++
		}
		p.DropWindow, open = true, false
	}
	voice, refused, err := n.refusal(ctx, rc, in.To, in.Counter, now)
	if err != nil || refused != nil {
		res.Refused = refused
		return p, res, err
	}
	if open {
		switch {
		case w.Count == 0:
			w.Sender = in.Sender
		case w.Sender != in.Sender:
			w.Sender = "" // several people wrote
		}
		w.Count++
		p.Window, p.DropWindow, res.Counted = &w, false, true
		if !rc.Claimed {
			p.CountFor = in.Counter
		}
		return p, res, nil
	}
	if sentToday < 0 {
		if sentToday, err = n.sentToday(ctx, in.To, now); err != nil {
			return p, res, err
		}
	}
	if n.PerDay > 0 && sentToday >= n.PerDay {
		return p, res, nil // capped: no notice, and no window to fold into
	}
	pend, err := n.noticeSMS(ctx, rc, &p, password, voice, now, Notice{Domain: n.Domain, Sender: in.Sender, Body: in.Body, Preview: n.Preview})
	if err != nil {
		return p, res, err
	}
	p.SMS = append(p.SMS, pend)
	res.Notified = true
	if n.Window > 0 {
		p.Window = &NoticeWindow{To: string(in.To), Opened: now, Closes: now.Add(n.Window)}
		p.DropWindow = false
	}
	if !rc.Claimed {
		p.CountFor = in.Counter
	}
	return p, res, nil
}

// newPassword makes a password and its credentials: the Minter's, or
// made here without one.
func (n *Notices) newPassword(ctx context.Context) (string, *auth.Credentials, error) {
	if n.Minter != nil {
		m, err := n.Minter.Mint(ctx)
		if err != nil {
			return "", nil, fmt.Errorf("sms: password for a new account: %w", err)
		}
		return m.Password, &m.Credentials, nil
	}
	length := n.PasswordLength
	if length == 0 {
		length = DefaultPasswordLength
	}
	password, err := auth.GeneratePassword(length)
	if err != nil {
		return "", nil, err
	}
	c, err := auth.NewCredentials(password)
	if err != nil {
		return "", nil, err
	}
	return password, &c, nil
}

// sentToday counts the notices queued for to in the 24 hours before now.
func (n storeView) sentToday(ctx context.Context, to auth.Number, now time.Time) (int, error) {
	if n.PerDay <= 0 {
		return 0, nil
	}
	times, err := n.Store.QueuedTimes(ctx, string(to), PurposeNotice, now.Add(-day))
	if err != nil {
		return 0, fmt.Errorf("sms: notices sent to %s: %w", to, err)
	}
	return len(times), nil
}

// folded is the notice that closing w sends, or nil: none were counted,
// the number takes neither SMS nor call, or the daily cap is reached.
func (n *Notices) folded(w NoticeWindow, now time.Time, sentToday int) *Pending {
	if w.Count == 0 {
		return nil
	}
	voice := n.Parser != nil && n.Parser.IsFixedLine(auth.Number(w.To))
	if voice && !n.Voice || n.PerDay > 0 && sentToday >= n.PerDay {
		return nil
	}
	text := NoticeText(Notice{Domain: n.Domain, Sender: w.Sender, Folded: true, Count: w.Count})
	p, _ := NewPending(SMS{To: w.To, Text: text, Purpose: PurposeNotice}, now, nil) // unsealed: cannot fail
	p.Voice = voice
	return &p
}

// CameOnline is called when the receiver comes online: the messages are
// being delivered, so its window closes without a folded notice.
func (n *Notices) CameOnline(ctx context.Context, to auth.Number) {
	n.init()
	ctx, cancel := n.storeContext(ctx)
	defer cancel()
	unlock, err := n.lock(ctx, "to "+string(to))
	if err == nil {
		defer unlock()
		// Most logins find no window: a read then, not a write, which
		// would take the database's write lock for every login.
		_, err = n.Store.NoticeWindow(ctx, string(to))
		switch {
		case errors.Is(err, auth.ErrNotFound):
			err = nil
		case err == nil:
			err = n.Store.DropNoticeWindow(ctx, string(to))
		}
	}
	if err != nil {
		n.log().LogAttrs(ctx, slog.LevelError, "notice window", slog.String("to", string(to)), slog.String("error", err.Error()))
	}
}

// CloseDue closes the windows due at now, queueing their folded notices,
// and returns when the next one closes (zero: none open).
func (n *Notices) CloseDue(ctx context.Context) (next time.Time, err error) {
	n.init()
	for {
		now := n.now()
		due, err := n.Store.DueNoticeWindows(ctx, now, closeBatch)
		if err != nil {
			return time.Time{}, fmt.Errorf("sms: due notice windows: %w", err)
		}
		for _, w := range due {
			if err := n.close(ctx, w, now); err != nil {
				return time.Time{}, err
			}
		}
		if len(due) < closeBatch {
			break
		}
	}
	first, err := n.Store.DueNoticeWindows(ctx, farFuture, 1)
	if err != nil || len(first) == 0 {
		return time.Time{}, err
	}
	return first[0].Closes, nil
}

// farFuture is "any time" for the next window.
var farFuture = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	// closeBatch bounds the windows taken from the store at once.
	closeBatch = 100
	// maxNoticeWait is the longest the scheduler sleeps without looking.
	maxNoticeWait = time.Minute
)

// close closes w if it is still open and due: a folded notice unless none
// were counted or the receiver is online.
func (n *Notices) close(ctx context.Context, w NoticeWindow, now time.Time) error {
	ctx, cancel := n.storeContext(ctx)
	defer cancel()
	unlock, err := n.lock(ctx, "to "+w.To)
	if err != nil {
		return err
	}
	defer unlock()
	cur, err := n.Store.NoticeWindow(ctx, w.To)
	if errors.Is(err, auth.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sms: notice window of %s: %w", w.To, err)
	}
	if !cur.Opened.Equal(w.Opened) || now.Before(cur.Closes) {
		return nil
	}
	var p *Pending
	if cur.Count > 0 && (n.IsOnline == nil || !n.IsOnline(auth.Number(cur.To))) {
		sent, err := n.own().sentToday(ctx, auth.Number(cur.To), now)
		if err != nil {
			return err
		}
		p = n.folded(cur, now, sent)
	}
	if _, err := n.Store.CloseNoticeWindow(ctx, cur, p); err != nil {
		return fmt.Errorf("sms: close notice window of %s: %w", cur.To, err)
	}
	if p != nil && n.Wake != nil {
		n.Wake()
	}
	return nil
}

// poke wakes Run, e.g. after a window opened. It never blocks.
func (n *Notices) poke() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// Run closes the windows as they come due, and prunes what the new-numbers
// cap no longer needs, until ctx is done.
func (n *Notices) Run(ctx context.Context) {
	n.init()
	timer := time.NewTimer(0)
	defer timer.Stop()
	var pruned time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-n.wake:
		}
		wait := maxNoticeWait
		next, err := n.CloseDue(ctx)
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			n.log().LogAttrs(ctx, slog.LevelError, "notice windows", slog.String("error", err.Error()))
			wait = FirstRetry
		case !next.IsZero():
			wait = min(max(next.Sub(n.now()), 0), maxNoticeWait)
		}
		if now := n.now(); now.Sub(pruned) >= pruneEvery {
			if err := n.Store.PruneNoticedNumbers(ctx, now.Add(-day)); err == nil {
				pruned = now
			} else if ctx.Err() == nil {
				n.log().LogAttrs(ctx, slog.LevelError, "notice numbers prune", slog.String("error", err.Error()))
			}
		}
		timer.Reset(wait)
	}
}
