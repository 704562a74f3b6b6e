package cluster

import (
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"dialtone/internal/testbin"
	"dialtone/internal/xmpptest"
)

const streamsNS = "http://etherx.jabber.org/streams"

// TestRollingRestart: three nodes, six clients with XEP-0198 spread over
// them, each writing numbered messages to a client on another node; each
// node in turn is stopped with SIGTERM and started again. The clients of
// a stopping node reconnect to another node and resume their session
// there (or log in again). Every message the server acknowledged
// (<a h/>) arrives exactly once; none arrives twice.
func TestRollingRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster: not with -short (make check); make test runs it")
	}
	nodes, _, _, bins := startCluster(t)
	nums := []string{numberA, numberB, numberC, numberD, numberE, "+821012340000"}
	r := &rolling{nodes: nodes, down: make([]bool, len(nodes))}
	clients := make([]*smClient, len(nums))
	for i, num := range nums {
		pass := xmppctl(t, bins["xmppctl"], nodes[0].env, "account", "reset", num, "--print")
		clients[i] = &smClient{r: r, t: t, num: num, pass: pass, name: "c" + strconv.Itoa(i),
			node: i % len(nodes), acked: map[string]bool{}, got: map[string]int{}, down: make(chan struct{}, 1)}
	}
	for i, c := range clients {
		c.to = nums[(i+1)%len(nums)] + "@localhost"
		if err := c.connect(c.node); err != nil {
			t.Fatalf("%s: first login: %v", c.name, err)
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() { c.run(stop) })
	}
	// Traffic flows before the first restart and after each.
	progress := func(what string) {
		t.Helper()
		base := make([]int, len(clients))
		for i, c := range clients {
			base[i] = c.ackedCount()
		}
		deadline := time.Now().Add(20 * time.Second)
		for i, c := range clients {
			for c.ackedCount() < base[i]+10 {
				if time.Now().After(deadline) {
					t.Fatalf("%s: %s: no traffic acknowledged (%d acked)", what, c.name, c.ackedCount())
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	progress("before the restarts")
	for i, n := range nodes {
		start := time.Now()
		r.setDown(i, true)
		n.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-n.done:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s did not stop within 30 s of SIGTERM", n.name)
		}
		stopped := time.Since(start)
		// It said goodbye: the others did not wait for it to fall silent.
		for j, o := range nodes {
			if j != i {
				o.waitLog(t, 5*time.Second, fmt.Sprintf(`"msg":"cluster: node left","node":"%s","peer":"%s"`, o.name, n.name))
				if b, _ := os.ReadFile(o.log); strings.Contains(string(b), `"msg":"cluster: node silent, dropped with its sessions","node":"`+o.name+`","peer":"`+n.name+`"`) {
					t.Errorf("%s took %s for dead", o.name, n.name)
				}
			}
		}
		n.restart(t, bins["xmppd"], &r.mu)
		for j, o := range nodes {
			if j != i {
				n.waitLog(t, 10*time.Second, fmt.Sprintf(`"msg":"cluster: node joined","node":"%s","peer":"%s"`, n.name, o.name))
			}
		}
		r.setDown(i, false)
		t.Logf("%s stopped in %v, back after %v", n.name, stopped.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
		progress("after restarting " + n.name)
	}
	close(stop)
	wg.Wait()
	// The last acknowledgements: each client asks for one and waits.
	for _, c := range clients {
		c.flush()
	}
	// Every acknowledged message arrives (bounded), then none twice.
	deadline := time.Now().Add(30 * time.Second)
	for _, c := range clients {
		for _, rcv := range clients {
			if rcv.num+"@localhost" == c.to {
				for _, id := range c.ackedIDs() {
					for rcv.count(id) == 0 && time.Now().Before(deadline) {
						time.Sleep(20 * time.Millisecond)
					}
				}
			}
		}
	}
	resumed, fresh, sent, acked := 0, 0, 0, 0
	for _, c := range clients {
		c.mu.Lock()
		resumed, fresh, sent, acked = resumed+c.resumed, fresh+c.fresh, sent+c.seq, acked+len(c.acked)
		c.mu.Unlock()
	}
	t.Logf("%d messages sent, %d acknowledged; %d streams resumed, %d new logins", sent, acked, resumed, fresh)
	for _, c := range clients {
		var rcv *smClient
		for _, o := range clients {
			if o.num+"@localhost" == c.to {
				rcv = o
			}
		}
		var lost []string
		for _, id := range c.ackedIDs() {
			if rcv.count(id) == 0 {
				lost = append(lost, id)
			}
		}
		if len(lost) > 0 {
			t.Errorf("%s: %d acknowledged messages never arrived: %v", c.name, len(lost), lost)
		}
		rcv.mu.Lock()
		for id, n := range rcv.got {
			if n > 1 {
				t.Errorf("%s got %s %d times", rcv.name, id, n)
			}
		}
		rcv.mu.Unlock()
	}
	for _, c := range clients {
		c.close()
	}
}

// rolling is which nodes are down, for clients choosing where to go.
type rolling struct {
	nodes []*node
	mu    sync.Mutex
	down  []bool
}

func (r *rolling) setDown(i int, d bool) {
	r.mu.Lock()
	r.down[i] = d
	r.mu.Unlock()
}

// next is the first node after i that is up.
func (r *rolling) next(i int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := 1; k <= len(r.nodes); k++ {
		if j := (i + k) % len(r.nodes); !r.down[j] {
			return j
		}
	}
	return (i + 1) % len(r.nodes)
}

// addr is node i's client address.
func (r *rolling) addr(i int) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return "127.0.0.1:" + r.nodes[i].c2s
}

// restart starts n again, after it stopped, on new ports (its old ones
// may have been taken meanwhile) with a new log file.
func (n *node) restart(t *testing.T, bin string, mu *sync.Mutex) {
	t.Helper()
	mu.Lock()
	n.c2s, n.http = testbin.FreePort(t), testbin.FreePort(t)
	mu.Unlock()
	for i, kv := range n.env {
		switch {
		case strings.HasPrefix(kv, "XMPPD_C2S_ADDR="):
			n.env[i] = "XMPPD_C2S_ADDR=127.0.0.1:" + n.c2s
		case strings.HasPrefix(kv, "XMPPD_HTTP_ADDR="):
			n.env[i] = "XMPPD_HTTP_ADDR=127.0.0.1:" + n.http
		}
	}
	n.log = strings.TrimSuffix(n.log, ".log") + "+.log"
	f, err := os.Create(n.log)
	if err != nil {
		t.Fatal(err)
	}
	n.done = make(chan struct{})
	n.cmd = exec.Command(bin)
	n.cmd.Env, n.cmd.Stdout, n.cmd.Stderr = n.env, f, f
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd, done := n.cmd, n.done
	go func() { cmd.Wait(); f.Close(); close(done) }()
	n.waitHealthy(t)
}

// softT turns the xmpptest helpers' fatal errors into a panic that
// smClient.connect recovers: a client reconnecting from its own
// goroutine may pick a node that is just stopping.
type softT struct{ testing.TB }

type softFail struct{ msg string }

func (softT) Helper()                           {}
func (softT) Fail()                             { panic(softFail{"Fail"}) }
func (softT) FailNow()                          { panic(softFail{"FailNow"}) }
func (softT) Error(args ...any)                 { panic(softFail{fmt.Sprint(args...)}) }
func (softT) Errorf(format string, args ...any) { panic(softFail{fmt.Sprintf(format, args...)}) }
func (softT) Fatal(args ...any)                 { panic(softFail{fmt.Sprint(args...)}) }
func (softT) Fatalf(format string, args ...any) { panic(softFail{fmt.Sprintf(format, args...)}) }

// smClient is a client with resumable stream management that writes
// numbered messages to "to" and counts what it gets, across
// reconnections.
type smClient struct {
	r          *rolling
	t          *testing.T
	num, pass  string
	name, to   string
	node       int
	down       chan struct{} // the reader saw the stream end
	wmu        sync.Mutex    // one writer at a time
	mu         sync.Mutex
	c          *xmpptest.Client
	previd     string
	inH        uint32   // stanzas received on the managed session
	out        []string // what was sent since <enable/>, in order: message ids, "" for others
	outBase    uint32   // the h of out[0]
	seq        int      // messages written
	acked      map[string]bool
	got        map[string]int
	resumed    int
	fresh      int
	lastAnswer chan uint32 // the h of the next <a/>, for flush
}

// connect reaches node i and resumes the managed session, or logs in
// again and enables a new one.
func (c *smClient) connect(i int) (err error) {
	defer func() {
		if p := recover(); p != nil {
			f, ok := p.(softFail)
			if !ok {
				panic(p)
			}
			err = fmt.Errorf("%s", f.msg)
		}
	}()
	cl := xmpptest.Dial(softT{c.t}, c.r.addr(i))
	cl.Authenticate(c.num, c.pass)
	c.mu.Lock()
	previd, inH := c.previd, c.inH
	c.mu.Unlock()
	var resend []string
	if previd != "" {
		cl.Send(`<resume xmlns='urn:xmpp:sm:3' previd='` + previd + `' h='` + strconv.FormatUint(uint64(inH), 10) + `'/>`)
		e := cl.Expect("resumed or failed", func(e xmpptest.Elem) bool {
			return e.XMLName.Local == "resumed" || e.XMLName.Local == "failed"
		})
		if e.XMLName.Local == "failed" {
			c.t.Logf("%s: resumption on %s failed: %v", c.name, c.r.nodes[i].name, e)
		}
		h, known := e.Attr("h"), e.Attr("h") != ""
		n, _ := strconv.ParseUint(h, 10, 32)
		c.mu.Lock()
		if known {
			c.ackUpTo(uint32(n))
		}
		if e.XMLName.Local == "resumed" {
			// What the server did not get is written again: it says
			// exactly how much it got.
			for _, id := range c.out {
				if id != "" {
					resend = append(resend, id)
				}
			}
			c.out, c.outBase = nil, uint32(n)
			c.resumed++
		}
		c.mu.Unlock()
		if e.XMLName.Local == "resumed" {
			c.attach(cl, i)
			for _, id := range resend {
				c.write(id)
			}
			return nil
		}
	}
	// A new session: what was not acknowledged may or may not have
	// arrived; it is not written again.
	cl.BindResource(c.name)
	cl.Send(`<enable xmlns='urn:xmpp:sm:3' resume='true'/>`)
	en := cl.Expect("enabled", func(e xmpptest.Elem) bool { return e.XMLName.Local == "enabled" || e.XMLName.Local == "failed" })
	if en.XMLName.Local != "enabled" {
		return fmt.Errorf("enable: %v", en)
	}
	c.mu.Lock()
	c.previd, c.inH, c.out, c.outBase = en.Attr("id"), 0, nil, 0
	c.fresh++
	c.mu.Unlock()
	c.attach(cl, i)
	c.send(`<presence/>`, "")
	return nil
}

// attach makes cl the client's stream and reads it until it ends.
func (c *smClient) attach(cl *xmpptest.Client, i int) {
	c.mu.Lock()
	c.c, c.node = cl, i
	c.mu.Unlock()
	go c.read(cl)
}

// ackUpTo marks the messages the server handled up to h (under mu).
func (c *smClient) ackUpTo(h uint32) {
	for h-c.outBase > 0 && len(c.out) > 0 {
		if c.out[0] != "" {
			c.acked[c.out[0]] = true
		}
		c.out, c.outBase = c.out[1:], c.outBase+1
	}
}

// send writes a stanza counted by stream management (id: the message's
// id, "" for others); false when the stream is gone.
func (c *smClient) send(s, id string) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	cl := c.c
	c.out = append(c.out, id)
	c.mu.Unlock()
	cl.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := io.WriteString(cl.Conn, s)
	return err == nil
}

// nonza writes what stream management does not count.
func (c *smClient) nonza(s string) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	cl := c.c
	c.mu.Unlock()
	cl.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(cl.Conn, s)
}

