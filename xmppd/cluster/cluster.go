// Package cluster links the xmppd nodes that serve one domain together
// (SPEC.md "Several servers (clustering)") over plain NATS core.
//
// The session registry is replicated: each node announces its sessions
// (bind, every presence change, unbind) on its own state subject, which
// every node reads, and every node keeps a mirror of every remote session
// in its router's table (router.NewRemoteSession). This is what ejabberd
// does with its replicated session table; it was chosen over asking "who
// has X" per stanza because routing then needs no round trip: a message
// to a bare JID picks the highest priority over all nodes, presence
// broadcasts and probes see every resource, and the data path has no
// branch for clusters at all (a single node has no mirrors). NATS core
// suffices: the registry is soft state, rebuilt from the nodes themselves
// (a node that sees a new node asks it to announce all its sessions), so
// no JetStream. A node beats every Heartbeat on its state subject; one
// not heard for DeadAfter is dropped with its sessions, and so is one
// that says goodbye at shutdown.
//
// A mirror's Sink publishes the stanza's bytes, unchanged, to the owning
// node's subject; the owner writes them to the session's stream and acks.
// What is not acked (the owner died, or AckTimeout passed) is not lost: a
// message goes to the Undelivered hooks (offline storage and the SMS
// notice) on the sending node. A message for an account with no session
// on any node is stored by the node that routed it, the only one that saw
// it: exactly once.
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"dialtone/xmppd/router"
)

// Defaults of Config.
const (
	DefaultHeartbeat  = 500 * time.Millisecond
	DefaultDeadAfter  = 3 * time.Second
	DefaultAckTimeout = 10 * time.Second
	// maxPending bounds the stanzas awaiting an ack from one node; beyond
	// it a message is handed to the Undelivered hooks at once.
	maxPending = 1 << 16
)

// Config configures a Cluster.
type Config struct {
	// URL is XMPPD_NATS_URL: one or more NATS URLs, comma-separated.
	URL string
	// Node is this node's name (XMPPD_NODE_NAME), unique in the cluster.
	Node string
	// Router is this node's router.
	Router *router.Router
	// Log takes the link's events; nil discards them.
	Log *slog.Logger
	// Heartbeat, DeadAfter and AckTimeout: 0 for the defaults.
	Heartbeat, DeadAfter, AckTimeout time.Duration
	// Metrics, when set, gets the link's metrics (xmppd_cluster_*).
	Metrics prometheus.Registerer
}

// Cluster is this node's link to the others. It is a router module
// (Register) that announces the local sessions.
type Cluster struct {
	cfg    Config
	r      *router.Router
	log    *slog.Logger
	nc     *nats.Conn
	prefix string // "xmppd.<domain>."
	boot   string // this run of the node: a restart under the same name is a new node
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	seq    atomic.Uint64

	// published counts the stanzas handed to NATS for other nodes;
	// flushed how many of them are known to have reached the NATS server
	// (barrier).
	published, flushed atomic.Uint64
	// received, resent and rerouted count stanzas for the metrics.
	received, resent, rerouted atomic.Uint64

	// stateMu orders this node's announcements with the dump of all its
	// sessions, so that a dump never re-announces a session after its
	// unbind went out.
	stateMu sync.Mutex

	mu    sync.Mutex
	peers map[string]*peer
	from  sync.Map // node name → *received
	subs  []*nats.Subscription
	// nodeSub is the subscription to this node's subject; inflight is
	// held (read) while a stanza from it is handled, and leaving set
	// once Close stopped taking them.
	nodeSub  *nats.Subscription
	inflight sync.RWMutex
	leaving  bool

	forgetters map[string]func(key string)              // by topic; set before Start
	attrFns    map[string]func(*router.Session, string) // by attribute; set before Start
	onForward  func(context.Context, *router.Stanza)    // set before Start
	onChange   []func()                                 // set before Start
}

// peer is another node as this one knows it.
type peer struct {
	name, boot string
	seen       time.Time
	sessions   map[string]*router.Session // full JID → mirror

	pmu     sync.Mutex
	pending map[uint64]pending // stanzas sent, not yet acked
	gone    bool
}

type pending struct {
	b        []byte
	at, sent time.Time // first and last published
	msg      []byte    // as published, for a resend
	fwd      bool      // handed over with Forward, not to a session
}

// resendAfter is how long a stanza waits for its ack before it is
// published again, once its node is heard from: NATS core drops what it
// cannot deliver (a NATS server restarting, the node not subscribed again
// yet), and the receiving node drops what it already had (received).
const resendAfter = time.Second

// dedupWindow is how many of the last stanzas from one node a node
// remembers, to drop a resent one it already wrote (its ack was lost).
const dedupWindow = maxPending

// received remembers the seqs of the last dedupWindow stanzas from one
// node.
type received struct {
	mu   sync.Mutex
	set  map[uint64]struct{}
	ring []uint64
	next int
}

