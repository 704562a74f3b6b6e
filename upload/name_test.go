package upload

import (
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSanitizeName(t *testing.T) {
	long := strings.Repeat("x", 300)
	for _, tc := range []struct{ in, want string }{
		{"my-juliet.jpg", "my-juliet.jpg"},
		{"Holiday photo (2).JPEG", "Holiday photo (2).JPEG"},
		{"사진 1.jpg", "사진 1.jpg"},
		{"../../etc/passwd", "passwd"},
		{`..\..\windows\win.ini`, "win.ini"},
		{"/abs/path/", "file"},
		{"..", "file"},
		{".", "file"},
		{"", "file"},
		{"...", "file"},
		{" . ", "file"},
		{".bashrc", "bashrc"},
		{"trailing. . ", "trailing"},
		{"a\x00b\nc\r.txt", "a_b_c_.txt"},
		{"what?#&%;.jpg", "what_____.jpg"},
		{"evil\u202egpj.exe", "evil_gpj.exe"}, // right-to-left override
		{"zero\u200bwidth.png", "zero_width.png"},
		{"bad\xffutf8.txt", "bad_utf8.txt"},
		{"<script>.html", "_script_.html"},
		{long + ".jpg", long[:124] + ".jpg"},
		{long + "." + long, long[:128]},
		{strings.Repeat("é", 100) + ".png", strings.Repeat("é", 62) + ".png"},
	} {
		if got := SanitizeName(tc.in); got != tc.want {
			t.Errorf("SanitizeName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzSanitizeName: whatever a client sends, the name is one path element
// inside the slot's directory.
func FuzzSanitizeName(f *testing.F) {
	for _, s := range []string{"../../etc/passwd", `..\x`, "a/b", ".", "..", "é.jpg", "\xff", strings.Repeat("é", 200)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got := SanitizeName(in)
		switch {
		case got == "" || got == "." || got == "..",
			strings.ContainsAny(got, "/\\\x00"),
			strings.HasPrefix(got, "."),
			len(got) > maxNameBytes,
			!utf8.ValidString(got),
			filepath.Base(got) != got,
			filepath.Join("slot", got) != "slot/"+got:
			t.Fatalf("SanitizeName(%q) = %q", in, got)
		}
	})
}

func TestNormalizeContentType(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"  ", ""},
		{"image/jpeg", "image/jpeg"},
		{"IMAGE/JPEG", "image/jpeg"},
		{"text/plain; charset=UTF-8", "text/plain; charset=UTF-8"},
		{"text/plain;charset=UTF-8", "text/plain; charset=UTF-8"},
		{"text/plain; b=2; a=1", "text/plain; a=1; b=2"},
	} {
		got, err := NormalizeContentType(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("NormalizeContentType(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"jpeg", "image/jpeg; charset", "image/jpeg\r\nX-Evil: 1", "a b/c", "image/" + strings.Repeat("x", 300)} {
		if got, err := NormalizeContentType(in); err == nil {
			t.Errorf("NormalizeContentType(%q) = %q, want an error", in, got)
		}
	}
}

func TestInline(t *testing.T) {
	for ct, want := range map[string]bool{
		"image/jpeg": true, "image/png": true, "audio/ogg; codecs=opus": true, "video/mp4": true,
		"image/svg+xml": false, "text/html": false, "application/octet-stream": false, "text/plain; charset=utf-8": false,
		"application/xhtml+xml": false, "imagex/png": false,
	} {
		if got := inline(ct); got != want {
			t.Errorf("inline(%q) = %v, want %v", ct, got, want)
		}
	}
}
