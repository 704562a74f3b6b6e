package sms

import (
	"encoding/xml"
	"io"
	"slices"
	"strings"
	"testing"
)

// call is a parsed TwiML of VoiceTwiML: its verbs in order, and what each
// <Say> reads as words and spelled characters.
type call struct {
	verbs []string   // "Pause 1", "Say", …
	says  [][]string // per <Say>: words, "[x]" for a spelled character, "capital" as a word
	voice []string   // per <Say>: its voice attribute
}

// parseCall reads twiml as XML, as Twilio would.
func parseCall(t *testing.T, twiml string) call {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(twiml))
	var c call
	depth, inSayAs := 0, false
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("TwiML does not parse: %v\n%s", err, twiml)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			depth++
			attr := func(name string) string {
				for _, a := range tok.Attr {
					if a.Name.Local == name {
						return a.Value
					}
				}
				return ""
			}
			switch {
			case depth == 1:
				if tok.Name.Local != "Response" {
					t.Fatalf("root %s", tok.Name.Local)
				}
			case depth == 2 && tok.Name.Local == "Pause":
				c.verbs = append(c.verbs, "Pause "+attr("length"))
			case depth == 2 && tok.Name.Local == "Say":
				c.verbs = append(c.verbs, "Say")
				c.says = append(c.says, nil)
				c.voice = append(c.voice, attr("voice"))
			case depth == 3 && tok.Name.Local == "say-as":
				if attr("interpret-as") != "characters" {
					t.Errorf("say-as interpret-as=%q", attr("interpret-as"))
				}
				inSayAs = true
			case depth == 3 && tok.Name.Local == "break":
				if attr("time") == "" {
					t.Error("a break without time")
				}
			default:
				t.Fatalf("unexpected <%s> at depth %d", tok.Name.Local, depth)
			}
		case xml.EndElement:
			depth--
			inSayAs = false
		case xml.CharData:
			if len(c.says) == 0 || depth < 2 {
				continue
			}
			say := &c.says[len(c.says)-1]
			if inSayAs {
				*say = append(*say, "["+string(tok)+"]")
				continue
			}
			*say = append(*say, strings.Fields(string(tok))...)
		}
	}
	return c
}

// spelled is the expected reading of a password.
func spelled(password string) []string {
	var out []string
	for _, r := range password {
		if r >= 'A' && r <= 'Z' {
			out = append(out, "capital")
		}
		out = append(out, "["+string(r)+"]")
	}
	return out
}

// A landline's voice notice spells the password one character at a time
// (upper case said as "capital", digits one by one), and reads the whole
// text twice with pauses (SPEC.md "SMS texts").
func TestVoiceTwiML(t *testing.T) {
	const password = "hNA8wyEDrayP"
	for _, tc := range []struct {
		name, text string
		want       []string // the words of one reading
	}{
		{"first notice", NoticeText(Notice{Domain: "example.com", Sender: "+447700900123", Body: "Call me", Preview: true, Password: password}),
			append(strings.Fields(`New message from +447700900123 on example.com: "Call me". Log in with your phone number and password`),
				append(spelled(password), ".")...)},
		{"password", PasswordText("example.com", password),
			append(append(strings.Fields("Your example.com password is"), spelled(password)...),
				strings.Fields(". Log in with your phone number.")...)},
		// A preview that looks like a password is read as it is; only
		// the notice's own password is spelled.
		{"preview and password", NoticeText(Notice{Domain: "example.com", Sender: "+447700900123", Body: "my password abcdefghijk.", Preview: true, Password: "23456789AB"}),
			append(strings.Fields(`New message from +447700900123 on example.com: "my password abcdefghijk.". Log in with your phone number and password`),
				append(spelled("23456789AB"), ".")...)},
		{"no password", NoticeText(Notice{Domain: "example.com", Sender: "+447700900123", Body: "x & <y>", Preview: true}),
			strings.Fields(`New message from +447700900123 on example.com: "x & <y>".`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			twiml := VoiceTwiML(tc.text, DefaultTwilioVoice)
			c := parseCall(t, twiml)
			if want := []string{"Pause 1", "Say", "Pause 2", "Say"}; !slices.Equal(c.verbs, want) {
				t.Fatalf("verbs %v, want %v", c.verbs, want)
			}
			for i, say := range c.says {
				if c.voice[i] != DefaultTwilioVoice {
					t.Errorf("reading %d: voice %q", i, c.voice[i])
				}
				if !slices.Equal(say, tc.want) {
					t.Errorf("reading %d:\n got %q\nwant %q", i, say, tc.want)
				}
			}
			if strings.Contains(twiml, password) {
				t.Errorf("the password is in the TwiML as one word: %s", twiml)
			}
		})
	}
}
