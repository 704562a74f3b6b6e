package sms

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Retry schedule of the outbox (SPEC.md "SMS gateway webhook"): the first
// retry within 5 seconds, the wait doubling up to 60 seconds, for ever.
const (
	FirstRetry = 5 * time.Second
	MaxRetry   = 60 * time.Second
)

// LogRetention is how long the SMS log (what QueuedTimes reads) is kept:
// the longest per-number cap counts 24 hours.
const LogRetention = 48 * time.Hour

const (
	// defaultBatch bounds the messages one pass takes from the store.
	defaultBatch = 20
	// idleWait is the longest the worker sleeps without looking at the
	// store, which also picks up what another process queued.
	idleWait = 30 * time.Second
	// pruneEvery is how often the SMS log is pruned.
	pruneEvery = time.Hour
)

// DefaultBackoff is the wait before retry number attempt (1 for the first
// retry): 5 s, 10 s, 20 s, 40 s, then 60 s.
func DefaultBackoff(attempt int) time.Duration {
	d := FirstRetry
	for i := 1; i < attempt && d < MaxRetry; i++ {
		d *= 2
	}
	return min(d, MaxRetry)
}

// OutboxPruner is an Outbox that can drop SMS log entries queued before a
// time; the Sender prunes what is older than LogRetention when it can.
type OutboxPruner interface {
	PruneSMSLog(ctx context.Context, before time.Time) error
}

// OutboxCounter is an Outbox that can count its messages; the Sender
// reports the count as sms_outbox_pending when it can.
type OutboxCounter interface {
	CountSMS(ctx context.Context) (int, error)
}

// NewPending makes the outbox entry for m, due at now. With a key (pass
// the secret key when the text carries a password) the body is sealed;
// with nil it is kept as it is. An empty m.ID gets a new one.
func NewPending(m SMS, now time.Time, key []byte) (Pending, error) {
	if m.ID == "" {
		m.ID = rand.Text()
	}
	p := Pending{ID: m.ID, To: m.To, Purpose: m.Purpose, Body: []byte(m.Text), Created: now, NextAttempt: now}
	if key != nil {
		sealed, err := Seal(key, p.Body)
		if err != nil {
			return Pending{}, err
		}
		p.Body, p.Sealed = sealed, true
	}
	return p, nil
}

// Sender is the outbox worker: it hands due messages to the gateway,
// deletes what the gateway accepted, and reschedules what failed with
// backoff, for ever, so a message leaves the store only once it was
// accepted. Every attempt sends the same id. Set the fields before Run;
// a Sender must not be copied once used.
type Sender struct {
	// Outbox is the durable queue.
	Outbox Outbox
	// Node names this sender in the claims it takes when Outbox is a
	// Claimer (the node of a cluster, XMPPD_NODE_NAME).
	Node string
	// Gateway delivers; a voice message needs a Gateway that is also a
	// VoiceGateway, else it is dropped with an error.
	Gateway Gateway
	// Key opens sealed bodies (the secret key).
	Key []byte
	// Log receives one record per failure; nil means slog.Default().
	// Texts are never logged.
	Log *slog.Logger
	// Metrics, when set, counts sent and failed messages.
	Metrics *Metrics
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Backoff is the wait before retry number attempt (from 1), more
	// than 0; nil means DefaultBackoff. Tests shorten it.
	Backoff func(attempt int) time.Duration
	// Batch bounds the messages taken from the store at once; 0 means 20.
	Batch int

	wakeOnce sync.Once
	wake     chan struct{}
	pass     sync.Mutex // one pass at a time: Run's or Flush's
	pruned   time.Time  // when the log was last pruned; under pass
}

// Wake makes Run look at the outbox now, e.g. right after a message was
// queued. It never blocks.
func (s *Sender) Wake() {
	select {
	case s.wakeCh() <- struct{}{}:
	default:
	}
}

func (s *Sender) wakeCh() chan struct{} {
	s.wakeOnce.Do(func() { s.wake = make(chan struct{}, 1) })
	return s.wake
}

