package auth

import (
	"strings"
	"testing"
)

func TestGeneratePassword(t *testing.T) {
	for _, tt := range []struct{ in, want int }{{-1, 10}, {0, 10}, {9, 10}, {10, 10}, {11, 11}, {64, 64}} {
		p, err := GeneratePassword(tt.in)
		if err != nil {
			t.Fatalf("GeneratePassword(%d): %v", tt.in, err)
		}
		if len(p) != tt.want {
			t.Errorf("GeneratePassword(%d) has length %d, want %d", tt.in, len(p), tt.want)
		}
		for _, c := range p {
			if !strings.ContainsRune(passwordAlphabet, c) {
				t.Errorf("GeneratePassword(%d) = %q has %q outside the alphabet", tt.in, p, c)
			}
		}
	}
	if _, err := GeneratePassword(maxPasswordLength + 1); err == nil {
		t.Error("absurd length accepted")
	}
	a, _ := GeneratePassword(10)
	b, _ := GeneratePassword(10)
	if a == b {
		t.Errorf("two passwords are both %q", a)
	}
}

func TestPasswordAlphabet(t *testing.T) {
	if strings.ContainsAny(passwordAlphabet, "0Oo1lI") {
		t.Errorf("alphabet %q has an ambiguous character", passwordAlphabet)
	}
	seen := map[rune]bool{}
	for _, c := range passwordAlphabet {
		if seen[c] {
			t.Errorf("alphabet repeats %q (that would bias it)", c)
		}
		seen[c] = true
		if !(c >= '2' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			t.Errorf("alphabet has %q", c)
		}
	}
	if len(passwordAlphabet) != 8+24+24 {
		t.Errorf("alphabet has %d characters, want 56", len(passwordAlphabet))
	}
}

// TestGeneratePasswordUniform is a coarse check that every character turns
// up about equally often; with 56,000 draws the expected count is 1000 and
// a count outside 800..1200 is a 6-sigma event for an unbiased generator.
func TestGeneratePasswordUniform(t *testing.T) {
	counts := map[byte]int{}
	for range 1000 {
		p, err := GeneratePassword(len(passwordAlphabet))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(p); i++ {
			counts[p[i]]++
		}
	}
	for i := 0; i < len(passwordAlphabet); i++ {
		if c := counts[passwordAlphabet[i]]; c < 800 || c > 1200 {
			t.Errorf("%q drawn %d times, want about 1000", passwordAlphabet[i], c)
		}
	}
}
