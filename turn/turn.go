// Package turn tells clients which STUN and TURN servers to use for audio
// and video calls (XEP-0215 External Service Discovery, urn:xmpp:extdisco:2),
// with time-limited TURN credentials made from a secret shared with the
// TURN server, the way coturn's use-auth-secret (the "TURN REST API")
// checks them: username "EXPIRY:USER", password
// base64(HMAC-SHA1(secret, username)).
package turn

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Namespace is XEP-0215's namespace, for the disco feature and the IQs.
const Namespace = "urn:xmpp:extdisco:2"

// DefaultTTL is how long credentials are valid (SPEC.md "Files and calls").
const DefaultTTL = 24 * time.Hour

// Default ports of RFC 7064 and RFC 7065: 3478 in the clear, 5349 over
// TLS or DTLS.
const (
	defaultPort       = 3478
	defaultSecurePort = 5349
)

// URI is one STUN or TURN server (RFC 7064, RFC 7065), as XMPPD_TURN_URIS
// names it.
type URI struct {
	// Scheme is "stun", "stuns", "turn" or "turns": XEP-0215's service type.
	Scheme string
	// Host is a domain name or an IP address (without brackets).
	Host string
	Port int
	// Transport is "udp" or "tcp".
	Transport string
}

// NeedsCredentials reports whether the server relays (TURN), and so
// wants a username and password.
func (u URI) NeedsCredentials() bool { return u.Scheme == "turn" || u.Scheme == "turns" }

// String writes u back as a URI.
func (u URI) String() string {
	s := u.Scheme + ":" + net.JoinHostPort(u.Host, strconv.Itoa(u.Port))
	if u.NeedsCredentials() {
		s += "?transport=" + u.Transport
	}
	return s
}

// ParseURI reads one STUN or TURN URI: stun:host[:port], stuns:…,
// turn:host[:port][?transport=udp|tcp], turns:…. The port defaults to
// 3478 (5349 for stuns and turns), the transport to udp (tcp for stuns and
// turns).
func ParseURI(s string) (URI, error) {
	s = strings.TrimSpace(s)
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok {
		return URI{}, fmt.Errorf("%q: want stun:, stuns:, turn: or turns: followed by a host", s)
	}
	u := URI{Scheme: strings.ToLower(scheme), Port: defaultPort, Transport: "udp"}
	switch u.Scheme {
	case "stun", "turn":
	case "stuns", "turns":
		u.Port, u.Transport = defaultSecurePort, "tcp"
	default:
		return URI{}, fmt.Errorf("%q: unknown scheme %q (want stun, stuns, turn, turns)", s, scheme)
	}
	hostport, query, _ := strings.Cut(rest, "?")
	if query != "" {
		if !u.NeedsCredentials() {
			return URI{}, fmt.Errorf("%q: a %s URI takes no query", s, u.Scheme)
		}
		q, err := url.ParseQuery(query)
		if err != nil || len(q) != 1 || len(q["transport"]) != 1 {
			return URI{}, fmt.Errorf("%q: the only query is ?transport=udp or ?transport=tcp", s)
		}
		switch t := strings.ToLower(q.Get("transport")); t {
		case "udp", "tcp":
			u.Transport = t
		default:
			return URI{}, fmt.Errorf("%q: unknown transport %q (want udp or tcp)", s, q.Get("transport"))
		}
	}
	host, port, err := splitHostPort(hostport)
	if err != nil {
		return URI{}, fmt.Errorf("%q: %w", s, err)
	}
	u.Host = host
	if port != "" {
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65535 {
			return URI{}, fmt.Errorf("%q: invalid port %q (want 1-65535)", s, port)
		}
		u.Port = p
	}
	return u, nil
}