// add records seq; false when it was there already.
func (r *received) add(seq uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.set[seq]; dup {
		return false
	}
	if r.set == nil {
		r.set = make(map[uint64]struct{})
	}
	if len(r.ring) < dedupWindow {
		r.ring = append(r.ring, seq)
	} else {
		delete(r.set, r.ring[r.next])
		r.ring[r.next] = seq
		r.next = (r.next + 1) % dedupWindow
	}
	r.set[seq] = struct{}{}
	return true
}

// New connects to NATS and subscribes; the node announces itself once
// Start runs. The connection reconnects forever: a NATS restart costs
// the routing between nodes its duration, not the node.
func New(cfg Config) (*Cluster, error) {
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.DeadAfter <= 0 {
		cfg.DeadAfter = DefaultDeadAfter
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = DefaultAckTimeout
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	var id [8]byte
	rand.Read(id[:])
	c := &Cluster{cfg: cfg, r: cfg.Router, log: cfg.Log, boot: hex.EncodeToString(id[:]),
		prefix: "xmppd." + cfg.Router.Domain() + ".", peers: map[string]*peer{}}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	// Seqs grow across restarts too: a node's stanzas after a restart are
	// never taken for ones the others remember from before (received).
	c.seq.Store(uint64(time.Now().UnixNano()))
	nc, err := nats.Connect(cfg.URL,
		nats.Name("xmppd "+cfg.Node),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			c.log.Warn("cluster: NATS link lost", "err", err)
		}),
		nats.ReconnectHandler(func(*nats.Conn) {
			c.log.Info("cluster: NATS link back")
			c.heardAll(time.Now())
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("XMPPD_NATS_URL: %w", err)
	}
	c.nc = nc
	for subj, h := range map[string]nats.MsgHandler{
		c.prefix + "state.*":          c.onState,
		c.prefix + "node." + cfg.Node: c.onNode,
		c.prefix + "ack." + cfg.Node:  c.onAck,
	} {
		sub, err := nc.Subscribe(subj, h)
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("cluster: subscribe %s: %w", subj, err)
		}
		// Deliveries must not be dropped as a slow consumer's would be.
		sub.SetPendingLimits(-1, 256<<20)
		c.subs = append(c.subs, sub)
		if subj == c.prefix+"node."+cfg.Node {
			c.nodeSub = sub
		}
	}
	if err := nc.Flush(); err != nil {
		nc.Close()
		return nil, fmt.Errorf("XMPPD_NATS_URL: %w", err)
	}
	if cfg.Metrics != nil {
		if err := c.register(cfg.Metrics); err != nil {
			nc.Close()
			return nil, err
		}
	}
	return c, nil
}

// register adds the link's metrics, read from its counters when scraped.
func (c *Cluster) register(reg prometheus.Registerer) error {
	counter := func(name, help string, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) })
	}
	for _, m := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "xmppd_cluster_nats_connected", Help: "1 while the NATS link is up."}, func() float64 {
			if c.nc.Status() == nats.CONNECTED {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "xmppd_cluster_peers", Help: "Other nodes heard from."}, func() float64 {
			return float64(len(c.Peers()))
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "xmppd_cluster_unacknowledged", Help: "Stanzas sent to other nodes and not acknowledged yet."}, func() float64 {
			return float64(c.unacknowledged())
		}),
		counter("xmppd_cluster_stanzas_sent_total", "Stanzas sent to sessions on other nodes.", &c.published),
		counter("xmppd_cluster_stanzas_received_total", "Stanzas other nodes sent to sessions here.", &c.received),
		counter("xmppd_cluster_stanzas_resent_total", "Stanzas sent again for want of an acknowledgement.", &c.resent),
		counter("xmppd_cluster_stanzas_rerouted_total", "Messages routed again or stored because their node died or never acknowledged them.", &c.rerouted),
	} {
		if err := reg.Register(m); err != nil {
			return fmt.Errorf("cluster metrics: %w", err)
		}
	}
	return nil
}

// unacknowledged counts what waits for an ack, over all nodes.
func (c *Cluster) unacknowledged() int {
	c.mu.Lock()
	peers := make([]*peer, 0, len(c.peers))
	for _, p := range c.peers {
		peers = append(peers, p)
	}
	c.mu.Unlock()
	n := 0
	for _, p := range peers {
		n += p.pendingLen()
	}
	return n
}

// Start announces the node and starts its heartbeat and the watch over
// the other nodes and the unacknowledged stanzas.
func (c *Cluster) Start() {
	c.beat()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		t := time.NewTicker(c.cfg.Heartbeat)
		defer t.Stop()
		for {
			select {
			case <-c.ctx.Done():
				return
			case <-t.C:
				c.beat()
				c.watch(time.Now())
			}
		}
	}()
}

