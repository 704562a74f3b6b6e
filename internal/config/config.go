// Package config reads the environment variables of SPEC.md
// ("Configuration: environment variables") into a Config and validates them.
// xmppd and xmppctl share it, so that both see the same configuration.
package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/nyaruka/phonenumbers"
	"mellium.im/xmpp/jid"

	"dialtone/turn"
)

// Defaults of the variables that an empty value turns off. caarlos0/env
// applies envDefault to a variable that is set but empty, so these two carry
// no envDefault tag and Load applies them only when the variable is unset.
const (
	DefaultC2SDirectTLSAddr = ":5223"
	DefaultS2SAddr          = ":5269"
)

// DefaultTwilioBaseURL is Twilio's API, used when XMPPD_TWILIO_BASE_URL is empty.
const DefaultTwilioBaseURL = "https://api.twilio.com"

// maxSocketPath is the longest Unix socket path that works everywhere
// (sun_path is 104 bytes on the BSDs and macOS, 108 on Linux, NUL included).
const maxSocketPath = 103

// Config is the whole configuration of xmppd and xmppctl. Every field is
// one variable of SPEC.md; the env tags carry the exact names.
type Config struct {
	// Domain is the XMPP domain served; JIDs are +<digits>@Domain.
	Domain string `env:"XMPPD_DOMAIN" envDefault:"localhost"`
	// C2SAddr is where client connections with STARTTLS are accepted.
	C2SAddr string `env:"XMPPD_C2S_ADDR" envDefault:":5222"`
	// C2SDirectTLSAddr is where clients connect with TLS from the first
	// byte (XEP-0368); empty disables it. Default DefaultC2SDirectTLSAddr.
	C2SDirectTLSAddr string `env:"XMPPD_C2S_DIRECT_TLS_ADDR"`
	// S2SAddr is the federation listener; empty: no incoming links (links
	// to other servers are still opened).
	// Default DefaultS2SAddr.
	S2SAddr string `env:"XMPPD_S2S_ADDR"`
	// S2SRoutes maps a remote domain to the host:port of its server,
	// instead of DNS: "example.org=127.0.0.2:5269,other.test=[::1]:5270".
	S2SRoutes map[string]string `env:"XMPPD_S2S_ROUTES" envKeyValSeparator:"="`
	// S2SRequireTLS: false lets a federation link go on without TLS when
	// the peer offers none.
	S2SRequireTLS bool `env:"XMPPD_S2S_REQUIRE_TLS" envDefault:"true"`
	// S2SDialbackSecret keys XEP-0185 dialback; empty: made once and kept
	// in DataDir.
	S2SDialbackSecret string `env:"XMPPD_S2S_DIALBACK_SECRET"`
	// S2SInsecureDomains are peers whose self-signed (unverifiable)
	// certificates are accepted; they authenticate by dialback.
	S2SInsecureDomains []string `env:"XMPPD_S2S_INSECURE_DOMAINS"`
	// S2SIdleTimeout closes a federation link that carried no stanza for
	// this long.
	S2SIdleTimeout time.Duration `env:"XMPPD_S2S_IDLE_TIMEOUT" envDefault:"10m"`
	// HTTPAddr serves the web page, HTTP API, WebSocket, health and metrics.
	HTTPAddr string `env:"XMPPD_HTTP_ADDR" envDefault:":5280"`
	// DataDir holds the embedded database and the generated TLS certificate.
	DataDir string `env:"XMPPD_DATA_DIR" envDefault:"./data"`
	// DatabaseURL is empty for the embedded SQLite in DataDir, or a
	// postgres:// URL.
	DatabaseURL string `env:"XMPPD_DATABASE_URL"`
	// TLSCertFile and TLSKeyFile are PEM files; both empty: a self-signed
	// certificate is made once and kept in DataDir.
	TLSCertFile string `env:"XMPPD_TLS_CERT_FILE"`
	// TLSKeyFile is the private key matching TLSCertFile.
	TLSKeyFile string `env:"XMPPD_TLS_KEY_FILE"`
	// DefaultRegion is the ISO 3166 region (upper case) for numbers written
	// in national format.
	DefaultRegion string `env:"XMPPD_DEFAULT_REGION" envDefault:"US"`
	// AllowedRegions lists (upper case) the regions whose numbers may have
	// accounts; empty means all.
	AllowedRegions []string `env:"XMPPD_ALLOWED_REGIONS"`

	// SMSGateway is "log", "webhook" or "twilio".
	SMSGateway string `env:"XMPPD_SMS_GATEWAY" envDefault:"log"`
	// SMSWebhookURL is where the webhook gateway POSTs each SMS.
	SMSWebhookURL string `env:"XMPPD_SMS_WEBHOOK_URL"`
	// SMSWebhookToken, when set, is sent as Authorization: Bearer TOKEN.
	SMSWebhookToken string `env:"XMPPD_SMS_WEBHOOK_TOKEN"`
	// TwilioAccountSID is the Twilio account used by the twilio gateway.
	TwilioAccountSID string `env:"XMPPD_TWILIO_ACCOUNT_SID"`
	// TwilioAuthToken authenticates TwilioAccountSID.
	TwilioAuthToken string `env:"XMPPD_TWILIO_AUTH_TOKEN"`
	// TwilioFrom is the sender (number or messaging service) of Twilio SMS.
	TwilioFrom string `env:"XMPPD_TWILIO_FROM"`
	// TwilioBaseURL is Twilio's API root; tests point it elsewhere.
	TwilioBaseURL string `env:"XMPPD_TWILIO_BASE_URL" envDefault:"https://api.twilio.com"`

	// UnclaimedAccountTTL is how long after its last password SMS or
	// message an account that never logged in is released. 0: never.
	UnclaimedAccountTTL time.Duration `env:"XMPPD_UNCLAIMED_ACCOUNT_TTL" envDefault:"168h"`
	// RecycleAfter: a password requested for an account that has not logged
	// in for this long starts it afresh. 0: never recycled.
	RecycleAfter time.Duration `env:"XMPPD_RECYCLE_AFTER" envDefault:"2160h"`
	// PasswordSMSInterval is the least time between two password SMS to
	// one number. 0: no limit.
	PasswordSMSInterval time.Duration `env:"XMPPD_PASSWORD_SMS_INTERVAL" envDefault:"2m"`
	// PasswordSMSPerDay caps password SMS to one number in 24 hours. 0: no limit.
	PasswordSMSPerDay int `env:"XMPPD_PASSWORD_SMS_PER_DAY" envDefault:"5"`
	// PasswordRequestsPerIPHour caps password requests from one client IP
	// in an hour. 0: no limit.
	PasswordRequestsPerIPHour int `env:"XMPPD_PASSWORD_REQUESTS_PER_IP_HOUR" envDefault:"20"`
	// PasswordRequestsPerPrefixHour caps password SMS in an hour to the
	// numbers of one range (the number without its last 4 digits), against
	// SMS pumping through number ranges. 0: no limit.
	PasswordRequestsPerPrefixHour int `env:"XMPPD_PASSWORD_REQUESTS_PER_PREFIX_HOUR" envDefault:"30"`
	// NoticeWindow: further messages to an offline receiver within this
	// window fold into one notice. 0: every message is notified.
	NoticeWindow time.Duration `env:"XMPPD_NOTICE_WINDOW" envDefault:"10m"`
	// NoticesPerDay caps notice SMS to one number in 24 hours. 0: no limit.
	NoticesPerDay int `env:"XMPPD_NOTICES_PER_DAY" envDefault:"10"`
	// NoticeNewNumbersPerSenderDay caps the distinct never-claimed numbers
	// one sender (or remote domain) can cause notices to in 24 hours.
	// 0: no limit.
	NoticeNewNumbersPerSenderDay int `env:"XMPPD_NOTICE_NEW_NUMBERS_PER_SENDER_DAY" envDefault:"20"`
	// NoticePreview: false means notices carry no preview of the message.
	NoticePreview bool `env:"XMPPD_NOTICE_PREVIEW" envDefault:"true"`
	// OfflineLimit is the number of stored messages per account. 0: no limit.
	OfflineLimit int `env:"XMPPD_OFFLINE_LIMIT" envDefault:"1000"`
	// PasswordLength is the length of the random passwords the server
	// makes (at least 10: SPEC "Accounts").
	PasswordLength int `env:"XMPPD_PASSWORD_LENGTH" envDefault:"12"`
	// LoginFailures is the number of failed logins before a number is
	// locked. 0: never locked.
	LoginFailures int `env:"XMPPD_LOGIN_FAILURES" envDefault:"5"`
	// SecretKey is empty or 64 hex digits (32 bytes); see SecretKeyBytes.
	SecretKey string `env:"XMPPD_SECRET_KEY"`
	// AdminSocket is the Unix socket through which xmppctl reaches the
	// running server; empty in the environment means DataDir/admin.sock.
	AdminSocket string `env:"XMPPD_ADMIN_SOCKET"`
	// AuthTimeout closes a connection that has not authenticated by then.
	AuthTimeout time.Duration `env:"XMPPD_AUTH_TIMEOUT" envDefault:"30s"`
	// LogLevel is "debug", "info", "warn" or "error" (lower case).
	LogLevel string `env:"XMPPD_LOG_LEVEL" envDefault:"info"`

	// Limits on what clients send (SPEC.md "Limits on what clients send").

	// C2SRate is the bytes per second one client session may send (token
	// bucket with a burst of ten seconds' worth). 0: no limit.
	C2SRate int `env:"XMPPD_C2S_RATE" envDefault:"65536"`
	// S2SRate is the bytes per second one federation link may send. 0: no limit.
	S2SRate int `env:"XMPPD_S2S_RATE" envDefault:"262144"`
	// StoreTimeout is the deadline of one store call made for a stanza.
	StoreTimeout time.Duration `env:"XMPPD_STORE_TIMEOUT" envDefault:"5s"`
	// DatabaseMaxConns is the PostgreSQL pool size.
	DatabaseMaxConns int `env:"XMPPD_DATABASE_MAX_CONNS" envDefault:"16"`
	// SessionsPerAccount bounds the bound resources of one account. 0: no limit.
	SessionsPerAccount int `env:"XMPPD_SESSIONS_PER_ACCOUNT" envDefault:"10"`
	// RosterMax is the number of roster items per account. 0: no limit.
	RosterMax int `env:"XMPPD_ROSTER_MAX" envDefault:"5000"`
	// NewNumbersPerSenderDay caps the distinct never-logged-in numbers one
	// sender may leave messages for in 24 hours. 0: no limit.
	NewNumbersPerSenderDay int `env:"XMPPD_NEW_NUMBERS_PER_SENDER_DAY" envDefault:"50"`
	// OfflineBytes caps the bytes of stored messages per account. 0: no limit.
	OfflineBytes int `env:"XMPPD_OFFLINE_BYTES" envDefault:"10485760"`
	// MetricsAllow lists the networks that may read /metrics.
	MetricsAllow []netip.Prefix `env:"-"`
	// MetricsAllowRaw is XMPPD_METRICS_ALLOW as written; Load parses it
	// into MetricsAllow.
	MetricsAllowRaw []string `env:"XMPPD_METRICS_ALLOW" envDefault:"127.0.0.0/8,::1/128"`
	// PublicURL is the base URL clients reach the HTTP listener at
	// (behind a proxy: its https URL), without a trailing slash. Default
	// http://DOMAIN:PORT from HTTPAddr.
	PublicURL string `env:"XMPPD_PUBLIC_URL"`
	// TrustedProxies are the networks whose X-Forwarded-For and
	// X-Forwarded-Proto are believed.
	TrustedProxies []netip.Prefix `env:"-"`
	// TrustedProxiesRaw is XMPPD_TRUSTED_PROXIES as written.
	TrustedProxiesRaw []string `env:"XMPPD_TRUSTED_PROXIES"`
	// AppAPI serves the app API (SPEC.md "App API"): GET
	// /authentication/NUMBER and POST /password.
	AppAPI bool `env:"XMPPD_APP_API" envDefault:"true"`
	// AppSMSHash is the Android SMS Retriever hash of the app, put at
	// the end of every PIN SMS so that the app reads the PIN by itself;
	// empty: none.
	AppSMSHash string `env:"XMPPD_APP_SMS_HASH"`

	// Files and calls (SPEC.md "Files and calls (XEP-0363, XEP-0215)").

	// UploadMaxFileSize is the largest file in bytes an HTTP upload
	// takes. 0: no limit.
	UploadMaxFileSize int64 `env:"XMPPD_UPLOAD_MAX_FILE_SIZE" envDefault:"104857600"`
	// UploadQuota is the bytes of uploaded files one account may have
	// stored. 0: no limit.
	UploadQuota int64 `env:"XMPPD_UPLOAD_QUOTA" envDefault:"1073741824"`
	// UploadExpiry is how long after its upload a file is removed. 0: kept.
	UploadExpiry time.Duration `env:"XMPPD_UPLOAD_EXPIRY" envDefault:"720h"`
	// TURNURIs are the STUN and TURN servers offered to clients
	// (XEP-0215), each a stun:, stuns:, turn: or turns: URI; Load checks
	// them with turn.ParseURIs.
	TURNURIs []string `env:"XMPPD_TURN_URIS"`
	// TURNSecret is coturn's static-auth-secret, from which TURN
	// credentials are made.
	TURNSecret string `env:"XMPPD_TURN_SECRET"`

	// WebClient serves the web chat client at /chat (SPEC.md "Web client
	// and one-tap login").
	WebClient bool `env:"XMPPD_WEB_CLIENT" envDefault:"true"`
	// LoginLinkTTL is how long the one-tap login link of a password SMS
	// works; 0: password SMS carry no link.
	LoginLinkTTL time.Duration `env:"XMPPD_LOGIN_LINK_TTL" envDefault:"24h"`

	// SMResumeTimeout is how long a dropped stream with XEP-0198
	// resumption can be resumed.
	SMResumeTimeout time.Duration `env:"XMPPD_SM_RESUME_TIMEOUT" envDefault:"5m"`
	// SMQueueLimit bounds the unacknowledged stanzas of a session; beyond
	// it the stream is closed with policy-violation.
	SMQueueLimit int `env:"XMPPD_SM_QUEUE_LIMIT" envDefault:"5000"`
	// PEPMaxItems is the most items a PEP node keeps (max_items above it
	// is clamped; "max" means it).
	PEPMaxItems int `env:"XMPPD_PEP_MAX_ITEMS" envDefault:"256"`
	// PEPMaxItemBytes is the largest PEP item payload, in bytes.
	PEPMaxItemBytes int `env:"XMPPD_PEP_MAX_ITEM_BYTES" envDefault:"65536"`
	// DiscoveryPerDay caps the distinct phone-book numbers one account
	// may look up in a day (SPEC.md "App API"). 0: no limit.
	DiscoveryPerDay int `env:"XMPPD_DISCOVERY_PER_DAY" envDefault:"2048"`
	// MUCMaxOccupants bounds the occupants of one group (SPEC.md "Group
	// chats"); at least 1.
	MUCMaxOccupants int `env:"XMPPD_MUC_MAX_OCCUPANTS" envDefault:"1000"`
	// MUCRoomsPerAccount bounds the groups one account owns; at least 1.
	MUCRoomsPerAccount int `env:"XMPPD_MUC_ROOMS_PER_ACCOUNT" envDefault:"100"`
	// Mobile clients (SPEC.md "Mobile clients").

	// ArchiveRetention is how long archived messages (XEP-0313) are
	// kept; 0: kept until the account goes.
	ArchiveRetention time.Duration `env:"XMPPD_ARCHIVE_RETENTION" envDefault:"8760h"`

	// NATSURL is the NATS cluster the nodes of a cluster route through
	// (SPEC.md "Several servers (clustering)"): one or more nats:// URLs,
	// comma-separated. Empty: a single node, no NATS. Needs DatabaseURL.
	NATSURL string `env:"XMPPD_NATS_URL"`
	// NodeName names this node in the cluster (unique per node) and in
	// its logs. Default: the host name.
	NodeName string `env:"XMPPD_NODE_NAME"`

	// GCPercent is the Go collector's GOGC: the heap may grow this many
	// percent over what is live before the next collection. Lower keeps
	// less headroom (less memory per idle session) for more collector CPU.
	GCPercent int `env:"XMPPD_GC_PERCENT" envDefault:"100"`
	// MemoryLimit is the Go runtime's soft memory limit in bytes
	// (GOMEMLIMIT): near it the collector runs more often, whatever
	// GCPercent says. 0: none.
	MemoryLimit int64 `env:"XMPPD_MEMORY_LIMIT"`
}