// splitHostPort splits "host", "host:port", "[v6]" or "[v6]:port".
func splitHostPort(s string) (host, port string, err error) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", "", errors.New("unclosed [ in the host")
		}
		host, rest := s[1:end], s[end+1:]
		if ip := net.ParseIP(host); ip == nil || ip.To4() != nil {
			return "", "", fmt.Errorf("[%s] is not an IPv6 address", host)
		}
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return "", "", fmt.Errorf("unexpected %q after the host", rest)
			}
			port = rest[1:]
			if port == "" {
				return "", "", errors.New("empty port")
			}
		}
		return host, port, nil
	}
	host, port, found := strings.Cut(s, ":")
	if found && port == "" {
		return "", "", errors.New("empty port")
	}
	if host == "" {
		return "", "", errors.New("no host")
	}
	if strings.ContainsAny(host, "/@ \t") || strings.Contains(port, ":") {
		return "", "", fmt.Errorf("%q is not a host[:port] (IPv6 addresses go in brackets)", s)
	}
	return strings.ToLower(host), port, nil
}

// ParseURIs reads XMPPD_TURN_URIS as split at its commas; empty items are
// skipped.
func ParseURIs(list []string) ([]URI, error) {
	var out []URI
	for _, s := range list {
		if strings.TrimSpace(s) == "" {
			continue
		}
		u, err := ParseURI(s)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

// Service is one entry of an XEP-0215 answer: a <service/> element.
type Service struct {
	Type      string // "stun", "stuns", "turn", "turns"
	Host      string
	Port      int
	Transport string // "udp" or "tcp"
	// Username and Password are set for TURN servers, empty for STUN.
	Username, Password string
	// Expires is when the credentials stop working; zero without them.
	Expires time.Time
}

// Servers are the STUN and TURN servers of XMPPD_TURN_URIS with the
// secret of their credentials (XMPPD_TURN_SECRET). The zero value lists
// nothing.
type Servers struct {
	URIs []URI
	// Secret is coturn's static-auth-secret.
	Secret []byte
	// TTL is how long credentials are valid; 0: DefaultTTL.
	TTL time.Duration
}

// Services lists every server, with fresh credentials valid from now for
// the TURN ones (XEP-0215 "Requesting All Services"). user is put into
// the username, after the expiry, so that the TURN server's logs tell
// who relayed; empty: the username is the expiry alone (coturn accepts
// both).
func (s *Servers) Services(now time.Time, user string) []Service {
	out := make([]Service, 0, len(s.URIs))
	for _, u := range s.URIs {
		out = append(out, s.service(u, now, user))
	}
	return out
}

// Credentials answers XEP-0215 "Requesting Credentials": the TURN servers
// at host of type typ (and at port, unless it is 0), with fresh
// credentials. None: nothing known there (item-not-found).
func (s *Servers) Credentials(now time.Time, user, host, typ string, port int) []Service {
	var out []Service
	for _, u := range s.URIs {
		if u.Scheme == typ && strings.EqualFold(u.Host, host) && (port == 0 || u.Port == port) {
			out = append(out, s.service(u, now, user))
		}
	}
	return out
}

func (s *Servers) service(u URI, now time.Time, user string) Service {
	sv := Service{Type: u.Scheme, Host: u.Host, Port: u.Port, Transport: u.Transport}
	if u.NeedsCredentials() {
		ttl := s.TTL
		if ttl <= 0 {
			ttl = DefaultTTL
		}
		sv.Expires = now.Add(ttl).UTC().Truncate(time.Second)
		sv.Username, sv.Password = Credential(s.Secret, sv.Expires, user)
	}
	return sv
}

// Credential is the username and password that a TURN server with
// use-auth-secret and static-auth-secret=secret accepts until expires:
// username "UNIXTIME:user" (or "UNIXTIME" without a user), password the
// base64 of HMAC-SHA1(secret, username).
func Credential(secret []byte, expires time.Time, user string) (username, password string) {
	username = strconv.FormatInt(expires.Unix(), 10)
	if user != "" {
		username += ":" + user
	}
	mac := hmac.New(sha1.New, secret)
	mac.Write([]byte(username))
	return username, base64.StdEncoding.EncodeToString(mac.Sum(nil))
}
