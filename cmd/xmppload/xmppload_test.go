package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
)

func TestParseAccounts(t *testing.T) {
	in := "# comment\n\n+821055000000@localhost pw one\nbob@example.test\tsecret\n  carol@x.test   p  \n"
	got, err := parseAccounts(strings.NewReader(in), 10)
	if err != nil {
		t.Fatal(err)
	}
	want := []account{{"+821055000000@localhost", "pw one"}, {"bob@example.test", "secret"}, {"carol@x.test", "p"}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	if got[0].local() != "+821055000000" {
		t.Errorf("local = %q", got[0].local())
	}
	if got, _ := parseAccounts(strings.NewReader(in), 1); len(got) != 1 {
		t.Errorf("limit 1: got %d accounts", len(got))
	}
	for _, bad := range []string{"alice@x.test\n", "alice pw\n"} {
		if _, err := parseAccounts(strings.NewReader(bad), 10); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestPatternAccounts(t *testing.T) {
	got, err := patternAccounts("+8210%08d@localhost", "pw", 55000000, 3)
	if err != nil {
		t.Fatal(err)
	}
	if got[2].jid != "+821055000002@localhost" || got[2].password != "pw" || got[2].local() != "+821055000002" {
		t.Errorf("got %+v", got[2])
	}
	for _, bad := range []string{"user@localhost", "u%d%d@x", "u%d"} {
		if _, err := patternAccounts(bad, "pw", 0, 1); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestResolveLoopback(t *testing.T) {
	lookup := func(_ context.Context, host string) ([]net.IPAddr, error) {
		switch host {
		case "lo.test":
			return []net.IPAddr{{IP: net.ParseIP("127.0.0.2")}, {IP: net.IPv6loopback}}, nil
		case "mixed.test":
			return []net.IPAddr{{IP: net.ParseIP("127.0.0.1")}, {IP: net.ParseIP("192.0.2.1")}}, nil
		}
		return nil, errors.New("no such host")
	}
	ok := map[string]string{
		"127.0.0.1:5222":       "127.0.0.1:5222",
		"127.9.8.7:5222":       "127.9.8.7:5222",
		"[::1]:5223":           "[::1]:5223",
		"lo.test:5222":         "127.0.0.2:5222",
		"[::ffff:127.0.0.1]:1": "127.0.0.1:1",
	}
	for in, want := range ok {
		got, err := resolveLoopback(context.Background(), in, lookup)
		if err != nil || got != want {
			t.Errorf("%s: got %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"10.0.0.1:5222", "[::2]:5222", "mixed.test:5222", "nohost.test:5222", "127.0.0.1", "127.0.0.1:0", "0.0.0.0:5222"} {
		if got, err := resolveLoopback(context.Background(), in, lookup); err == nil {
			t.Errorf("%s: accepted as %s", in, got)
		}
	}
}

func TestFlagsBounded(t *testing.T) {
	base := []string{"--password", "pw"}
	for _, extra := range [][]string{
		{"--clients", "200001"},
		{"--src", "10.0.0.1"},
		{"--src", "127.0.0.9-127.0.0.2"},
		{"--src", "127.0.0.1-127.0.2.0"},
		{"--ramp", "1ms"},
		{"--clients", "0"},
		{"--duration", "6m"},
		{"--scenario", "route", "--clients", "3"},
		{"--scenario", "flood"},
		{"--tls", "none"},
		{"--mech", "DIGEST-MD5"},
		{"--size", "10"},
		{"--rate", "-1"},
	} {
		if _, err := parseFlags(append(append([]string{}, base...), extra...), io.Discard); err == nil {
			t.Errorf("%v: accepted", extra)
		}
	}
	if _, err := parseFlags(base, io.Discard); err != nil {
		t.Errorf("defaults: %v", err)
	}
	if _, err := parseFlags(nil, io.Discard); err == nil {
		t.Error("no accounts: accepted")
	}
}

// TestScannerCounts feeds messages in pieces of every size: each is found
// once, with its sequence and timestamp, whatever the quoting, and bounces
// are told apart.
func TestScannerCounts(t *testing.T) {
	var stream []byte
	stream = append(stream, "<presence from='a@x/r'/>"...)
	for seq := range uint64(20) {
		stream = appendMessage(stream, "+821055000001@localhost", seq, 1_000_000+int64(seq), 100)
	}
	// As a server may write them: other attribute order, double quotes.
	stream = append(stream, `<message from="b@x/r" id="dlt-20" to="a@x" type="chat"><body>t1000020;xxx</body></message>`...)
	stream = append(stream, `<message id='dlt-21' type='error' from='b@x'><body>t1000021;x</body><error type='cancel'/></message>`...)
	stream = append(stream, `<iq type='get' id='ping1'><ping xmlns='urn:xmpp:ping'/></iq>`...)
	for _, chunk := range []int{1, 2, 3, 7, 64, 1000, len(stream)} {
		sc := scanner{maxBuf: 1 << 20}
		var got []seen
		for i := 0; i < len(stream); i += chunk {
			if err := sc.feed(stream[i:min(i+chunk, len(stream))], func(m seen) { got = append(got, m) }); err != nil {
				t.Fatal(err)
			}
		}
		if len(got) != 22 {
			t.Fatalf("chunk %d: %d messages, want 22", chunk, len(got))
		}
		for i, m := range got {
			if m.seq != uint64(i) || m.sentAt != 1_000_000+int64(i) || m.isError != (i == 21) {
				t.Errorf("chunk %d: message %d = %+v", chunk, i, m)
			}
		}
		if len(sc.buf) > 600 {
			t.Errorf("chunk %d: %d bytes kept", chunk, len(sc.buf))
		}
	}
}

func TestAppendMessageSize(t *testing.T) {
	b := appendMessage(nil, "p@x", 7, 1234567890123456789, 100)
	s := string(b)
	i, j := strings.Index(s, "<body>"), strings.Index(s, "</body>")
	if j-i-len("<body>") != 100 {
		t.Errorf("body of %d bytes: %s", j-i-len("<body>"), s)
	}
	if !strings.Contains(s, "id='dlt-7'") || !strings.Contains(s, "to='p@x'") {
		t.Error(s)
	}
}

func TestSeqSet(t *testing.T) {
	var s seqSet
	for _, v := range []uint64{0, 5, 63, 64, 100000} {
		if !s.add(v) {
			t.Errorf("%d: not new", v)
		}
	}
	if s.add(64) || s.add(0) {
		t.Error("duplicate taken as new")
	}
}

func TestHistQuantiles(t *testing.T) {
	var h hist
	for v := uint64(1); v <= 10000; v++ {
		h.add(v)
	}
	for _, c := range []struct {
		q    float64
		want uint64
	}{{0.5, 5000}, {0.9, 9000}, {0.99, 9900}, {1, 10000}} {
		got := h.quantile(c.q)
		if got < c.want*96/100 || got > c.want*104/100 {
			t.Errorf("q%.2f = %d, want about %d", c.q, got, c.want)
		}
	}
	if h.max != 10000 || h.n != 10000 {
		t.Errorf("max %d n %d", h.max, h.n)
	}
	var small hist
	small.add(3)
	if small.quantile(0.99) != 3 {
		t.Errorf("one value: %d", small.quantile(0.99))
	}
	var m hist
	m.merge(&h)
	m.merge(&small)
	if m.n != 10001 || m.max != 10000 {
		t.Errorf("merge: n %d max %d", m.n, m.max)
	}
	// Every bucket's low bound maps back to it.
	for i := 0; i < 40*32; i++ {
		if b := bucketOf(bucketLow(i)); b != i {
			t.Fatalf("bucket %d: low %d maps to %d", i, bucketLow(i), b)
		}
	}
}

func TestParseProc(t *testing.T) {
	stat := "1234 (xmpp d (x)) S 77 1234 1234 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 9 0 100 1000 50 18446744073709551615"
	ppid, ticks, err := parseStat(stat)
	if err != nil || ppid != 77 || ticks != 281 {
		t.Errorf("got %d %d %v", ppid, ticks, err)
	}
	if _, _, err := parseStat("1234 (x"); err == nil {
		t.Error("malformed stat accepted")
	}
	if rss := parseRSS("Name:\txmppd\nVmHWM:\t  9999 kB\nVmRSS:\t   51540 kB\n"); rss != 51540 {
		t.Errorf("rss %d", rss)
	}
}

// With several addresses, client i logs in at address i mod n: the two
// clients of every route pair are on different nodes.
func TestSpread(t *testing.T) {
	var accs []account
	for i := range 10 {
		accs = append(accs, account{jid: fmt.Sprintf("+8210000000%02d@localhost", i)})
	}
	d := &dialer{addr: "127.0.0.1:1"}
	if got := d.addrOf(accs[3]); got != "127.0.0.1:1" {
		t.Fatalf("one address: %s", got)
	}
	addrs := []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}
	d.spread(addrs, accs)
	count := map[string]int{}
	for i, a := range accs {
		count[d.addrOf(a)]++
		if d.addrOf(a) == d.addrOf(accs[i^1]) {
			t.Errorf("pair %d and %d on one node %s", i, i^1, d.addrOf(a))
		}
	}
	if count[addrs[0]] != 4 || count[addrs[1]] != 3 || count[addrs[2]] != 3 {
		t.Errorf("spread %v", count)
	}
}
