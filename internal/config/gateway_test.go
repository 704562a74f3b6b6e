package config

import (
	"reflect"
	"testing"

	"dialtone/sms"
)

// The configuration's variables reach the gateway they select.
func TestGateway(t *testing.T) {
	cfg, err := LoadFrom(map[string]string{
		"XMPPD_SMS_GATEWAY": "twilio", "XMPPD_TWILIO_ACCOUNT_SID": "AC1", "XMPPD_TWILIO_AUTH_TOKEN": "tok",
		"XMPPD_TWILIO_FROM": "+15005550006", "XMPPD_TWILIO_BASE_URL": "http://127.0.0.1:9/",
		"XMPPD_SMS_WEBHOOK_URL": "https://hooks.example.com/sms", "XMPPD_SMS_WEBHOOK_TOKEN": "wt",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := sms.GatewayConfig{Kind: "twilio", WebhookURL: "https://hooks.example.com/sms", WebhookToken: "wt",
		TwilioAccountSID: "AC1", TwilioAuthToken: "tok", TwilioFrom: "+15005550006", TwilioBaseURL: "http://127.0.0.1:9/"}
	got := cfg.Gateway()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Gateway = %+v, want %+v", got, want)
	}
	g, err := sms.NewGateway(got, nil)
	if tg, ok := g.(*sms.TwilioGateway); err != nil || !ok || tg.AuthToken != "tok" || tg.BaseURL != want.TwilioBaseURL {
		t.Fatalf("NewGateway = %#v, %v", g, err)
	}
}
