// Package cluster runs three xmppd processes on one PostgreSQL and one
// NATS server (SPEC.md "Several servers (clustering)") and checks with
// real clients over TLS that they serve one domain together.
package cluster

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"dialtone/internal/pgtest"
	"dialtone/internal/testbin"
	"dialtone/internal/xmpptest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const (
	numberA = "+821011112222"
	numberB = "+821033334444"
	numberC = "+821055556666"
	numberD = "+821077778888"
	numberE = "+821099990000"
)

// node is one running xmppd of the cluster.
type node struct {
	name      string
	cmd       *exec.Cmd
	done      chan struct{}
	log       string
	env       []string
	c2s, http string
}

// natsServer is a NATS server run in this process on a fixed loopback
// port, so that it can be stopped and started again under the nodes.
type natsServer struct {
	port int
	mu   sync.Mutex
	ns   *natsserver.Server
}

func startNATS(t *testing.T) *natsServer {
	port, _ := strconv.Atoi(testbin.FreePort(t))
	n := &natsServer{port: port}
	n.start(t)
	t.Cleanup(n.stop)
	return n
}

func (n *natsServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

func (n *natsServer) start(t *testing.T) {
	t.Helper()
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: n.port, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	n.mu.Lock()
	n.ns = ns
	n.mu.Unlock()
}

func (n *natsServer) stop() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ns != nil {
		n.ns.Shutdown()
		n.ns.WaitForShutdown()
		n.ns = nil
	}
}

func startNode(t *testing.T, bin, name string, shared map[string]string) *node {
	dataDir, err := os.MkdirTemp("", "cl-"+name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dataDir) })
	n := &node{name: name, done: make(chan struct{}), log: filepath.Join(t.TempDir(), name+".log"),
		c2s: testbin.FreePort(t), http: testbin.FreePort(t)}
	vars := map[string]string{
		"XMPPD_DATA_DIR":            dataDir,
		"XMPPD_DOMAIN":              "localhost",
		"XMPPD_C2S_ADDR":            "127.0.0.1:" + n.c2s,
		"XMPPD_C2S_DIRECT_TLS_ADDR": "",
		"XMPPD_HTTP_ADDR":           "127.0.0.1:" + n.http,
		"XMPPD_S2S_ADDR":            "",
		"XMPPD_DEFAULT_REGION":      "KR",
		"XMPPD_LOG_LEVEL":           "debug",
		"XMPPD_NODE_NAME":           name,
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "XMPPD_") {
			n.env = append(n.env, kv)
		}
	}
	for _, m := range []map[string]string{vars, shared} {
		for k, v := range m {
			n.env = append(n.env, k+"="+v)
		}
	}
	f, err := os.Create(n.log)
	if err != nil {
		t.Fatal(err)
	}
	n.cmd = exec.Command(bin)
	n.cmd.Env, n.cmd.Stdout, n.cmd.Stderr = n.env, f, f
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { n.cmd.Wait(); f.Close(); close(n.done) }()
	t.Cleanup(func() {
		n.kill()
		if t.Failed() {
			b, _ := os.ReadFile(n.log)
			if len(b) > 15000 {
				b = b[len(b)-15000:]
			}
			t.Logf("%s output:\n%s", name, b)
		}
	})
	n.waitHealthy(t)
	return n
}

func (n *node) kill() {
	select {
	case <-n.done:
	default:
		n.cmd.Process.Signal(syscall.SIGKILL)
		<-n.done
	}
}

