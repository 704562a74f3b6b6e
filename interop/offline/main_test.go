// Package offline tests offline messages and their SMS notices end to end
// (issue 4, SPEC.md "Offline messages", "SMS texts", "SMS gateway
// webhook"): the built xmppd and xmppctl run as child processes, on
// SQLite and on PostgreSQL, with the webhook gateway pointed at a local
// receiver; clients are the raw XML client of internal/xmpptest and
// slixmpp.
//
// TestCrash kills the server (SIGKILL) while a sender streams messages to
// offline numbers, and again while stored messages are being written to
// their receiver, and checks after a restart on the same store that
// nothing was lost and nothing came twice but what the kill cut short.
// TestSlixmppReceiver has slixmpp log in as the receivers of stored
// messages, one of them a number that had never used the service and
// learnt its password from the notice SMS.
package offline

import (
	"testing"

	"dialtone/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }
