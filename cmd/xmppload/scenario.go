package main

import (
	"bufio"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// loginAll logs in accs with at most c.concurrency logins in progress,
// keeping the sessions (keep) or closing each one at once. It returns the
// sessions in the order of accs (nil where the login failed), a histogram
// of login times, the first error and the number of failures. up, when
// not nil, counts the logins done as they happen (for a ramp).
func loginAll(ctx context.Context, c *config, d *dialer, accs []account, keep bool, up *atomic.Int64) ([]*session, *hist, time.Duration, int, error) {
	sessions := make([]*session, len(accs))
	var (
		mu       sync.Mutex
		h        hist
		failed   int
		firstErr error
		next     atomic.Int64
		wg       sync.WaitGroup
	)
	start := time.Now()
	for range min(c.concurrency, len(accs)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(accs) || ctx.Err() != nil {
					return
				}
				lctx, cancel := context.WithTimeout(ctx, loginTimeout)
				t0 := time.Now()
				s, err := d.login(lctx, accs[i], "load"+strconv.Itoa(i))
				took := time.Since(t0)
				cancel()
				mu.Lock()
				if err != nil {
					failed++
					if firstErr == nil {
						firstErr = err
					}
				} else {
					h.add(uint64(took.Microseconds()))
				}
				mu.Unlock()
				if err == nil && up != nil {
					up.Add(1)
				}
				if err != nil {
					continue
				}
				if keep {
					sessions[i] = s
				} else {
					s.close()
				}
			}
		})
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	return sessions, &h, time.Since(start), failed, firstErr
}

func closeAll(sessions []*session) {
	var wg sync.WaitGroup
	for _, s := range sessions {
		if s != nil {
			wg.Go(s.close)
		}
	}
	wg.Wait()
}

// serverMeter reads the server's usage when --pid is set.
type serverMeter struct {
	pid int
	err error
}

func (m *serverMeter) read() usage {
	if m.pid == 0 {
		return usage{}
	}
	u, err := treeUsage(m.pid)
	if err != nil && m.err == nil {
		m.err = err
	}
	return u
}

func newResult(c *config) *result {
	return &result{Scenario: c.scenario, Label: c.label, Addr: c.addr, TLS: c.tls, Mech: c.mech, Clients: c.clients, CPUs: runtime.NumCPU()}
}

func runLogin(ctx context.Context, c *config, d *dialer, accs []account) (*result, error) {
	m := &serverMeter{pid: c.pid}
	cpu0, self0 := m.read(), selfCPUTicks()
	_, h, took, failed, err := loginAll(ctx, c, d, accs, false, nil)
	cpu1, self1 := m.read(), selfCPUTicks()
	r := newResult(c)
	r.Concurrency = c.concurrency
	r.setLogins(h, failed, took)
	r.Seconds = took.Seconds()
	r.ServerCPUPerLoginUs = r.setCPU(m, cpu0, cpu1, self1-self0, int64(h.n))
	if err != nil {
		err = fmt.Errorf("%d of %d logins failed; first: %w", failed, len(accs), err)
	}
	return r, errors.Join(err, m.err)
}

func ticksToSec(t uint64) float64 { return float64(t) / clockTicks }

// setLogins records the logins of a run.
func (r *result) setLogins(h *hist, failed int, took time.Duration) {
	r.Logins, r.LoginFailures = int(h.n), failed
	r.LoginsPerSec = float64(h.n) / took.Seconds()
	r.LoginP50ms = float64(h.quantile(0.50)) / 1000
	r.LoginP99ms = float64(h.quantile(0.99)) / 1000
	r.LoginMaxms = float64(h.max) / 1000
}

// setCPU records the CPU time of the client and, with --pid, of the
// server; it returns the server's µs per unit of work (0 without).
func (r *result) setCPU(m *serverMeter, before, after usage, selfTicks uint64, units int64) float64 {
	r.ClientCPUs = ticksToSec(selfTicks)
	if m.pid == 0 || m.err != nil {
		return 0
	}
	r.ServerCPUs = ticksToSec(after.cpuTicks - before.cpuTicks)
	r.RSSAfterKiB = after.rssKiB
	if units <= 0 {
		return 0
	}
	return r.ServerCPUs * 1e6 / float64(units)
}