func (c *smClient) write(id string) bool {
	return c.send(`<message type='chat' id='`+id+`' to='`+c.to+`'><body>`+id+`</body></message>`, id)
}

// read takes what the server sends on cl until the stream ends.
func (c *smClient) read(cl *xmpptest.Client) {
	defer func() {
		select {
		case c.down <- struct{}{}:
		default:
		}
	}()
	for i := 0; i < 1_000_000; i++ {
		e, err := cl.TryNext(60 * time.Second)
		if err != nil || e.XMLName.Space == streamsNS {
			// As clients do: the stream is over, the socket goes.
			cl.Conn.Close()
			return
		}
		switch e.XMLName.Local {
		case "r":
			c.mu.Lock()
			h := c.inH
			c.mu.Unlock()
			c.nonza(`<a xmlns='urn:xmpp:sm:3' h='` + strconv.FormatUint(uint64(h), 10) + `'/>`)
		case "a":
			n, _ := strconv.ParseUint(e.Attr("h"), 10, 32)
			c.mu.Lock()
			c.ackUpTo(uint32(n))
			ch := c.lastAnswer
			c.lastAnswer = nil
			c.mu.Unlock()
			if ch != nil {
				ch <- uint32(n)
			}
		case "message", "presence", "iq":
			c.mu.Lock()
			c.inH++
			if e.XMLName.Local == "message" && body(e) != "" {
				c.got[body(e)]++
			}
			c.mu.Unlock()
			if e.XMLName.Local == "iq" && e.Attr("type") == "get" {
				c.send(`<iq type='result' id='`+e.Attr("id")+`' to='`+e.Attr("from")+`'/>`, "")
			}
		}
	}
}

