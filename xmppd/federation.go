package xmppd

import "dialtone/xmppd/s2s"

// FederationConfig configures server-to-server links (package s2s).
type FederationConfig = s2s.Config

// Federation links the server to other XMPP domains (package s2s).
type Federation = s2s.Federation

// NewFederation makes the federation of srv and makes it the route of
// srv's stanzas to other domains; serve its listener with Serve.
func NewFederation(srv *Server, cfg FederationConfig) (*Federation, error) {
	return s2s.New(s2s.Server{
		Router:        srv.router,
		TLS:           srv.cfg.TLS,
		Pending:       srv.pending,
		Stream:        srv.streams,
		MaxStanzaSize: srv.cfg.MaxStanzaSize,
		AuthTimeout:   srv.cfg.AuthTimeout,
		Log:           srv.log,
	}, cfg)
}

// LoadDialbackSecret returns secret, or when it is empty the secret kept
// in dataDir/dialback.key, made on first use.
func LoadDialbackSecret(secret, dataDir string) ([]byte, error) {
	return s2s.LoadDialbackSecret(secret, dataDir)
}
