// Package forwarded works out who sent an HTTP request, and whether it
// reached the server over https, when reverse proxies may stand in
// between (SPEC.md, XMPPD_TRUSTED_PROXIES). X-Forwarded-For and
// X-Forwarded-Proto are believed only from a direct peer in the trusted
// networks: anyone else can write them.
package forwarded

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Client is what is known of the client behind one request.
type Client struct {
	// IP is the client's address as text, the key of per-IP limits: the
	// direct peer, or the rightmost X-Forwarded-For address that is not
	// a trusted proxy when the peer is one.
	IP string
	// HTTPS reports that the client's connection is encrypted: TLS to
	// this server, or "X-Forwarded-Proto: https" from a trusted proxy.
	HTTPS bool
}

// Resolve works out the client of r, believing the forwarding headers of
// peers in trusted.
func Resolve(r *http.Request, trusted []netip.Prefix) Client {
	c := Client{IP: peerIP(r.RemoteAddr), HTTPS: r.TLS != nil}
	peer, err := netip.ParseAddr(c.IP)
	if err != nil || !contains(trusted, peer) {
		return c
	}
	if strings.EqualFold(rightmost(r.Header.Values("X-Forwarded-Proto")), "https") {
		c.HTTPS = true
	}
	// Walk from the nearest hop outwards: each trusted proxy appended the
	// address it saw, so the first one that is not a trusted proxy is the
	// client. What lies further left was written by the client itself.
	fromRight(r.Header.Values("X-Forwarded-For"), func(hop string) bool {
		a, ok := parseHop(hop)
		if !ok {
			// A trusted proxy wrote something that is no address: stay
			// with the last hop that is known.
			return false
		}
		c.IP = a.String()
		return contains(trusted, a)
	})
	return c
}

type contextKey struct{}

// Handler resolves the client of every request (Resolve with trusted)
// before h serves it; ClientOf reads the answer back.
func Handler(trusted []netip.Prefix, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := Resolve(r, trusted)
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), contextKey{}, c)))
	})
}

// ClientOf returns the client of r as Handler resolved it. A request that
// did not pass through Handler believes no proxy: its client is its peer.
func ClientOf(r *http.Request) Client {
	if c, ok := r.Context().Value(contextKey{}).(Client); ok {
		return c
	}
	return Resolve(r, nil)
}

// Allowed reports whether ip (a Client.IP) lies in one of the networks.
func Allowed(ip string, networks []netip.Prefix) bool {
	a, err := netip.ParseAddr(ip)
	return err == nil && contains(networks, a.Unmap())
}

// peerIP is the address part of a RemoteAddr ("host:port"), unmapped
// from IPv6 so that one IPv4 client has one key; RemoteAddr itself when
// it has no port.
func peerIP(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap().WithZone("").String()
	}
	return host
}

// parseHop reads one X-Forwarded-For entry: an address, possibly with a
// port ("192.0.2.1:4711", "[2001:db8::1]:4711") as some proxies write it.
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return a.Unmap().WithZone(""), true
		}
	}
	return netip.Addr{}, false
}

// fromRight calls more with each element of a header that may repeat and
// hold comma lists, from the rightmost leftwards, while it returns true.
// Nothing is split beyond what is looked at: a long header costs no more
// than the hops walked.
func fromRight(values []string, more func(string) bool) {
	for i := len(values) - 1; i >= 0; i-- {
		v := values[i]
		for {
			comma := strings.LastIndexByte(v, ',')
			if !more(v[comma+1:]) {
				return
			}
			if comma < 0 {
				break
			}
			v = v[:comma]
		}
	}
}

// rightmost is the last element of a comma-list header: the one the
// nearest proxy wrote.
func rightmost(values []string) string {
	var last string
	fromRight(values, func(s string) bool {
		last = strings.TrimSpace(s)
		return false
	})
	return last
}

func contains(networks []netip.Prefix, a netip.Addr) bool {
	for _, p := range networks {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
