package config

import "dialtone/sms"

// Gateway picks the SMS gateway settings (XMPPD_SMS_GATEWAY and its
// variables) out of the configuration, for sms.NewGateway. It lives here
// rather than in sms so that sms knows nothing of the environment.
func (c Config) Gateway() sms.GatewayConfig {
	return sms.GatewayConfig{
		Kind:             c.SMSGateway,
		WebhookURL:       c.SMSWebhookURL,
		WebhookToken:     c.SMSWebhookToken,
		TwilioAccountSID: c.TwilioAccountSID,
		TwilioAuthToken:  c.TwilioAuthToken,
		TwilioFrom:       c.TwilioFrom,
		TwilioBaseURL:    c.TwilioBaseURL,
	}
}
