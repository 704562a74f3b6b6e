package daemon

import (
	"fmt"
	"path/filepath"

	"dialtone/turn"
	"dialtone/upload"
)

// filesAndCalls makes the HTTP upload service (XEP-0363) and the STUN and
// TURN servers with their credentials (XEP-0215) (SPEC.md "Files and
// calls"). The XMPP side, the slot request at upload.DOMAIN and the
// extdisco query, calls Uploads.RequestSlot and TURN.Services.
func (d *Daemon) filesAndCalls(secret []byte) error {
	cfg := d.cfg
	d.Uploads = &upload.Service{
		Store:       d.DB,
		Dir:         filepath.Join(cfg.DataDir, "uploads"),
		PublicURL:   cfg.PublicURL,
		Key:         secret,
		MaxFileSize: cfg.UploadMaxFileSize,
		Quota:       cfg.UploadQuota,
		Expiry:      cfg.UploadExpiry,
		Log:         d.log,
	}
	uris, err := turn.ParseURIs(cfg.TURNURIs)
	if err != nil {
		return fmt.Errorf("XMPPD_TURN_URIS: %w", err)
	}
	d.TURN = &turn.Servers{URIs: uris, Secret: []byte(cfg.TURNSecret)}
	if d.accounts != nil {
		d.accounts.Files = d.Uploads // a recycled or released account's files go with it
	}
	return nil
}
