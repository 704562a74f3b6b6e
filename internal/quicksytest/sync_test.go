package quicksytest

import "testing"

// StatusQuo against values computed outside Go, e.g.
//
//	printf '+14155550100\x1ea@example.com\x1eb@example.org\x1d+821012345678' | openssl sha1 -binary | base64
func TestStatusQuo(t *testing.T) {
	for _, tc := range []struct {
		entries []Entry
		want    string
	}{
		{nil, "2jmj7l5rSw0yVb/vlWAYkK/YBwk="},
		{[]Entry{{"+821012345678", []string{"+821012345678@example.com"}}}, "pj0qGVprJch5fB0HUUNN3t5PNYI="},
		// Unsorted in, sorted as the app sorts.
		{[]Entry{
			{"+821012345678", []string{"+821012345678@example.com"}},
			{"+14155550100", []string{"+14155550100@example.com"}},
		}, "iAUurM+Zj94F2to3RaNtSn79nw0="},
		{[]Entry{
			{"+821012345678", nil},
			{"+14155550100", []string{"b@example.org", "a@example.com"}},
		}, "PwOQPa08xbbz9wmmIq55C0Mliis="},
	} {
		if got := StatusQuo(tc.entries); got != tc.want {
			t.Errorf("StatusQuo(%v) = %s, want %s", tc.entries, got, tc.want)
		}
	}
}
