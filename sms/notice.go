package sms

import (
	"strconv"
	"strings"
	"unicode"
)

// Notice is what a notice SMS says: that one message, or several folded
// into one notice, wait for the receiver (SPEC.md "SMS texts").
type Notice struct {
	// Domain is the server's XMPP domain.
	Domain string
	// Sender is the sender's canonical number. In a folded notice it is
	// empty when several people wrote.
	Sender string
	// Body is the message; a notice that is not folded quotes it as the
	// preview, cut to fit the SMS.
	Body string
	// Preview is whether the notice quotes Body (XMPPD_NOTICE_PREVIEW).
	Preview bool
	// Password, when not empty, makes this the first notice to an
	// unclaimed account: it carries the account's new password, and may
	// take two segments.
	Password string
	// Link, with Password, is the one-tap login link that follows it
	// (SPEC.md "Web client and one-tap login"); it counts towards the
	// segments like the rest of the text.
	Link string
	// LoginHint, without Password, makes this the first notice to an
	// unclaimed account whose password was handed out already: it says
	// how to log in, without a password.
	LoginHint bool
	// Folded makes the notice count Count messages instead of quoting one.
	Folded bool
	// Count is the number of messages of a folded notice (at least 1).
	Count int
	// Group, when not empty, makes this an invitation: Sender added the
	// receiver to the group of that name (SPEC.md "Group chats"); Body
	// and Folded are not used.
	Group string
}

// Segments a notice may take: one, or two when it carries a password.
const (
	noticeSegments         = 1
	passwordNoticeSegments = 2
)

// ellipsis ends a cut preview: three full stops, which are GSM-7.
const ellipsis = "..."

// previewScan bounds the part of a body that is considered for the
// preview; no segment holds more characters than this.
const previewScan = 2 * gsm7Single

// NoticeText is the text of the notice SMS n (SPEC.md "SMS texts"). The
// preview is cut, ending in "...", so that the whole text fits one segment,
// or two when n carries a password; when not even an empty preview fits,
// the notice is sent without one. Whitespace in the preview (newlines
// included) is collapsed to single spaces and control characters are
// dropped, since the preview is quoted on one line.
func NoticeText(n Notice) string {
	tail := "."
	switch {
	case n.Password != "" && n.Link != "":
		tail = ". Log in with your phone number and password " + n.Password + ", or tap " + n.Link
	case n.Password != "":
		tail = ". Log in with your phone number and password " + n.Password + "."
	case n.LoginHint:
		tail = ". Log in with your phone number and password."
	}
	if n.Group != "" {
		return inviteText(n, tail)
	}
	if n.Folded {
		count := max(n.Count, 1)
		head := strconv.Itoa(count) + " new message"
		if count != 1 {
			head += "s"
		}
		if n.Sender != "" {
			head += " from " + n.Sender
		}
		return head + " on " + n.Domain + tail
	}
	head := "New message"
	if n.Sender != "" {
		head += " from " + n.Sender
	}
	head += " on " + n.Domain
	plain := head + tail
	if !n.Preview {
		return plain
	}
	preview := []rune(previewText(n.Body))
	if len(preview) == 0 {
		return plain
	}
	limit := noticeSegments
	if n.Password != "" {
		limit = passwordNoticeSegments
	}
	quote := func(p string) string { return head + `: "` + p + `"` + tail }
	fits := func(text string) bool {
		c, _ := Segments(text)
		return c <= limit
	}
	if len(preview) <= previewScan {
		if whole := quote(string(preview)); fits(whole) {
			return whole
		}
	}
	// The longest cut that fits. Longer cuts never fit once one does not
	// (a text only grows, and UCS-2 once needed stays needed), so the scan
	// stops at the first that fails.
	best := quote(ellipsis)
	if !fits(best) {
		return plain
	}
	for k := 1; k <= len(preview) && k <= previewScan; k++ {
		p := strings.TrimRightFunc(string(preview[:k]), unicode.IsSpace)
		text := quote(p + ellipsis)
		if !fits(text) {
			break
		}
		best = text
	}
	return best
}

// inviteText is the text of an invitation: `SENDER added you to the
// group "NAME" on DOMAIN.` and the tail; a group name too long for the
// segments is cut, ending in "...".
func inviteText(n Notice, tail string) string {
	limit := noticeSegments
	if n.Password != "" {
		limit = passwordNoticeSegments
	}
	text := func(name string) string {
		return n.Sender + ` added you to the group "` + name + `" on ` + n.Domain + tail
	}
	name := []rune(previewText(n.Group))
	fits := func(t string) bool {
		c, _ := Segments(t)
		return c <= limit
	}
	if whole := text(string(name)); len(name) <= previewScan && fits(whole) {
		return whole
	}
	best := text(ellipsis)
	for k := 1; k <= len(name) && k <= previewScan; k++ {
		t := text(strings.TrimRightFunc(string(name[:k]), unicode.IsSpace) + ellipsis)
		if !fits(t) {
			break
		}
		best = t
	}
	return best
}

// previewText is body as a one-line preview: valid UTF-8, runs of white
// space as one space, control characters and bidirectional overrides
// (which could make the rest of the SMS read differently) dropped, trimmed.
// Only the start of a long body is looked at.
func previewText(body string) string {
	var b strings.Builder
	space, n := false, 0
	for _, r := range strings.ToValidUTF8(body, "\uFFFD") {
		if n > previewScan+1 {
			break
		}
		switch {
		case unicode.IsSpace(r):
			space = b.Len() > 0
			continue
		case unicode.IsControl(r), isBidiControl(r):
			continue
		}
		if space {
			b.WriteByte(' ')
			n++
			space = false
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// isBidiControl reports the explicit bidirectional embeddings, overrides
// and isolates (U+202A–U+202E, U+2066–U+2069).
func isBidiControl(r rune) bool {
	return r >= 0x202A && r <= 0x202E || r >= 0x2066 && r <= 0x2069
}
