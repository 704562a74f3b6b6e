package stream

import (
	"bytes"
	"encoding/base64"
	"errors"

	"dialtone/xmppd/wire"
)

// SASLData decodes the base64 text of a SASL element (RFC 6120 §6.4). In
// <auth>, no text means no initial response (nil) and "=" an empty one.
func SASLData(inner []byte, initial bool) ([]byte, error) {
	t := bytes.TrimSpace(inner)
	if bytes.IndexByte(t, '<') >= 0 {
		return nil, errors.New("markup in SASL data")
	}
	if len(t) == 0 {
		if initial {
			return nil, nil
		}
		return []byte{}, nil
	}
	if string(t) == "=" {
		return []byte{}, nil
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(t)))
	n, err := base64.StdEncoding.Decode(out, t)
	if err != nil {
		return nil, err
	}
	return out[:n], nil
}

// SASLElement returns <name xmlns=SASL> with data in base64: nil data is
// no text, empty data in <success/> is "=". attrs are name/value pairs
// (the mechanism of <auth/>).
func SASLElement(name string, data []byte, attrs ...string) []byte {
	b := wire.NewBuilder(nil)
	b.StartNS(name, NSSASL, attrs...)
	switch {
	case data == nil:
	case len(data) == 0 && name == "success":
		b.Text("=")
	default:
		b.Text(base64.StdEncoding.EncodeToString(data))
	}
	return b.End().Bytes()
}

// SASLFailure returns <failure xmlns=SASL> with the condition and an
// optional text.
func SASLFailure(cond, text string) []byte {
	b := wire.NewBuilder(nil)
	b.StartNS("failure", NSSASL).Element(cond, "", "")
	if text != "" {
		b.Element("text", "", text)
	}
	return b.End().Bytes()
}
