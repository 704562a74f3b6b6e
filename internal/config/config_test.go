package config

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	c, err := LoadFrom(map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Domain:                       "localhost",
		C2SAddr:                      ":5222",
		C2SDirectTLSAddr:             ":5223",
		S2SAddr:                      ":5269",
		S2SRequireTLS:                true,
		S2SIdleTimeout:               10 * time.Minute,
		HTTPAddr:                     ":5280",
		DataDir:                      "./data",
		DefaultRegion:                "US",
		SMSGateway:                   "log",
		TwilioBaseURL:                "https://api.twilio.com",
		UnclaimedAccountTTL:          168 * time.Hour,
		RecycleAfter:                 2160 * time.Hour,
		PasswordSMSInterval:          2 * time.Minute,
		PasswordSMSPerDay:            5,
		PasswordRequestsPerIPHour:    20,
		NoticeWindow:                 10 * time.Minute,
		NoticesPerDay:                10,
		NoticeNewNumbersPerSenderDay: 20,
		NoticePreview:                true,
		OfflineLimit:                 1000,
		LoginFailures:                5,
		AdminSocket:                  filepath.Join("./data", "admin.sock"),
		AuthTimeout:                  30 * time.Second,
		LogLevel:                     "info",
	}
	want.PasswordRequestsPerPrefixHour = 30
	want.PasswordLength = 12
	want.C2SRate = 65536
	want.S2SRate = 262144
	want.StoreTimeout = 5 * time.Second
	want.DatabaseMaxConns = 16
	want.SessionsPerAccount = 10
	want.RosterMax = 5000
	want.NewNumbersPerSenderDay = 50
	want.OfflineBytes = 10485760
	want.MetricsAllowRaw = []string{"127.0.0.0/8", "::1/128"}
	want.MetricsAllow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	want.PublicURL = "http://localhost:5280"
	want.AppAPI = true
	want.UploadMaxFileSize = 104857600
	want.UploadQuota = 1073741824
	want.UploadExpiry = 720 * time.Hour
	want.WebClient = true
	want.LoginLinkTTL = 24 * time.Hour
	want.SMResumeTimeout = 5 * time.Minute
	want.SMQueueLimit = 5000
	want.PEPMaxItems = 256
	want.PEPMaxItemBytes = 65536
	want.DiscoveryPerDay = 2048
	want.MUCMaxOccupants = 1000
	want.MUCRoomsPerAccount = 100
	want.ArchiveRetention = 8760 * time.Hour
	want.NodeName, _ = os.Hostname()
	want.GCPercent = 100
	if !reflect.DeepEqual(c, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", c, want)
	}
}

