package archive

import (
	"math"
	"testing"
	"time"
)

func TestIDs(t *testing.T) {
	at := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	c := Clock{now: func() time.Time { return at }}
	a, b := c.Next(), c.Next()
	if b != a+1 || !Time(a).Equal(at) {
		t.Fatalf("ids %d %d at %v", a, b, Time(a))
	}
	if a < FirstID(at) || b > LastID(at) || LastID(at)+1 != FirstID(at.Add(time.Millisecond)) {
		t.Fatalf("bounds of %v: %d..%d, ids %d %d", at, FirstID(at), LastID(at), a, b)
	}
	// A clock behind the stored ids continues after them.
	c.Start(FirstID(at.Add(time.Hour)))
	if d := c.Next(); d != FirstID(at.Add(time.Hour))+1 {
		t.Fatalf("after Start: %d", d)
	}
	s := FormatID(a)
	if len(s) != idWidth || FormatID(a+1) <= s {
		t.Fatalf("string forms %q %q", s, FormatID(a+1))
	}
	if got, err := ParseID(s); err != nil || got != a {
		t.Fatalf("ParseID(%q) = %d, %v", s, got, err)
	}
	for _, bad := range []string{"", "x", "zzzzzzzzzzzzz", "0000000000000", "-000000000001"} {
		if _, err := ParseID(bad); err == nil {
			t.Errorf("ParseID(%q) accepted", bad)
		}
	}
}

func TestPrefs(t *testing.T) {
	p := Prefs{Default: Always, Never: []string{"a@x"}}
	if p.Archives("a@x", nil) || !p.Archives("b@x", nil) {
		t.Fatal("always with a never list")
	}
	p = Prefs{Default: Never, Always: []string{"a@x"}}
	if !p.Archives("a@x", nil) || p.Archives("b@x", nil) {
		t.Fatal("never with an always list")
	}
	p = Prefs{Default: Roster}
	if p.Archives("b@x", func() bool { return false }) || !p.Archives("b@x", func() bool { return true }) {
		t.Fatal("roster")
	}
}

// AppendID writes what FormatID makes.
func TestAppendID(t *testing.T) {
	for _, id := range []int64{0, 1, 31, 32, 1 << 40, FirstID(time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)), math.MaxInt64} {
		if got, want := string(AppendID([]byte("x"), id)), "x"+FormatID(id); got != want {
			t.Errorf("AppendID(%d) = %q, want %q", id, got, want)
		}
	}
}
