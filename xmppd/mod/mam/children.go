package mam

import (
	"bytes"
	"encoding/xml"
)

// eachChild calls fn with the byte range [start, end) and the start tag of
// each top-level element of inner (the raw children of a stanza, which the
// stream reader checked to be well-formed), until fn returns false. It
// scans bytes instead of decoding: it runs for every message routed.
func eachChild(inner []byte, fn func(start, end int, tag []byte) bool) {
	depth, start := 0, 0
	var tag []byte
	for i := 0; i < len(inner); {
		j := bytes.IndexByte(inner[i:], '<')
		if j < 0 {
			return
		}
		i += j
		rest := inner[i:]
		skip := func(end string) bool {
			k := bytes.Index(rest, []byte(end))
			if k < 0 {
				return false
			}
			i += k + len(end)
			return true
		}
		switch {
		case bytes.HasPrefix(rest, []byte("<!--")):
			if !skip("-->") {
				return
			}
			continue
		case bytes.HasPrefix(rest, []byte("<![CDATA[")):
			if !skip("]]>") {
				return
			}
			continue
		case bytes.HasPrefix(rest, []byte("<?")):
			if !skip("?>") {
				return
			}
			continue
		case bytes.HasPrefix(rest, []byte("</")):
			if !skip(">") {
				return
			}
			depth--
			if depth == 0 && !fn(start, i, tag) {
				return
			}
			continue
		}
		k := tagEnd(rest)
		if k < 0 {
			return
		}
		if depth == 0 {
			start, tag = i, rest[:k+1]
		}
		i += k + 1
		if rest[k-1] == '/' {
			if depth == 0 && !fn(start, i, tag) {
				return
			}
			continue
		}
		depth++
	}
}

// tagEnd returns the index of the '>' that ends the start tag at the
// beginning of b ('>' may occur in quoted attribute values), or -1.
func tagEnd(b []byte) int {
	var quote byte
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '>':
			return i
		}
	}
	return -1
}

// tagName is the qualified name of a start tag ("body", "x:y").
func tagName(tag []byte) []byte {
	n := 1
	for n < len(tag) && tag[n] != ' ' && tag[n] != '\t' && tag[n] != '\n' && tag[n] != '\r' && tag[n] != '/' && tag[n] != '>' {
		n++
	}
	return tag[1:n]
}

// parseTag decodes one start tag (for the rare children whose attributes
// matter); a prefix declared outside the tag stays unresolved.
func parseTag(tag []byte) (xml.StartElement, bool) {
	d := xml.NewDecoder(bytes.NewReader(tag))
	d.Strict = false
	tok, err := d.RawToken()
	if err != nil {
		return xml.StartElement{}, false
	}
	se, ok := tok.(xml.StartElement)
	if !ok {
		return xml.StartElement{}, false
	}
	// RawToken leaves prefixes as they are: resolve the ones declared on
	// the tag itself.
	ns := map[string]string{}
	for _, a := range se.Attr {
		switch {
		case a.Name.Space == "" && a.Name.Local == "xmlns":
			ns[""] = a.Value
		case a.Name.Space == "xmlns":
			ns[a.Name.Local] = a.Value
		}
	}
	se.Name.Space = ns[se.Name.Space]
	return se, true
}

// attr returns the value of the unprefixed attribute name, or "".
func attr(se xml.StartElement, name string) string {
	for _, a := range se.Attr {
		if a.Name.Space == "" && a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}
