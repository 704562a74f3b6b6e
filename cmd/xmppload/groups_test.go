package main

import (
	"crypto/tls"
	"net"
	"slices"
	"testing"
	"time"

	"dialtone/internal/tlscert"
)

func TestParseGroups(t *testing.T) {
	got, err := parseGroups(" x25519, P256 ")
	if err != nil || !slices.Equal(got, []tls.CurveID{tls.X25519, tls.CurveP256}) {
		t.Fatalf("got %v, %v", got, err)
	}
	if got, err := parseGroups(""); err != nil || got != nil {
		t.Fatalf("empty: %v, %v (want Go's default, nil)", got, err)
	}
	if _, err := parseGroups("x448"); err == nil {
		t.Fatal("an unknown group was taken")
	}
}

// With --tls-groups x25519 a Go server, which prefers X25519MLKEM768,
// does the X25519 handshake; without, the hybrid one.
func TestTLSGroupsNegotiated(t *testing.T) {
	cert, err := tlscert.New("localhost", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for i := 0; i < 2; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	for _, tc := range []struct {
		groups []tls.CurveID
		want   tls.CurveID
	}{{[]tls.CurveID{tls.X25519}, tls.X25519}, {nil, tls.X25519MLKEM768}} {
		d := &dialer{domain: "localhost", groups: tc.groups}
		raw, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		raw.SetDeadline(time.Now().Add(5 * time.Second))
		c := tls.Client(raw, d.tlsConfig())
		if err := c.Handshake(); err != nil {
			t.Fatal(err)
		}
		if got := c.ConnectionState().CurveID; got != tc.want {
			t.Errorf("groups %v: negotiated %v, want %v", tc.groups, got, tc.want)
		}
		c.Close()
	}
}
