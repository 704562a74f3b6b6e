package sms

import "dialtone/internal/config"

// GatewayConfigOf picks the gateway settings out of the server's
// configuration, for NewGateway.
func GatewayConfigOf(c config.Config) GatewayConfig {
	return GatewayConfig{
		Kind:             c.SMSGateway,
		WebhookURL:       c.SMSWebhookURL,
		WebhookToken:     c.SMSWebhookToken,
		TwilioAccountSID: c.TwilioAccountSID,
		TwilioAuthToken:  c.TwilioAuthToken,
		TwilioFrom:       c.TwilioFrom,
		TwilioBaseURL:    c.TwilioBaseURL,
	}
}
