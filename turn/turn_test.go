package turn

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseURI(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want URI
	}{
		{"stun:stun.example.org", URI{"stun", "stun.example.org", 3478, "udp"}},
		{"STUN:Stun.Example.ORG:19302", URI{"stun", "stun.example.org", 19302, "udp"}},
		{"stuns:stun.example.org", URI{"stuns", "stun.example.org", 5349, "tcp"}},
		{"turn:turn.example.org", URI{"turn", "turn.example.org", 3478, "udp"}},
		{"turn:turn.example.org:3478?transport=tcp", URI{"turn", "turn.example.org", 3478, "tcp"}},
		{" turns:turn.example.org?transport=udp ", URI{"turns", "turn.example.org", 5349, "udp"}},
		{"turn:192.0.2.1:80", URI{"turn", "192.0.2.1", 80, "udp"}},
		{"turn:[2001:db8::1]", URI{"turn", "2001:db8::1", 3478, "udp"}},
		{"turn:[2001:db8::1]:5000?transport=TCP", URI{"turn", "2001:db8::1", 5000, "tcp"}},
	} {
		got, err := ParseURI(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseURI(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		again, err := ParseURI(got.String())
		if err != nil || again != got {
			t.Errorf("ParseURI(%q.String() = %q) = %+v, %v", tc.in, got.String(), again, err)
		}
	}
	for _, in := range []string{
		"", "turn", "http://turn.example.org", "turn:", "turn::3478", "turn:host:", "turn:host:0",
		"turn:host:65536", "turn:host:port", "turn:host?transport=sctp", "turn:host?foo=bar",
		"turn:host?transport=udp&transport=tcp", "stun:host?transport=udp", "turn:2001:db8::1",
		"turn:[2001:db8::1", "turn:[192.0.2.1]", "turn:[2001:db8::1]x", "turn:user@host", "turn:host/path",
	} {
		if u, err := ParseURI(in); err == nil {
			t.Errorf("ParseURI(%q) = %+v, want an error", in, u)
		}
	}
}

func TestParseURIs(t *testing.T) {
	got, err := ParseURIs([]string{"turn:a.test?transport=udp", " ", "stun:a.test:3478", ""})
	if err != nil || len(got) != 2 || got[0].Scheme != "turn" || got[1].Scheme != "stun" {
		t.Fatalf("ParseURIs = %+v, %v", got, err)
	}
	if _, err := ParseURIs([]string{"stun:a.test", "bogus"}); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Fatalf("ParseURIs with a bad item: %v, want an error naming it", err)
	}
}

// The credential is coturn's: checked against a value computed by
// `printf %s 1796378859:+12025550123 | openssl dgst -sha1 -hmac s3cret -binary | base64`.
func TestCredential(t *testing.T) {
	user, pass := Credential([]byte("s3cret"), time.Unix(1796378859, 0), "+12025550123")
	if user != "1796378859:+12025550123" || pass != "PtEhRGTVQAW7ssnfX2WJnRtT6M4=" {
		t.Fatalf("Credential = %q %q", user, pass)
	}
	if user, _ := Credential([]byte("s3cret"), time.Unix(1796378859, 0), ""); user != "1796378859" {
		t.Fatalf("without a user: username %q, want the expiry alone", user)
	}
}

func TestServices(t *testing.T) {
	uris, err := ParseURIs([]string{"stun:turn.example.org", "turn:turn.example.org?transport=udp", "turns:turn.example.org:443?transport=tcp"})
	if err != nil {
		t.Fatal(err)
	}
	s := &Servers{URIs: uris, Secret: []byte("k")}
	now := time.Date(2030, 1, 2, 3, 4, 5, 600, time.FixedZone("X", 3600))
	got := s.Services(now, "+12025550123")
	exp := time.Date(2030, 1, 3, 2, 4, 5, 0, time.UTC) // 24 hours later, in UTC
	u, p := Credential([]byte("k"), exp, "+12025550123")
	want := []Service{
		{Type: "stun", Host: "turn.example.org", Port: 3478, Transport: "udp"},
		{Type: "turn", Host: "turn.example.org", Port: 3478, Transport: "udp", Username: u, Password: p, Expires: exp},
		{Type: "turns", Host: "turn.example.org", Port: 443, Transport: "tcp", Username: u, Password: p, Expires: exp},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Services:\n got %+v\nwant %+v", got, want)
	}
	if c := s.Credentials(now, "+12025550123", "TURN.example.org", "turns", 0); len(c) != 1 || c[0] != want[2] {
		t.Errorf("Credentials(turns) = %+v", c)
	}
	if c := s.Credentials(now, "", "turn.example.org", "turn", 3479); len(c) != 0 {
		t.Errorf("Credentials on another port = %+v, want none", c)
	}
	if c := (&Servers{}).Services(now, ""); len(c) != 0 {
		t.Errorf("the zero Servers list %+v", c)
	}
	// A TTL of one hour.
	s.TTL = time.Hour
	if got := s.Services(now, "")[1].Expires; !got.Equal(now.Add(time.Hour).Truncate(time.Second)) {
		t.Errorf("TTL 1h: expires %v", got)
	}
}