// Load reads the configuration from the process environment and validates
// it. The error, if any, is one line that starts with the variable's name.
func Load() (Config, error) {
	return LoadFrom(env.ToMap(os.Environ()))
}

// LoadFrom is Load on the given variables instead of the process
// environment (for tests and tools).
func LoadFrom(environ map[string]string) (Config, error) {
	c, err := env.ParseAsWithOptions[Config](env.Options{Environment: environ})
	if err != nil {
		return Config{}, parseError(err, environ)
	}
	if _, set := environ["XMPPD_C2S_DIRECT_TLS_ADDR"]; !set {
		c.C2SDirectTLSAddr = DefaultC2SDirectTLSAddr
	}
	if _, set := environ["XMPPD_S2S_ADDR"]; !set {
		c.S2SAddr = DefaultS2SAddr
	}
	if err := c.normalize(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// parseError turns the first error of caarlos0/env into one line that
// names the variable.
func parseError(err error, environ map[string]string) error {
	var pe env.ParseError
	if !errors.As(err, &pe) {
		return fmt.Errorf("config: %s", oneLine(err.Error()))
	}
	name := pe.Name
	if f, ok := reflect.TypeFor[Config]().FieldByName(pe.Name); ok {
		name, _, _ = strings.Cut(f.Tag.Get("env"), ",")
	}
	v := environ[name]
	switch pe.Type {
	case reflect.TypeFor[time.Duration]():
		return fmt.Errorf("%s: invalid duration %q (want e.g. 90s, 10m, 168h)", name, v)
	case reflect.TypeFor[int](), reflect.TypeFor[int64]():
		return fmt.Errorf("%s: invalid number %q (want a whole number)", name, v)
	case reflect.TypeFor[bool]():
		return fmt.Errorf("%s: invalid boolean %q (want true or false)", name, v)
	}
	return fmt.Errorf("%s: invalid value %q: %s", name, v, oneLine(pe.Err.Error()))
}

// normalize canonicalises and validates c in place.
func (c *Config) normalize() error {
	c.Domain = strings.ToLower(strings.TrimSpace(c.Domain))
	if err := checkDomain(c.Domain); err != nil {
		return fmt.Errorf("XMPPD_DOMAIN: %w", err)
	}

	addrs := []struct {
		name, v  string
		optional bool
	}{
		{"XMPPD_C2S_ADDR", c.C2SAddr, false},
		{"XMPPD_C2S_DIRECT_TLS_ADDR", c.C2SDirectTLSAddr, true},
		{"XMPPD_S2S_ADDR", c.S2SAddr, true},
		{"XMPPD_HTTP_ADDR", c.HTTPAddr, false},
	}
	for _, a := range addrs {
		if a.v == "" && a.optional {
			continue
		}
		if err := checkAddr(a.v); err != nil {
			return fmt.Errorf("%s: %w", a.name, err)
		}
	}

	if err := c.checkS2S(); err != nil {
		return err
	}

	if strings.TrimSpace(c.DataDir) == "" {
		return errors.New("XMPPD_DATA_DIR: must not be empty")
	}
	if c.DatabaseURL != "" {
		if err := checkURL(c.DatabaseURL, "postgres", "postgresql"); err != nil {
			return fmt.Errorf("XMPPD_DATABASE_URL: %w", err)
		}
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		if c.TLSCertFile == "" {
			return errors.New("XMPPD_TLS_CERT_FILE: must be set when XMPPD_TLS_KEY_FILE is")
		}
		return errors.New("XMPPD_TLS_KEY_FILE: must be set when XMPPD_TLS_CERT_FILE is")
	}

	var err error
	if c.DefaultRegion, err = checkRegion(c.DefaultRegion); err != nil {
		return fmt.Errorf("XMPPD_DEFAULT_REGION: %w", err)
	}
	var allowed []string
	for _, r := range c.AllowedRegions {
		if strings.TrimSpace(r) == "" {
			continue
		}
		r, err := checkRegion(r)
		if err != nil {
			return fmt.Errorf("XMPPD_ALLOWED_REGIONS: %w", err)
		}
		allowed = append(allowed, r)
	}
	c.AllowedRegions = allowed

	if err := c.checkGateway(); err != nil {
		return err
	}

	durations := []struct {
		name     string
		v        time.Duration
		positive bool
	}{
		{"XMPPD_UNCLAIMED_ACCOUNT_TTL", c.UnclaimedAccountTTL, false},
		{"XMPPD_RECYCLE_AFTER", c.RecycleAfter, false},
		{"XMPPD_PASSWORD_SMS_INTERVAL", c.PasswordSMSInterval, false},
		{"XMPPD_NOTICE_WINDOW", c.NoticeWindow, false},
		{"XMPPD_AUTH_TIMEOUT", c.AuthTimeout, true},
		{"XMPPD_S2S_IDLE_TIMEOUT", c.S2SIdleTimeout, true},
		{"XMPPD_STORE_TIMEOUT", c.StoreTimeout, true},
		{"XMPPD_UPLOAD_EXPIRY", c.UploadExpiry, false},
		{"XMPPD_LOGIN_LINK_TTL", c.LoginLinkTTL, false},
		{"XMPPD_SM_RESUME_TIMEOUT", c.SMResumeTimeout, true},
		{"XMPPD_ARCHIVE_RETENTION", c.ArchiveRetention, false},
	}
	for _, d := range durations {
		if d.v < 0 {
			return fmt.Errorf("%s: must not be negative (got %s)", d.name, d.v)
		}
		if d.positive && d.v == 0 {
			return fmt.Errorf("%s: must be greater than 0", d.name)
		}
	}
	limits := []struct {
		name string
		v    int
	}{
		{"XMPPD_PASSWORD_SMS_PER_DAY", c.PasswordSMSPerDay},
		{"XMPPD_PASSWORD_REQUESTS_PER_IP_HOUR", c.PasswordRequestsPerIPHour},
		{"XMPPD_PASSWORD_REQUESTS_PER_PREFIX_HOUR", c.PasswordRequestsPerPrefixHour},
		{"XMPPD_NOTICES_PER_DAY", c.NoticesPerDay},
		{"XMPPD_NOTICE_NEW_NUMBERS_PER_SENDER_DAY", c.NoticeNewNumbersPerSenderDay},
		{"XMPPD_OFFLINE_LIMIT", c.OfflineLimit},
		{"XMPPD_LOGIN_FAILURES", c.LoginFailures},
		{"XMPPD_C2S_RATE", c.C2SRate},
		{"XMPPD_S2S_RATE", c.S2SRate},
		{"XMPPD_SESSIONS_PER_ACCOUNT", c.SessionsPerAccount},
		{"XMPPD_ROSTER_MAX", c.RosterMax},
		{"XMPPD_NEW_NUMBERS_PER_SENDER_DAY", c.NewNumbersPerSenderDay},
		{"XMPPD_OFFLINE_BYTES", c.OfflineBytes},
		{"XMPPD_DISCOVERY_PER_DAY", c.DiscoveryPerDay},
	}
	for _, l := range limits {
		if l.v < 0 {
			return fmt.Errorf("%s: must not be negative (got %d)", l.name, l.v)
		}
	}
	for _, l := range []struct {
		name string
		v    int
	}{
		{"XMPPD_MUC_MAX_OCCUPANTS", c.MUCMaxOccupants},
		{"XMPPD_MUC_ROOMS_PER_ACCOUNT", c.MUCRoomsPerAccount},
		{"XMPPD_SM_QUEUE_LIMIT", c.SMQueueLimit},
		{"XMPPD_PEP_MAX_ITEMS", c.PEPMaxItems},
		{"XMPPD_PEP_MAX_ITEM_BYTES", c.PEPMaxItemBytes},
		{"XMPPD_GC_PERCENT", c.GCPercent},
	} {
		if l.v < 1 {
			return fmt.Errorf("%s: must be at least 1 (got %d)", l.name, l.v)
		}
	}
	for _, l := range []struct {
		name string
		v    int64
	}{
		{"XMPPD_UPLOAD_MAX_FILE_SIZE", c.UploadMaxFileSize},
		{"XMPPD_UPLOAD_QUOTA", c.UploadQuota},
		{"XMPPD_MEMORY_LIMIT", c.MemoryLimit},
	} {
		if l.v < 0 {
			return fmt.Errorf("%s: must not be negative (got %d)", l.name, l.v)
		}
	}
	if err := c.checkTURN(); err != nil {
		return err
	}
	if c.DatabaseMaxConns < 1 {
		return fmt.Errorf("XMPPD_DATABASE_MAX_CONNS: must be at least 1 (got %d)", c.DatabaseMaxConns)
	}
	if c.MetricsAllow, err = checkPrefixes(c.MetricsAllowRaw); err != nil {
		return fmt.Errorf("XMPPD_METRICS_ALLOW: %w", err)
	}
	if c.TrustedProxies, err = checkPrefixes(c.TrustedProxiesRaw); err != nil {
		return fmt.Errorf("XMPPD_TRUSTED_PROXIES: %w", err)
	}
	if err := c.checkPublicURL(); err != nil {
		return fmt.Errorf("XMPPD_PUBLIC_URL: %w", err)
	}
	if err := checkAppSMSHash(c.AppSMSHash); err != nil {
		return fmt.Errorf("XMPPD_APP_SMS_HASH: %w", err)
	}
	if c.PasswordLength < 10 || c.PasswordLength > 128 {
		return fmt.Errorf("XMPPD_PASSWORD_LENGTH: must be between 10 and 128 (got %d)", c.PasswordLength)
	}

	if c.SecretKey != "" {
		if _, err := c.SecretKeyBytes(); err != nil {
			return fmt.Errorf("XMPPD_SECRET_KEY: %w", err)
		}
	}

	if c.AdminSocket == "" {
		c.AdminSocket = filepath.Join(c.DataDir, "admin.sock")
	}
	if len(c.AdminSocket) > maxSocketPath {
		return fmt.Errorf("XMPPD_ADMIN_SOCKET: path %q is %d bytes, longer than a Unix socket allows (%d); set a shorter one",
			c.AdminSocket, len(c.AdminSocket), maxSocketPath)
	}

	if err := c.checkCluster(); err != nil {
		return err
	}

	lvl := strings.ToLower(strings.TrimSpace(c.LogLevel))
	if _, ok := levels[lvl]; !ok {
		return fmt.Errorf("XMPPD_LOG_LEVEL: unknown level %q (want debug, info, warn, error)", c.LogLevel)
	}
	c.LogLevel = lvl
	return nil
}

// checkCluster validates XMPPD_NATS_URL and XMPPD_NODE_NAME. A cluster
// shares its state in PostgreSQL: nodes on separate SQLite files would
// route to each other but each keep their own accounts, so that is refused.
func (c *Config) checkCluster() error {
	c.NATSURL = strings.TrimSpace(c.NATSURL)
	if c.NATSURL != "" {
		if c.DatabaseURL == "" {
			return errors.New("XMPPD_NATS_URL: a cluster needs a shared PostgreSQL: set XMPPD_DATABASE_URL (or unset XMPPD_NATS_URL for a single node)")
		}
		for _, u := range strings.Split(c.NATSURL, ",") {
			if err := checkURL(strings.TrimSpace(u), "nats", "tls"); err != nil {
				return fmt.Errorf("XMPPD_NATS_URL: %w", err)
			}
		}
	}
	c.NodeName = strings.TrimSpace(c.NodeName)
	if c.NodeName == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "xmppd"
		}
		c.NodeName = h
	}
	// The name is a NATS subject token: no dots, spaces or wildcards.
	if strings.ContainsAny(c.NodeName, ". \t\r\n*>") {
		return fmt.Errorf("XMPPD_NODE_NAME: %q must not contain dots, spaces, * or >", c.NodeName)
	}
	return nil
}

