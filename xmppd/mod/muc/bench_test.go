package muc_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"dialtone/auth"
	"dialtone/xmppd/internal/servertest"
	"dialtone/xmppd/mod/muc"
	"dialtone/xmppd/router"
)

// countSink counts what a session is sent (a stream's queue would hold it).
type countSink struct{ stanzas, bytes atomic.Int64 }

func (s *countSink) Send(b []byte) bool {
	s.stanzas.Add(1)
	s.bytes.Add(int64(len(b)))
	return true
}
func (s *countSink) Close(string, string) {}

// BenchmarkRoomFanout measures the room engine: one occupant sends to a
// room of n, and every occupant's session is sent the message (its
// stanza-id stamped, archived). It reports deliveries per second.
func BenchmarkRoomFanout(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("occupants=%d", n), func(b *testing.B) { benchFanout(b, n) })
	}
}

func benchFanout(b *testing.B, n int) {
	parser, err := auth.NewNumberParser("KR", nil)
	if err != nil {
		b.Fatal(err)
	}
	r, err := router.New(router.Config{Domain: "localhost", Parser: parser, Accounts: servertest.NewMemAccounts()})
	if err != nil {
		b.Fatal(err)
	}
	m := muc.New(r, newMemStore())
	if err := r.Load(m); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close(context.Background()) })
	ctx := context.Background()
	roomJID := jid.MustParse("bench@groups.localhost")
	sinks := make([]*countSink, n)
	sessions := make([]*router.Session, n)
	for i := range n {
		full := jid.MustParse(fmt.Sprintf("+82105%07d@localhost/phone", i))
		sinks[i] = &countSink{}
		sessions[i] = router.NewSession(ctx, full.Bare(), sinks[i])
		if err := r.Bind(sessions[i], full, nil); err != nil {
			b.Fatal(err)
		}
		to, _ := roomJID.WithResource(fmt.Sprintf("n%d", i))
		r.Route(ctx, &router.Stanza{Kind: router.KindPresence, From: full, To: to,
			Inner: []byte(`<x xmlns="http://jabber.org/protocol/muc"><history maxstanzas="0"/></x>`)})
		if i == 0 {
			r.Route(ctx, &router.Stanza{Kind: router.KindIQ, Type: "set", ID: "cfg", From: full, To: roomJID,
				Payload: xmlName("http://jabber.org/protocol/muc#owner", "query"),
				Inner:   []byte(`<query xmlns="http://jabber.org/protocol/muc#owner"><x xmlns="jabber:x:data" type="submit"/></query>`)})
		}
	}
	before := sinks[n-1].stanzas.Load()
	body := []byte(`<body>Hello, this is a message of about a hundred bytes on the wire.</body>`)
	sender := sessions[0]
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		r.FromSession(ctx, sender, &router.Stanza{Kind: router.KindMessage, Type: "groupchat", ID: "m", From: sender.JID(), To: roomJID, Inner: body})
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if got := sinks[n-1].stanzas.Load() - before; got != int64(b.N) {
		b.Fatalf("the last occupant got %d of %d messages", got, b.N)
	}
	b.ReportMetric(float64(b.N)*float64(n)/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
}
