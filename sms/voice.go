package sms

import (
	"encoding/xml"
	"regexp"
	"strconv"
	"strings"

	"dialtone/auth"
)

// DefaultTwilioVoice is the text-to-speech voice of Twilio calls. The
// spelling of a password needs SSML (<say-as>, <break>), which Twilio
// reads with its Amazon Polly and Google voices, not with its basic ones.
const DefaultTwilioVoice = "Polly.Joanna"

// Pauses of a voice notice.
const (
	voicePauseBefore = "1"     // seconds of <Pause> before the first reading (the callee answers)
	voicePauseAgain  = "2"     // seconds of <Pause> between the two readings
	passwordPause    = "700ms" // <break> around the spelled password
	characterPause   = "400ms" // <break> between two characters of it
)

// passwordInText finds the password in the texts of PasswordText ("…
// password is PASSWORD. …") and NoticeText ("… and password PASSWORD."):
// a word of at least auth.MinPasswordLength letters and digits after
// "password " and ending in a full stop. The last one is the password: a
// quoted preview comes before it.
var passwordInText = regexp.MustCompile(`password (?:is )?([A-Za-z0-9]{` + strconv.Itoa(auth.MinPasswordLength) + `,})\.`)

// VoiceTwiML is the TwiML of a call that reads text out (SPEC.md "SMS
// texts": the text of the SMS, with the password, if any, spelled one
// character at a time, upper-case letters said as "capital", digits one
// by one, read twice, with pauses). voice is the <Say> voice.
func VoiceTwiML(text, voice string) string {
	var say strings.Builder
	say.WriteString(`<Say voice="`)
	xml.EscapeText(&say, []byte(voice))
	say.WriteString(`" language="en-US">`)
	rest := text
	if m := lastMatch(text); m != nil {
		xml.EscapeText(&say, []byte(text[:m[2]]))
		say.WriteString(`<break time="` + passwordPause + `"/>`)
		spell(&say, text[m[2]:m[3]])
		say.WriteString(`<break time="` + passwordPause + `"/>`)
		rest = text[m[3]:]
	}
	xml.EscapeText(&say, []byte(rest))
	say.WriteString(`</Say>`)
	s := say.String()
	return `<Response><Pause length="` + voicePauseBefore + `"/>` + s +
		`<Pause length="` + voicePauseAgain + `"/>` + s + `</Response>`
}

// lastMatch returns the submatch indexes of the last password in text.
func lastMatch(text string) []int {
	all := passwordInText.FindAllStringSubmatchIndex(text, -1)
	if len(all) == 0 {
		return nil
	}
	return all[len(all)-1]
}

// spell writes password one character at a time, each read as a
// character (not as part of a word), upper-case ones preceded by
// "capital" since the case matters and a voice does not tell it.
func spell(b *strings.Builder, password string) {
	for i, r := range password {
		if i > 0 {
			b.WriteString(`<break time="` + characterPause + `"/>`)
		}
		if r >= 'A' && r <= 'Z' {
			b.WriteString("capital ")
		}
		b.WriteString(`<say-as interpret-as="characters">`)
		b.WriteRune(r) // a letter or digit: nothing to escape
		b.WriteString(`</say-as>`)
	}
}