// checkS2S canonicalises the federation's domain lists and routes.
func (c *Config) checkS2S() error {
	routes := make(map[string]string, len(c.S2SRoutes))
	for d, addr := range c.S2SRoutes {
		d = strings.ToLower(strings.TrimSpace(d))
		addr = strings.TrimSpace(addr)
		if d == "" && addr == "" {
			continue
		}
		if err := checkDomain(d); err != nil {
			return fmt.Errorf("XMPPD_S2S_ROUTES: %w", err)
		}
		if host, _, err := net.SplitHostPort(addr); err != nil || host == "" || checkAddr(addr) != nil {
			return fmt.Errorf("XMPPD_S2S_ROUTES: invalid address %q for %s (want host:port, e.g. 127.0.0.2:5269 or [::1]:5270)", addr, d)
		}
		routes[d] = addr
	}
	c.S2SRoutes = nil
	if len(routes) > 0 {
		c.S2SRoutes = routes
	}
	var insecure []string
	for _, d := range c.S2SInsecureDomains {
		d = strings.ToLower(strings.TrimSpace(d))
		if d == "" {
			continue
		}
		if err := checkDomain(d); err != nil {
			return fmt.Errorf("XMPPD_S2S_INSECURE_DOMAINS: %w", err)
		}
		insecure = append(insecure, d)
	}
	c.S2SInsecureDomains = insecure
	return nil
}