func (n *node) waitHealthy(t *testing.T) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get("http://127.0.0.1:" + n.http + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-n.done:
			t.Fatalf("%s exited before it was healthy", n.name)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not healthy after 30 s (%v)", n.name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitLog polls n's log until it holds every one of lines, for at most d.
func (n *node) waitLog(t *testing.T, d time.Duration, lines ...string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		b, _ := os.ReadFile(n.log)
		missing := ""
		for _, l := range lines {
			if !bytes.Contains(b, []byte(l)) {
				missing = l
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: log never showed %q", n.name, missing)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func xmppctl(t *testing.T, bin string, env []string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("xmppctl %v: %v\n%s", args, err, errb.String())
	}
	return strings.TrimSpace(out.String())
}

// reach waits until from's node routes an iq to the full JID to (a
// session on another node it has learnt of), which to's client answers.
func reach(t *testing.T, from, to *xmpptest.Client) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		id := fmt.Sprintf("reach%d", i)
		from.Send(`<iq type='get' id='` + id + `' to='` + to.JID + `'><ping xmlns='urn:xmpp:ping'/></iq>`)
		res := from.Expect("ping answer", func(e xmpptest.Elem) bool { return e.Attr("id") == id })
		if res.Attr("type") != "error" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never reached %s: %v", from.JID, to.JID, res)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// answering answers every iq get c receives until stop is called
// (which ends it with a ping of its own: reading never times out, which
// would break the client's decoder).
func answering(c *xmpptest.Client) (stop func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 1000; i++ {
			e, err := c.TryNext(20 * time.Second)
			if err != nil || e.Attr("id") == "stop-answering" {
				return
			}
			answerPings(c, e)
		}
	}()
	return func() {
		c.Send(`<iq type='get' id='stop-answering' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`)
		<-done
	}
}

// blockedWithin sends messages from a to b until one is refused (true)
// or, after d, one is delivered (false). A ping after each message orders
// it: an error for it comes back before the ping's answer.
func blockedWithin(t *testing.T, a, b *xmpptest.Client, d time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(d)
	for i := 0; i < 1000; i++ {
		id := fmt.Sprintf("bl%d", i)
		a.Send(`<message type='chat' id='` + id + `' to='` + numberB + `@localhost'><body>` + id + `</body></message>`)
		a.Send(`<iq type='get' id='p` + id + `' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`)
		refused := false
		a.Expect("ping answer", func(e xmpptest.Elem) bool {
			if e.Attr("id") == id && e.Attr("type") == "error" {
				refused = true
			}
			return e.Attr("id") == "p"+id
		})
		if refused {
			return true
		}
		b.Expect("message "+id, func(e xmpptest.Elem) bool { return e.XMLName.Local == "message" && body(e) == id })
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("blockedWithin: neither refused nor past the deadline in 1000 tries")
	return false
}

// until has from write chat messages to "to" (read by rcv, whose stream
// is drained up to a last message) every 50 ms, at most 100, until wait
// returns: the other nodes learn of a change through NATS, a moment later.
func until(t *testing.T, from, rcv *xmpptest.Client, to, tag string, wait func()) {
	t.Helper()
	stop := make(chan struct{})
	var once sync.Once
	halt := func() { once.Do(func() { close(stop) }) }
	defer halt() // also when wait fails the test
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := 0; i < 100; i++ {
			from.Send(`<message type='chat' to='` + to + `'><body>` + tag + strconv.Itoa(i) + `</body></message>`)
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for i := 0; i < 200 && rcv != nil; i++ {
			e, err := rcv.TryNext(20 * time.Second)
			if err != nil || body(e) == tag+"-end" {
				return
			}
		}
	}()
	wait()
	halt()
	<-sent
	if rcv != nil {
		from.Send(`<message type='chat' to='` + to + `'><body>` + tag + `-end</body></message>`)
	}
	<-drained
}

// answerPings answers a ping the client got as an iq get.
func answerPings(c *xmpptest.Client, e xmpptest.Elem) bool {
	if e.XMLName.Local == "iq" && e.Attr("type") == "get" {
		c.Send(`<iq type='result' id='` + e.Attr("id") + `' to='` + e.Attr("from") + `'/>`)
		return true
	}
	return false
}

func body(e xmpptest.Elem) string {
	var m struct {
		Body string `xml:"body"`
	}
	xml.Unmarshal([]byte("<m>"+e.Inner+"</m>"), &m)
	return m.Body
}

// startCluster starts three nodes, n1 to n3, on a new PostgreSQL database
// and a NATS server, and waits until each has heard of the others.
func startCluster(t *testing.T) ([]*node, *natsServer, *testbin.SMSReceiver, map[string]string) {
	dbURL := pgtest.NewDatabase(t, pgtest.URL(t))
	nats := startNATS(t)
	sms := testbin.NewSMSReceiver(t)
	bins := testbin.Build(t, t.TempDir(), "xmppd", "xmppctl")
	shared := map[string]string{
		"XMPPD_DATABASE_URL":        dbURL,
		"XMPPD_NATS_URL":            nats.url(),
		"XMPPD_SECRET_KEY":          strings.Repeat("5a", 32),
		"XMPPD_S2S_DIALBACK_SECRET": "cluster-test",
		"XMPPD_SMS_GATEWAY":         "webhook",
		"XMPPD_SMS_WEBHOOK_URL":     sms.URL,
		"XMPPD_NOTICE_WINDOW":       "400ms",
		"XMPPD_NOTICES_PER_DAY":     "1000",
		"XMPPD_C2S_RATE":            "0",
	}
	nodes := make([]*node, 3)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() { nodes[i] = startNode(t, bins["xmppd"], fmt.Sprintf("n%d", i+1), shared) })
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for i, n := range nodes {
		var others []string
		for j := range nodes {
			if j != i {
				others = append(others, fmt.Sprintf(`"msg":"cluster: node joined","node":"%s","peer":"n%d"`, n.name, j+1))
			}
		}
		n.waitLog(t, 10*time.Second, others...)
	}
	return nodes, nats, sms, bins
}

func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster: not with -short (make check); make test runs it")
	}
	nodes, nats, sms, bins := startCluster(t)
	pass := map[string]string{}
	for _, num := range []string{numberA, numberB, numberC, numberD, numberE} {
		pass[num] = xmppctl(t, bins["xmppctl"], nodes[0].env, "account", "reset", num, "--print")
	}
	addr := func(i int) string { return "127.0.0.1:" + nodes[i].c2s }

	// A on n1, B on n2: chat both ways, to the bare and the full JID.
	a := xmpptest.Login(t, addr(0), numberA, pass[numberA], "a1")
	a.Available()
	b := xmpptest.Login(t, addr(1), numberB, pass[numberB], "b1")
	b.Available()
	stop := answering(b)
	reach(t, a, b)
	stop()
	stop = answering(a)
	reach(t, b, a)
	stop()
	t.Run("chat across nodes", func(t *testing.T) {
		a.Send(`<message type='chat' to='` + numberB + `@localhost' id='m1'><body>hello from n1</body></message>`)
		got := b.Expect("message from A", func(e xmpptest.Elem) bool { return e.XMLName.Local == "message" })
		if body(got) != "hello from n1" || !strings.HasPrefix(got.Attr("from"), numberA+"@localhost/a1") {
			t.Errorf("B got %v", got)
		}
		b.Send(`<message type='chat' to='` + a.JID + `' id='m2'><body>hello from n2</body></message>`)
		got = a.Expect("message from B", func(e xmpptest.Elem) bool { return e.XMLName.Local == "message" })
		if body(got) != "hello from n2" || got.Attr("from") != b.JID {
			t.Errorf("A got %v", got)
		}
	})

	t.Run("presence across nodes", func(t *testing.T) {
		a.Send(`<presence type='subscribe' to='` + numberB + `@localhost'/>`)
		b.Expect("subscription request", func(e xmpptest.Elem) bool {
			return e.XMLName.Local == "presence" && e.Attr("type") == "subscribe"
		})
		b.Send(`<presence type='subscribed' to='` + numberA + `@localhost'/>`)
		a.Expect("B's presence after approval", func(e xmpptest.Elem) bool {
			return e.XMLName.Local == "presence" && e.Attr("from") == b.JID && e.Attr("type") == ""
		})
		b.Send(`<presence><show>away</show></presence>`)
		a.Expect("B away", func(e xmpptest.Elem) bool {
			return e.XMLName.Local == "presence" && e.Attr("from") == b.JID && strings.Contains(e.Inner, "away")
		})
		// A second resource of A on n3 probes B's presence at login: the
		// answer comes from n3's mirror of B's session on n2.
		a3 := xmpptest.Login(t, addr(2), numberA, pass[numberA], "a3")
		a3.Send(`<presence/>`)
		// (With or without "away": n3 may hear of it after the probe.)
		a3.Expect("B's presence (probe)", func(e xmpptest.Elem) bool {
			return e.XMLName.Local == "presence" && e.Attr("from") == b.JID && e.Attr("type") == ""
		})
		a3.Send(`</stream:stream>`)
	})

	// B blocks A on n2; n1, where A's messages are routed and B's
	// blocklist is cached too, learns it through NATS.
	t.Run("blocking across nodes", func(t *testing.T) {
		b.Send(`<iq type='set' id='blk'><block xmlns='urn:xmpp:blocking'><item jid='` + numberA + `@localhost'/></block></iq>`)
		b.Expect("block result", func(e xmpptest.Elem) bool { return e.Attr("id") == "blk" })
		if !blockedWithin(t, a, b, 5*time.Second) {
			t.Fatal("n1 never applied B's block made on n2")
		}
		b.Send(`<iq type='set' id='unblk'><unblock xmlns='urn:xmpp:blocking'/></iq>`)
		b.Expect("unblock result", func(e xmpptest.Elem) bool { return e.Attr("id") == "unblk" })
		if blockedWithin(t, a, b, 0) {
			// The unblock may take a moment to reach n1 too.
			deadline := time.Now().Add(5 * time.Second)
			for blockedWithin(t, a, b, 0) {
				if time.Now().After(deadline) {
					t.Fatal("n1 never applied B's unblock made on n2")
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	})

	// A's third resource, on n3, enables carbons: it gets copies of what
	// B (n2) writes to A's resource on n1, made on n2, and of what A writes
	// from n1, made on n1.
	t.Run("carbons across nodes", func(t *testing.T) {
		a3 := xmpptest.Login(t, addr(2), numberA, pass[numberA], "carbons")
		a3.Send(`<iq type='set' id='cb'><enable xmlns='urn:xmpp:carbons:2'/></iq>`)
		a3.Expect("carbons enabled", func(e xmpptest.Elem) bool { return e.Attr("id") == "cb" && e.Attr("type") == "result" })
		until(t, b, a, a.JID, "rcv", func() {
			a3.Expect("received carbon", func(e xmpptest.Elem) bool {
				return e.XMLName.Local == "message" && strings.Contains(e.Inner, "<received xmlns=\"urn:xmpp:carbons:2\"")
			})
		})
		until(t, a, b, numberB+"@localhost", "snt", func() {
			a3.Expect("sent carbon", func(e xmpptest.Elem) bool {
				return e.XMLName.Local == "message" && strings.Contains(e.Inner, "<sent xmlns=\"urn:xmpp:carbons:2\"")
			})
		})
		a3.Send(`</stream:stream>`)
	})

	// xmppctl on any node: a reset made through n1 closes E's sessions
	// on n2 and n3 (n1 closes its mirrors of them through their nodes).
	t.Run("account reset closes sessions on every node", func(t *testing.T) {
		e2 := xmpptest.Login(t, addr(1), numberE, pass[numberE], "e2")
		e3 := xmpptest.Login(t, addr(2), numberE, pass[numberE], "e3")
		for _, e := range []*xmpptest.Client{e2, e3} {
			e.Available()
			stop := answering(e)
			reach(t, a, e) // n1 knows the session
			stop()
		}
		xmppctl(t, bins["xmppctl"], nodes[0].env, "account", "reset", numberE, "--print")
		for _, c := range []*xmpptest.Client{e2, e3} {
			if cond := c.ExpectStreamError(); cond != "not-authorized" {
				t.Errorf("%s: stream error %q, want not-authorized", c.JID, cond)
			}
		}
	})

	t.Run("stream resumed on another node", func(t *testing.T) {
		resumeElsewhere(t, a, addr(1), addr(2), pass[numberD])
	})

	t.Run("offline on one node, delivered on another, one notice", func(t *testing.T) {
		a.Send(`<message type='chat' to='` + numberC + `@localhost' id='off1'><body>while you were out</body></message>`)
		a.Sync()
		first := sms.Wait(t, numberC, 1, 15*time.Second)
		if first.Purpose != "notice" {
			t.Errorf("SMS to C: %+v", first)
		}
		c := xmpptest.Login(t, addr(2), numberC, pass[numberC], "c3")
		c.Send(`<presence/>`)
		c.Send(`<iq type='get' id='after' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`)
		n := 0
		for i := 0; i < 40; i++ {
			e := c.Next()
			if answerPings(c, e) && e.Attr("id") != "after" {
				continue
			}
			if e.Attr("id") == "after" {
				break
			}
			if e.XMLName.Local == "message" && body(e) == "while you were out" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("C got the offline message %d times, want 1", n)
		}
		ids := map[string]bool{}
		for _, m := range sms.To(numberC) {
			ids[m.ID] = true
		}
		if len(ids) != 1 {
			t.Errorf("C got %d distinct SMS, want 1: %+v", len(ids), sms.To(numberC))
		}
	})

	t.Run("a notice window opened on another node closes on time", func(t *testing.T) {
		// The windows close on the node that runs their job: send from
		// another one.
		from := a
		if runs(t, nodes[0], "notice windows") {
			from = b
		}
		const fresh = "+821066667777"
		for _, id := range []string{"w1", "w2"} {
			from.Send(`<message type='chat' to='` + fresh + `@localhost' id='` + id + `'><body>` + id + `</body></message>`)
		}
		from.Sync()
		// The first is texted at once, the second when the window (400 ms)
		// closes: long before the scheduler's next look of its own (a
		// minute).
		start := time.Now()
		sms.Wait(t, fresh, 2, 10*time.Second)
		t.Logf("both notices within %v", time.Since(start).Round(time.Millisecond))
	})

	var b3 *xmpptest.Client
	tt := t
	t.Run("SIGKILL of the receiver's node", func(t *testing.T) {
		b3 = killReceiverNode(t, a, b, nodes[1], func() *xmpptest.Client {
			// The new session outlives this subtest: the next one uses it.
			return xmpptest.Login(tt, addr(2), numberB, pass[numberB], "b3")
		})
	})
	if b3 == nil {
		t.FailNow()
	}
	t.Run("NATS restarted under load", func(t *testing.T) {
		restartNATS(t, nats, a, b3, nodes[0])
	})
	t.Run("SIGKILL of the sender's node", func(t *testing.T) {
		killSenderNode(t, a, b3, nodes[0])
		// A's client logs in again on another node.
		a3 := xmpptest.Login(t, addr(2), numberA, pass[numberA], "again")
		a3.Send(`<message type='chat' to='` + b3.JID + `'><body>back</body></message>`)
		// B may still get some of what A wrote after the last answered
		// ping before it.
		for i := 0; ; i++ {
			if e := b3.Next(); body(e) == "back" {
				break
			}
			if i > 500 {
				t.Fatal("B never got A's message from n3")
			}
		}
	})
}

// killSenderNode: A on n1 streams numbered messages to B on n3 with a
// ping after every 8; n1 is killed after 40 were confirmed. Every
// message sent before an answered ping reaches B (n1 answers an iq only
// once what it published before is at the NATS server).
func killSenderNode(t *testing.T, a, b *xmpptest.Client, n1 *node) {
	const total, every, killAt = 400, 8, 40
	var mu sync.Mutex
	got := map[int]bool{}
	confirmed := 0
	for k := 1; k <= total; k++ {
		a.Send(fmt.Sprintf(`<message type='chat' to='%s'><body>s%d</body></message>`, b.JID, k))
		if k%every != 0 {
			continue
		}
		id := "s" + strconv.Itoa(k)
		a.Send(`<iq type='get' id='` + id + `' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`)
		a.Expect("ping answer", func(e xmpptest.Elem) bool { return e.Attr("id") == id })
		confirmed = k
		if k == killAt {
			// Killed while A goes on writing: what it wrote after this
			// answer may be lost, nothing before.
			go n1.kill()
			for j := k + 1; j <= total; j++ {
				if _, err := fmt.Fprintf(a.Conn, `<message type='chat' to='%s'><body>s%d</body></message>`, b.JID, j); err != nil {
					break
				}
			}
			break
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	missing := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for k := 1; k <= confirmed; k++ {
			if !got[k] {
				n++
			}
		}
		return n
	}
	for missing() > 0 && time.Now().Before(deadline) {
		e, err := b.TryNext(time.Until(deadline))
		if err != nil {
			break
		}
		if answerPings(b, e) {
			continue
		}
		if k, err := strconv.Atoi(strings.TrimPrefix(body(e), "s")); err == nil && strings.HasPrefix(body(e), "s") {
			mu.Lock()
			got[k] = true
			mu.Unlock()
		}
	}
	<-n1.done
	if n := missing(); n > 0 {
		t.Errorf("%d of %d acknowledged messages lost with the sender's node", n, confirmed)
	}
}

// runs reports whether n runs the once-per-cluster job (its /metrics).
func runs(t *testing.T, n *node, job string) bool {
	t.Helper()
	resp, err := http.Get("http://127.0.0.1:" + n.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return bytes.Contains(b, []byte(`xmppd_job_running{job="`+job+`"} 1`))
}

// health waits until n's /healthz answers want, for at most 10 s.
func (n *node) health(t *testing.T, want int) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := client.Get("http://127.0.0.1:" + n.http + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s /healthz not %d after 10 s (%v)", n.name, want, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// restartNATS: A on n1 streams numbered messages to B on n3 with a ping
// after every 8; NATS stops after 40 were confirmed (n1's /healthz turns
// 503), A goes on, NATS starts again (200), A goes on. Every confirmed
// message reaches B: once the nodes are back on NATS, or, if it waited
// longer than the ack timeout, from offline storage at B's next
// available presence.
func restartNATS(t *testing.T, nats *natsServer, a, b *xmpptest.Client, n1 *node) {
	const total, every, stopAt, startAt = 200, 8, 40, 120
	var mu sync.Mutex
	got := map[int]int{}
	more := make(chan struct{}, 1)
	readerDone := make(chan struct{})
	// B's reader runs until the answer to its own last ping, so that it
	// takes nothing the next test expects.
	go func() {
		defer close(readerDone)
		for i := 0; i < 10*total; i++ {
			e, err := b.TryNext(60 * time.Second)
			if err != nil || e.Attr("id") == "nats-end" {
				return
			}
			if answerPings(b, e) {
				continue
			}
			if k, err := strconv.Atoi(strings.TrimPrefix(body(e), "r")); err == nil && strings.HasPrefix(body(e), "r") {
				mu.Lock()
				got[k]++
				mu.Unlock()
				select {
				case more <- struct{}{}:
				default:
				}
			}
		}
	}()
	for k := 1; k <= total; k++ {
		a.Send(fmt.Sprintf(`<message type='chat' to='%s@localhost'><body>r%d</body></message>`, numberB, k))
		if k%every != 0 {
			continue
		}
		id := "r" + strconv.Itoa(k)
		a.Send(`<iq type='get' id='` + id + `' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`)
		a.Expect("ping answer", func(e xmpptest.Elem) bool { return e.Attr("id") == id })
		switch k {
		case stopAt:
			nats.stop()
			n1.health(t, http.StatusServiceUnavailable)
		case startAt:
			nats.start(t)
			n1.health(t, http.StatusOK)
		}
	}
	complete := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= total
	}
	// Within the resend delay once the nodes are back; past the ack
	// timeout a message is stored, and B's next available presence
	// brings it.
	deadline := time.Now().Add(20 * time.Second)
	nudged := false
	for !complete() && time.Now().Before(deadline) {
		select {
		case <-more:
		case <-time.After(100 * time.Millisecond):
		}
		if !nudged && time.Until(deadline) < 8*time.Second {
			nudged = true
			b.Send(`<presence type='unavailable'/>`)
			b.Send(`<presence/>`)
		}
	}
	b.Send(`<iq type='get' id='nats-end' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`)
	<-readerDone
	mu.Lock()
	defer mu.Unlock()
	var lost []int
	dups := 0
	for k := 1; k <= total; k++ {
		if got[k] == 0 {
			lost = append(lost, k)
		}
		if got[k] > 1 {
			dups++
		}
	}
	t.Logf("%d confirmed, %d received, %d twice; B nudged to fetch stored ones: %v", total, len(got), dups, nudged)
	if len(lost) > 0 {
		t.Errorf("%d acknowledged messages lost across the NATS restart: %v", len(lost), lost)
	}
}

// killReceiverNode: A on n1 streams numbered messages to B on n2 with a
// ping after every 8; n2 is killed after 100 were confirmed. Every message
// sent before an answered ping reaches B: on n2 before the kill, or, once
// n1 found n2 dead, routed again to B's new session on n3 (or stored, and
// delivered at that login). A, subscribed to B, learns that B's session on
// n2 went offline.
func killReceiverNode(t *testing.T, a, b *xmpptest.Client, n2 *node, login func() *xmpptest.Client) *xmpptest.Client {
	const total, killAt, every = 300, 100, 8
	var mu sync.Mutex
	got := map[int]int{}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			e, err := b.TryNext(30 * time.Second)
			if err != nil {
				return
			}
			if answerPings(b, e) {
				continue
			}
			if k, err := strconv.Atoi(strings.TrimPrefix(body(e), "n")); err == nil && strings.HasPrefix(body(e), "n") {
				mu.Lock()
				got[k]++
				mu.Unlock()
			}
		}
	}()
	confirmed := 0
	killed := false
	gone := 0 // unavailable presence from B's session on n2
	isGone := func(e xmpptest.Elem) bool {
		return e.XMLName.Local == "presence" && e.Attr("type") == "unavailable" && e.Attr("from") == b.JID
	}
	for k := 1; k <= total; k++ {
		a.Send(fmt.Sprintf(`<message type='chat' to='%s@localhost'><body>n%d</body></message>`, numberB, k))
		if k%every == 0 || k == total {
			id := "k" + strconv.Itoa(k)
			a.Send(`<iq type='get' id='` + id + `' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`)
			a.Expect("ping answer", func(e xmpptest.Elem) bool {
				if isGone(e) {
					gone++
				}
				return e.Attr("id") == id
			})
			confirmed = k
			if !killed && confirmed >= killAt {
				n2.kill()
				killed = true
			}
		}
	}
	<-readerDone
	mu.Lock()
	before := len(got)
	mu.Unlock()
	b3 := login()
	b3.Send(`<presence/>`)
	// Offline messages come in chunks, each followed by a ping the client
	// answers; read until every confirmed message is there, for at most
	// 20 s.
	deadline := time.Now().Add(20 * time.Second)
	missing := func() bool {
		for k := 1; k <= confirmed; k++ {
			if got[k] == 0 {
				return true
			}
		}
		return false
	}
	for missing() && time.Now().Before(deadline) {
		e, err := b3.TryNext(time.Until(deadline))
		if err != nil {
			break
		}
		if answerPings(b3, e) {
			continue
		}
		if k, err := strconv.Atoi(strings.TrimPrefix(body(e), "n")); err == nil && strings.HasPrefix(body(e), "n") {
			got[k]++
		}
	}
	var lost []int
	dups := 0
	for k := 1; k <= confirmed; k++ {
		switch got[k] {
		case 0:
			lost = append(lost, k)
		case 1:
		default:
			dups++
		}
	}
	t.Logf("%d confirmed, %d received on n2 before the kill, %d in all; %d twice", confirmed, before, len(got), dups)
	if len(lost) > 0 {
		t.Errorf("%d acknowledged messages lost: %v", len(lost), lost)
	}
	if gone == 0 {
		a.Expect("B's session on n2 gone", isGone)
	}
	return b3
}

// resumeElsewhere: D enables resumable stream management on n2, its
// connection drops, A (n1) writes to it while it hibernates; D resumes on
// n3 and gets what it missed; then A's messages reach it on n3.
func resumeElsewhere(t *testing.T, a *xmpptest.Client, addr2, addr3, passD string) {
	d := xmpptest.Login(t, addr2, numberD, passD, "d2")
	d.Send(`<enable xmlns='urn:xmpp:sm:3' resume='true'/>`)
	en := d.Expect("enabled", func(e xmpptest.Elem) bool { return e.XMLName.Local == "enabled" })
	d.Available()
	stop := answering(d)
	reach(t, a, d)
	stop()
	d.Conn.Close()
	a.Send(`<message type='chat' to='` + d.JID + `'><body>while you hibernate</body></message>`)
	a.Sync()
	// n2 sees the connection drop a moment later; until then the session
	// is not resumable elsewhere (item-not-found): try again.
	var r *xmpptest.Client
	deadline := time.Now().Add(5 * time.Second)
	for {
		r = xmpptest.Dial(t, addr3)
		r.Authenticate(numberD, passD)
		r.Send(`<resume xmlns='urn:xmpp:sm:3' previd='` + en.Attr("id") + `' h='0'/>`)
		e := r.Expect("resumed or failed", func(e xmpptest.Elem) bool {
			return e.XMLName.Local == "resumed" || e.XMLName.Local == "failed"
		})
		if e.XMLName.Local == "resumed" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never resumed on n3: %v", e)
		}
		r.Conn.Close()
		time.Sleep(50 * time.Millisecond)
	}
	r.JID = d.JID
	r.Expect("the message sent while it hibernated", func(e xmpptest.Elem) bool { return body(e) == "while you hibernate" })
	// Routed to n3 now (n1 learns it a moment later).
	until(t, a, nil, d.JID, "resumed", func() {
		r.Expect("a message on n3", func(e xmpptest.Elem) bool { return strings.HasPrefix(body(e), "resumed") })
	})
	r.Send(`</stream:stream>`)
}