func runIdle(ctx context.Context, c *config, d *dialer, accs []account, log io.Writer) (*result, error) {
	m := &serverMeter{pid: c.pid}
	before := m.read()
	var up atomic.Int64
	var stopRamp, rampDone chan struct{}
	rp := &ramp{up: &up, m: m, base: before, interval: c.ramp, log: log}
	if c.ramp > 0 {
		stopRamp, rampDone = make(chan struct{}), make(chan struct{})
		go rp.run(stopRamp, rampDone)
	}
	sessions, h, took, failed, err := loginAll(ctx, c, d, accs, true, &up)
	defer closeAll(sessions)
	if c.ramp > 0 {
		close(stopRamp)
		<-rampDone
	}
	// Read what the server sends (nothing, mostly) so that it never
	// blocks, and answer its pings as a client does: a ramp to 100,000
	// takes minutes, longer than the server's idle time before it pings.
	// The readers end when the sessions are closed.
	for _, s := range sessions {
		if s != nil {
			go answerPings(s)
		}
	}
	fmt.Fprintf(log, "xmppload: %d sessions up in %.1fs, holding for %s\n", h.n, took.Seconds(), c.duration)
	settle := min(2*time.Second, c.duration)
	sleepCtx(ctx, settle)
	mid := m.read()
	sleepCtx(ctx, c.duration-settle)
	after := m.read()
	r := newResult(c)
	r.setLogins(h, failed, took)
	r.Ramp = rp.rows
	r.Seconds = c.duration.Seconds()
	if c.pid != 0 && m.err == nil && h.n > 0 {
		r.RSSBeforeKiB, r.RSSAfterKiB = before.rssKiB, after.rssKiB
		r.KiBPerSession = (float64(after.rssKiB) - float64(before.rssKiB)) / float64(h.n)
		r.KiBPerSessionSettled = (float64(mid.rssKiB) - float64(before.rssKiB)) / float64(h.n)
		r.ServerProcs = after.procs
	}
	if err != nil {
		err = fmt.Errorf("%d of %d logins failed; first: %w", failed, len(accs), err)
	}
	return r, errors.Join(err, m.err)
}

