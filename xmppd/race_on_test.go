//go:build race

package xmppd_test

const raceEnabled = true
