package sms

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
)

// SendTimeout is how long a gateway may take to answer before the attempt
// counts as failed (SPEC.md "SMS gateway webhook": none within 10 seconds).
const SendTimeout = 10 * time.Second

// DefaultTwilioBaseURL is Twilio's REST API root.
const DefaultTwilioBaseURL = "https://api.twilio.com"

// VoiceGateway is a gateway that can also call a number and read a text
// out, for numbers that take no SMS (landlines).
type VoiceGateway interface {
	Call(ctx context.Context, m SMS) error
}

// GatewayConfig selects and configures a gateway (the XMPPD_SMS_* and
// XMPPD_TWILIO_* variables).
type GatewayConfig struct {
	// Kind is "log" (also when empty), "webhook" or "twilio".
	Kind string
	// WebhookURL is where the webhook gateway POSTs each SMS.
	WebhookURL string
	// WebhookToken, when set, is sent as Authorization: Bearer TOKEN.
	WebhookToken string
	// TwilioAccountSID, TwilioAuthToken and TwilioFrom configure the twilio
	// gateway; TwilioFrom is a number or a messaging service SID ("MG…").
	TwilioAccountSID string
	// TwilioAuthToken authenticates TwilioAccountSID.
	TwilioAuthToken string
	// TwilioFrom is the sender of Twilio SMS and calls.
	TwilioFrom string
	// TwilioBaseURL is the API root; empty means DefaultTwilioBaseURL.
	TwilioBaseURL string
	// Client makes the HTTP requests; nil means a client with SendTimeout
	// that follows no redirects.
	Client *http.Client
}

// NewGateway returns the gateway cfg selects. The log gateway writes to log
// (nil: slog.Default()).
func NewGateway(cfg GatewayConfig, log *slog.Logger) (Gateway, error) {
	client := cfg.Client
	if client == nil {
		client = newHTTPClient()
	}
	switch strings.ToLower(strings.TrimSpace(cfg.Kind)) {
	case "", "log":
		return LogGateway{Log: log}, nil
	case "webhook":
		if err := checkHTTPURL(cfg.WebhookURL); err != nil {
			return nil, fmt.Errorf("sms: webhook URL: %w", err)
		}
		return &WebhookGateway{URL: cfg.WebhookURL, Token: cfg.WebhookToken, Client: client}, nil
	case "twilio":
		base := cfg.TwilioBaseURL
		if base == "" {
			base = DefaultTwilioBaseURL
		}
		if err := checkHTTPURL(base); err != nil {
			return nil, fmt.Errorf("sms: twilio base URL: %w", err)
		}
		if cfg.TwilioAccountSID == "" || cfg.TwilioAuthToken == "" || cfg.TwilioFrom == "" {
			return nil, errors.New("sms: twilio needs an account SID, an auth token and a sender")
		}
		return &TwilioGateway{AccountSID: cfg.TwilioAccountSID, AuthToken: cfg.TwilioAuthToken,
			From: cfg.TwilioFrom, BaseURL: base, Client: client}, nil
	default:
		return nil, fmt.Errorf("sms: unknown gateway %q (want log, webhook, twilio)", cfg.Kind)
	}
}

func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("does not parse") // url.Error would repeat the URL, which may hold a secret
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return errors.New("want an http:// or https:// URL with a host")
	}
	return nil
}

