// Package quicksytest is a test client of the app API that speaks what the
// Quicksy Android app sends, written from the app's public source
// (github.com/iNPUTmice/Conversations, flavour quicksy), not from this
// server's code:
//
//   - src/quicksy/java/eu/siacs/conversations/services/QuickConversationsService.java:
//     requestVerification and verify build the two requests; setHeader adds
//     User-Agent, Installation-Id and Accept-Language, in that order;
//     retryAfter reads Retry-After as whole seconds
//     (Long.parseLong(header) * 1000), and anything else as "no time";
//     getInstallationId makes the id once with UUID.randomUUID().
//   - src/main/java/eu/siacs/conversations/crypto/sasl/Plain.java:
//     getMessage(username, pin) is Base64.NO_WRAP of '\0' + username +
//     '\0' + pin: the Authorization header, without a scheme.
//   - src/main/java/eu/siacs/conversations/http/HttpConnectionManager.java:
//     getUserAgent is APP_NAME + "/" + VERSION_NAME ("Quicksy/…").
//   - src/main/java/eu/siacs/conversations/utils/CryptoHelper.java:
//     createPassword, the password the app chooses and posts.
//   - src/quicksyPlaystore/java/eu/siacs/conversations/utils/SmsRetrieverWrapper.java:
//     extractPin takes the first run of exactly six digits of the SMS.
//
// The base URL is "https://api." + Config.QUICKSY_DOMAIN; a server's
// operator puts TLS and that host name in front of XMPPD_HTTP_ADDR, so
// the client here speaks plain HTTP to the listener with Host set to
// api.DOMAIN, as the proxy forwards it. What the app leaves to Android's
// HttpURLConnection is written as it adds it: Host, Connection and
// Accept-Encoding after the app's headers, and for the POST, whose body
// the app writes without setting a type, Content-Type
// application/x-www-form-urlencoded and the Content-Length of the
// buffered body.
package quicksytest

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Timeout is the app's Config.SOCKET_TIMEOUT (15 s) for connecting and
// for reading.
const Timeout = 15 * time.Second

// App is one installation of the app.
type App struct {
	// Addr is the HTTP listener (host:port).
	Addr string
	// Host is the Host header: api.DOMAIN.
	Host string
	// InstallationID is made once per installation (UUID.randomUUID).
	InstallationID string
	// UserAgent is HttpConnectionManager.getUserAgent.
	UserAgent string
	// Language is Locale.getDefault().getLanguage().
	Language string

	// tied are the roster contacts a phone-book sync tied to numbers
	// (Contact.setPhoneContact), by number: what the next sync's status
	// quo is computed over.
	tied map[string][]string
}

// New returns a fresh installation of the app for the server of domain
// whose HTTP listener is at addr.
func New(t testing.TB, addr, domain string) *App {
	t.Helper()
	return &App{Addr: addr, Host: "api." + domain, InstallationID: randomUUID(t),
		UserAgent: "Quicksy/2.11.4", Language: "en"}
}

// Answer is what the app gets back.
type Answer struct {
	Code int
	// RetryAfter is the header as sent.
	RetryAfter string
	// RetryIn is what the app makes of it: whole seconds, or 0 when the
	// header is missing or not a number (then the app shows no time).
	RetryIn time.Duration
	Body    string
}

// RequestVerification asks for a PIN for e164, as requestVerification
// does: GET BASE_URL/authentication/E164 with the app's headers.
func (a *App) RequestVerification(t testing.TB, e164 string) Answer {
	t.Helper()
	var req strings.Builder
	req.WriteString("GET /authentication/" + e164 + " HTTP/1.1\r\n")
	a.writeAppHeaders(&req)
	a.writeConnectionHeaders(&req)
	req.WriteString("\r\n")
	return a.roundTrip(t, req.String())
}

// Verify sets password for e164 with pin, as verify does: POST
// BASE_URL/password, Authorization first, then the app's headers, and
// the password written raw as the body.
func (a *App) Verify(t testing.TB, e164, pin, password string) Answer {
	t.Helper()
	var req strings.Builder
	req.WriteString("POST /password HTTP/1.1\r\n")
	req.WriteString("Authorization: " + Authorization(e164, pin) + "\r\n")
	a.writeAppHeaders(&req)
	req.WriteString("Content-Type: application/x-www-form-urlencoded\r\n")
	a.writeConnectionHeaders(&req)
	req.WriteString("Content-Length: " + strconv.Itoa(len(password)) + "\r\n")
	req.WriteString("\r\n")
	req.WriteString(password)
	return a.roundTrip(t, req.String())
}

// Authorization is Plain.getMessage(username, pin): base64 of NUL,
// number, NUL, PIN, with padding, on one line.
func Authorization(e164, pin string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + e164 + "\x00" + pin))
}

// writeAppHeaders writes what setHeader sets, in its order.
func (a *App) writeAppHeaders(b *strings.Builder) {
	b.WriteString("User-Agent: " + a.UserAgent + "\r\n")
	b.WriteString("Installation-Id: " + a.InstallationID + "\r\n")
	b.WriteString("Accept-Language: " + a.Language + "\r\n")
}

// writeConnectionHeaders writes what HttpURLConnection adds.
func (a *App) writeConnectionHeaders(b *strings.Builder) {
	b.WriteString("Host: " + a.Host + "\r\n")
	b.WriteString("Connection: Keep-Alive\r\n")
	b.WriteString("Accept-Encoding: gzip\r\n")
}

// roundTrip sends raw on a new connection and reads the answer.
func (a *App) roundTrip(t testing.TB, raw string) Answer {
	t.Helper()
	conn, err := net.DialTimeout("tcp", a.Addr, Timeout)
	if err != nil {
		t.Fatalf("app: connect to %s: %v", a.Addr, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(Timeout))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatalf("app: send: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("app: read the answer: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		t.Fatalf("app: read the body: %v", err)
	}
	ans := Answer{Code: resp.StatusCode, RetryAfter: resp.Header.Get("Retry-After"), Body: string(body)}
	if s, err := strconv.ParseInt(ans.RetryAfter, 10, 64); err == nil {
		ans.RetryIn = time.Duration(s) * time.Second
	}
	return ans
}

// pinPattern is extractPin's "(?<!\d)\d{6}(?!\d)" without look-around,
// which Go's regexp lacks: the digits are the second group.
var pinPattern = regexp.MustCompile(`(^|[^0-9])([0-9]{6})([^0-9]|$)`)

// ExtractPIN reads the PIN out of an SMS as the app does.
func ExtractPIN(text string) (string, bool) {
	m := pinPattern.FindStringSubmatch(text)
	if m == nil {
		return "", false
	}
	return m[2], true
}

// passwordChars is CryptoHelper.CHARS; createPassword draws from all but
// its last character (random.nextInt(CHARS.length - 1)).
const passwordChars = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz123456789+-/#$!?"

// Password is a password as createPassword makes it: 12 characters.
func Password(t testing.TB) string {
	t.Helper()
	b := make([]byte, 12)
	for i := range b {
		v, err := rand.Int(rand.Reader, big.NewInt(int64(len(passwordChars)-1)))
		if err != nil {
			t.Fatal(err)
		}
		b[i] = passwordChars[v.Int64()]
	}
	return string(b)
}

// randomUUID is java.util.UUID.randomUUID().toString(): version 4,
// lower-case hex.
func randomUUID(t testing.TB) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
