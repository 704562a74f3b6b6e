package cluster

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"
	"mellium.im/xmpp/jid"

	"dialtone/auth"
	"dialtone/xmppd/router"
)

const domain = "example.net"

var (
	alice = jid.MustParse("+821011111111@" + domain)
	bob   = jid.MustParse("+821022222222@" + domain)
)

type noAccounts struct{}

func (noAccounts) Account(context.Context, auth.Number) (auth.Account, error) {
	return auth.Account{}, auth.ErrNotFound
}

// recSink records what a local session is sent.
type recSink struct {
	mu     sync.Mutex
	got    []string
	closed string
}

func (s *recSink) Send(b []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, string(b))
	return true
}

func (s *recSink) Close(cond, _ string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = cond
}

func (s *recSink) snapshot() ([]string, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...), s.closed
}

// natsURL runs a NATS server in the test's process on a free loopback port.
func natsURL(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(ns.Shutdown)
	return fmt.Sprintf("nats://127.0.0.1:%d", port)
}

// testNode is a router with its cluster link; undelivered counts the
// messages its Undelivered hooks got.
type testNode struct {
	reg         *prometheus.Registry
	r           *router.Router
	c           *Cluster
	undelivered atomic.Int32
}

func newNode(t testing.TB, url, name string) *testNode {
	return newNodeDead(t, url, name, 400*time.Millisecond)
}