// Close says goodbye (the others drop this node's sessions at once: call
// it after the local sessions ended) and closes the link.
func (c *Cluster) Close() {
	// First take nothing more from the others, and let a stanza being
	// written be acknowledged before the goodbye: one written and never
	// acknowledged would be routed again by its sender (a duplicate).
	// What is no longer taken is routed again by its senders: written
	// nowhere yet, it arrives once.
	if c.nodeSub != nil {
		c.nodeSub.Unsubscribe()
	}
	c.inflight.Lock()
	c.leaving = true
	c.inflight.Unlock()
	// What the others did not acknowledge yet would be routed again from
	// here once the link is gone (to offline storage): a node that
	// leaves waits a moment for their acks (the heartbeat still resends
	// meanwhile), so that nothing they wrote is stored a second time.
	if n := c.settle(settleFor); n > 0 {
		c.log.Warn("cluster: leaving with stanzas not acknowledged; they are routed again from here", "count", n)
	}
	c.cancel()
	c.wg.Wait()
	c.publish(c.prefix+"state."+c.cfg.Node, encode(opBye))
	c.mu.Lock()
	subs := c.subs
	c.mu.Unlock()
	for _, s := range subs {
		s.Unsubscribe()
	}
	c.nc.Flush()
	c.nc.Close()
	// What still waits for an ack will get none.
	c.mu.Lock()
	peers := c.peers
	c.peers = map[string]*peer{}
	c.mu.Unlock()
	for _, p := range peers {
		c.drop(p, false)
	}
}

// settleFor bounds how long Close waits for the acks of the other nodes.
const settleFor = 2 * time.Second

// settle waits, at most d, until no stanza waits for an ack, and returns
// how many still do.
func (c *Cluster) settle(d time.Duration) int {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	n := c.unacknowledged()
	for end := time.Now().Add(d); n > 0 && time.Now().Before(end); <-t.C {
		n = c.unacknowledged()
	}
	return n
}

// Health reports whether the NATS link is up (for /healthz).
func (c *Cluster) Health(context.Context) error {
	if st := c.nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("cluster: NATS link is %s", st)
	}
	return nil
}

// Node is this node's name.
func (c *Cluster) Node() string { return c.cfg.Node }

// Peers returns the names of the other nodes alive now.
func (c *Cluster) Peers() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Collect(maps.Keys(c.peers))
}

// OnInvalidate makes fn drop what this node caches of a key when another
// node says, with Invalidate(topic, key), that it changed in the store.
// Call it before Start.
func (c *Cluster) OnInvalidate(topic string, fn func(key string)) {
	if c.forgetters == nil {
		c.forgetters = map[string]func(string){}
	}
	c.forgetters[topic] = fn
}

// Invalidate tells the other nodes that what is stored of key changed, so
// that they drop their cached copy (a blocklist: each node filters with
// its own copy).
func (c *Cluster) Invalidate(topic, key string) {
	c.publish(c.prefix+"state."+c.cfg.Node, encode(opForget, []byte(topic), []byte(key)))
}

// askTimeout bounds Ask: the node that has the answer replies within
// a round trip; the others never do.
const askTimeout = time.Second

// Ask asks the other nodes about payload under topic and returns the
// answer of the one that has it; false when none answers in time.
func (c *Cluster) Ask(ctx context.Context, topic string, payload []byte) ([]byte, bool) {
	ctx, cancel := context.WithTimeout(ctx, askTimeout)
	defer cancel()
	m, err := c.nc.RequestWithContext(ctx, c.prefix+"ask."+topic, encode(opAsk, []byte(c.cfg.Node), payload))
	if err != nil {
		return nil, false
	}
	return m.Data, true
}

// AskAll asks every other node about payload under topic and returns
// the answers that came within askTimeout: one from each node alive that
// answers (OnAsk). It returns once each has, or at the timeout.
func (c *Cluster) AskAll(ctx context.Context, topic string, payload []byte) [][]byte {
	want := len(c.Peers())
	if want == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, askTimeout)
	defer cancel()
	inbox := c.nc.NewRespInbox()
	sub, err := c.nc.SubscribeSync(inbox)
	if err != nil {
		return nil
	}
	defer sub.Unsubscribe()
	if err := c.nc.PublishRequest(c.prefix+"ask."+topic, inbox, encode(opAsk, []byte(c.cfg.Node), payload)); err != nil {
		return nil
	}
	var out [][]byte
	for len(out) < want {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			break
		}
		out = append(out, m.Data)
	}
	return out
}

// OnAsk answers the other nodes' Ask under topic with fn (from is the
// asking node), which returns false when this node has nothing to say (it
// then stays silent).
func (c *Cluster) OnAsk(topic string, fn func(from string, payload []byte) ([]byte, bool)) error {
	sub, err := c.nc.Subscribe(c.prefix+"ask."+topic, func(m *nats.Msg) {
		op, f, err := decode(m.Data)
		if err != nil || op != opAsk || len(f) != 2 || string(f[0]) == c.cfg.Node {
			return
		}
		if answer, ok := fn(string(f[0]), f[1]); ok {
			m.Respond(answer)
		}
	})
	if err != nil {
		return fmt.Errorf("cluster: subscribe %s: %w", topic, err)
	}
	c.mu.Lock()
	c.subs = append(c.subs, sub)
	c.mu.Unlock()
	return nil
}

// Left announces that the local session full left this node without ending
// (handed over to another node, which binds it again): no Closed event
// announces it.
func (c *Cluster) Left(full string) {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	c.publish(c.prefix+"state."+c.cfg.Node, encode(opUnbind, []byte(full)))
}

// Moved is Left for a session that node takes over (XEP-0198 handover),
// last seen with presence (nil: unavailable). This node mirrors it on
// node at once, as if node had announced it: what still comes here for
// it (from the nodes that have not yet read the unbind, or routed here)
// goes on to node rather than to offline storage.
func (c *Cluster) Moved(full, node string, presence *router.Stanza) {
	c.Left(full)
	j, err := jid.Parse(full)
	if err != nil || j.Resourcepart() == "" {
		return
	}
	c.mu.Lock()
	p := c.peers[node]
	var s *router.Session
	if p != nil && p.sessions[full] == nil {
		s = router.NewRemoteSession(c.ctx, j, &sink{c: c, p: p, full: full})
		boundAt.Get(s).Store(time.Now().UnixNano())
		p.sessions[full] = s
		c.r.AddRemote(s)
	}
	c.mu.Unlock()
	if s != nil && presence != nil {
		s.SetPresence(presence)
	}
}

// Register implements router.Module: the local sessions are announced
// when bound, at each presence they set, and when they end.
func (c *Cluster) Register(h *router.Hooks) error {
	h.Hook(router.PreRoute, router.IQs, 1<<20, func(context.Context, *router.Event) error {
		c.barrier()
		return nil
	})
	h.OnSession(router.Bound, 0, func(_ context.Context, s *router.Session) {
		boundAt.Get(s).Store(time.Now().UnixNano())
		c.announce(s)
	})
	h.OnSession(router.PresenceSet, 0, func(_ context.Context, s *router.Session) { c.announce(s) })
	h.OnSession(router.Closed, -1000, func(_ context.Context, s *router.Session) {
		if s.Remote() {
			return // a dead node's session, closed here for its contacts
		}
		c.stateMu.Lock()
		defer c.stateMu.Unlock()
		c.publish(c.prefix+"state."+c.cfg.Node, encode(opUnbind, []byte(s.String())))
	})
	return nil
}

// barrier waits, before an iq from a client is handled, until what this
// node published for other nodes reached the NATS server (a round trip,
// only when something was published since the last one). A client counts
// a message as accepted once a later iq of its own is answered (SPEC.md:
// a node that dies loses no acknowledged message); without the barrier
// the answer could leave while the message still sat in the NATS client's
// buffer of this node. Cut off from NATS it does not wait: what is sent
// then waits for an ack, and past AckTimeout is stored.
func (c *Cluster) barrier() {
	n := c.published.Load()
	if c.flushed.Load() >= n || c.nc.Status() != nats.CONNECTED {
		return
	}
	if err := c.nc.FlushTimeout(2 * time.Second); err != nil {
		c.log.Warn("cluster: NATS flush failed", "err", err)
		return
	}
	for {
		f := c.flushed.Load()
		if f >= n || c.flushed.CompareAndSwap(f, n) {
			return
		}
	}
}

func (c *Cluster) announce(s *router.Session) {
	if s.Remote() || s.Resource() == "" {
		return
	}
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	c.publish(c.prefix+"state."+c.cfg.Node, upsert(s))
}

// upsert is the announcement of a local session: its JID, presence, when
// it was bound, and its attributes (SetAttr), in pairs after the fifth
// field.
func upsert(s *router.Session) []byte {
	avail, inner, lang := []byte("0"), []byte(nil), []byte(nil)
	if p := s.Presence(); p != nil {
		avail, inner, lang = []byte("1"), p.Inner, []byte(p.Lang)
	}
	at := strconv.FormatInt(boundAt.Get(s).Load(), 36)
	fields := [][]byte{[]byte(s.String()), avail, inner, lang, []byte(at)}
	a := attrsOf.Get(s)
	a.mu.Lock()
	for k, v := range a.m {
		fields = append(fields, []byte(k), []byte(v))
	}
	a.mu.Unlock()
	return encode(opUpsert, fields...)
}

// attrs are a session's attributes that its mirrors carry (SetAttr).
type attrs struct {
	mu sync.Mutex
	m  map[string]string
}

var attrsOf = router.NewKey[attrs]()

// set records k=v ("" deletes) and reports whether it changed.
func (a *attrs) set(k, v string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m[k] == v {
		return false
	}
	if v == "" {
		delete(a.m, k)
		return true
	}
	if a.m == nil {
		a.m = map[string]string{}
	}
	a.m[k] = v
	return true
}

// take returns and forgets the attributes.
func (a *attrs) take() map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := a.m
	a.m = nil
	return m
}

// SetAttr sets an attribute of the local session s that the other nodes
// see on their mirror of it ("" removes it): a module's per-session state
// that routing there needs (carbons enabled). A bound session is
// announced again.
func (c *Cluster) SetAttr(s *router.Session, key, value string) {
	if s.Remote() || !attrsOf.Get(s).set(key, value) {
		return
	}
	c.announce(s)
}

// OnAttr makes fn apply an attribute to a mirror when it is announced,
// changed, or removed ("" when it is removed or the mirror goes).
// Call it before Start.
func (c *Cluster) OnAttr(key string, fn func(mirror *router.Session, value string)) {
	if c.attrFns == nil {
		c.attrFns = map[string]func(*router.Session, string){}
	}
	c.attrFns[key] = fn
}

// applyAttrs brings a mirror's attributes to those announced (pairs).
func (c *Cluster) applyAttrs(s *router.Session, pairs [][]byte) {
	a := attrsOf.Get(s)
	seen := map[string]bool{}
	for i := 0; i+1 < len(pairs); i += 2 {
		k, v := string(pairs[i]), string(pairs[i+1])
		seen[k] = true
		if a.set(k, v) {
			if fn := c.attrFns[k]; fn != nil {
				fn(s, v)
			}
		}
	}
	a.mu.Lock()
	var gone []string
	for k := range a.m {
		if !seen[k] {
			gone = append(gone, k)
		}
	}
	a.mu.Unlock()
	for _, k := range gone {
		a.set(k, "")
		if fn := c.attrFns[k]; fn != nil {
			fn(s, "")
		}
	}
}

// removeMirror takes a mirror out of the table and undoes its attributes.
func (c *Cluster) removeMirror(s *router.Session) {
	c.r.RemoveRemote(s)
	for k := range attrsOf.Get(s).take() {
		if fn := c.attrFns[k]; fn != nil {
			fn(s, "")
		}
	}
}

func (c *Cluster) beat() {
	c.publish(c.prefix+"state."+c.cfg.Node, encode(opBeat, []byte(c.boot)))
}

func (c *Cluster) publish(subj string, b []byte) bool {
	if err := c.nc.Publish(subj, b); err != nil {
		c.log.Warn("cluster: publish failed", "subject", subj, "err", err)
		return false
	}
	return true
}

// onState reads another node's announcements.
func (c *Cluster) onState(m *nats.Msg) {
	name := m.Subject[len(c.prefix)+len("state."):]
	if name == c.cfg.Node {
		return
	}
	op, f, err := decode(m.Data)
	if err != nil {
		c.log.Warn("cluster: bad announcement", "node", name, "err", err)
		return
	}
	switch {
	case op == opBye:
		c.forget(name, "left")
		return
	case op == opForget && len(f) == 2:
		if fn := c.forgetters[string(f[0])]; fn != nil {
			fn(string(f[1]))
		}
		return
	}
	p := c.peer(name, op, f)
	if p == nil {
		return
	}
	if op == opBeat {
		c.resend(p, time.Now())
		return
	}
	switch {
	case op == opUpsert && len(f) >= 5 && len(f)%2 == 1:
		full, err := jid.Parse(string(f[0]))
		if err != nil || full.Resourcepart() == "" {
			return
		}
		at, _ := strconv.ParseInt(string(f[4]), 36, 64)
		c.mu.Lock()
		s := p.sessions[string(f[0])]
		c.mu.Unlock()
		if s == nil {
			if !c.newer(full, at, name) {
				return
			}
			c.mu.Lock()
			if s = p.sessions[string(f[0])]; s == nil {
				s = router.NewRemoteSession(c.ctx, full, &sink{c: c, p: p, full: string(f[0])})
				boundAt.Get(s).Store(at)
				p.sessions[string(f[0])] = s
				c.r.AddRemote(s)
			}
			c.mu.Unlock()
		}
		if string(f[1]) == "1" {
			s.SetPresence(&router.Stanza{Kind: router.KindPresence, From: full, Inner: clone(f[2]), Lang: string(f[3])})
		} else {
			s.SetPresence(nil)
		}
		c.applyAttrs(s, f[5:])
	case op == opUnbind && len(f) == 1:
		c.mu.Lock()
		s := p.sessions[string(f[0])]
		delete(p.sessions, string(f[0]))
		c.mu.Unlock()
		if s != nil {
			c.removeMirror(s)
		}
	}
}

// boundAt is when a session was bound (Unix ns), on its own node's clock.
var boundAt = router.NewKey[atomic.Int64]()

