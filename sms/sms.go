// Package sms sends text messages through a Gateway (log, webhook, Twilio;
// NewGateway picks one from the configuration). Messages wait in a durable
// Outbox, bodies that carry a password sealed (Seal), until a Sender has
// handed them to the gateway, retrying with backoff. NoticeText and
// Segments hold the texts and the SMS length rules; Passwords the password
// requests and their limits.
package sms

import (
	"context"
	"errors"
	"log/slog"
)

// Purposes of an SMS (SPEC.md "SMS gateway webhook").
const (
	PurposePassword = "password" // a password asked for (API, home page, xmppctl)
	PurposeNotice   = "notice"   // a message is waiting
	PurposeTest     = "test"     // xmppctl sms test
	PurposePIN      = "pin"      // a PIN for the app API (SPEC.md "App API")
)

// SMS is one text message to one number.
type SMS struct {
	// ID is unique per SMS and stays the same on every retry, so that a
	// receiver can deduplicate.
	ID string
	// To is the receiver's canonical number, e.g. "+821012345678".
	To string
	// Text is the whole message as the receiver reads it.
	Text string
	// Purpose is PurposePassword, PurposeNotice, PurposeTest or PurposePIN.
	Purpose string
}

// Gateway hands an SMS to whatever delivers it. A nil error means the
// gateway accepted it; an error means it may be retried later.
type Gateway interface {
	Send(ctx context.Context, m SMS) error
}

// LogGateway "sends" an SMS by writing it, text included, to the log at
// info level. It is the only place where a password may be printed
// (SPEC.md "Accounts"): it exists so that a server can run without an SMS
// provider, and the operator reads the passwords from the log.
type LogGateway struct {
	// Log receives one record per SMS; nil means slog.Default().
	Log *slog.Logger
}

// Send logs m and returns nil, or the context's error when ctx is done.
func (g LogGateway) Send(ctx context.Context, m SMS) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if m.To == "" {
		return errors.New("sms: no receiver")
	}
	log := g.Log
	if log == nil {
		log = slog.Default()
	}
	log.LogAttrs(ctx, slog.LevelInfo, "sms",
		slog.String("id", m.ID),
		slog.String("to", m.To),
		slog.String("purpose", m.Purpose),
		slog.String("text", m.Text),
	)
	return nil
}

// PasswordText is the text of a password SMS (SPEC.md "SMS texts").
func PasswordText(domain, password string) string {
	return "Your " + domain + " password is " + password + ". Log in with your phone number."
}

// PasswordLinkText is the text of a password SMS that carries the one-tap
// login link (SPEC.md "Web client and one-tap login"): nothing follows the
// link, so that no phone takes a full stop for part of it. An empty link
// gives PasswordText.
func PasswordLinkText(domain, password, link string) string {
	if link == "" {
		return PasswordText(domain, password)
	}
	return "Your " + domain + " password is " + password + ". Log in with your phone number, or tap " + link
}

// TestText is the text of the SMS that xmppctl sms test sends.
func TestText(domain string) string {
	return "This is a test message from " + domain + "."
}
