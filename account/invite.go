package account

import (
	"context"
	"errors"
	"fmt"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"dialtone/auth"
	"dialtone/groups"
	"dialtone/sms"
)

// InvitationStore keeps an invitation for a number together with what its
// notice plan writes, in one transaction.
type InvitationStore interface {
	StoreInvitation(ctx context.Context, inv groups.Invitation, plan sms.NoticePlan) error
}

// InviteNotifier plans the SMS of an invitation; *sms.Notices is one.
type InviteNotifier interface {
	NotifyInvite(ctx context.Context, in sms.Invite, write sms.NoticeWrite) (sms.NoticeResult, error)
}

// Invitations keeps group invitations for numbers without an available
// session, the sibling of Offline for messages: the number's account is
// made as for a message, the invitation kept until it logs in, and the
// SMS sent under the notice caps (SPEC.md "Group chats"). The group chat
// module (mod/muc.Inviter) calls it. Set the fields before first use.
type Invitations struct {
	Domain  string
	Store   InvitationStore
	Notices InviteNotifier
	// StoreTimeout bounds keeping one invitation (XMPPD_STORE_TIMEOUT);
	// 0: only the caller's context does.
	StoreTimeout time.Duration
}

// Invite keeps inv for its invitee and texts them that the inviter added
// them to the group named group. warning, when not nil, is a stanza error
// for the inviter: the invitation is kept, but no SMS was sent.
func (i *Invitations) Invite(ctx context.Context, inv groups.Invitation, group string) (warning error, err error) {
	ctx, cancel := storeContext(ctx, i.StoreTimeout)
	defer cancel()
	from, err := jid.Parse(inv.Inviter)
	if err != nil {
		return nil, fmt.Errorf("account: inviter %q: %w", inv.Inviter, err)
	}
	s := SenderOf(from, i.Domain)
	in := sms.Invite{To: auth.Number(inv.Invitee), Sender: s.Name, Counter: s.Counter, Group: group}
	res, err := i.Notices.NotifyInvite(ctx, in, func(ctx context.Context, plan sms.NoticePlan) error {
		return i.Store.StoreInvitation(ctx, inv, plan)
	})
	if err != nil {
		return nil, fmt.Errorf("account: keeping an invitation for %s: %w", inv.Invitee, err)
	}
	kept := inv.Invitee + " is a member of the group and gets the invitation when they log in, but no SMS was sent to tell them: "
	switch {
	case errors.Is(res.Refused, sms.ErrNewNumbersCap):
		return policyViolation(kept + s.Who + " reached today's limit of new numbers notified."), nil
	case errors.Is(res.Refused, sms.ErrNoticesPerDay):
		return policyViolation(kept + "the number reached today's limit of SMS notices."), nil
	case errors.Is(res.Refused, sms.ErrNoSMS):
		return stanza.Error{Type: stanza.Cancel, Condition: stanza.RecipientUnavailable, Text: map[string]string{
			"": kept + "the number is a landline, which cannot receive SMS."}}, nil
	}
	return nil, nil
}
