package c2s

import (
	"context"
	"errors"
	"time"

	"dialtone/auth"
	"dialtone/xmppd/stream"
	"dialtone/xmppd/wire"
)

// authenticate runs one SASL exchange; false means it failed (the failure
// was sent and the client may try again).
func (c *conn) authenticate(el wire.Element) (bool, error) {
	s := c.svc
	mech, _ := wire.Attr(el.Start, "", "mechanism")
	ctx, cancel := context.WithDeadline(context.Background(), c.wr.Deadline())
	defer cancel()
	ipKey := auth.Number("ip:" + c.ip)
	if s.cfg.IPLockout.Locked(ipKey) > 0 {
		s.m.LoginFailures.Inc()
		return false, c.saslFailure(&auth.Failure{Condition: "temporary-auth-failure", Text: "too many failed logins from your address; try again later"})
	}
	ex, err := s.cfg.SASL.Start(mech, c.secure)
	if err != nil {
		return false, c.saslFailure(err)
	}
	resp, err := stream.SASLData(el.Inner, true)
	if err != nil {
		return false, c.saslFailure(&auth.Failure{Condition: "incorrect-encoding"})
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
			return false, c.saslFailure(err)
		}
		if done {
			c.number = ex.Number()
			c.generation = ex.Generation()
			c.authed = true
			if err := c.newSessionOf(c.number); err != nil {
				return false, err
			}
			s.m.Logins.Inc()
			sctx, scancel := s.cfg.Router.StoreContext(ctx)
			if err := s.cfg.Accounts.RecordLogin(sctx, c.number, time.Now()); err != nil {
				s.cfg.Log.Error("recording login failed", "number", c.number, "err", err)
			}
			scancel()
			s.cfg.Log.Info("login", "jid", string(c.number)+"@"+s.cfg.Domain.String(), "ip", c.ip)
			return true, c.st.Write(stream.SASLElement("success", challenge))
		}
		if err := c.st.Write(stream.SASLElement("challenge", challenge)); err != nil {
			return false, err
		}
		next, err := c.wr.ReadElement()
		if err != nil {
			return false, err
		}
		if next.Name.Space != stream.NSSASL {
			return false, stream.NewError("policy-violation", "expected a SASL response")
		}
		switch next.Start.Name.Local {
		case "response":
			if resp, err = stream.SASLData(next.Inner, false); err != nil {
				return false, c.saslFailure(&auth.Failure{Condition: "incorrect-encoding"})
			}
		case "abort":
			return false, c.saslFailure(&auth.Failure{Condition: "aborted"})
		default:
			return false, stream.NewError("policy-violation", "expected a SASL response")
		}
	}
}

// saslFailure sends <failure/> for err; it returns an error only when the
// connection cannot go on.
func (c *conn) saslFailure(err error) error {
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
	return c.st.Write(stream.SASLFailure(cond, text))
}
