package daemon

import "testing"

// Remote senders are counted per registrable domain (public suffix list).
func TestRegistrableDomain(t *testing.T) {
	for in, want := range map[string]string{
		"example.com":          "example.com",
		"a.example.com":        "example.com",
		"x.y.z.example.com":    "example.com",
		"chat.example.co.uk":   "example.co.uk",
		"a.example.test":       "example.test", // not listed: the default rule, one label
		"Foo.Example.COM.":     "example.com",
		"alice.github.io":      "alice.github.io", // a private suffix: each user is one
		"xmpp.alice.github.io": "alice.github.io",
		"localhost":            "localhost",
		"com":                  "com",
		"co.uk":                "co.uk",
		"127.0.0.1":            "127.0.0.1",
		"[2001:db8::1]":        "[2001:db8::1]",
	} {
		if got := registrableDomain(in); got != want {
			t.Errorf("registrableDomain(%q) = %q, want %q", in, got, want)
		}
	}
}
