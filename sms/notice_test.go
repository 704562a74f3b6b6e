package sms

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestNoticeText(t *testing.T) {
	const (
		sender = "+821012345678"
		domain = "example.com"
		pw     = "abcDEF23456"
	)
	a := func(n int) string { return strings.Repeat("a", n) }
	ya := func(n int) string { return strings.Repeat("я", n) }
	emoji := func(n int) string { return strings.Repeat("😀", n) }
	// head and the tails frame the preview: 48 + 2 = 50 characters without
	// a password, 48 + 58 = 106 with.
	const head = `New message from +821012345678 on example.com: "`
	const tail = `".`
	const pwTail = `". Log in with your phone number and password abcDEF23456.`
	notice := func(body string) Notice { return Notice{Domain: domain, Sender: sender, Body: body, Preview: true} }
	first := func(body string) Notice { n := notice(body); n.Password = pw; return n }

	for _, tc := range []struct {
		name string
		n    Notice
		want string
	}{
		{"notice", notice("Hi there"), `New message from +821012345678 on example.com: "Hi there".`},
		{"first notice to an unclaimed account", first("Hi there"),
			`New message from +821012345678 on example.com: "Hi there". Log in with your phone number and password abcDEF23456.`},
		{"previews off", Notice{Domain: domain, Sender: sender, Body: "Hi there"},
			`New message from +821012345678 on example.com.`},
		{"previews off, first notice", Notice{Domain: domain, Sender: sender, Body: "Hi there", Password: pw},
			`New message from +821012345678 on example.com. Log in with your phone number and password abcDEF23456.`},
		{"first notice, password handed out already", Notice{Domain: domain, Sender: sender, Body: "Hi there", Preview: true, LoginHint: true},
			`New message from +821012345678 on example.com: "Hi there". Log in with your phone number and password.`},
		{"previews off, first notice, password handed out already", Notice{Domain: domain, Sender: sender, Body: "Hi there", LoginHint: true},
			`New message from +821012345678 on example.com. Log in with your phone number and password.`},
		{"login hint: one segment", Notice{Domain: domain, Sender: sender, Body: strings.Repeat("a", 200), Preview: true, LoginHint: true},
			head + strings.Repeat("a", 63) + "..." + `". Log in with your phone number and password.`},
		{"folded", Notice{Domain: domain, Sender: sender, Folded: true, Count: 3, Body: "ignored", Preview: true},
			`3 new messages from +821012345678 on example.com.`},
		{"folded, one", Notice{Domain: domain, Sender: sender, Folded: true, Count: 1},
			`1 new message from +821012345678 on example.com.`},
		{"folded, count missing", Notice{Domain: domain, Sender: sender, Folded: true},
			`1 new message from +821012345678 on example.com.`},
		{"folded, several senders", Notice{Domain: domain, Folded: true, Count: 12},
			`12 new messages on example.com.`},
		{"empty body", notice(" \n\t"), `New message from +821012345678 on example.com.`},
		{"whitespace collapsed", notice("  Hi\r\n\n there\t!  "), `New message from +821012345678 on example.com: "Hi there !".`},
		{"controls and bidi overrides dropped", notice("a\x00b\u202Ec\u2066d"), `New message from +821012345678 on example.com: "abcd".`},
		{"quotes kept", notice(`say "hi"`), `New message from +821012345678 on example.com: "say "hi"".`},

		// One segment, GSM-7: 50 + body septets.
		{"159 septets", notice(a(109)), head + a(109) + tail},
		{"160 septets", notice(a(110)), head + a(110) + tail},
		{"161 septets: cut", notice(a(111)), head + a(107) + "..." + tail},
		{"long body: cut", notice(a(5000)), head + a(107) + "..." + tail},
		{"euro counts two: 160", notice("€" + a(108)), head + "€" + a(108) + tail},
		{"euro counts two: 161, cut", notice("€" + a(109)), head + "€" + a(105) + "..." + tail},
		{"brackets count two", notice(strings.Repeat("[]{}", 14)), head + strings.Repeat("[]{}", 13) + "[..." + tail},
		{"a cut drops the space before ...", notice(a(106) + " bbbbbb"), head + a(106) + "..." + tail},
		{"a cut-off non-GSM character does not force UCS-2", notice(a(120) + "ç"), head + a(107) + "..." + tail},

		// One segment, UCS-2: 50 + body units.
		{"70 units", notice(ya(20)), head + ya(20) + tail},
		{"71 units: cut", notice(ya(21)), head + ya(17) + "..." + tail},
		{"emoji count two: 70", notice(emoji(10)), head + emoji(10) + tail},
		{"emoji count two: 71, cut without splitting one", notice(emoji(10) + "a"), head + emoji(8) + "..." + tail},

		// Two segments for the first notice: 106 + body.
		{"306 septets", first(a(200)), head + a(200) + pwTail},
		{"307 septets: cut", first(a(201)), head + a(197) + "..." + pwTail},
		// The euro would straddle the two parts (septets 153 and 154),
		// which pushes 306 septets into three segments.
		{"euro across the part boundary", first(a(104) + "€" + a(94)), head + a(104) + "€" + a(90) + "..." + pwTail},
		{"134 units", first(ya(28)), head + ya(28) + pwTail},
		{"135 units: cut", first(ya(29)), head + ya(25) + "..." + pwTail},

		// Not even an empty preview fits: the notice goes without one.
		{"huge domain", Notice{Domain: a(120) + ".example", Sender: sender, Body: "hi", Preview: true},
			"New message from +821012345678 on " + a(120) + ".example."},
	} {
		got := NoticeText(tc.n)
		if got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
			continue
		}
		limit := 1
		if tc.n.Password != "" {
			limit = 2
		}
		if c, _ := Segments(got); c > limit && tc.name != "huge domain" {
			t.Errorf("%s: %d segments", tc.name, c)
		}
	}
}

