package auth

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func mustParser(t testing.TB, region string, allowed ...string) *NumberParser {
	t.Helper()
	p, err := NewNumberParser(region, allowed)
	if err != nil {
		t.Fatalf("NewNumberParser(%q, %q): %v", region, allowed, err)
	}
	return p
}

func TestParse(t *testing.T) {
	const (
		ok      = "ok"
		invalid = "invalid"
		noSMS   = "no-sms"
	)
	tests := []struct {
		region  string
		allowed []string
		in      string
		want    Number
		outcome string
	}{
		// Korea: the SPEC "Addresses" forms.
		{"KR", nil, "+821012345678", "+821012345678", ok},
		{"KR", nil, "+82 10-1234-5678", "+821012345678", ok},
		{"KR", nil, "010-1234-5678", "+821012345678", ok},
		{"KR", nil, "01012345678", "+821012345678", ok},
		{"KR", nil, "010.1234.5678", "+821012345678", ok},
		{"KR", nil, "(010) 1234-5678", "+821012345678", ok},
		{"KR", nil, "  010-1234-5678 ", "+821012345678", ok},
		{"KR", nil, "02-212-3456", "+8222123456", ok},          // Seoul fixed line
		{"KR", nil, "070-1234-5678", "+827012345678", ok},      // VoIP
		{"KR", nil, "060-234-5678", "", noSMS},                 // premium rate
		{"KR", nil, "080-123-4567", "", noSMS},                 // toll free
		{"KR", nil, "1544-1234", "", noSMS},                    // UAN
		{"KR", nil, "0800 123 4567", "", invalid},              // UK toll-free written for KR
		{"KR", nil, "+44 7400 123456", "+447400123456", ok},    // international form ignores default
		{"KR", []string{"KR"}, "+44 7400 123456", "", invalid}, // region not allowed
		{"KR", []string{"kr", "US"}, "+1 201 555 0123", "+12015550123", ok},
		// United States.
		{"US", nil, "(201) 555-0123", "+12015550123", ok},
		{"US", nil, "201.555.0123", "+12015550123", ok},
		{"US", nil, "+1 (201) 555-0123", "+12015550123", ok},
		{"US", nil, "1-800-234-5678", "", noSMS},  // toll free
		{"US", nil, "+1 800 555 0100", "", noSMS}, // toll free
		{"US", nil, "(900) 234-5678", "", noSMS},  // premium rate
		{"US", nil, "1-800-FLOWERS", "", invalid}, // vanity
		{"US", nil, "555-0123", "", invalid},      // too short
		{"US", nil, "+1 201 555 0123 x12", "", invalid},
		// Great Britain.
		{"GB", nil, "07400 123456", "+447400123456", ok},
		{"GB", nil, "+44 20 7946 0958", "+442079460958", ok},
		{"GB", nil, "0121 234 5678", "+441212345678", ok},
		{"GB", nil, "0909 879 0000", "", noSMS},    // 09xx premium rate
		{"GB", nil, "+44 901 234 5678", "", noSMS}, // premium rate
		{"GB", nil, "0800 123 4567", "", noSMS},    // toll free
		{"GB", nil, "056 1234 5678", "+445612345678", ok},
		// Germany.
		{"DE", nil, "030 123456", "+4930123456", ok},
		{"DE", nil, "01512 3456789", "+4915123456789", ok},
		{"DE", nil, "+49 1512 3456789", "+4915123456789", ok},
		{"DE", nil, "0900 1 234567", "", noSMS},   // premium rate
		{"DE", nil, "0800 1234567890", "", noSMS}, // toll free
		{"DE", nil, "0180 1 2345", "", noSMS},     // shared cost
		{"DE", nil, "0177 99 1234567", "", noSMS}, // voicemail
		{"DE", nil, "0049 1512 3456789", "+4915123456789", ok},
		// Non-geographic: international toll free.
		{"US", nil, "+800 1234 5678", "", noSMS},
		{"US", []string{"US"}, "+800 1234 5678", "", invalid},
		// Rubbish.
		{"KR", nil, "", "", invalid},
		{"KR", nil, "   ", "", invalid},
		{"KR", nil, "+", "", invalid},
		{"KR", nil, "--()..", "", invalid},
		{"KR", nil, "abc", "", invalid},
		{"KR", nil, "010-1234-567O", "", invalid}, // letter O
		{"KR", nil, "8+21012345678", "", invalid},
		{"KR", nil, "++821012345678", "", invalid},
		{"KR", nil, "tel:+821012345678", "", invalid},
		{"KR", nil, "+821012345678@localhost", "", invalid},
		{"KR", nil, "０１０１２３４５６７８", "", invalid}, // full-width digits
		{"KR", nil, "010\x001234\x005678", "", invalid},
		{"KR", nil, "010#1234", "", invalid},
		{"KR", nil, "+82" + strings.Repeat(" ", 62) + "1", "", invalid}, // over 64 bytes
		{"KR", nil, strings.Repeat("1", 65), "", invalid},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%v/%q", tt.region, tt.allowed, tt.in), func(t *testing.T) {
			p := mustParser(t, tt.region, tt.allowed...)
			for range 2 { // the second time from the cache
				got, err := p.Parse(tt.in)
				switch tt.outcome {
				case ok:
					if err != nil || got != tt.want {
						t.Fatalf("Parse = %q, %v; want %q", got, err, tt.want)
					}
				case noSMS:
					if !errors.Is(err, ErrCannotReceiveSMS) || !errors.Is(err, ErrInvalidNumber) || got != "" {
						t.Fatalf("Parse = %q, %v; want ErrCannotReceiveSMS (and ErrInvalidNumber)", got, err)
					}
				case invalid:
					if !errors.Is(err, ErrInvalidNumber) || errors.Is(err, ErrCannotReceiveSMS) || got != "" {
						t.Fatalf("Parse = %q, %v; want ErrInvalidNumber only", got, err)
					}
				}
			}
		})
	}
}

