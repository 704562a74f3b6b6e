package webclient

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
)

// The committed Converse.js files are the released ones: each matches
// SHA256SUMS (written by update.sh from the checked npm tarball), and
// nothing else is there.
func TestConverseFilesMatchSums(t *testing.T) {
	sums, err := files.ReadFile("converse/SHA256SUMS")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{"SHA256SUMS": true}
	sc := bufio.NewScanner(bytes.NewReader(sums))
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("malformed line %q", sc.Text())
		}
		listed[name] = true
		b, err := files.ReadFile("converse/" + name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		got := sha256.Sum256(b)
		if hex.EncodeToString(got[:]) != sum {
			t.Errorf("%s: SHA-256 %x, SHA256SUMS says %s", name, got, sum)
		}
	}
	fs.WalkDir(files, "converse", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !listed[strings.TrimPrefix(p, "converse/")] {
			t.Errorf("%s is not in SHA256SUMS", p)
		}
		return err
	})
	version, _ := files.ReadFile("converse/VERSION")
	if strings.TrimSpace(string(version)) != ConverseVersion {
		t.Errorf("converse/VERSION %q, ConverseVersion %q", version, ConverseVersion)
	}
	script, err := os.ReadFile("update.sh")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^VERSION=` + regexp.QuoteMeta(ConverseVersion) + `$`).Match(script) {
		t.Errorf("update.sh does not pin VERSION=%s", ConverseVersion)
	}
	for _, need := range []string{"LICENSE", ConverseJS, ConverseCSS, "emoji.json", "webfonts/muli.ttf", "webfonts/baumans.ttf"} {
		if !listed[need] {
			t.Errorf("%s is missing", need)
		}
	}
}

// Every url(...) of the stylesheet that is not inline data is served.
func TestStylesheetReferencesAreServed(t *testing.T) {
	css, _ := open(ConverseCSS)
	for _, m := range regexp.MustCompile(`url\("?([^")]+)"?\)`).FindAllSubmatch(css, -1) {
		ref := string(m[1])
		if strings.HasPrefix(ref, "data:") || strings.HasPrefix(ref, "#") {
			continue
		}
		if _, ok := open(ref); !ok {
			t.Errorf("converse.min.css refers to %s, which is not served", ref)
		}
	}
}

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(Handler("/chat/assets"))
	defer srv.Close()
	get := func(path string, gz bool) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		// Without this the transport asks for gzip and undoes it itself.
		req.Header.Set("Accept-Encoding", "identity")
		if gz {
			req.Header.Set("Accept-Encoding", "br, gzip;q=0.8")
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	js, _ := open(ConverseJS)
	resp, body := get(Path("/chat/assets", ConverseJS), false)
	if resp.StatusCode != 200 || !bytes.Equal(body, js) {
		t.Fatalf("plain GET: %d, %d bytes, want %d", resp.StatusCode, len(body), len(js))
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/javascript") {
		t.Errorf("Content-Type %q", ct)
	}
	if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "immutable") {
		t.Errorf("Cache-Control %q", cc)
	}
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Error("no nosniff")
	}

	resp, body = get(Path("/chat/assets", ConverseJS), true)
	if resp.Header.Get("Content-Encoding") != "gzip" || len(body) >= len(js)/2 {
		t.Fatalf("gzip GET: encoding %q, %d bytes of %d", resp.Header.Get("Content-Encoding"), len(body), len(js))
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if plain, _ := io.ReadAll(zr); !bytes.Equal(plain, js) {
		t.Error("gzip body does not decompress to the file")
	}

	resp, _ = get(Path("/chat/assets", "images/custom_emojis/xmpp.png"), true)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" || resp.Header.Get("Content-Encoding") != "" {
		t.Errorf("png: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Content-Encoding"))
	}
	resp, body = get(Path("/chat/assets", PluginJS), false)
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte("converse.plugins.add('dialtone'")) {
		t.Errorf("plugin: %d", resp.StatusCode)
	}

	for _, p := range []string{
		"/chat/assets/0000000000000000/" + ConverseJS, // another build
		Path("/chat/assets", "nothing.js"),
		Path("/chat/assets", "../webclient.go"),
		Path("/chat/assets", ""),
		"/chat/assets/" + ID(),
		Path("/chat/assets", "webfonts"),
	} {
		if resp, _ := get(p, false); resp.StatusCode != 404 {
			t.Errorf("GET %s: %d, want 404", p, resp.StatusCode)
		}
	}
}

func TestAcceptsGzip(t *testing.T) {
	for v, want := range map[string]bool{
		"":                   false,
		"gzip":               true,
		"GZIP":               true,
		"deflate, gzip":      true,
		"gzip;q=0":           false,
		"gzip; q=0.000":      false,
		"gzip;q=0.5":         true,
		"br":                 false,
		"x-gzip":             false,
		"identity, gzip;q=1": true,
	} {
		r := httptest.NewRequest("GET", "/", nil)
		if v != "" {
			r.Header.Set("Accept-Encoding", v)
		}
		if got := acceptsGzip(r); got != want {
			t.Errorf("Accept-Encoding %q: %v, want %v", v, got, want)
		}
	}
}
