package daemon

import (
	"dialtone/storage"
	"dialtone/xmppd/ext"
	"dialtone/xmppd/im"
)

// The store implements the XMPP modules' store interfaces. The check is
// made here, where the two are wired, because storage imports no XMPP
// package.
var (
	_ im.Store         = (*storage.DB)(nil)
	_ ext.PrivateStore = (*storage.DB)(nil)
	_ ext.BlockStore   = (*storage.DB)(nil)
)
