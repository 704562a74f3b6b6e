package daemon

import (
	"fmt"
	"path/filepath"

	"dialtone/auth"
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
	return nil
}

// removeFiles removes the uploaded files of an account that was released
// or recycled; its slots went with its other rows. A failure is only
// logged: the upload sweeper removes what has no slot any more.
func (d *Daemon) removeFiles(n auth.Number) {
	if err := d.Uploads.RemoveOwner(string(n)); err != nil {
		d.log.Error("removing the uploaded files of an account", "number", string(n), "err", err)
	}
}
