package xmppd

// NotWellFormedStanzas are shared with the socket tests (package
// xmppd_test): format strings taking the receiver's address.
var NotWellFormedStanzas = notWellFormedStanzas