// newer decides between a local session and one of the same full JID
// that node announces, bound at at: the one bound later stays (RFC 6120
// §7.7.2.2: the new connection replaces the old), the node name breaking
// a tie; both nodes decide alike. It closes the local one, or asks that
// node to close its own, and reports whether the announced one stays.
func (c *Cluster) newer(full jid.JID, at int64, node string) bool {
	j := []byte(full.String())
	local := c.local(j)
	if local == nil {
		return true
	}
	mine := boundAt.Get(local).Load()
	if at > mine || at == mine && node > c.cfg.Node {
		local.Close("conflict", "replaced by a new connection with the same resource")
		return true
	}
	c.publish(c.prefix+"node."+node, encode(opClose, j, []byte("conflict"), []byte("replaced by a new connection with the same resource")))
	return false
}

// peer returns the node name as known, after a beat or an announcement
// from it; a node not known yet, or back under a new boot id, is (re)made
// and asked for all its sessions. Nil when it is being dropped.
func (c *Cluster) peer(name string, op byte, f [][]byte) *peer {
	boot := ""
	if op == opBeat && len(f) == 1 {
		boot = string(f[0])
	}
	c.mu.Lock()
	p := c.peers[name]
	var stale *peer
	if p != nil && boot != "" && p.boot != "" && p.boot != boot {
		stale, p = p, nil // restarted: its old sessions are gone
		delete(c.peers, name)
	}
	fresh := p == nil
	if fresh {
		p = &peer{name: name, boot: boot, sessions: map[string]*router.Session{}, pending: map[uint64]pending{}}
		c.peers[name] = p
	} else if p.boot == "" {
		p.boot = boot
	}
	p.seen = time.Now()
	c.mu.Unlock()
	if stale != nil {
		c.log.Info("cluster: node restarted", "peer", name)
		c.background(func() {
			c.drop(stale, true)
			c.changed()
		})
	}
	if fresh {
		c.log.Info("cluster: node joined", "peer", name)
		c.publish(c.prefix+"node."+name, encode(opDump, []byte(c.cfg.Node)))
	}
	if fresh {
		c.changed()
	}
	return p
}

// watch drops the nodes not heard for DeadAfter and fails the stanzas
// unacknowledged for AckTimeout.
func (c *Cluster) watch(now time.Time) {
	if c.nc.Status() != nats.CONNECTED {
		// Cut off from NATS, this node hears nobody: that says nothing
		// of the others. They keep their sessions here, and what is sent
		// to them waits in the client's reconnect buffer (or, past
		// AckTimeout, goes offline).
		c.heardAll(now)
	}
	var dead, alive []*peer
	c.mu.Lock()
	for n, p := range c.peers {
		if now.Sub(p.seen) > c.cfg.DeadAfter {
			dead = append(dead, p)
			delete(c.peers, n)
		} else {
			alive = append(alive, p)
		}
	}
	c.mu.Unlock()
	for _, p := range dead {
		c.log.Warn("cluster: node silent, dropped with its sessions", "peer", p.name, "silent", now.Sub(p.seen).Round(time.Millisecond))
		// Rerouting and presence take store calls: not on the heartbeat's
		// goroutine.
		c.background(func() {
			c.drop(p, true)
			c.changed()
		})
	}
	for _, p := range alive {
		var late []pending
		p.pmu.Lock()
		for seq, e := range p.pending {
			if now.Sub(e.at) > c.cfg.AckTimeout {
				late = append(late, e)
				delete(p.pending, seq)
			}
		}
		p.pmu.Unlock()
		if len(late) > 0 {
			c.log.Warn("cluster: stanzas not acknowledged in time", "peer", p.name, "count", len(late))
		}
		for _, e := range late {
			c.failed(e.b, e.fwd)
		}
	}
}

// background runs f on a goroutine Close waits for.
func (c *Cluster) background(f func()) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
}

// heardAll counts every known node as heard at now.
func (c *Cluster) heardAll(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.peers {
		p.seen = now
	}
}

// resend publishes again, in order, what p did not acknowledge within
// resendAfter: p is heard from, so it is subscribed.
func (c *Cluster) resend(p *peer, now time.Time) {
	var again []uint64
	p.pmu.Lock()
	for seq, e := range p.pending {
		if now.Sub(e.sent) > resendAfter {
			again = append(again, seq)
		}
	}
	if len(again) == 0 {
		p.pmu.Unlock()
		return
	}
	slices.Sort(again)
	msgs := make([][]byte, 0, len(again))
	for _, seq := range again {
		e := p.pending[seq]
		e.sent = now
		p.pending[seq] = e
		msgs = append(msgs, e.msg)
	}
	p.pmu.Unlock()
	c.log.Info("cluster: resending unacknowledged stanzas", "peer", p.name, "count", len(msgs))
	c.resent.Add(uint64(len(msgs)))
	for _, m := range msgs {
		c.publish(c.prefix+"node."+p.name, m)
	}
}