// checkTURN checks XMPPD_TURN_URIS, dropping empty items, and that a
// TURN server there has the secret of its credentials.
func (c *Config) checkTURN() error {
	uris, err := turn.ParseURIs(c.TURNURIs)
	if err != nil {
		return fmt.Errorf("XMPPD_TURN_URIS: %w", err)
	}
	c.TURNURIs = nil
	for _, u := range uris {
		c.TURNURIs = append(c.TURNURIs, u.String())
		if u.NeedsCredentials() && c.TURNSecret == "" {
			return fmt.Errorf("XMPPD_TURN_SECRET: must be set when XMPPD_TURN_URIS has a TURN server (%s)", u)
		}
	}
	return nil
}

func (c *Config) checkGateway() error {
	c.SMSGateway = strings.ToLower(strings.TrimSpace(c.SMSGateway))
	if c.SMSWebhookURL != "" {
		if err := checkURL(c.SMSWebhookURL, "http", "https"); err != nil {
			return fmt.Errorf("XMPPD_SMS_WEBHOOK_URL: %w", err)
		}
	}
	if c.TwilioBaseURL == "" {
		c.TwilioBaseURL = DefaultTwilioBaseURL
	}
	if err := checkURL(c.TwilioBaseURL, "http", "https"); err != nil {
		return fmt.Errorf("XMPPD_TWILIO_BASE_URL: %w", err)
	}
	switch c.SMSGateway {
	case "log":
	case "webhook":
		if c.SMSWebhookURL == "" {
			return errors.New("XMPPD_SMS_WEBHOOK_URL: must be set when XMPPD_SMS_GATEWAY is webhook")
		}
	case "twilio":
		for _, v := range []struct{ name, v string }{
			{"XMPPD_TWILIO_ACCOUNT_SID", c.TwilioAccountSID},
			{"XMPPD_TWILIO_AUTH_TOKEN", c.TwilioAuthToken},
			{"XMPPD_TWILIO_FROM", c.TwilioFrom},
		} {
			if v.v == "" {
				return fmt.Errorf("%s: must be set when XMPPD_SMS_GATEWAY is twilio", v.name)
			}
		}
	default:
		return fmt.Errorf("XMPPD_SMS_GATEWAY: unknown gateway %q (want log, webhook, twilio)", c.SMSGateway)
	}
	return nil
}