// TestEveryVariable checks that each variable of SPEC.md reaches its field,
// so that a typo in a tag cannot go unnoticed.
func TestEveryVariable(t *testing.T) {
	environ := map[string]string{
		"XMPPD_DOMAIN":                            "Example.COM",
		"XMPPD_C2S_ADDR":                          "127.0.0.1:15222",
		"XMPPD_C2S_DIRECT_TLS_ADDR":               "",
		"XMPPD_S2S_ADDR":                          "",
		"XMPPD_S2S_ROUTES":                        "Example.ORG=127.0.0.2:5269, other.test=[::1]:5270",
		"XMPPD_S2S_REQUIRE_TLS":                   "false",
		"XMPPD_S2S_DIALBACK_SECRET":               "s3cret",
		"XMPPD_S2S_INSECURE_DOMAINS":              "a.test, B.test,,",
		"XMPPD_S2S_IDLE_TIMEOUT":                  "90s",
		"XMPPD_HTTP_ADDR":                         "[::1]:8080",
		"XMPPD_DATA_DIR":                          "/var/lib/dialtone",
		"XMPPD_DATABASE_URL":                      "postgres://u:p@db:5432/dialtone?sslmode=disable",
		"XMPPD_TLS_CERT_FILE":                     "/etc/c.pem",
		"XMPPD_TLS_KEY_FILE":                      "/etc/k.pem",
		"XMPPD_DEFAULT_REGION":                    "kr",
		"XMPPD_ALLOWED_REGIONS":                   "KR, us,,DE",
		"XMPPD_SMS_GATEWAY":                       "twilio",
		"XMPPD_SMS_WEBHOOK_URL":                   "https://hooks.example.com/sms",
		"XMPPD_SMS_WEBHOOK_TOKEN":                 "tok",
		"XMPPD_TWILIO_ACCOUNT_SID":                "AC123",
		"XMPPD_TWILIO_AUTH_TOKEN":                 "secret",
		"XMPPD_TWILIO_FROM":                       "+15550001111",
		"XMPPD_TWILIO_BASE_URL":                   "http://127.0.0.1:9999",
		"XMPPD_UNCLAIMED_ACCOUNT_TTL":             "1h",
		"XMPPD_RECYCLE_AFTER":                     "0s",
		"XMPPD_PASSWORD_SMS_INTERVAL":             "0s",
		"XMPPD_PASSWORD_SMS_PER_DAY":              "0",
		"XMPPD_PASSWORD_REQUESTS_PER_IP_HOUR":     "7",
		"XMPPD_PASSWORD_REQUESTS_PER_PREFIX_HOUR": "9",
		"XMPPD_PASSWORD_LENGTH":                   "16",
		"XMPPD_NOTICE_WINDOW":                     "30s",
		"XMPPD_NOTICES_PER_DAY":                   "3",
		"XMPPD_NOTICE_NEW_NUMBERS_PER_SENDER_DAY": "4",
		"XMPPD_NOTICE_PREVIEW":                    "false",
		"XMPPD_OFFLINE_LIMIT":                     "9",
		"XMPPD_LOGIN_FAILURES":                    "2",
		"XMPPD_SECRET_KEY":                        strings.Repeat("aB", 32),
		"XMPPD_ADMIN_SOCKET":                      "/run/dialtone.sock",
		"XMPPD_AUTH_TIMEOUT":                      "5s",
		"XMPPD_LOG_LEVEL":                         "DEBUG",
		"XMPPD_C2S_RATE":                          "1000",
		"XMPPD_S2S_RATE":                          "0",
		"XMPPD_STORE_TIMEOUT":                     "2s",
		"XMPPD_DATABASE_MAX_CONNS":                "4",
		"XMPPD_SESSIONS_PER_ACCOUNT":              "3",
		"XMPPD_ROSTER_MAX":                        "100",
		"XMPPD_NEW_NUMBERS_PER_SENDER_DAY":        "6",
		"XMPPD_OFFLINE_BYTES":                     "4096",
		"XMPPD_METRICS_ALLOW":                     "10.0.0.0/8, 192.0.2.1",
		"XMPPD_PUBLIC_URL":                        "https://chat.example.com/",
		"XMPPD_TRUSTED_PROXIES":                   "127.0.0.1/32",
		"XMPPD_APP_API":                           "false",
		"XMPPD_APP_SMS_HASH":                      "FA+9qCX9VSu",
		"XMPPD_UPLOAD_MAX_FILE_SIZE":              "5000000000",
		"XMPPD_UPLOAD_QUOTA":                      "0",
		"XMPPD_UPLOAD_EXPIRY":                     "0s",
		"XMPPD_TURN_URIS":                         "TURN:Turn.Example.com?transport=tcp, ,stun:[2001:db8::1]",
		"XMPPD_TURN_SECRET":                       "coturn secret",
		"XMPPD_WEB_CLIENT":                        "false",
		"XMPPD_LOGIN_LINK_TTL":                    "0",
		"XMPPD_SM_RESUME_TIMEOUT":                 "90s",
		"XMPPD_SM_QUEUE_LIMIT":                    "100",
		"XMPPD_PEP_MAX_ITEMS":                     "32",
		"XMPPD_PEP_MAX_ITEM_BYTES":                "1000",
		"XMPPD_DISCOVERY_PER_DAY":                 "100",
		"XMPPD_MUC_MAX_OCCUPANTS":                 "50",
		"XMPPD_MUC_ROOMS_PER_ACCOUNT":             "2",
		"XMPPD_ARCHIVE_RETENTION":                 "720h",
		"XMPPD_NATS_URL":                          "nats://10.0.0.5:4222, nats://10.0.0.6:4222",
		"XMPPD_NODE_NAME":                         "node-a",
		"XMPPD_GC_PERCENT":                        "50",
		"XMPPD_MEMORY_LIMIT":                      "8589934592",
	}
	c, err := LoadFrom(environ)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Domain:                       "example.com",
		C2SAddr:                      "127.0.0.1:15222",
		C2SDirectTLSAddr:             "",
		S2SAddr:                      "",
		S2SRoutes:                    map[string]string{"example.org": "127.0.0.2:5269", "other.test": "[::1]:5270"},
		S2SRequireTLS:                false,
		S2SDialbackSecret:            "s3cret",
		S2SInsecureDomains:           []string{"a.test", "b.test"},
		S2SIdleTimeout:               90 * time.Second,
		HTTPAddr:                     "[::1]:8080",
		DataDir:                      "/var/lib/dialtone",
		DatabaseURL:                  "postgres://u:p@db:5432/dialtone?sslmode=disable",
		TLSCertFile:                  "/etc/c.pem",
		TLSKeyFile:                   "/etc/k.pem",
		DefaultRegion:                "KR",
		AllowedRegions:               []string{"KR", "US", "DE"},
		SMSGateway:                   "twilio",
		SMSWebhookURL:                "https://hooks.example.com/sms",
		SMSWebhookToken:              "tok",
		TwilioAccountSID:             "AC123",
		TwilioAuthToken:              "secret",
		TwilioFrom:                   "+15550001111",
		TwilioBaseURL:                "http://127.0.0.1:9999",
		UnclaimedAccountTTL:          time.Hour,
		RecycleAfter:                 0,
		PasswordSMSInterval:          0,
		PasswordSMSPerDay:            0,
		PasswordRequestsPerIPHour:    7,
		NoticeWindow:                 30 * time.Second,
		NoticesPerDay:                3,
		NoticeNewNumbersPerSenderDay: 4,
		NoticePreview:                false,
		OfflineLimit:                 9,
		LoginFailures:                2,
		SecretKey:                    strings.Repeat("aB", 32),
		AdminSocket:                  "/run/dialtone.sock",
		AuthTimeout:                  5 * time.Second,
		LogLevel:                     "debug",
		C2SRate:                      1000,
		S2SRate:                      0,
		StoreTimeout:                 2 * time.Second,
		DatabaseMaxConns:             4,
		SessionsPerAccount:           3,
		RosterMax:                    100,
		NewNumbersPerSenderDay:       6,
		OfflineBytes:                 4096,
		MetricsAllowRaw:              []string{"10.0.0.0/8", " 192.0.2.1"},
		MetricsAllow:                 []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.1/32")},
		PublicURL:                    "https://chat.example.com",
		TrustedProxiesRaw:            []string{"127.0.0.1/32"},
		TrustedProxies:               []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		UploadMaxFileSize:            5000000000, // more than 32 bits
		UploadQuota:                  0,
		UploadExpiry:                 0,
		TURNURIs:                     []string{"turn:turn.example.com:3478?transport=tcp", "stun:[2001:db8::1]:3478"},
		TURNSecret:                   "coturn secret",
	}
	want.PasswordRequestsPerPrefixHour = 9
	want.PasswordLength = 16
	want.AppAPI = false
	want.AppSMSHash = "FA+9qCX9VSu"
	want.WebClient = false
	want.LoginLinkTTL = 0
	want.SMResumeTimeout = 90 * time.Second
	want.SMQueueLimit = 100
	want.PEPMaxItems = 32
	want.PEPMaxItemBytes = 1000
	want.DiscoveryPerDay = 100
	want.MUCMaxOccupants = 50
	want.MUCRoomsPerAccount = 2
	want.ArchiveRetention = 720 * time.Hour
	want.NATSURL = "nats://10.0.0.5:4222, nats://10.0.0.6:4222"
	want.NodeName = "node-a"
	want.GCPercent = 50
	want.MemoryLimit = 8 << 30
	if !reflect.DeepEqual(c, want) {
		t.Errorf("\n got %+v\nwant %+v", c, want)
	}
	// Every field of Config must have been set by this test's environment,
	// so each variable is covered: compare field count to variables.
	n := 0
	for f := range reflect.TypeFor[Config]().Fields() {
		if f.Tag.Get("env") != "-" {
			n++
		}
	}
	if n != len(environ) {
		t.Errorf("Config has %d fields, test sets %d variables", n, len(environ))
	}
	key, err := c.SecretKeyBytes()
	if err != nil || len(key) != 32 || key[0] != 0xab {
		t.Errorf("SecretKeyBytes = %x, %v", key, err)
	}
}

