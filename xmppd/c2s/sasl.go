package c2s

import (
	"context"
	"errors"
	"time"

	"dialtone/auth"
	"dialtone/xmppd/stream"
	"dialtone/xmppd/wire"
)

// exchange is one authentication in progress: a SASL mechanism of package
// auth (SCRAM, PLAIN) or a FAST token.
type exchange interface {
	Next(ctx context.Context, response []byte) (challenge []byte, done bool, err error)
	Number() auth.Number
	Generation() int64
}

// profile frames an exchange on the wire: RFC 6120's SASL or XEP-0388's.
type profile struct {
	ns        string
	challenge func(data []byte) []byte
	failure   func(cond, text string) []byte
}

var sasl1 = profile{
	ns:        stream.NSSASL,
	challenge: func(data []byte) []byte { return stream.SASLElement("challenge", data) },
	failure:   stream.SASLFailure,
}

// authenticate runs one SASL exchange; false means it failed (the failure
// was sent and the client may try again).
func (c *conn) authenticate(el wire.Element) (bool, error) {
	mech, _ := wire.Attr(el.Start, "", "mechanism")
	resp, err := stream.SASLData(el.Inner, true)
	if err != nil {
		return false, c.saslFailure(sasl1, errEncoding)
	}
	data, ok, err := c.runSASL(sasl1, mech, nil, resp)
	if !ok || err != nil {
		return ok, err
	}
	return true, c.st.Write(stream.SASLElement("success", data))
}

// runSASL runs the exchange of mech (or ex, when not nil) from the
// client's first message resp to its end, in profile p; on success the
// connection is authenticated and data is the additional data for the
// success the caller sends.
func (c *conn) runSASL(p profile, mech string, ex exchange, resp []byte) (data []byte, ok bool, err error) {
	s := c.svc
	ctx, cancel := context.WithDeadline(context.Background(), c.wr.Deadline())
	defer cancel()
	ipKey := auth.Number("ip:" + c.ip)
	if s.cfg.IPLockout.Locked(ipKey) > 0 {
		s.m.LoginFailures.Inc()
		return nil, false, c.saslFailure(p, &auth.Failure{Condition: "temporary-auth-failure", Text: "too many failed logins from your address; try again later"})
	}
	if ex == nil {
		sx, err := s.cfg.SASL.Begin(mech, c.authConn())
		if err != nil {
			return nil, false, c.saslFailure(p, err)
		}
		ex = sx
	}
	for {
		sctx, scancel := s.cfg.Router.StoreContext(ctx)
		challenge, done, err := ex.Next(sctx, resp)
		scancel()
		if err != nil {
			var f *auth.Failure
			if errors.As(err, &f) && f.Condition == "not-authorized" {
				s.cfg.IPLockout.Fail(ipKey)
			}
			return nil, false, c.saslFailure(p, err)
		}
		if done {
			return challenge, true, c.authenticated(ctx, ex)
		}
		if err := c.st.Write(p.challenge(challenge)); err != nil {
			return nil, false, err
		}
		next, err := c.wr.ReadElement()
		if err != nil {
			return nil, false, err
		}
		if next.Name.Space != p.ns {
			return nil, false, stream.NewError("policy-violation", "expected a SASL response")
		}
		switch next.Start.Name.Local {
		case "response":
			if resp, err = stream.SASLData(next.Inner, false); err != nil {
				return nil, false, c.saslFailure(p, &auth.Failure{Condition: "incorrect-encoding"})
			}
		case "abort":
			return nil, false, c.saslFailure(p, &auth.Failure{Condition: "aborted"})
		default:
			return nil, false, stream.NewError("policy-violation", "expected a SASL response")
		}
	}
}

// authenticated makes the connection the account's after ex succeeded.
func (c *conn) authenticated(ctx context.Context, ex exchange) error {
	s := c.svc
	c.number = ex.Number()
	c.generation = ex.Generation()
	c.authed = true
	if err := c.newSessionOf(c.number); err != nil {
		return err
	}
	s.m.Logins.Inc()
	if now := time.Now(); !recentlyStamped(ex, now) {
		sctx, scancel := s.cfg.Router.StoreContext(ctx)
		if err := s.cfg.Accounts.RecordLogin(sctx, c.number, now); err != nil {
			s.cfg.Log.Error("recording login failed", "number", c.number, "err", err)
		}
		scancel()
	}
	s.cfg.Log.Info("login", "jid", string(c.number)+"@"+s.cfg.Domain.String(), "ip", c.ip)
	return nil
}

// loginStampEvery is how stale an active account's last-login stamp may
// get: a login within it of the stamp it read writes none. A write per
// login was a tenth of a login's CPU and a commit each login waited for,
// and what reads the stamp (recycling a number after months without a
// login, xmppctl account show) needs minutes, not milliseconds. The
// first login of an account, which makes it active, is always written.
const loginStampEvery = 10 * time.Minute

// recentlyStamped reports whether ex authenticated an account that was
// already active with a last login less than loginStampEvery before now.
func recentlyStamped(ex exchange, now time.Time) bool {
	l, ok := ex.(interface{ LastLogin() time.Time })
	if !ok {
		return false
	}
	t := l.LastLogin()
	return !t.IsZero() && !t.After(now) && now.Sub(t) < loginStampEvery
}

// saslFailure sends the failure of err in profile p; it returns an error
// only when the connection cannot go on.
func (c *conn) saslFailure(p profile, err error) error {
	cond, text := "not-authorized", ""
	var f *auth.Failure
	if errors.As(err, &f) {
		cond, text = f.Condition, f.Text
	} else {
		c.svc.cfg.Log.Error("SASL failed", "ip", c.ip, "err", err)
		cond = "temporary-auth-failure"
	}
	if cond != "aborted" && cond != "invalid-mechanism" {
		c.svc.m.LoginFailures.Inc()
	}
	// Only a failure that judged credentials counts toward SASLAttempts:
	// one of a mechanism or channel binding the client cannot do (slixmpp
	// asks for SCRAM-*-PLUS with tls-unique, which TLS 1.3 lacks, then
	// falls back) tried no password.
	c.guessed = cond == "not-authorized" || cond == "temporary-auth-failure"
	return c.st.Write(p.failure(cond, text))
}

// Failures of requests that never reached a mechanism.
var (
	errMalformed = &auth.Failure{Condition: auth.ConditionMalformedRequest, Text: "malformed authentication request"}
	errEncoding  = &auth.Failure{Condition: "incorrect-encoding"}
)