// The texts in the table are what they claim to be at the boundaries.
func TestNoticeTextBoundaries(t *testing.T) {
	for body, want := range map[string]int{
		strings.Repeat("a", 110): 160,
		strings.Repeat("a", 109): 159,
	} {
		got := NoticeText(Notice{Domain: "example.com", Sender: "+821012345678", Body: body, Preview: true})
		if n := utf8.RuneCountInString(got); n != want {
			t.Errorf("body of %d: text of %d septets, want %d", len(body), n, want)
		}
	}
}

func FuzzNoticeText(f *testing.F) {
	f.Add("+821012345678", "example.com", "Hi there", "", true, false, 0)
	f.Add("+821012345678", "example.com", strings.Repeat("€", 200), "abcDEF23456", true, false, 0)
	f.Add("+15551234567", "localhost", strings.Repeat("😀a", 50), "", true, false, 0)
	f.Add("+15551234567", "localhost", strings.Repeat("a", 104)+"€"+strings.Repeat("a", 150), "abcDEF23456", true, false, 0)
	f.Add("+15551234567", "localhost", "x\xff\u202e\n", "pw", true, false, 0)
	f.Add("", "example.com", "", "", false, true, 7)
	f.Fuzz(func(t *testing.T, sender, domain, body, password string, preview, folded bool, count int) {
		n := Notice{Domain: domain, Sender: sender, Body: body, Preview: preview, Password: password, Folded: folded, Count: count}
		text := NoticeText(n)
		limit := 1
		if password != "" {
			limit = 2
		}
		if password != "" && !strings.Contains(text, password) {
			t.Fatalf("password %q missing from %q", password, text)
		}
		// What is not the preview cannot be cut; the limit holds whenever
		// the notice without a preview fits.
		bare := n
		bare.Preview = false
		if c, _ := Segments(NoticeText(bare)); c > limit {
			return
		}
		if c, ucs2 := Segments(text); c > limit {
			t.Fatalf("%q: %d segments (UCS-2 %v), limit %d", text, c, ucs2, limit)
		}
	})
}