// Run sends until ctx is done, then returns nil. It sleeps until the next
// message is due, a Wake, or idleWait at most. Store errors are logged and
// retried; Run only returns early for a Sender that cannot work (no Outbox
// or Gateway).
func (s *Sender) Run(ctx context.Context) error {
	if s.Outbox == nil || s.Gateway == nil {
		return errors.New("sms: sender needs an outbox and a gateway")
	}
	wake := s.wakeCh()
	if c, ok := s.Outbox.(Claimer); ok && s.Node != "" {
		if err := c.ReleaseClaims(ctx, s.Node, s.now()); err != nil {
			s.log().LogAttrs(ctx, slog.LevelError, "sms outbox: releasing this node's claims", slog.String("error", err.Error()))
		}
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-wake:
		}
		wait, err := s.runPass(ctx)
		if err != nil && ctx.Err() == nil {
			s.log().LogAttrs(ctx, slog.LevelError, "sms outbox", slog.String("error", err.Error()))
			wait = FirstRetry
		}
		timer.Reset(wait)
	}
}

// runPass sends what is due and returns how long to sleep before the next
// pass.
func (s *Sender) runPass(ctx context.Context) (time.Duration, error) {
	s.pass.Lock()
	defer s.pass.Unlock()
	now := s.now()
	full, err := s.sendDue(ctx, now, nil)
	s.maintain(ctx, now)
	if err != nil {
		return 0, err
	}
	if full {
		return 0, nil // more are due
	}
	// The store orders by due time, so the first message due within the
	// idle wait tells when to look again.
	next, err := s.Outbox.DueSMS(ctx, now.Add(idleWait), 1)
	if err != nil {
		return 0, err
	}
	if len(next) == 0 {
		return idleWait, nil
	}
	return max(next[0].NextAttempt.Sub(s.now()), 0), nil
}

// Flush makes one pass over the messages due now, sending each once, and
// returns an error when the store failed or a message was not accepted
// (it stays queued and is retried later). For xmppctl when no server runs.
func (s *Sender) Flush(ctx context.Context) error {
	if s.Outbox == nil || s.Gateway == nil {
		return errors.New("sms: sender needs an outbox and a gateway")
	}
	s.pass.Lock()
	defer s.pass.Unlock()
	var failed []error
	seen := map[string]bool{}
	now := s.now()
	for {
		fresh := 0
		full, err := s.sendDue(ctx, now, func(p Pending, err error) {
			if seen[p.ID] {
				return
			}
			seen[p.ID] = true
			fresh++
			if err != nil {
				failed = append(failed, fmt.Errorf("%s to %s: %w", p.Purpose, p.To, err))
			}
		})
		if err != nil {
			return err
		}
		// Failed messages are due again only after their backoff; a batch
		// of nothing new means a Backoff of 0 handed them straight back.
		if !full || fresh == 0 {
			break
		}
	}
	s.maintain(ctx, now)
	if len(failed) > 0 {
		return fmt.Errorf("sms: %d of %d not accepted, queued for retry: %w", len(failed), len(seen), errors.Join(failed...))
	}
	return nil
}

// sendDue sends one batch of the messages due at now and tells whether the
// batch was full. done, when set, learns each message's outcome.
func (s *Sender) sendDue(ctx context.Context, now time.Time, done func(Pending, error)) (full bool, err error) {
	batch := s.Batch
	if batch <= 0 {
		batch = defaultBatch
	}
	var due []Pending
	claimer, claims := s.Outbox.(Claimer)
	if claims {
		due, err = claimer.ClaimDueSMS(ctx, s.Node, now, now.Add(ClaimLease), batch)
	} else {
		due, err = s.Outbox.DueSMS(ctx, now, batch)
	}
	if err != nil {
		return false, fmt.Errorf("sms: outbox: %w", err)
	}
	for i, p := range due {
		if ctx.Err() != nil {
			if claims {
				s.unclaim(ctx, due[i:])
			}
			return false, ctx.Err()
		}
		err := s.send(ctx, p)
		if done != nil {
			done(p, err)
		}
	}
	return len(due) == batch, nil
}