// byeWait bounds how long a node that said goodbye is kept for its last
// acks.
const byeWait = time.Second

// forget drops the node name, which said goodbye. Its sessions leave the
// table at once (nothing new is sent there); what it did not acknowledge
// is routed again once its last acks had a moment to arrive: it sent them
// before its goodbye, but NATS hands each subscription its messages on its
// own goroutine, so the goodbye may be read first, and routing again what
// it did take would deliver it twice.
func (c *Cluster) forget(name, why string) {
	c.mu.Lock()
	p := c.peers[name]
	var sessions map[string]*router.Session
	if p != nil {
		sessions = p.sessions
		p.sessions = map[string]*router.Session{}
	}
	c.mu.Unlock()
	if p == nil {
		return
	}
	c.log.Info("cluster: node "+why, "peer", name)
	for _, s := range sessions {
		c.removeMirror(s)
	}
	c.background(func() {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for end := time.Now().Add(byeWait); p.pendingLen() > 0 && time.Now().Before(end); <-t.C {
		}
		c.mu.Lock()
		if c.peers[name] == p {
			delete(c.peers, name)
		}
		c.mu.Unlock()
		c.drop(p, false)
		c.changed()
	})
}

// drop removes a node that is gone: its mirrors leave the table, and what
// it never acknowledged is routed again from here. When it died (rather
// than left, closing its sessions itself), the contacts of its users are
// told they went offline, by one node: the one whose name comes first
// among those still here.
func (c *Cluster) drop(p *peer, died bool) {
	c.mu.Lock()
	sessions := p.sessions
	p.sessions = map[string]*router.Session{}
	c.mu.Unlock()
	for _, s := range sessions {
		c.removeMirror(s)
	}
	p.pmu.Lock()
	p.gone = true
	left := p.pending
	p.pending = map[uint64]pending{}
	p.pmu.Unlock()
	for _, e := range left {
		if e.fwd {
			// Handed to a node that is gone: handed again, to the one
			// that takes its place (Owner has changed).
			c.again(e.b, true, c.r.Route)
		} else {
			c.reroute(e.b)
		}
	}
	if died && c.first() {
		for _, s := range sessions {
			// As if its stream had ended: unavailable presence to its
			// subscribers and the user's other resources.
			c.r.Closed(s)
		}
	}
}

// first reports whether this node's name comes first among the nodes it
// sees.
func (c *Cluster) first() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for n := range c.peers {
		if n < c.cfg.Node {
			return false
		}
	}
	return true
}

// reroute routes again a message sent to a session of a node that died
// before it acknowledged it: the node's mirrors are out of the table, so
// it goes to the account's other resources (the client may have logged in
// again elsewhere already) or, with none, to offline storage.
func (c *Cluster) reroute(b []byte) { c.again(b, false, c.r.Route) }

// undeliverable hands a message a node that is still there did not take
// (no ack in time, or too many waiting) to the Undelivered hooks (offline
// storage, its notice): routing it again could pick the same session.
func (c *Cluster) undeliverable(b []byte) { c.again(b, false, c.r.Undeliverable) }

// bounce answers a stanza handed over with Forward that its node never
// acknowledged with an error: the node is there, but did not take it.
func (c *Cluster) bounce(b []byte) {
	c.again(b, true, func(_ context.Context, st *router.Stanza) {
		c.r.Bounce(st, router.NewError(stanza.Wait, stanza.RemoteServerTimeout, "the node that runs it did not answer"))
	})
}

// again reads back a stanza sent to another node and hands it to f: a
// message, or any stanza when all. Other stanzas are dropped, as a broken
// stream's are.
func (c *Cluster) again(b []byte, all bool, f func(context.Context, *router.Stanza)) {
	st, err := parseStanza(b)
	if err != nil {
		c.log.Error("cluster: a stanza sent to another node cannot be read back", "err", err)
		return
	}
	if all || st.Kind == router.KindMessage {
		c.rerouted.Add(1)
		f(router.Rerouted(context.WithoutCancel(c.ctx)), st)
	}
}

// once runs take for the stanza numbered seq (base 36) from node unless it
// came before (a resend), and acknowledges it either way.
func (c *Cluster) once(node, seq []byte, take func()) {
	n, err := strconv.ParseUint(string(seq), 36, 64)
	if err != nil {
		return
	}
	v, _ := c.from.LoadOrStore(string(node), &received{})
	if v.(*received).add(n) {
		c.received.Add(1)
		take()
	}
	c.publish(c.prefix+"ack."+string(node), encode(opAck, []byte(c.cfg.Node), seq))
}

