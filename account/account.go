// Package account holds the business rules of an account's life that
// span the store, the XMPP sessions and the SMS notices: a password that
// changes closes the other sessions, a recycled number starts afresh, a
// released account leaves nothing cached, and a message to an offline
// receiver is kept with its notice (offline.go). It is a leaf of the XMPP
// layer: what it needs of the server and of the modules it asks through
// the small interfaces below, which internal/daemon satisfies.
package account

import (
	"context"
	"io"
	"log/slog"
	"time"

	"mellium.im/xmpp/jid"

	"dialtone/auth"
)

// ConditionReset is the stream error condition that closes the sessions
// of an account whose password changed, or that was recycled or released
// (SPEC.md "xmppctl").
const ConditionReset = "not-authorized"

// SessionCloser closes an account's XMPP sessions (by the canonical
// number, the localpart of its JID) with a stream error condition, and
// reports how many it closed. The XMPP server is one.
type SessionCloser interface {
	Kick(ctx context.Context, number, condition string) (int, error)
	// KickExcept spares the session keep (a full JID).
	KickExcept(ctx context.Context, number string, keep jid.JID, condition string) (int, error)
}

// RosterResetter cancels an account's subscriptions, telling its
// contacts, and empties its roster; the roster module is one.
type RosterResetter interface {
	Reset(ctx context.Context, owner jid.JID) error
}

// BlockCache drops what the server keeps in memory of an account's block
// list; the blocking module is one.
type BlockCache interface {
	Forget(bare jid.JID)
}

// GroupCache drops what the server keeps in memory of an account's
// group chat affiliations (its rows go with the account in the store);
// the group chat module is one.
type GroupCache interface {
	ForgetMember(bare jid.JID)
}

// Store is what Lifecycle needs of the store.
type Store interface {
	// SetCredentials replaces the account's credentials (making the
	// account if needed) and drops any pending password.
	SetCredentials(ctx context.Context, n auth.Number, c auth.Credentials) (created bool, err error)
	// PromotePending makes pending the account's current credentials if
	// it is still its pending password (promoted true), and returns the
	// credentials' generation either way.
	PromotePending(ctx context.Context, n auth.Number, pending auth.Credentials) (gen int64, promoted bool, err error)
	// WipeAccountData removes everything stored for the account but the
	// account itself.
	WipeAccountData(ctx context.Context, n auth.Number) error
}

// Lifecycle applies the rules of password changes, recycled numbers and
// released accounts (SPEC.md "Accounts"). Set the fields before first
// use; Roster, Blocks and Groups may stay nil (then there is nothing to
// reset).
type Lifecycle struct {
	Domain   string
	Store    Store
	Sessions SessionCloser
	Roster   RosterResetter
	Blocks   BlockCache
	// Groups, when set, forgets a recycled or released account's group
	// memberships, so that the next owner of the number does not get them.
	Groups GroupCache
	// Files, when set, removes the files an account uploaded (XEP-0363)
	// when it is recycled or released.
	Files OwnerFiles
	// StoreTimeout bounds each store call made for a client's request
	// (XMPPD_STORE_TIMEOUT); 0: only the caller's context does.
	StoreTimeout time.Duration
	// Log: nil discards.
	Log *slog.Logger
}

// OwnerFiles removes what an account keeps outside the store (its
// uploaded files); upload.Service satisfies it.
type OwnerFiles interface {
	RemoveOwner(owner string) error
}

// removeFiles removes n's files; a failure is logged (the sweeper removes
// files whose rows are gone).
func (l *Lifecycle) removeFiles(n auth.Number) {
	if l.Files == nil {
		return
	}
	if err := l.Files.RemoveOwner(string(n)); err != nil {
		l.log().Error("removing the uploaded files of an account", "number", string(n), "err", err)
	}
}