// SecretKeyBytes returns the 32 bytes of XMPPD_SECRET_KEY, or nil when it
// is empty (the server then makes one and keeps it in the data dir).
func (c Config) SecretKeyBytes() ([]byte, error) {
	if c.SecretKey == "" {
		return nil, nil
	}
	if len(c.SecretKey) != 64 {
		return nil, fmt.Errorf("want 64 hex digits (32 bytes), got %d characters", len(c.SecretKey))
	}
	b := make([]byte, 32)
	for i := range b {
		v, err := strconv.ParseUint(c.SecretKey[2*i:2*i+2], 16, 8)
		if err != nil {
			return nil, errors.New("want 64 hex digits (32 bytes), found a character that is not a hex digit")
		}
		b[i] = byte(v)
	}
	return b, nil
}

var levels = map[string]slog.Level{
	"debug": slog.LevelDebug,
	"info":  slog.LevelInfo,
	"warn":  slog.LevelWarn,
	"error": slog.LevelError,
}

// Level returns LogLevel as a slog.Level (info for an unvalidated value).
func (c Config) Level() slog.Level {
	return levels[c.LogLevel]
}

// Logger returns a structured logger at the configured level writing to w:
// text lines when w is a terminal (an operator watching make run), JSON
// otherwise (for log collectors).
func (c Config) Logger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.Level()}
	if isTerminal(w) {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func checkDomain(d string) error {
	if d == "" {
		return errors.New("must not be empty")
	}
	if strings.ContainsAny(d, "@/:") {
		return fmt.Errorf("%q is not a domain name (no user, resource or port)", d)
	}
	j, err := jid.New("", d, "")
	if err != nil {
		return fmt.Errorf("%q is not a valid domain: %v", d, err)
	}
	if j.Domainpart() != d {
		return fmt.Errorf("%q is not in canonical form (want %q)", d, j.Domainpart())
	}
	return nil
}

func checkAddr(a string) error {
	if a == "" {
		return errors.New("must not be empty (want host:port, e.g. :5222)")
	}
	_, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("invalid address %q (want host:port, e.g. :5222)", a)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("invalid port in %q (want 0-65535)", a)
	}
	return nil
}