func TestEmptyValues(t *testing.T) {
	// Set but empty: the default applies, except where SPEC gives empty a meaning.
	c, err := LoadFrom(map[string]string{
		"XMPPD_DOMAIN":          "",
		"XMPPD_DATA_DIR":        "/d",
		"XMPPD_ALLOWED_REGIONS": "",
		"XMPPD_ADMIN_SOCKET":    "",
		"XMPPD_LOG_LEVEL":       "",
		"XMPPD_TWILIO_BASE_URL": "",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Domain != "localhost" || c.AllowedRegions != nil || c.AdminSocket != "/d/admin.sock" ||
		c.LogLevel != "info" || c.TwilioBaseURL != DefaultTwilioBaseURL {
		t.Errorf("got %+v", c)
	}
}

func TestInvalid(t *testing.T) {
	long := "/" + strings.Repeat("x", 120)
	tests := []struct {
		name    string
		environ map[string]string
		want    string // the error's prefix
	}{
		{"domain empty after trim", map[string]string{"XMPPD_DOMAIN": " "}, "XMPPD_DOMAIN: must not be empty"},
		{"domain with user", map[string]string{"XMPPD_DOMAIN": "a@b"}, "XMPPD_DOMAIN: "},
		{"domain with port", map[string]string{"XMPPD_DOMAIN": "example.com:5222"}, "XMPPD_DOMAIN: "},
		{"domain bad", map[string]string{"XMPPD_DOMAIN": "exa mple.com"}, "XMPPD_DOMAIN: "},
		{"c2s no port", map[string]string{"XMPPD_C2S_ADDR": "localhost"}, "XMPPD_C2S_ADDR: invalid address"},
		{"c2s empty", map[string]string{"XMPPD_C2S_ADDR": " "}, "XMPPD_C2S_ADDR: "},
		{"direct tls bad port", map[string]string{"XMPPD_C2S_DIRECT_TLS_ADDR": ":70000"}, "XMPPD_C2S_DIRECT_TLS_ADDR: invalid port"},
		{"s2s bad", map[string]string{"XMPPD_S2S_ADDR": "nope"}, "XMPPD_S2S_ADDR: invalid address"},
		{"s2s route no port", map[string]string{"XMPPD_S2S_ROUTES": "a.test=127.0.0.2"}, "XMPPD_S2S_ROUTES: invalid address"},
		{"s2s route no host", map[string]string{"XMPPD_S2S_ROUTES": "a.test=:5269"}, "XMPPD_S2S_ROUTES: invalid address"},
		{"s2s route bad domain", map[string]string{"XMPPD_S2S_ROUTES": "a@b=127.0.0.2:5269"}, "XMPPD_S2S_ROUTES: "},
		{"s2s route not a pair", map[string]string{"XMPPD_S2S_ROUTES": "a.test"}, "XMPPD_S2S_ROUTES: "},
		{"s2s insecure bad domain", map[string]string{"XMPPD_S2S_INSECURE_DOMAINS": "a.test,b:1"}, "XMPPD_S2S_INSECURE_DOMAINS: "},
		{"s2s require tls", map[string]string{"XMPPD_S2S_REQUIRE_TLS": "maybe"}, `XMPPD_S2S_REQUIRE_TLS: invalid boolean "maybe"`},
		{"s2s idle zero", map[string]string{"XMPPD_S2S_IDLE_TIMEOUT": "0s"}, "XMPPD_S2S_IDLE_TIMEOUT: must be greater than 0"},
		{"http named port", map[string]string{"XMPPD_HTTP_ADDR": ":http"}, "XMPPD_HTTP_ADDR: invalid port"},
		{"data dir blank", map[string]string{"XMPPD_DATA_DIR": "  "}, "XMPPD_DATA_DIR: must not be empty"},
		{"database scheme", map[string]string{"XMPPD_DATABASE_URL": "mysql://db/x"}, "XMPPD_DATABASE_URL: malformed URL"},
		{"database malformed", map[string]string{"XMPPD_DATABASE_URL": "postgres://u:p@db:port/x"}, "XMPPD_DATABASE_URL: malformed URL"},
		{"database no host", map[string]string{"XMPPD_DATABASE_URL": "postgres:///x"}, "XMPPD_DATABASE_URL: malformed URL: no host"},
		{"cert without key", map[string]string{"XMPPD_TLS_CERT_FILE": "c.pem"}, "XMPPD_TLS_KEY_FILE: "},
		{"key without cert", map[string]string{"XMPPD_TLS_KEY_FILE": "k.pem"}, "XMPPD_TLS_CERT_FILE: "},
		{"default region unknown", map[string]string{"XMPPD_DEFAULT_REGION": "XX"}, `XMPPD_DEFAULT_REGION: unknown region "XX"`},
		{"default region name", map[string]string{"XMPPD_DEFAULT_REGION": "Korea"}, `XMPPD_DEFAULT_REGION: unknown region "Korea"`},
		{"allowed region unknown", map[string]string{"XMPPD_ALLOWED_REGIONS": "KR,ZZ"}, `XMPPD_ALLOWED_REGIONS: unknown region "ZZ"`},
		{"gateway unknown", map[string]string{"XMPPD_SMS_GATEWAY": "carrier-pigeon"}, `XMPPD_SMS_GATEWAY: unknown gateway "carrier-pigeon"`},
		{"webhook without url", map[string]string{"XMPPD_SMS_GATEWAY": "webhook"}, "XMPPD_SMS_WEBHOOK_URL: must be set"},
		{"webhook url malformed", map[string]string{"XMPPD_SMS_GATEWAY": "webhook", "XMPPD_SMS_WEBHOOK_URL": "http://[::1"}, "XMPPD_SMS_WEBHOOK_URL: malformed URL"},
		{"webhook url scheme", map[string]string{"XMPPD_SMS_GATEWAY": "webhook", "XMPPD_SMS_WEBHOOK_URL": "ftp://x/y"}, "XMPPD_SMS_WEBHOOK_URL: malformed URL"},
		{"webhook url relative", map[string]string{"XMPPD_SMS_GATEWAY": "webhook", "XMPPD_SMS_WEBHOOK_URL": "hooks/sms"}, "XMPPD_SMS_WEBHOOK_URL: malformed URL"},
		{"twilio without sid", map[string]string{"XMPPD_SMS_GATEWAY": "twilio", "XMPPD_TWILIO_AUTH_TOKEN": "t", "XMPPD_TWILIO_FROM": "+1"}, "XMPPD_TWILIO_ACCOUNT_SID: must be set"},
		{"twilio without token", map[string]string{"XMPPD_SMS_GATEWAY": "twilio", "XMPPD_TWILIO_ACCOUNT_SID": "AC", "XMPPD_TWILIO_FROM": "+1"}, "XMPPD_TWILIO_AUTH_TOKEN: must be set"},
		{"twilio without from", map[string]string{"XMPPD_SMS_GATEWAY": "twilio", "XMPPD_TWILIO_ACCOUNT_SID": "AC", "XMPPD_TWILIO_AUTH_TOKEN": "t"}, "XMPPD_TWILIO_FROM: must be set"},
		{"twilio base url", map[string]string{"XMPPD_TWILIO_BASE_URL": "api.twilio.com"}, "XMPPD_TWILIO_BASE_URL: malformed URL"},
		{"ttl unparseable", map[string]string{"XMPPD_UNCLAIMED_ACCOUNT_TTL": "a week"}, `XMPPD_UNCLAIMED_ACCOUNT_TTL: invalid duration "a week"`},
		{"ttl no unit", map[string]string{"XMPPD_UNCLAIMED_ACCOUNT_TTL": "168"}, `XMPPD_UNCLAIMED_ACCOUNT_TTL: invalid duration "168"`},
		{"ttl negative", map[string]string{"XMPPD_UNCLAIMED_ACCOUNT_TTL": "-1h"}, "XMPPD_UNCLAIMED_ACCOUNT_TTL: must not be negative"},
		{"recycle unparseable", map[string]string{"XMPPD_RECYCLE_AFTER": "90d"}, "XMPPD_RECYCLE_AFTER: invalid duration"},
		{"recycle negative", map[string]string{"XMPPD_RECYCLE_AFTER": "-5m"}, "XMPPD_RECYCLE_AFTER: must not be negative"},
		{"interval unparseable", map[string]string{"XMPPD_PASSWORD_SMS_INTERVAL": "2 minutes"}, "XMPPD_PASSWORD_SMS_INTERVAL: invalid duration"},
		{"interval negative", map[string]string{"XMPPD_PASSWORD_SMS_INTERVAL": "-2m"}, "XMPPD_PASSWORD_SMS_INTERVAL: must not be negative"},
		{"per day unparseable", map[string]string{"XMPPD_PASSWORD_SMS_PER_DAY": "five"}, `XMPPD_PASSWORD_SMS_PER_DAY: invalid number "five"`},
		{"per day float", map[string]string{"XMPPD_PASSWORD_SMS_PER_DAY": "1.5"}, "XMPPD_PASSWORD_SMS_PER_DAY: invalid number"},
		{"per day negative", map[string]string{"XMPPD_PASSWORD_SMS_PER_DAY": "-1"}, "XMPPD_PASSWORD_SMS_PER_DAY: must not be negative"},
		{"per ip unparseable", map[string]string{"XMPPD_PASSWORD_REQUESTS_PER_IP_HOUR": "x"}, "XMPPD_PASSWORD_REQUESTS_PER_IP_HOUR: invalid number"},
		{"per ip negative", map[string]string{"XMPPD_PASSWORD_REQUESTS_PER_IP_HOUR": "-3"}, "XMPPD_PASSWORD_REQUESTS_PER_IP_HOUR: must not be negative"},
		{"per prefix negative", map[string]string{"XMPPD_PASSWORD_REQUESTS_PER_PREFIX_HOUR": "-1"}, "XMPPD_PASSWORD_REQUESTS_PER_PREFIX_HOUR: must not be negative"},
		{"window unparseable", map[string]string{"XMPPD_NOTICE_WINDOW": "10"}, "XMPPD_NOTICE_WINDOW: invalid duration"},
		{"window negative", map[string]string{"XMPPD_NOTICE_WINDOW": "-10m"}, "XMPPD_NOTICE_WINDOW: must not be negative"},
		{"notices unparseable", map[string]string{"XMPPD_NOTICES_PER_DAY": "ten"}, "XMPPD_NOTICES_PER_DAY: invalid number"},
		{"notices negative", map[string]string{"XMPPD_NOTICES_PER_DAY": "-10"}, "XMPPD_NOTICES_PER_DAY: must not be negative"},
		{"new numbers unparseable", map[string]string{"XMPPD_NOTICE_NEW_NUMBERS_PER_SENDER_DAY": "20x"}, "XMPPD_NOTICE_NEW_NUMBERS_PER_SENDER_DAY: invalid number"},
		{"new numbers negative", map[string]string{"XMPPD_NOTICE_NEW_NUMBERS_PER_SENDER_DAY": "-20"}, "XMPPD_NOTICE_NEW_NUMBERS_PER_SENDER_DAY: must not be negative"},
		{"preview unparseable", map[string]string{"XMPPD_NOTICE_PREVIEW": "maybe"}, `XMPPD_NOTICE_PREVIEW: invalid boolean "maybe"`},
		{"offline unparseable", map[string]string{"XMPPD_OFFLINE_LIMIT": "1e3"}, "XMPPD_OFFLINE_LIMIT: invalid number"},
		{"offline negative", map[string]string{"XMPPD_OFFLINE_LIMIT": "-1"}, "XMPPD_OFFLINE_LIMIT: must not be negative"},
		{"failures unparseable", map[string]string{"XMPPD_LOGIN_FAILURES": "many"}, "XMPPD_LOGIN_FAILURES: invalid number"},
		{"failures negative", map[string]string{"XMPPD_LOGIN_FAILURES": "-5"}, "XMPPD_LOGIN_FAILURES: must not be negative"},
		{"secret short", map[string]string{"XMPPD_SECRET_KEY": "abcd"}, "XMPPD_SECRET_KEY: want 64 hex digits"},
		{"secret long", map[string]string{"XMPPD_SECRET_KEY": strings.Repeat("a", 66)}, "XMPPD_SECRET_KEY: want 64 hex digits"},
		{"secret not hex", map[string]string{"XMPPD_SECRET_KEY": strings.Repeat("g", 64)}, "XMPPD_SECRET_KEY: want 64 hex digits"},
		{"secret sign", map[string]string{"XMPPD_SECRET_KEY": "+a" + strings.Repeat("a", 62)}, "XMPPD_SECRET_KEY: want 64 hex digits"},
		{"admin socket too long", map[string]string{"XMPPD_ADMIN_SOCKET": long}, "XMPPD_ADMIN_SOCKET: path"},
		{"admin socket default too long", map[string]string{"XMPPD_DATA_DIR": long}, "XMPPD_ADMIN_SOCKET: path"},
		{"auth timeout unparseable", map[string]string{"XMPPD_AUTH_TIMEOUT": "30"}, "XMPPD_AUTH_TIMEOUT: invalid duration"},
		{"auth timeout negative", map[string]string{"XMPPD_AUTH_TIMEOUT": "-30s"}, "XMPPD_AUTH_TIMEOUT: must not be negative"},
		{"auth timeout zero", map[string]string{"XMPPD_AUTH_TIMEOUT": "0s"}, "XMPPD_AUTH_TIMEOUT: must be greater than 0"},
		{"app api unparseable", map[string]string{"XMPPD_APP_API": "quicksy"}, `XMPPD_APP_API: invalid boolean "quicksy"`},
		{"discovery unparseable", map[string]string{"XMPPD_DISCOVERY_PER_DAY": "2k"}, `XMPPD_DISCOVERY_PER_DAY: invalid number "2k"`},
		{"discovery negative", map[string]string{"XMPPD_DISCOVERY_PER_DAY": "-1"}, "XMPPD_DISCOVERY_PER_DAY: must not be negative"},
		{"app sms hash short", map[string]string{"XMPPD_APP_SMS_HASH": "FA+9qCX9VS"}, `XMPPD_APP_SMS_HASH: "FA+9qCX9VS" is not an SMS Retriever hash`},
		{"app sms hash long", map[string]string{"XMPPD_APP_SMS_HASH": "FA+9qCX9VSuX"}, "XMPPD_APP_SMS_HASH: "},
		{"app sms hash character", map[string]string{"XMPPD_APP_SMS_HASH": "FA+9qCX9VS-"}, "XMPPD_APP_SMS_HASH: "},
		{"app sms hash line break", map[string]string{"XMPPD_APP_SMS_HASH": "FA+9qCX9VS\n"}, "XMPPD_APP_SMS_HASH: "},
		{"upload size unparseable", map[string]string{"XMPPD_UPLOAD_MAX_FILE_SIZE": "100MB"}, `XMPPD_UPLOAD_MAX_FILE_SIZE: invalid number "100MB"`},
		{"upload size negative", map[string]string{"XMPPD_UPLOAD_MAX_FILE_SIZE": "-1"}, "XMPPD_UPLOAD_MAX_FILE_SIZE: must not be negative"},
		{"upload quota unparseable", map[string]string{"XMPPD_UPLOAD_QUOTA": "1 GiB"}, "XMPPD_UPLOAD_QUOTA: invalid number"},
		{"upload quota negative", map[string]string{"XMPPD_UPLOAD_QUOTA": "-1"}, "XMPPD_UPLOAD_QUOTA: must not be negative"},
		{"upload expiry unparseable", map[string]string{"XMPPD_UPLOAD_EXPIRY": "30d"}, "XMPPD_UPLOAD_EXPIRY: invalid duration"},
		{"upload expiry negative", map[string]string{"XMPPD_UPLOAD_EXPIRY": "-1h"}, "XMPPD_UPLOAD_EXPIRY: must not be negative"},
		{"archive retention negative", map[string]string{"XMPPD_ARCHIVE_RETENTION": "-1h"}, "XMPPD_ARCHIVE_RETENTION: must not be negative"},
		{"turn uri scheme", map[string]string{"XMPPD_TURN_URIS": "stun:a.test,http://a.test"}, `XMPPD_TURN_URIS: "http://a.test": unknown scheme`},
		{"turn uri transport", map[string]string{"XMPPD_TURN_URIS": "turn:a.test?transport=sctp", "XMPPD_TURN_SECRET": "s"}, "XMPPD_TURN_URIS: "},
		{"turn without secret", map[string]string{"XMPPD_TURN_URIS": "stun:a.test,turns:a.test"}, "XMPPD_TURN_SECRET: must be set when XMPPD_TURN_URIS has a TURN server (turns:a.test:5349?transport=tcp)"},
		{"web client unparseable", map[string]string{"XMPPD_WEB_CLIENT": "on"}, `XMPPD_WEB_CLIENT: invalid boolean "on"`},
		{"login link ttl unparseable", map[string]string{"XMPPD_LOGIN_LINK_TTL": "1 day"}, `XMPPD_LOGIN_LINK_TTL: invalid duration "1 day"`},
		{"login link ttl negative", map[string]string{"XMPPD_LOGIN_LINK_TTL": "-1h"}, "XMPPD_LOGIN_LINK_TTL: must not be negative"},
		{"sm resume timeout zero", map[string]string{"XMPPD_SM_RESUME_TIMEOUT": "0"}, "XMPPD_SM_RESUME_TIMEOUT: must be greater than 0"},
		{"sm queue limit zero", map[string]string{"XMPPD_SM_QUEUE_LIMIT": "0"}, "XMPPD_SM_QUEUE_LIMIT: must be at least 1"},
		{"gc percent zero", map[string]string{"XMPPD_GC_PERCENT": "0"}, "XMPPD_GC_PERCENT: must be at least 1"},
		{"memory limit negative", map[string]string{"XMPPD_MEMORY_LIMIT": "-1"}, "XMPPD_MEMORY_LIMIT: must not be negative"},
		{"pep max items zero", map[string]string{"XMPPD_PEP_MAX_ITEMS": "0"}, "XMPPD_PEP_MAX_ITEMS: must be at least 1"},
		{"pep item bytes unparseable", map[string]string{"XMPPD_PEP_MAX_ITEM_BYTES": "64k"}, "XMPPD_PEP_MAX_ITEM_BYTES"},
		{"muc occupants zero", map[string]string{"XMPPD_MUC_MAX_OCCUPANTS": "0"}, "XMPPD_MUC_MAX_OCCUPANTS: must be at least 1"},
		{"muc rooms unparseable", map[string]string{"XMPPD_MUC_ROOMS_PER_ACCOUNT": "many"}, `XMPPD_MUC_ROOMS_PER_ACCOUNT: `},
		{"log level", map[string]string{"XMPPD_LOG_LEVEL": "loud"}, `XMPPD_LOG_LEVEL: unknown level "loud" (want debug, info, warn, error)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadFrom(tt.environ)
			if err == nil {
				t.Fatalf("LoadFrom(%v): no error, want %q", tt.environ, tt.want)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, tt.want) {
				t.Errorf("error %q, want prefix %q", msg, tt.want)
			}
			if strings.ContainsAny(msg, "\n\r") {
				t.Errorf("error %q is not one line", msg)
			}
		})
	}
}

func TestErrorDoesNotLeakDatabasePassword(t *testing.T) {
	_, err := LoadFrom(map[string]string{"XMPPD_DATABASE_URL": "postgres://u:hunter2@db:port/x"})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error %v", err)
	}
}

func TestLoadUsesProcessEnvironment(t *testing.T) {
	t.Setenv("XMPPD_LOG_LEVEL", "loud")
	if _, err := Load(); err == nil || !strings.HasPrefix(err.Error(), "XMPPD_LOG_LEVEL:") {
		t.Errorf("Load() error %v", err)
	}
	t.Setenv("XMPPD_LOG_LEVEL", "warn")
	t.Setenv("XMPPD_DOMAIN", "chat.example")
	c, err := Load()
	if err != nil || c.Domain != "chat.example" || c.Level() != slog.LevelWarn {
		t.Errorf("Load() = %+v, %v", c, err)
	}
}

func TestLogger(t *testing.T) {
	for _, tt := range []struct {
		level      string
		debug, err bool
	}{
		{"debug", true, true},
		{"info", false, true},
		{"warn", false, true},
		{"error", false, true},
	} {
		c, err := LoadFrom(map[string]string{"XMPPD_LOG_LEVEL": tt.level})
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		log := c.Logger(&buf)
		log.Debug("d")
		log.Error("e", "k", "v")
		out := buf.String()
		if strings.Contains(out, `"msg":"d"`) != tt.debug {
			t.Errorf("level %s: debug logged = %v: %q", tt.level, !tt.debug, out)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		var rec map[string]any
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rec); err != nil {
			t.Fatalf("level %s: not JSON: %q", tt.level, out)
		}
		if rec["msg"] != "e" || rec["k"] != "v" || rec["level"] != "ERROR" {
			t.Errorf("level %s: record %v", tt.level, rec)
		}
	}
}

func TestPasswordLength(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want int
		err  bool
	}{{"", 12, false}, {"10", 10, false}, {"32", 32, false}, {"9", 0, true}, {"200", 0, true}, {"x", 0, true}} {
		env := map[string]string{}
		if tc.v != "" {
			env["XMPPD_PASSWORD_LENGTH"] = tc.v
		}
		c, err := LoadFrom(env)
		if tc.err {
			if err == nil || !strings.HasPrefix(err.Error(), "XMPPD_PASSWORD_LENGTH") {
				t.Errorf("%q: err %v", tc.v, err)
			}
			continue
		}
		if err != nil || c.PasswordLength != tc.want {
			t.Errorf("%q: %d %v", tc.v, c.PasswordLength, err)
		}
	}
}

// STUN servers need no secret: only TURN servers relay, with credentials.
func TestSTUNWithoutSecret(t *testing.T) {
	c, err := LoadFrom(map[string]string{"XMPPD_TURN_URIS": "stun:stun.example.com:19302,"})
	if err != nil || !reflect.DeepEqual(c.TURNURIs, []string{"stun:stun.example.com:19302"}) {
		t.Fatalf("%v %v", c.TURNURIs, err)
	}
}

// TestClusterNeedsPostgres: XMPPD_NATS_URL without a PostgreSQL
// XMPPD_DATABASE_URL stops the start (SPEC.md "Several servers"): nodes on
// their own SQLite files would share no accounts.
func TestClusterNeedsPostgres(t *testing.T) {
	_, err := LoadFrom(map[string]string{"XMPPD_NATS_URL": "nats://127.0.0.1:4222"})
	if err == nil || !strings.HasPrefix(err.Error(), "XMPPD_NATS_URL:") || !strings.Contains(err.Error(), "XMPPD_DATABASE_URL") {
		t.Errorf("NATS without PostgreSQL: err = %v", err)
	}
	for _, bad := range []map[string]string{
		{"XMPPD_NATS_URL": "http://127.0.0.1:4222", "XMPPD_DATABASE_URL": "postgres://db/x"},
		{"XMPPD_NODE_NAME": "a.b"},
		{"XMPPD_NODE_NAME": "a*"},
	} {
		if _, err := LoadFrom(bad); err == nil {
			t.Errorf("%v: accepted", bad)
		}
	}
	c, err := LoadFrom(map[string]string{"XMPPD_NATS_URL": " nats://127.0.0.1:4222 ", "XMPPD_DATABASE_URL": "postgres://db/x", "XMPPD_NODE_NAME": "n1"})
	if err != nil || c.NATSURL != "nats://127.0.0.1:4222" || c.NodeName != "n1" {
		t.Errorf("cluster config = %q %q, %v", c.NATSURL, c.NodeName, err)
	}
}