func (l *Lifecycle) log() *slog.Logger {
	if l.Log != nil {
		return l.Log
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// storeContext bounds one store call by timeout (none when it is 0).
func storeContext(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, timeout)
}

// Recycle starts the account of n afresh for a new owner of the number:
// its contacts' subscriptions are cancelled, then all it stored removed
// (group memberships and kept invitations too), then what the server
// cached of its block list and memberships dropped.
func (l *Lifecycle) Recycle(ctx context.Context, n auth.Number) error {
	j, err := auth.CanonicalJID(n, l.Domain)
	if err != nil {
		return err
	}
	if l.Roster != nil {
		if err := l.Roster.Reset(ctx, j); err != nil {
			return err
		}
	}
	if err := l.Store.WipeAccountData(ctx, n); err != nil {
		return err
	}
	l.removeFiles(n)
	l.forgetCaches(j)
	return nil
}

// forgetCaches drops what the modules keep in memory of the account j.
func (l *Lifecycle) forgetCaches(j jid.JID) {
	if l.Blocks != nil {
		l.Blocks.Forget(j)
	}
	if l.Groups != nil {
		l.Groups.ForgetMember(j)
	}
}

// CloseSessions closes the sessions of n after its password changed
// (sms.Passwords.OnIssued): they logged in with the old one. A failure is
// logged, since the password has changed by then whatever happens.
func (l *Lifecycle) CloseSessions(ctx context.Context, n auth.Number) {
	if _, err := l.Sessions.Kick(ctx, string(n), ConditionReset); err != nil {
		l.log().Error("closing sessions after a new password", "number", string(n), "err", err)
	}
}

// ChangePassword is the in-band password change (XEP-0077) from the
// session named: the new credentials, then the account's other sessions
// are closed.
func (l *Lifecycle) ChangePassword(ctx context.Context, n auth.Number, session jid.JID, password string) error {
	creds, err := auth.NewCredentials(password)
	if err != nil {
		return err
	}
	if err := l.setCredentials(ctx, n, creds); err != nil {
		return err
	}
	if _, err := l.Sessions.KickExcept(ctx, string(n), session, ConditionReset); err != nil {
		l.log().Error("closing other sessions after a password change", "number", string(n), "err", err)
	}
	l.log().Info("password changed in-band", "number", string(n))
	return nil
}

// SetPassword is the password change on the web page: the new
// credentials, then every session of the account is closed (none of them
// made the change).
func (l *Lifecycle) SetPassword(ctx context.Context, n auth.Number, c auth.Credentials) error {
	if err := l.setCredentials(ctx, n, c); err != nil {
		return err
	}
	l.CloseSessions(ctx, n)
	l.log().Info("password changed on the web page", "number", string(n))
	return nil
}

func (l *Lifecycle) setCredentials(ctx context.Context, n auth.Number, c auth.Credentials) error {
	sctx, cancel := storeContext(ctx, l.StoreTimeout)
	defer cancel()
	_, err := l.Store.SetCredentials(sctx, n, c)
	return err
}

// PromotePending makes n's requested password current at its first login
// (SPEC.md "HTTP": until then the older one works too) and closes the
// sessions that logged in with an older one. The login that used it binds
// its session only after this, so it stays. It is an auth.PromoteFunc.
func (l *Lifecycle) PromotePending(ctx context.Context, n auth.Number, pending auth.Credentials) (int64, error) {
	sctx, cancel := storeContext(ctx, l.StoreTimeout)
	gen, promoted, err := l.Store.PromotePending(sctx, n, pending)
	cancel()
	if err != nil {
		return 0, err
	}
	if promoted {
		l.CloseSessions(ctx, n)
		l.log().Info("a requested password logged in: the older one no longer works", "number", string(n))
	}
	return gen, nil
}

// Forget closes the sessions of a released account (there are some only
// in a race with the release) and drops what the server cached for it
// (auth.Sweeper.OnRelease).
func (l *Lifecycle) Forget(ctx context.Context, n auth.Number) {
	l.CloseSessions(ctx, n)
	l.removeFiles(n)
	if j, err := auth.CanonicalJID(n, l.Domain); err == nil {
		l.forgetCaches(j)
	}
}