// newHTTPClient is the gateways' default client: a whole exchange ends
// after SendTimeout, and a redirect is an answer that is not 2xx rather
// than a request repeated elsewhere (as GET, with the credentials).
func newHTTPClient() *http.Client {
	return &http.Client{
		Timeout:       SendTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// WebhookGateway POSTs each SMS as JSON {"id","to","text","purpose"} to URL
// (SPEC.md "SMS gateway webhook"). A 2xx answer means accepted.
type WebhookGateway struct {
	// URL receives the POSTs.
	URL string
	// Token, when set, is sent as Authorization: Bearer Token.
	Token string
	// Client makes the requests; nil means a client with SendTimeout.
	Client *http.Client
}

// webhookBody is the JSON of one SMS.
type webhookBody struct {
	ID      string `json:"id"`
	To      string `json:"to"`
	Text    string `json:"text"`
	Purpose string `json:"purpose"`
}

// Send POSTs m and returns nil when the receiver answered 2xx within
// SendTimeout.
func (g *WebhookGateway) Send(ctx context.Context, m SMS) error {
	body, err := json.Marshal(webhookBody{ID: m.ID, To: m.To, Text: m.Text, Purpose: m.Purpose})
	if err != nil {
		return fmt.Errorf("sms: webhook: %w", err)
	}
	header := http.Header{"Content-Type": {"application/json"}}
	if g.Token != "" {
		header.Set("Authorization", "Bearer "+g.Token)
	}
	status, answer, err := post(ctx, g.Client, g.URL, header, body)
	if err != nil {
		return fmt.Errorf("sms: webhook: %s", redact(err.Error(), g.Token))
	}
	if status/100 != 2 {
		return fmt.Errorf("sms: webhook answered %d %s: %s", status, http.StatusText(status), redact(snippet(answer), g.Token))
	}
	return nil
}

// TwilioGateway sends SMS through Twilio's Messages API and makes calls
// through its Calls API.
type TwilioGateway struct {
	// AccountSID and AuthToken are the account's credentials.
	AccountSID string
	// AuthToken is the secret of AccountSID; errors never show it.
	AuthToken string
	// From is the sender: a number, or a messaging service SID ("MG…",
	// for SMS only).
	From string
	// BaseURL is the API root; empty means DefaultTwilioBaseURL.
	BaseURL string
	// Voice is the text-to-speech voice of calls; empty means
	// DefaultTwilioVoice.
	Voice string
	// Client makes the requests; nil means a client with SendTimeout.
	Client *http.Client
}

// Send creates a Message resource: POST
// {BaseURL}/2010-04-01/Accounts/{AccountSID}/Messages.json with To, From
// (or MessagingServiceSid) and Body.
func (g *TwilioGateway) Send(ctx context.Context, m SMS) error {
	form := url.Values{"To": {m.To}, "Body": {m.Text}}
	if isMessagingService(g.From) {
		form.Set("MessagingServiceSid", g.From)
	} else {
		form.Set("From", g.From)
	}
	return g.create(ctx, "Messages", form)
}

// Call creates a Call resource that reads m.Text out: POST
// {BaseURL}/2010-04-01/Accounts/{AccountSID}/Calls.json with To, From and
// the Twiml of VoiceTwiML (the password spelled, the text read twice).
func (g *TwilioGateway) Call(ctx context.Context, m SMS) error {
	if isMessagingService(g.From) {
		return errors.New("sms: twilio: a messaging service cannot make calls; XMPPD_TWILIO_FROM must be a number")
	}
	voice := g.Voice
	if voice == "" {
		voice = DefaultTwilioVoice
	}
	return g.create(ctx, "Calls", url.Values{"To": {m.To}, "From": {g.From}, "Twiml": {VoiceTwiML(m.Text, voice)}})
}

// isMessagingService tells a messaging service SID from a number.
func isMessagingService(from string) bool { return strings.HasPrefix(from, "MG") }

// twilioError is the JSON body of a Twilio error answer.
type twilioError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// create POSTs form to the resource list and accepts a 2xx answer.
func (g *TwilioGateway) create(ctx context.Context, resource string, form url.Values) error {
	base := g.BaseURL
	if base == "" {
		base = DefaultTwilioBaseURL
	}
	endpoint := strings.TrimRight(base, "/") + "/2010-04-01/Accounts/" + url.PathEscape(g.AccountSID) + "/" + resource + ".json"
	header := http.Header{
		"Content-Type":  {"application/x-www-form-urlencoded"},
		"Accept":        {"application/json"},
		"Authorization": {basicAuth(g.AccountSID, g.AuthToken)},
	}
	status, answer, err := post(ctx, g.Client, endpoint, header, []byte(form.Encode()))
	if err != nil {
		return fmt.Errorf("sms: twilio %s: %s", resource, redact(err.Error(), g.AuthToken))
	}
	if status/100 == 2 {
		return nil
	}
	var te twilioError
	detail := snippet(answer)
	if json.Unmarshal(answer, &te) == nil && (te.Code != 0 || te.Message != "") {
		detail = fmt.Sprintf("error %d: %s", te.Code, snippet([]byte(te.Message)))
	}
	return fmt.Errorf("sms: twilio %s answered %d %s: %s", resource, status, http.StatusText(status), redact(detail, g.AuthToken))
}

func basicAuth(user, password string) string {
	r := http.Request{Header: http.Header{}}
	r.SetBasicAuth(user, password)
	return r.Header.Get("Authorization")
}

// maxAnswer bounds how much of an answer is read.
const maxAnswer = 64 << 10

// post sends body to endpoint and returns the status and the start of the
// answer. The whole exchange ends after SendTimeout whatever the client.
func post(ctx context.Context, client *http.Client, endpoint string, header http.Header, body []byte) (int, []byte, error) {
	if client == nil {
		client = newHTTPClient()
	}
	ctx, cancel := context.WithTimeout(ctx, SendTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return 0, nil, errors.New("bad URL")
	}
	req.Header = header
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			// url.Error repeats the URL, which may carry credentials.
			err = fmt.Errorf("POST %s: %w", redactURL(endpoint), ue.Err)
		}
		return 0, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil && resp.StatusCode/100 == 2 {
		// The gateway took the SMS even if the rest of its answer is lost.
		err = nil
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer)) // lets the connection be reused
	return resp.StatusCode, answer, err
}

// redactURL drops the user info and query of a URL for an error message.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(bad URL)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

// redact removes secret from s.
func redact(s, secret string) string {
	if secret == "" {
		return s
	}
	return strings.ReplaceAll(s, secret, "[REDACTED]")
}

// snippet is the start of an answer as one printable line for an error.
func snippet(b []byte) string {
	const max = 200
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }), " ")
	if r := []rune(s); len(r) > max {
		s = string(r[:max]) + "..."
	}
	if s == "" {
		return "(empty answer)"
	}
	return s
}
