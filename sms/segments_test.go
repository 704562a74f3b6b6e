package sms

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestGSM7Alphabet(t *testing.T) {
	// 128 codes less the escape code, and the 10 characters of the
	// default extension table.
	if n := utf8.RuneCountInString(gsm7Basic); n != 127 {
		t.Errorf("basic alphabet has %d characters, want 127", n)
	}
	if n := utf8.RuneCountInString(gsm7Extension); n != 10 {
		t.Errorf("extension table has %d characters, want 10", n)
	}
	if len(gsm7Septets) != 137 {
		t.Errorf("%d distinct GSM-7 characters, want 137", len(gsm7Septets))
	}
}

func TestIsGSM7(t *testing.T) {
	for _, tc := range []struct {
		text string
		want bool
	}{
		{"", true},
		{"Hello, World! 0123456789 @£$¥ èéùìò Ç Øø Åå ÆæßÉ ¡¿ ÄÖÑÜ§ äöñüà ΔΦΓΛΩΠΨΣΘΞ _\n\r", true},
		{"€[]{}|~^\\\f", true},
		{"ç", false}, // only the capital is GSM-7
		{"á", false},
		{"`", false},
		{"\t", false},
		{"\x1b", false},
		{"😀", false},
		{"안녕", false},
		{"a\xffb", false}, // invalid UTF-8 is sent as U+FFFD
	} {
		if got := IsGSM7(tc.text); got != tc.want {
			t.Errorf("IsGSM7(%q) = %v, want %v", tc.text, got, tc.want)
		}
	}
}

func TestSegments(t *testing.T) {
	a := func(n int) string { return strings.Repeat("a", n) }
	ya := func(n int) string { return strings.Repeat("я", n) }
	emoji := func(n int) string { return strings.Repeat("😀", n) }
	for _, tc := range []struct {
		name  string
		text  string
		count int
		ucs2  bool
	}{
		{"empty", "", 1, false},
		{"159 septets", a(159), 1, false},
		{"160 septets", a(160), 1, false},
		{"161 septets", a(161), 2, false},
		{"158 + euro = 160 septets", a(158) + "€", 1, false},
		{"159 + euro = 161 septets", a(159) + "€", 2, false},
		{"80 brackets = 160 septets", strings.Repeat("[]", 40), 1, false},
		{"81 braces = 162 septets", strings.Repeat("{", 81), 2, false},
		{"306 septets", a(306), 2, false},
		{"307 septets", a(307), 3, false},
		{"305 + euro", a(305) + "€", 3, false},
		{"304 + euro = 306", a(304) + "€", 2, false},
		// An escape sequence is not split between parts: part 1 takes 152
		// septets, part 2 the euro and 151, part 3 the last one.
		{"euro across a part boundary", a(152) + "€" + a(152), 3, false},
		{"euro at the end of part 1", a(151) + "€" + a(153), 2, false},
		{"70 units", ya(70), 1, true},
		{"71 units", ya(71), 2, true},
		{"134 units", ya(134), 2, true},
		{"135 units", ya(135), 3, true},
		{"one non-GSM character makes UCS-2", a(69) + "ç", 1, true},
		{"and 71 units are two segments", a(70) + "ç", 2, true},
		{"35 emoji = 70 units", emoji(35), 1, true},
		{"35 emoji and a letter = 71 units", emoji(35) + "a", 2, true},
		{"66 emoji = 132 units", emoji(66), 2, true},
		// 134 units, but a part holds 33 emoji (66 units) when none is split.
		{"67 emoji = 134 units", emoji(67), 3, true},
		// A surrogate pair is not split: part 1 takes 66 units, part 2
		// the emoji and 65, part 3 the last one.
		{"emoji across a part boundary", a(66) + "😀" + a(66), 3, true},
		{"euro counts one unit in UCS-2", strings.Repeat("€", 69) + "я", 1, true},
	} {
		count, ucs2 := Segments(tc.text)
		if count != tc.count || ucs2 != tc.ucs2 {
			t.Errorf("%s: Segments = %d, %v; want %d, %v", tc.name, count, ucs2, tc.count, tc.ucs2)
		}
	}
}
