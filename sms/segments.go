package sms

import "unicode/utf16"

// Segment sizes as the SMS network counts them (3GPP TS 23.038/23.040): a
// lone SMS holds 160 GSM-7 septets or 70 UCS-2 code units; the parts of a
// concatenated SMS lose room to the header and hold 153 or 67.
const (
	gsm7Single = 160
	gsm7Part   = 153
	ucs2Single = 70
	ucs2Part   = 67
)

// gsm7Basic is the GSM 03.38 default alphabet, one septet each (the escape
// code 0x1B itself excluded). gsm7Extension is its extension table, reached
// through the escape code, so two septets each.
const (
	gsm7Basic = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
		"¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
	gsm7Extension = "\f^{}\\[~]|€"
)

// gsm7Septets maps each GSM-7 character to its length in septets.
var gsm7Septets = func() map[rune]int {
	m := make(map[rune]int, 140)
	for _, r := range gsm7Basic {
		m[r] = 1
	}
	for _, r := range gsm7Extension {
		m[r] = 2
	}
	return m
}()

// IsGSM7 tells whether every character of text is in the GSM 03.38 default
// alphabet or its extension table, so that it can be sent as GSM-7 rather
// than UCS-2.
func IsGSM7(text string) bool {
	for _, r := range text {
		if gsm7Septets[r] == 0 {
			return false
		}
	}
	return true
}

// Segments returns how many SMS segments text takes and whether it must be
// sent as UCS-2. GSM-7 counts septets (extension characters such as € [ ] { }
// count two), UCS-2 counts UTF-16 code units (a character outside the Basic
// Multilingual Plane, like most emoji, counts two). A text that needs more
// than one segment is packed 153 septets or 67 units a part, without
// splitting an escape sequence or a surrogate pair, as phones do. An empty
// text is one segment.
func Segments(text string) (count int, ucs2 bool) {
	ucs2 = !IsGSM7(text)
	single, part, width := gsm7Single, gsm7Part, func(r rune) int { return gsm7Septets[r] }
	if ucs2 {
		single, part, width = ucs2Single, ucs2Part, ucs2Units
	}
	total := 0
	for _, r := range text {
		total += width(r)
	}
	if total <= single {
		return 1, ucs2
	}
	count, used := 1, 0
	for _, r := range text {
		w := width(r)
		if used+w > part {
			count++
			used = 0
		}
		used += w
	}
	return count, ucs2
}

// ucs2Units is the length of r in UTF-16 code units; an invalid byte is
// sent as U+FFFD, one unit.
func ucs2Units(r rune) int {
	if n := utf16.RuneLen(r); n > 0 {
		return n
	}
	return 1
}