// answerPings reads a logged-in session's stream, answering each IQ get
// (the server's XEP-0199 pings) with an empty result, until it ends. It
// writes to the connection itself, not the session's buffer: TLS
// connections take concurrent writes, and close writes too.
func answerPings(s *session) {
	dec := xml.NewDecoder(s.r)
	for {
		el, err := nextElement(dec)
		if err != nil {
			return
		}
		if el.Name.Local == "iq" && attr(el, "type") == "get" {
			if _, err := io.WriteString(s.conn, `<iq type='result' id='`+xmlEscape(attr(el, "id"))+`' to='`+xmlEscape(attr(el, "from"))+`'/>`); err != nil {
				return
			}
		}
		if err := dec.Skip(); err != nil {
			return
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// routeClient is one side of a pair: its sender writes to the peer, its
// reader counts what the peer sent.
type routeClient struct {
	s    *session
	peer string // bare JID of the peer

	sent atomic.Int64 // by this client's sender

	// By this client's reader: messages of the peer received (first
	// time), duplicates, errors bounced back to this client.
	rx, dup, bounced atomic.Int64
	lastRx           atomic.Int64  // unix nanos of the last read with messages
	lat              hist          // reader-owned until the reader ends
	wake             chan struct{} // this client's sender waits here
	readErr          error
}

func bareJID(full string) string {
	for i := 0; i < len(full); i++ {
		if full[i] == '/' {
			return full[:i]
		}
	}
	return full
}

func runRoute(ctx context.Context, c *config, d *dialer, accs []account, log io.Writer) (*result, error) {
	sessions, h, took, failed, err := loginAll(ctx, c, d, accs, true, nil)
	if err != nil {
		closeAll(sessions)
		return nil, fmt.Errorf("%d of %d logins failed; first: %w", failed, len(accs), err)
	}
	fmt.Fprintf(log, "xmppload: %d sessions up in %.1fs; routing for %s\n", h.n, took.Seconds(), c.duration)
	clients := make([]*routeClient, len(sessions))
	for i, s := range sessions {
		clients[i] = &routeClient{s: s, wake: make(chan struct{}, 1)}
	}
	for i, cl := range clients {
		peer := clients[i^1]
		cl.peer = bareJID(peer.s.jid)
		if cl.peer == "" {
			cl.peer = accs[i^1].jid
		}
	}
	m := &serverMeter{pid: c.pid}
	cpu0, self0 := m.read(), selfCPUTicks()
	start := time.Now()
	stopAt := start.Add(c.duration)
	hardEnd := stopAt.Add(c.drain + 10*time.Second)
	var readers, senders sync.WaitGroup
	for i, cl := range clients {
		cl.s.conn.SetDeadline(hardEnd)
		readers.Go(func() { cl.read(clients[i^1]) })
		senders.Go(func() { cl.send(ctx, c, clients[i^1], i, len(clients), start, stopAt) })
	}
	senders.Wait()
	sendEnd := time.Now()
	// Wait for what is in flight, at most --drain.
	var sent, got int64
	drainEnd := sendEnd.Add(c.drain)
	for {
		sent, got = 0, 0
		for _, cl := range clients {
			sent += cl.sent.Load()
			got += cl.rx.Load() + cl.bounced.Load()
		}
		if got >= sent || time.Now().After(drainEnd) || ctx.Err() != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cpu1, self1 := m.read(), selfCPUTicks()
	closeAll(sessions)
	readers.Wait()

	r := newResult(c)
	r.setLogins(h, failed, took)
	r.Size, r.Window, r.TargetRate = c.size, c.window, c.rate
	var lat hist
	var last int64
	for _, cl := range clients {
		r.Sent += cl.sent.Load()
		r.Received += cl.rx.Load()
		r.Duplicates += cl.dup.Load()
		r.Errors += cl.bounced.Load()
		lat.merge(&cl.lat)
		last = max(last, cl.lastRx.Load())
	}
	r.Lost = r.Sent - r.Received - r.Errors
	r.Seconds = sendEnd.Sub(start).Seconds()
	span := r.Seconds
	if last > 0 {
		span = max(span, time.Unix(0, last).Sub(start).Seconds())
	}
	r.MsgsPerSec = float64(r.Received) / span
	r.LatP50ms = float64(lat.quantile(0.50)) / 1000
	r.LatP90ms = float64(lat.quantile(0.90)) / 1000
	r.LatP99ms = float64(lat.quantile(0.99)) / 1000
	r.LatMaxms = float64(lat.max) / 1000
	r.ServerCPUPerMsgUs = r.setCPU(m, cpu0, cpu1, self1-self0, r.Received)
	var rerr error
	if r.Lost != 0 {
		rerr = fmt.Errorf("%d message(s) lost", r.Lost)
	}
	return r, errors.Join(rerr, m.err)
}

// send writes messages to the peer until stopAt: paced at c.rate/clients
// per sender, or as fast as the window allows.
func (cl *routeClient) send(ctx context.Context, c *config, peer *routeClient, idx, n int, start, stopAt time.Time) {
	// The session's own writer is empty after login; a larger one here.
	w := bufio.NewWriterSize(cl.s.conn, 32<<10)
	defer w.Flush()
	p := newPacer(c, w, cl.wake, idx, n, start, stopAt)
	buf := make([]byte, 0, c.size+256)
	var seq int64
	for seq < 1<<40 {
		now, ok := p.wait(ctx, func() int64 { return seq - peer.rx.Load() - cl.bounced.Load() })
		if !ok {
			return
		}
		buf = appendMessage(buf[:0], cl.peer, uint64(seq), now.UnixNano(), c.size)
		if _, err := w.Write(buf); err != nil {
			return
		}
		seq++
		cl.sent.Store(seq)
	}
}

// pacer holds a sender to its share of --rate and to its --window.
type pacer struct {
	w            *bufio.Writer
	wake         <-chan struct{}
	window       int64
	interval     time.Duration
	next, stopAt time.Time
}

// newPacer paces sender idx of n, the senders spread over an interval.
func newPacer(c *config, w *bufio.Writer, wake <-chan struct{}, idx, n int, start, stopAt time.Time) *pacer {
	p := &pacer{w: w, wake: wake, window: int64(c.window), next: start, stopAt: stopAt}
	if c.rate > 0 {
		p.interval = time.Duration(float64(n) / c.rate * float64(time.Second))
		p.next = start.Add(p.interval * time.Duration(idx) / time.Duration(n))
	}
	return p
}

// wait returns when the next message may go (inFlight, the sender's
// messages not yet acknowledged, under the window), with the time to stamp
// it; false when the run is over or the connection failed. It flushes
// before waiting.
func (p *pacer) wait(ctx context.Context, inFlight func() int64) (time.Time, bool) {
	now := time.Now()
	if !now.Before(p.stopAt) || ctx.Err() != nil {
		return now, false
	}
	if p.interval > 0 {
		if now.Before(p.next) {
			if p.w.Flush() != nil {
				return now, false
			}
			time.Sleep(p.next.Sub(now))
			now = time.Now()
			if !now.Before(p.stopAt) {
				return now, false
			}
		}
		p.next = p.next.Add(p.interval)
	}
	for inFlight() >= p.window {
		if p.w.Flush() != nil {
			return now, false
		}
		t := time.NewTimer(min(50*time.Millisecond, time.Until(p.stopAt)))
		select {
		case <-p.wake:
		case <-t.C:
		}
		t.Stop()
		if !time.Now().Before(p.stopAt) || ctx.Err() != nil {
			return now, false
		}
		now = time.Now()
	}
	return now, true
}

// read counts the peer's messages (and this client's bounces) in the raw
// stream until the connection closes.
func (cl *routeClient) read(peer *routeClient) {
	var set seqSet
	cl.readErr = scanStream(cl.s.r, func(m seen, nowNano int64) {
		if m.isError {
			cl.bounced.Add(1)
			return
		}
		if !set.add(m.seq) {
			cl.dup.Add(1)
			return
		}
		cl.rx.Add(1)
		cl.lat.addSince(m.sentAt, nowNano)
	}, func(nowNano int64) {
		cl.lastRx.Store(nowNano)
		// The peer's sender may wait for its window (and this
		// client's, for its bounces).
		peer.poke()
		cl.poke()
	})
}

func (cl *routeClient) poke() { poke(cl.wake) }

// poke wakes a sender waiting for its window, if it waits.
func poke(wake chan struct{}) {
	select {
	case wake <- struct{}{}:
	default:
	}
}

// scanStream feeds what r reads to a scanner until r fails: onMsg for each
// message found, then onFound after each read that found some. It returns
// the scanner's error (nil when the connection ended).
func scanStream(r io.Reader, onMsg func(m seen, nowNano int64), onFound func(nowNano int64)) error {
	sc := scanner{maxBuf: 4 << 20}
	buf := make([]byte, 32<<10)
	for {
		k, err := r.Read(buf)
		if k > 0 {
			nowNano := time.Now().UnixNano()
			found := false
			ferr := sc.feed(buf[:k], func(m seen) {
				found = true
				onMsg(m, nowNano)
			})
			if found {
				onFound(nowNano)
			}
			if ferr != nil {
				return ferr
			}
		}
		if err != nil {
			return nil
		}
	}
}

// addSince records a latency from a body's timestamp, when it has one.
func (h *hist) addSince(sentAt, nowNano int64) {
	if sentAt > 0 && nowNano >= sentAt {
		h.add(uint64((nowNano - sentAt) / 1000))
	}
}
