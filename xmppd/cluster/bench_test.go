package cluster

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"dialtone/xmppd/router"
)

const window = 4096

// countSink counts what a session is sent and signals when it has n.
type countSink struct {
	n, want atomic.Int64
	done    chan struct{}
}

func (s *countSink) Send([]byte) bool {
	if s.n.Add(1) == s.want.Load() {
		close(s.done)
	}
	return true
}

func (s *countSink) Close(string, string) {}

// BenchmarkRoute: messages routed on one node to a session on the same
// node (local) and on another node through an in-process NATS server
// (remote), until the last one reached the session's Sink, at most window
// of them in flight. The remote figure includes the ack of each message.
func BenchmarkRoute(b *testing.B) {
	url := natsURL(b)
	for _, where := range []string{"local", "remote"} {
		b.Run(where, func(b *testing.B) {
			n1, n2 := newNode(b, url, "b1-"+where), newNode(b, url, "b2-"+where)
			k := &countSink{done: make(chan struct{})}
			k.want.Store(int64(b.N))
			alice1 := full(alice, "bench")
			sess := router.NewSession(context.Background(), alice, k)
			if err := n1.r.Bind(sess, alice1, nil); err != nil {
				b.Fatal(err)
			}
			from := n2
			if where == "local" {
				from = n1
			} else {
				deadline := time.Now().Add(5 * time.Second)
				for n2.r.Session(alice1) == nil {
					if time.Now().After(deadline) {
						b.Fatal("no mirror")
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
			st := chat(full(bob, "b"), alice1, "a message of about the size of a short chat line, a hundred bytes long..")
			st.Bytes()
			b.SetBytes(int64(len(st.Bytes())))
			b.ResetTimer()
			for i := range b.N {
				// At most window in flight, like a client's: beyond
				// maxPending unacknowledged ones a node stores messages
				// offline instead (a bounded queue), which is not what is
				// measured here.
				for int64(i)-k.n.Load() > window {
					time.Sleep(10 * time.Microsecond)
				}
				from.r.Route(context.Background(), st)
			}
			select {
			case <-k.done:
			case <-time.After(time.Minute):
				b.Fatalf("%d of %d arrived; %d to the Undelivered hooks (n1 %d); metrics n2: resent %v, rerouted %v, unacked %v", k.n.Load(), b.N,
					from.undelivered.Load(), n1.undelivered.Load(),
					metric(b, from.reg, "xmppd_cluster_stanzas_resent_total"), metric(b, from.reg, "xmppd_cluster_stanzas_rerouted_total"),
					metric(b, from.reg, "xmppd_cluster_unacknowledged"))
			}
			b.StopTimer()
		})
	}
}
