package sm_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"dialtone/internal/xmpptest"
	"dialtone/xmppd/internal/servertest"
	"dialtone/xmppd/mod/sm"
)

// BenchmarkResume1000 drops 1,000 managed sessions (10 accounts of 100
// resources), each with one message it did not acknowledge, and resumes
// them all at once on new authenticated connections: <resume/>, and the
// message again. Run it with -benchtime=1x; ns/op is the time for all
// 1,000.
func BenchmarkResume1000(b *testing.B) {
	const accounts, perAccount = 10, 100
	ts := servertest.Start(b, servertest.With(&sm.Module{ResumeTimeout: time.Hour}), func(c *servertest.Config) {
		c.MaxPending, c.MaxPendingPerIP = 5000, 5000
	})
	nums := make([]string, accounts)
	pass := make([]string, accounts)
	for i := range nums {
		nums[i] = fmt.Sprintf("+8210%08d", 20000000+i)
		pass[i] = ts.Account(b, nums[i])
	}
	sender := xmpptest.Login(b, ts.Addr, bob, ts.Account(b, bob), "s")
	for n := 0; n < b.N; n++ {
		b.StopTimer()
		clients := make([]*smClient, accounts*perAccount)
		parallel(len(clients), 50, func(i int) {
			c := enable(b, ts, nums[i/perAccount], pass[i/perAccount], fmt.Sprintf("r%d-%d", n, i%perAccount))
			c.Send(`<presence/>`)
			clients[i] = c
		})
		for _, c := range clients {
			sender.Send(`<message type='chat' to='` + c.JID + `'><body>hi</body></message>`)
		}
		sender.Sync()
		for _, c := range clients {
			c.Conn.Close()
		}
		waitHibernating(b, ts, nums, perAccount)
		// New connections, authenticated (TLS and SCRAM are the clients'
		// cost, not the resumption's), then all resume at once.
		conns := make([]*xmpptest.Client, len(clients))
		parallel(len(clients), 50, func(i int) {
			conns[i], _ = authenticate(b, ts, nums[i/perAccount], pass[i/perAccount])
		})
		b.StartTimer()
		var mu sync.Mutex
		var sum, worst time.Duration
		parallel(len(clients), len(clients), func(i int) {
			old, c := clients[i], conns[i]
			start := time.Now()
			c.Send(fmt.Sprintf(`<resume xmlns='urn:xmpp:sm:3' previd='%s' h='%d'/>`, old.id, old.h))
			nc := &smClient{Client: c, h: old.h, id: old.id}
			if e := nc.expect("resumed", named("resumed")); e.Attr("previd") != old.id {
				b.Errorf("resume %d: %v", i, e)
				return
			}
			nc.expect("the message", func(e xmpptest.Elem) bool { return strings.Contains(e.Inner, "<body>hi</body>") })
			d := time.Since(start)
			mu.Lock()
			sum, worst = sum+d, max(worst, d)
			mu.Unlock()
			clients[i] = nc
		})
		b.StopTimer()
		// Each resumption, from <resume/> to the message again.
		b.ReportMetric(float64(sum.Microseconds())/float64(len(clients))/1000, "ms-resume-mean")
		b.ReportMetric(float64(worst.Microseconds())/1000, "ms-resume-max")
		for _, c := range clients {
			c.Send(`</stream:stream>`)
			c.Conn.Close()
		}
	}
}

// parallel runs f(0…n-1) on at most width goroutines and waits.
func parallel(n, width int, f func(i int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, width)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f(i)
		}()
	}
	wg.Wait()
}

// waitHibernating polls (bounded) until every dropped session hibernates.
func waitHibernating(b *testing.B, ts *servertest.Server, nums []string, perAccount int) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := 0
		for _, num := range nums {
			for _, s := range ts.Sessions(jid.MustParse(num + "@localhost")) {
				if sm.Hibernating(s) {
					n++
				}
			}
		}
		if n >= len(nums)*perAccount {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d hibernating", n, len(nums)*perAccount)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