func TestNewNumberParser(t *testing.T) {
	if _, err := NewNumberParser("XX", nil); err == nil || !strings.Contains(err.Error(), "XX") {
		t.Errorf("unknown default region: err = %v, want one naming XX", err)
	}
	if _, err := NewNumberParser("KR", []string{"US", "QQ"}); err == nil || !strings.Contains(err.Error(), "QQ") {
		t.Errorf("unknown allowed region: err = %v, want one naming QQ", err)
	}
	if _, err := NewNumberParser("", nil); err == nil {
		t.Error("empty default region accepted")
	}
	if _, err := NewNumberParser("001", nil); err == nil {
		t.Error("non-geographic pseudo-region accepted as default")
	}
	if _, err := NewNumberParser(" kr ", []string{"us", "", " GB"}); err != nil {
		t.Errorf("lower case and blanks: %v", err)
	}
}

func TestIsFixedLine(t *testing.T) {
	p := mustParser(t, "KR")
	for n, want := range map[Number]bool{
		"+8222123456":   true,  // Seoul
		"+4930123456":   true,  // Berlin
		"+441212345678": true,  // Birmingham
		"+821012345678": false, // mobile
		"+12015550123":  false, // US: fixed line or mobile
		"+827012345678": false, // VoIP
		"+82602345678":  false, // premium rate: not even a number for us
		"":              false,
		"garbage":       false,
	} {
		if got := p.IsFixedLine(n); got != want {
			t.Errorf("IsFixedLine(%q) = %v, want %v", n, got, want)
		}
	}
}

func TestCanonicalJID(t *testing.T) {
	j, err := CanonicalJID("+821012345678", "Example.COM")
	if err != nil {
		t.Fatal(err)
	}
	if got := j.String(); got != "+821012345678@example.com" {
		t.Errorf("CanonicalJID = %q", got)
	}
	for _, n := range []Number{"", "+", "821012345678", "+0123", "+82 10", "+8210123456789012", "+82a"} {
		if _, err := CanonicalJID(n, "example.com"); err == nil {
			t.Errorf("CanonicalJID(%q) accepted", n)
		}
	}
	if _, err := CanonicalJID("+821012345678", ""); err == nil {
		t.Error("empty domain accepted")
	}
	if _, err := CanonicalJID("+821012345678", "a b"); err == nil {
		t.Error("bad domain accepted")
	}
}

func TestParseCacheBounded(t *testing.T) {
	p := mustParser(t, "US")
	for i := range numberCacheSize + 10 {
		p.Parse(fmt.Sprintf("+1 201 555 %04d", i%10000) + strings.Repeat(" ", i/10000))
	}
	p.mu.RLock()
	n := len(p.cache)
	p.mu.RUnlock()
	if n > numberCacheSize {
		t.Errorf("cache holds %d entries, limit %d", n, numberCacheSize)
	}
	// Still right after being cleared.
	if got, err := p.Parse("(201) 555-0123"); err != nil || got != "+12015550123" {
		t.Errorf("after clearing: %q, %v", got, err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"+821012345678", "+82 10-1234-5678", "010-1234-5678", "01012345678",
		"(201) 555-0123", "0800 123 4567", "+800 1234 5678", "+", "", "0049 30 123456",
		"+39 06 1234 5678", "+1 (201) 555.0123",
	} {
		f.Add("KR", s)
		f.Add("US", s)
	}
	parsers := map[string]*NumberParser{}
	for _, r := range []string{"KR", "US", "GB", "DE", "IT"} {
		parsers[r] = mustParser(f, r)
	}
	f.Fuzz(func(t *testing.T, region, s string) {
		p := parsers[region]
		if p == nil {
			p = parsers["US"]
		}
		n, err := p.Parse(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidNumber) {
				t.Fatalf("Parse(%q) error %v does not match ErrInvalidNumber", s, err)
			}
			return
		}
		if !isCanonical(n) {
			t.Fatalf("Parse(%q) = %q, not canonical", s, n)
		}
		// The canonical form is a fixed point, whatever the default region.
		for _, q := range parsers {
			again, err := q.Parse(string(n))
			if err != nil || again != n {
				t.Fatalf("Parse(%q) = %q, which re-parses to %q, %v", s, n, again, err)
			}
		}
		if _, err := CanonicalJID(n, "example.com"); err != nil {
			t.Fatalf("CanonicalJID(%q): %v", n, err)
		}
	})
}

// A valid number of a region not allowed is told apart from an invalid
// one (the app API answers 451), and is still not an address.
func TestRegionNotAllowed(t *testing.T) {
	p, err := NewNumberParser("KR", []string{"KR"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Parse("+44 7400 123456")
	if !errors.Is(err, ErrRegionNotAllowed) || !errors.Is(err, ErrInvalidNumber) || errors.Is(err, ErrCannotReceiveSMS) {
		t.Fatalf("Parse of a GB number under KR only = %v", err)
	}
	for _, s := range []string{"12", "+44 1", "060-234-5678"} {
		if _, err := p.Parse(s); errors.Is(err, ErrRegionNotAllowed) {
			t.Errorf("Parse(%q) = %v: not a matter of region", s, err)
		}
	}
}
