package offline

import (
	"strings"
	"testing"
)

func TestKeeps(t *testing.T) {
	for _, tc := range []struct {
		typ  string
		body bool
		want bool
	}{
		{"", true, true}, {"normal", true, true}, {"chat", true, true},
		{"chat", false, false}, {"", false, false},
		{"headline", true, false}, {"groupchat", true, false}, {"error", true, false}, {"bogus", true, false},
	} {
		if got := Keeps(tc.typ, tc.body); got != tc.want {
			t.Errorf("Keeps(%q, body %v) = %v", tc.typ, tc.body, got)
		}
	}
}

func TestChunk(t *testing.T) {
	msg := func(n int) Message { return Message{Stanza: []byte(strings.Repeat("x", n))} }
	for _, tc := range []struct {
		sizes []int
		max   int
		want  int
	}{
		{nil, 10, 0},
		{[]int{4, 4, 4}, 10, 2},
		{[]int{5, 5, 5}, 10, 2},
		{[]int{20, 1}, 10, 1}, // one at least, however big
		{[]int{1, 1, 1}, 10, 3},
	} {
		var msgs []Message
		for _, n := range tc.sizes {
			msgs = append(msgs, msg(n))
		}
		if got := Chunk(msgs, tc.max); got != tc.want {
			t.Errorf("Chunk(%v, %d) = %d, want %d", tc.sizes, tc.max, got, tc.want)
		}
	}
}