// run writes a message every 20 ms (asking for an ack after each) until
// stop, and reconnects to another node when the stream ends.
func (c *smClient) run(stop chan struct{}) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-c.down:
			c.reconnect()
		case <-t.C:
			c.mu.Lock()
			c.seq++
			id := fmt.Sprintf("%s-%d", c.name, c.seq)
			c.mu.Unlock()
			if c.write(id) {
				c.nonza(`<r xmlns='urn:xmpp:sm:3'/>`)
			}
		}
	}
}

// reconnect tries the nodes that are up, from the one after the last,
// for at most 30 s.
func (c *smClient) reconnect() {
	deadline := time.Now().Add(30 * time.Second)
	c.mu.Lock()
	i := c.node
	c.mu.Unlock()
	for k := 0; k < 1000 && time.Now().Before(deadline); k++ {
		i = c.r.next(i)
		err := c.connect(i)
		if err == nil {
			return
		}
		c.t.Logf("%s: connecting to %s: %v", c.name, c.r.nodes[i].name, err)
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Errorf("%s: could not connect again within 30 s", c.name)
}

// flush asks for an ack of everything written and waits for it (5 s),
// reconnecting once when the stream ended meanwhile.
func (c *smClient) flush() {
	for try := 0; try < 2; try++ {
		ch := make(chan uint32, 1)
		c.mu.Lock()
		c.lastAnswer = ch
		c.mu.Unlock()
		c.nonza(`<r xmlns='urn:xmpp:sm:3'/>`)
		select {
		case <-ch:
			return
		case <-c.down:
			c.reconnect()
		case <-time.After(5 * time.Second):
			c.t.Errorf("%s: no <a/> within 5 s", c.name)
			return
		}
	}
}

func (c *smClient) ackedCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.acked)
}

func (c *smClient) ackedIDs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Collect(maps.Keys(c.acked))
}

func (c *smClient) count(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.got[id]
}

func (c *smClient) close() {
	c.nonza(`</stream:stream>`)
}
