package upload

import (
	"errors"
	"mime"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxNameBytes bounds a sanitized file name: well inside the 255 bytes of
// a file name on disk, and a URL that stays readable.
const maxNameBytes = 128

// maxExtBytes is the longest extension kept whole when a long name is cut.
const maxExtBytes = 16

// SanitizeName reduces a client's file name to one safe path element: the
// part after the last "/" or "\", each rune that is not a letter, digit,
// mark or one of " ._-+()[]~,@=" replaced by "_", leading dots and
// spaces and trailing spaces and dots dropped, cut to 128 bytes keeping
// the extension. What is left is never empty, "." or "..", never starts
// with a dot, and holds no separator, control or format character: it
// names a file inside its slot's directory and nothing else. An empty
// result becomes "file".
func SanitizeName(name string) string {
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(name, "_") {
		switch {
		case unicode.IsLetter(r), unicode.IsDigit(r), unicode.IsMark(r), strings.ContainsRune(" ._-+()[]~,@=", r):
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	name = strings.TrimRight(strings.TrimLeft(b.String(), ". "), ". ")
	if len(name) > maxNameBytes {
		stem, ext := name, ""
		if dot := strings.LastIndexByte(name, '.'); dot > 0 && len(name)-dot <= maxExtBytes {
			stem, ext = name[:dot], name[dot:]
		}
		stem = stem[:maxNameBytes-len(ext)]
		for !utf8.ValidString(stem) { // not in the middle of a rune
			stem = stem[:len(stem)-1]
		}
		name = strings.TrimRight(stem, ". ") + ext
	}
	if name == "" || strings.Trim(name, ".") == "" {
		return "file"
	}
	return name
}

// maxContentTypeBytes bounds the content type a slot records.
const maxContentTypeBytes = 255

// NormalizeContentType parses a requested content type (RFC 2045) and
// writes it in one canonical form (lower-case type, sorted parameters), so
// that the PUT's Content-Type is compared with it form for form; "" stays
// "" (none given).
func NormalizeContentType(ct string) (string, error) {
	if strings.TrimSpace(ct) == "" {
		return "", nil
	}
	if len(ct) > maxContentTypeBytes {
		return "", errors.New("the content type is too long")
	}
	t, params, err := mime.ParseMediaType(ct)
	if err != nil || !strings.Contains(t, "/") {
		return "", errors.New("the content type is not a media type such as image/jpeg")
	}
	out := mime.FormatMediaType(t, params)
	if out == "" {
		return "", errors.New("the content type is not a media type such as image/jpeg")
	}
	return out, nil
}

// inline reports whether a browser may show a file of content type ct in
// place: images, audio and video, except SVG, which is a document that
// can hold scripts. Everything else is served as an attachment.
func inline(ct string) bool {
	t, _, _ := strings.Cut(ct, ";")
	t = strings.TrimSpace(t)
	if t == "image/svg+xml" {
		return false
	}
	major, _, _ := strings.Cut(t, "/")
	return major == "image" || major == "audio" || major == "video"
}