// onNode reads what other nodes send to this one.
func (c *Cluster) onNode(m *nats.Msg) {
	c.inflight.RLock()
	defer c.inflight.RUnlock()
	if c.leaving {
		return // neither written nor acknowledged: its sender routes it again
	}
	op, f, err := decode(m.Data)
	if err != nil {
		c.log.Warn("cluster: bad message", "err", err)
		return
	}
	switch {
	case op == opSend && len(f) == 4:
		c.once(f[0], f[1], func() { c.deliver(f[2], f[3]) })
	case op == opRoute && len(f) == 3:
		c.once(f[0], f[1], func() { c.forwarded(f[2]) })
	case op == opClose && len(f) == 3:
		if s := c.local(f[0]); s != nil {
			s.Close(string(f[1]), string(f[2]))
		}
	case op == opDump && len(f) == 1:
		c.dump()
	}
}

// local returns the local session full, nil when it is not on this node.
func (c *Cluster) local(full []byte) *router.Session {
	j, err := jid.Parse(string(full))
	if err != nil {
		return nil
	}
	if s := c.r.Session(j); s != nil && !s.Remote() {
		return s
	}
	return nil
}

// deliver writes a stanza another node routed to the local session full;
// when that session just went away it is routed again from here (a
// message falls back to the account's other resources or offline storage,
// an iq is answered with an error).
func (c *Cluster) deliver(full, b []byte) {
	if s := c.local(full); s != nil && s.Send(b) {
		return
	}
	st, err := parseStanza(b)
	if err != nil {
		c.log.Error("cluster: a stanza from another node cannot be read", "err", err)
		return
	}
	if st.Kind != router.KindPresence {
		// Routed (and archived) on the node that sent it: the same stanza.
		c.r.Route(router.Rerouted(context.WithoutCancel(c.ctx)), st)
	}
}

// dump announces every local session (another node asked: it is new).
func (c *Cluster) dump() {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	for _, s := range c.r.All() {
		if s.Resource() != "" {
			c.publish(c.prefix+"state."+c.cfg.Node, upsert(s))
		}
	}
}

// onAck takes the acknowledgements of stanzas this node sent: the acking
// node's name, then seqs.
func (c *Cluster) onAck(m *nats.Msg) {
	op, f, err := decode(m.Data)
	if err != nil || op != opAck || len(f) < 1 {
		return
	}
	c.mu.Lock()
	p := c.peers[string(f[0])]
	c.mu.Unlock()
	if p == nil {
		return
	}
	p.pmu.Lock()
	defer p.pmu.Unlock()
	for _, raw := range f[1:] {
		if seq, err := strconv.ParseUint(string(raw), 36, 64); err == nil {
			delete(p.pending, seq)
		}
	}
}

// sink is a mirror's Sink: what the session is sent goes to its node.
type sink struct {
	c    *Cluster
	p    *peer
	full string
}

// Send implements router.Sink: it publishes b to the owning node and
// keeps it until acknowledged. It never blocks on the other node.
func (k *sink) Send(b []byte) bool { return k.c.send(k.p, b, []byte(k.full)) }

// send publishes b to p, to the session full (nil: handed over with
// Forward), and keeps it until acknowledged.
func (c *Cluster) send(p *peer, b, full []byte) bool {
	fwd := full == nil
	id := c.seq.Add(1)
	seq := []byte(strconv.FormatUint(id, 36))
	fields := [][]byte{[]byte(c.cfg.Node), seq, full, b}
	op := opSend
	if fwd {
		op, fields = opRoute, slices.Delete(fields, 2, 3)
	}
	p.pmu.Lock()
	if p.gone {
		// Routed to a node dropped meanwhile.
		p.pmu.Unlock()
		c.again(b, fwd, c.r.Route)
		return false
	}
	full0 := len(p.pending) >= maxPending
	msg := encode(op, fields...)
	if !full0 {
		now := time.Now()
		p.pending[id] = pending{b: b, at: now, sent: now, msg: msg, fwd: fwd}
	}
	p.pmu.Unlock()
	if full0 {
		c.log.Warn("cluster: too many stanzas unacknowledged by a node", "peer", p.name)
		c.failed(b, fwd)
		return false
	}
	c.published.Add(1)
	if !c.publish(c.prefix+"node."+p.name, msg) {
		p.pmu.Lock()
		_, mine := p.pending[id]
		delete(p.pending, id)
		p.pmu.Unlock()
		if mine {
			c.failed(b, fwd)
		}
		return false
	}
	return true
}

// failed hands back what could not be sent to a node that is there.
func (c *Cluster) failed(b []byte, fwd bool) {
	if fwd {
		c.bounce(b)
	} else {
		c.undeliverable(b)
	}
}

// Close implements router.Sink: the owning node closes the stream (a
// conflict with a newer resource here, an account reset, a kick).
func (k *sink) Close(cond, text string) {
	k.c.publish(k.c.prefix+"node."+k.p.name, encode(opClose, []byte(k.full), []byte(cond), []byte(text)))
}

func clone(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

func (p *peer) pendingLen() int {
	p.pmu.Lock()
	defer p.pmu.Unlock()
	return len(p.pending)
}