// send makes one attempt at p and records its outcome in the store.
func (s *Sender) send(ctx context.Context, p Pending) error {
	log := s.log()
	attrs := []slog.Attr{slog.String("id", p.ID), slog.String("to", p.To), slog.String("purpose", p.Purpose)}
	if p.Voice {
		attrs = append(attrs, slog.Bool("voice", true))
	}
	err := s.attempt(ctx, p)
	if errors.Is(err, errCannotSend) {
		// No retry can help; keeping it would block nothing but grow the
		// outbox for ever.
		s.Metrics.failed(p.Purpose)
		log.LogAttrs(ctx, slog.LevelError, "sms dropped", append(attrs, slog.String("error", err.Error()))...)
		if derr := s.Outbox.DeleteSMS(ctx, p.ID); derr != nil {
			log.LogAttrs(ctx, slog.LevelError, "sms outbox", append(attrs, slog.String("error", derr.Error()))...)
		}
		return err
	}
	if err == nil {
		s.Metrics.sent(p.Purpose)
		if derr := s.Outbox.DeleteSMS(ctx, p.ID); derr != nil {
			// It will be sent again, with the same id, for the receiver
			// to deduplicate.
			log.LogAttrs(ctx, slog.LevelError, "sms sent but still queued", append(attrs, slog.String("error", derr.Error()))...)
		}
		return nil
	}
	if ctx.Err() != nil {
		// Shutting down: the attempt was cut short, not failed; the
		// message stays due for the next start (or another node).
		if _, ok := s.Outbox.(Claimer); ok {
			s.unclaim(ctx, []Pending{p})
		}
		return err
	}
	s.Metrics.failed(p.Purpose)
	attempts := p.Attempts + 1
	backoff := DefaultBackoff
	if s.Backoff != nil {
		backoff = s.Backoff
	}
	next := s.now().Add(backoff(attempts))
	log.LogAttrs(ctx, slog.LevelWarn, "sms not accepted", append(attrs,
		slog.Int("attempt", attempts), slog.Time("retry_at", next), slog.String("error", err.Error()))...)
	if rerr := s.Outbox.RetrySMS(ctx, p.ID, attempts, next, err.Error()); rerr != nil {
		log.LogAttrs(ctx, slog.LevelError, "sms outbox", append(attrs, slog.String("error", rerr.Error()))...)
	}
	return err
}

// unclaim hands claimed messages that were not attempted back at once,
// rather than when their lease ends: the sender is stopping and another
// node may send them now. It runs after ctx ended, so with its own short
// deadline.
func (s *Sender) unclaim(ctx context.Context, ps []Pending) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	now := s.now()
	for _, p := range ps {
		if err := s.Outbox.RetrySMS(ctx, p.ID, p.Attempts, now, p.LastError); err != nil {
			s.log().LogAttrs(ctx, slog.LevelError, "sms outbox", slog.String("id", p.ID), slog.String("error", err.Error()))
			return
		}
	}
}

// errCannotSend marks a message that no retry will send.
var errCannotSend = errors.New("cannot be sent")

// attempt opens p and hands it to the gateway, with SendTimeout.
func (s *Sender) attempt(ctx context.Context, p Pending) error {
	text := p.Body
	if p.Sealed {
		var err error
		if text, err = Open(s.Key, p.Body); err != nil {
			// Kept and retried: the operator may restore the right key.
			return err
		}
	}
	m := SMS{ID: p.ID, To: p.To, Text: string(text), Purpose: p.Purpose}
	ctx, cancel := context.WithTimeout(ctx, SendTimeout)
	defer cancel()
	if p.Voice {
		vg, ok := s.Gateway.(VoiceGateway)
		if !ok {
			return fmt.Errorf("sms: a call %w: the gateway %T makes no calls", errCannotSend, s.Gateway)
		}
		return vg.Call(ctx, m)
	}
	return s.Gateway.Send(ctx, m)
}

// maintain updates the pending gauge and prunes the SMS log hourly.
func (s *Sender) maintain(ctx context.Context, now time.Time) {
	if c, ok := s.Outbox.(OutboxCounter); ok && s.Metrics != nil {
		if n, err := c.CountSMS(ctx); err == nil {
			s.Metrics.pending(n)
		}
	}
	if p, ok := s.Outbox.(OutboxPruner); ok && now.Sub(s.pruned) >= pruneEvery {
		if err := p.PruneSMSLog(ctx, now.Add(-LogRetention)); err != nil {
			if ctx.Err() == nil {
				s.log().LogAttrs(ctx, slog.LevelError, "sms log prune", slog.String("error", err.Error()))
			}
			return
		}
		s.pruned = now
	}
}

func (s *Sender) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Sender) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}