// newNodeDead is newNode with the given DeadAfter.
func newNodeDead(t testing.TB, url, name string, deadAfter time.Duration) *testNode {
	t.Helper()
	parser, err := auth.NewNumberParser("KR", nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := router.New(router.Config{Domain: domain, Parser: parser, Accounts: noAccounts{}})
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{r: r, reg: prometheus.NewRegistry()}
	n.c, err = New(Config{URL: url, Node: name, Router: r, Metrics: n.reg,
		Heartbeat: 50 * time.Millisecond, DeadAfter: deadAfter, AckTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	undelivered := router.ModuleFunc(func(h *router.Hooks) error {
		h.Hook(router.Undelivered, router.Messages, 0, func(context.Context, *router.Event) error {
			n.undelivered.Add(1)
			return router.ErrHandled
		})
		return nil
	})
	if err := r.Load(n.c, undelivered); err != nil {
		t.Fatal(err)
	}
	n.c.Start()
	t.Cleanup(func() {
		n.c.Close()
		r.Close(context.Background())
	})
	return n
}

func (n *testNode) bind(t *testing.T, full jid.JID) (*router.Session, *recSink) {
	t.Helper()
	k := &recSink{}
	s := router.NewSession(context.Background(), full.Bare(), k)
	if err := n.r.Bind(s, full, nil); err != nil {
		t.Fatal(err)
	}
	return s, k
}

// eventually polls cond every 10 ms for at most 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func full(bare jid.JID, res string) jid.JID {
	j, _ := bare.WithResource(res)
	return j
}

func chat(from, to jid.JID, body string) *router.Stanza {
	return &router.Stanza{Kind: router.KindMessage, Type: "chat", From: from, To: to, Inner: []byte("<body>" + body + "</body>")}
}

// TestMirrors: a session bound on one node appears on the others, also
// on one that joins later (it asks for all sessions); its presence and
// priority follow; a stanza routed to it on another node reaches its
// stream and is acknowledged; closing the mirror closes the stream; its
// end removes the mirrors.
func TestMirrors(t *testing.T) {
	url := natsURL(t)
	n1, n2 := newNode(t, url, "n1"), newNode(t, url, "n2")
	a, ak := n1.bind(t, full(alice, "a"))
	eventually(t, "n2 mirrors alice/a", func() bool { return n2.r.Session(a.JID()) != nil })
	m := n2.r.Session(a.JID())
	if !m.Remote() || len(n2.r.All()) != 0 {
		t.Fatal("the mirror is not remote, or is among All")
	}
	n1.r.SetPresence(context.Background(), a, &router.Stanza{Kind: router.KindPresence, From: a.JID(), Inner: []byte("<priority>7</priority>")})
	eventually(t, "presence reaches the mirror", func() bool { return m.Available() && m.Priority() == 7 })

	n2.bind(t, full(bob, "b"))
	n2.r.Route(context.Background(), chat(full(bob, "b"), alice, "hi"))
	eventually(t, "the message reaches alice's stream", func() bool {
		got, _ := ak.snapshot()
		return len(got) == 1 && strings.Contains(got[0], "<body>hi</body>")
	})
	p := n2.c.peerNamed("n1")
	eventually(t, "n1 acknowledges", func() bool { return p.pendingLen() == 0 })

	// A resend (its ack was lost) is acknowledged and not written twice.
	msg := encode(opSend, []byte("n2"), []byte(strconv.FormatUint(n2.c.seq.Load(), 36)), []byte(a.JID().String()), []byte("<message/>"))
	p.pmu.Lock()
	p.pending[n2.c.seq.Load()] = pending{msg: msg, at: time.Now(), sent: time.Now().Add(-time.Minute)}
	p.pmu.Unlock()
	n2.c.resend(p, time.Now())
	eventually(t, "the resend is acknowledged", func() bool { return p.pendingLen() == 0 })
	if got, _ := ak.snapshot(); len(got) != 1 {
		t.Fatalf("alice got %d stanzas, want 1: %q", len(got), got)
	}
	for _, c := range []struct {
		n    *testNode
		name string
		want float64
	}{
		{n2, "xmppd_cluster_stanzas_sent_total", 1},
		{n2, "xmppd_cluster_stanzas_resent_total", 1},
		{n2, "xmppd_cluster_unacknowledged", 0},
		{n2, "xmppd_cluster_peers", 1},
		{n2, "xmppd_cluster_nats_connected", 1},
		{n1, "xmppd_cluster_stanzas_received_total", 1},
	} {
		if got := metric(t, c.n.reg, c.name); got != c.want {
			t.Errorf("%s = %v, want %v", c.name, got, c.want)
		}
	}

	n3 := newNode(t, url, "n3")
	eventually(t, "the late node mirrors alice/a and bob/b", func() bool {
		s := n3.r.Session(a.JID())
		return s != nil && s.Priority() == 7 && n3.r.Session(full(bob, "b")) != nil
	})

	m.Close("conflict", "")
	eventually(t, "the stream closes", func() bool { _, c := ak.snapshot(); return c == "conflict" })
	n1.r.Closed(a)
	eventually(t, "the mirrors go", func() bool {
		return n2.r.Session(a.JID()) == nil && n3.r.Session(a.JID()) == nil
	})
	if n2.undelivered.Load() != 0 {
		t.Fatal("a message went undelivered")
	}
}

// TestNodeDeath: a node that stops beating without saying goodbye is
// dropped with its sessions; a message sent to one of them and never
// acknowledged is routed again (here: to the Undelivered hooks, the
// account having no other session). A node back under the same name with
// a new boot id is a new node: the old one's sessions are gone.
func TestNodeDeath(t *testing.T) {
	url := natsURL(t)
	n1, n2 := newNode(t, url, "n1"), newNode(t, url, "n2")
	a, _ := n1.bind(t, full(alice, "a"))
	n1.r.SetPresence(context.Background(), a, &router.Stanza{Kind: router.KindPresence, From: a.JID()})
	eventually(t, "n2 mirrors alice/a", func() bool { s := n2.r.Session(a.JID()); return s != nil && s.Available() })

	// n1 dies: no goodbye, no more beats, no acks.
	n1.c.cancel()
	n1.c.wg.Wait()
	n1.c.nc.Close()
	n2.bind(t, full(bob, "b"))
	n2.r.Route(context.Background(), chat(full(bob, "b"), alice, "lost?"))
	if n2.undelivered.Load() != 0 {
		t.Fatal("routed straight to Undelivered: the mirror was already gone")
	}
	eventually(t, "n2 drops n1 and routes the message again", func() bool {
		return n2.r.Session(a.JID()) == nil && n2.undelivered.Load() == 1
	})

}

// TestNodeRestart: a node back under the same name before it was found
// dead (a new boot id) is a new node: the old one's sessions are gone.
func TestNodeRestart(t *testing.T) {
	url := natsURL(t)
	n1 := newNodeDead(t, url, "n1", time.Minute)
	n3 := newNode(t, url, "n3")
	c, _ := n3.bind(t, full(alice, "c"))
	eventually(t, "n1 mirrors alice/c", func() bool { return n1.r.Session(c.JID()) != nil })
	n3.c.cancel()
	n3.c.wg.Wait()
	n3.c.nc.Close()
	newNode(t, url, "n3")
	eventually(t, "the old n3's session goes", func() bool { return n1.r.Session(c.JID()) == nil })
	if n1.c.peerNamed("n3") == nil {
		t.Fatal("the new n3 is not known")
	}
}

// peerNamed returns the peer name as c knows it, nil if none.
func (c *Cluster) peerNamed(name string) *peer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peers[name]
}

// metric reads the value of a metric without labels.
func metric(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.Metric) == 1 {
			m := mf.Metric[0]
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestSameResourceOnTwoNodes: a resource bound on one node while another
// node has it closes the older session with conflict (RFC 6120
// §7.7.2.2), wherever each is; an announcement of an older session than
// the local one leaves the local one in place.
func TestSameResourceOnTwoNodes(t *testing.T) {
	url := natsURL(t)
	n1, n2 := newNode(t, url, "n1"), newNode(t, url, "n2")
	old, oldSink := n1.bind(t, full(alice, "x"))
	eventually(t, "n2 mirrors alice/x", func() bool { return n2.r.Session(old.JID()) != nil })
	young, youngSink := n2.bind(t, full(alice, "x"))
	eventually(t, "the older session is closed", func() bool { _, c := oldSink.snapshot(); return c == "conflict" })
	eventually(t, "n1 routes alice/x to n2", func() bool {
		s := n1.r.Session(young.JID())
		return s != nil && s.Remote()
	})
	if _, c := youngSink.snapshot(); c != "" {
		t.Fatalf("the newer session was closed: %s", c)
	}

	// A stale announcement from n2 of an alice/y bound before n1's.
	mine, mineSink := n1.bind(t, full(alice, "y"))
	before := boundAt.Get(mine).Load() - 1
	n2.c.publish(n2.c.prefix+"state.n2", encode(opUpsert, []byte(mine.String()), []byte("0"), nil, nil, []byte(strconv.FormatInt(before, 36))))
	// Then one of alice/z on the same subject: once n1 mirrors it, it
	// has read the one before.
	z := full(alice, "z")
	n2.c.publish(n2.c.prefix+"state.n2", encode(opUpsert, []byte(z.String()), []byte("0"), nil, nil, []byte("1")))
	eventually(t, "n1 mirrors alice/z", func() bool { return n1.r.Session(z) != nil })
	if s := n1.r.Session(mine.JID()); s != mine {
		t.Fatalf("the local alice/y was replaced by %v", s)
	}
	if _, c := mineSink.snapshot(); c != "" {
		t.Fatalf("the local alice/y was closed: %s", c)
	}
}