func checkURL(s string, schemes ...string) error {
	u, err := url.Parse(s)
	if err != nil {
		// url.Error repeats the whole URL (and a password in it); keep the reason.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("malformed URL: %v", err)
	}
	ok := false
	for _, sc := range schemes {
		if strings.EqualFold(u.Scheme, sc) {
			ok = true
		}
	}
	if !ok {
		return fmt.Errorf("malformed URL: scheme %q, want %s", u.Scheme, strings.Join(schemes, " or "))
	}
	if u.Host == "" && u.Query().Get("host") == "" {
		return errors.New("malformed URL: no host")
	}
	return nil
}

// checkPrefixes parses a comma list of CIDRs (a bare address means just
// that address).
func checkPrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !strings.Contains(s, "/") {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("%q is not an address or CIDR (want e.g. 10.0.0.0/8, ::1/128)", s)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR (want e.g. 10.0.0.0/8, ::1/128)", s)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// checkPublicURL validates XMPPD_PUBLIC_URL, or makes the default from the
// domain and the HTTP port, and drops a trailing slash.
func (c *Config) checkPublicURL() error {
	if c.PublicURL == "" {
		port := "5280"
		if _, p, err := net.SplitHostPort(c.HTTPAddr); err == nil && p != "" && p != "0" {
			port = p
		}
		c.PublicURL = "http://" + net.JoinHostPort(c.Domain, port)
		return nil
	}
	if err := checkURL(c.PublicURL, "http", "https"); err != nil {
		return err
	}
	u, _ := url.Parse(c.PublicURL)
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return errors.New("want a base URL such as https://chat.example.org (no user, query or fragment)")
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	return nil
}

func checkRegion(r string) (string, error) {
	up := strings.ToUpper(strings.TrimSpace(r))
	if !phonenumbers.GetSupportedRegions()[up] {
		return "", fmt.Errorf("unknown region %q (want an ISO 3166 code such as US, KR, DE)", r)
	}
	return up, nil
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// appSMSHashLength is the length of an Android SMS Retriever app hash.
const appSMSHashLength = 11

// checkAppSMSHash accepts "" or an SMS Retriever hash: 11 characters of
// the base64 alphabet.
func checkAppSMSHash(h string) error {
	if h == "" {
		return nil
	}
	ok := len(h) == appSMSHashLength
	for i := 0; ok && i < len(h); i++ {
		c := h[i]
		ok = 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/'
	}
	if !ok {
		return fmt.Errorf("%q is not an SMS Retriever hash (want 11 characters of A-Z, a-z, 0-9, + and /)", h)
	}
	return nil
}
