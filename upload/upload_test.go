package upload_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"dialtone/storage"
	"dialtone/upload"
)

// fixture is an upload service on a real SQLite store, served over
// loopback, with a clock the test moves.
type fixture struct {
	svc  *upload.Service
	db   *storage.DB
	srv  *httptest.Server
	data string // the data dir; files live in data/uploads

	mu  sync.Mutex
	now time.Time
}

func newFixture(t *testing.T, configure func(*upload.Service)) *fixture {
	t.Helper()
	f := &fixture{data: t.TempDir(), now: time.Now()}
	db, err := storage.Open(context.Background(), "", f.data)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f.db = db
	f.svc = &upload.Service{
		Store:       db,
		Dir:         filepath.Join(f.data, "uploads"),
		Key:         []byte("0123456789abcdef0123456789abcdef"),
		MaxFileSize: 1 << 20,
		Quota:       4 << 20,
		Expiry:      24 * time.Hour,
		Now:         f.clock,
	}
	if configure != nil {
		configure(f.svc)
	}
	mux := http.NewServeMux()
	mux.Handle(upload.Path, f.svc)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	f.svc.PublicURL = f.srv.URL
	return f
}

func (f *fixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

const owner = "+12025550123"

func (f *fixture) slot(t *testing.T, name string, size int64, ct string) upload.Slot {
	t.Helper()
	s, err := f.svc.RequestSlot(t.Context(), owner, name, size, ct)
	if err != nil {
		t.Fatalf("RequestSlot(%q, %d, %q): %v", name, size, ct, err)
	}
	return s
}

// answer is one HTTP answer.
type answer struct {
	code   int
	header http.Header
	body   string
}

// do sends one request; header is "Name: value" lines.
func do(t *testing.T, method, u string, body io.Reader, header ...string) answer {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range header {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(k, strings.TrimSpace(v))
	}
	if sr, ok := body.(*strings.Reader); ok {
		req.ContentLength = int64(sr.Len())
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, string(b)}
}

func put(t *testing.T, s upload.Slot, body, ct string) answer {
	t.Helper()
	var h []string
	if ct != "" {
		h = append(h, "Content-Type: "+ct)
	}
	return do(t, "PUT", s.PutURL, strings.NewReader(body), h...)
}

// files lists the regular files under the data dir's uploads, relative
// to it.
func (f *fixture) files(t *testing.T) []string {
	t.Helper()
	var out []string
	root := filepath.Join(f.data, "uploads")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == root {
			return fs.SkipAll
		}
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// nothingStored checks that the slot's file is neither on disk nor
// served, and the slot not marked stored.
func (f *fixture) nothingStored(t *testing.T, s upload.Slot) {
	t.Helper()
	if files := f.files(t); len(files) != 0 {
		t.Errorf("files on disk: %v", files)
	}
	if a := do(t, "GET", s.GetURL, nil); a.code != http.StatusNotFound {
		t.Errorf("GET after a refused PUT: %d %q", a.code, a.body)
	}
	id := strings.Split(strings.TrimPrefix(s.GetURL, "http://"), "/")[2]
	rec, err := f.db.Upload(t.Context(), id)
	if err != nil || !rec.Stored.IsZero() {
		t.Errorf("slot after a refused PUT: %+v %v", rec, err)
	}
}

func TestRequestSlot(t *testing.T) {
	f := newFixture(t, func(s *upload.Service) { s.Quota = 3000; s.MaxFileSize = 2000 })
	s := f.slot(t, "../../My Photo?.jpg", 1000, "image/JPEG")
	prefix := f.srv.URL + upload.Path
	id, name, ok := strings.Cut(strings.TrimPrefix(s.GetURL, prefix), "/")
	if !strings.HasPrefix(s.GetURL, prefix) || !ok || len(id) != 32 || name != "My%20Photo_.jpg" {
		t.Fatalf("GetURL %q: want %sID/My%%20Photo_.jpg", s.GetURL, prefix)
	}
	if !strings.HasPrefix(s.PutURL, s.GetURL+"?token=") || len(s.PutHeaders) != 0 {
		t.Fatalf("PutURL %q, headers %v", s.PutURL, s.PutHeaders)
	}
	if other := f.slot(t, "a.jpg", 1, ""); strings.Contains(other.GetURL, id) {
		t.Fatalf("two slots share the id %s", id)
	}

	for _, tc := range []struct {
		name, owner, file string
		size              int64
		ct                string
		want              upload.SlotError
	}{
		{"too large", owner, "big.bin", 2001, "", upload.SlotError{Type: "modify", Condition: "not-acceptable", MaxFileSize: 2000,
			Text: "File too large. The maximum file size is 2000 bytes"}},
		// 1001 of 3000 in use (the open slots count).
		{"over quota", owner, "more.bin", 2000, "", upload.SlotError{Type: "modify", Condition: "not-acceptable", MaxFileSize: 1999,
			Text: "Upload quota reached: 1001 of 3000 bytes in use, 1999 left"}},
		{"negative size", owner, "a.bin", -1, "", upload.SlotError{Type: "modify", Condition: "bad-request",
			Text: "the size must be a whole number of bytes, 0 or more"}},
		{"bad content type", owner, "a.bin", 1, "image/jpeg\r\nX-Evil: 1", upload.SlotError{Type: "modify", Condition: "bad-request",
			Text: "the content type is not a media type such as image/jpeg"}},
		{"owner not a name", "../x", "a.bin", 1, "", upload.SlotError{Type: "modify", Condition: "bad-request",
			Text: "this account cannot upload files"}},
	} {
		_, err := f.svc.RequestSlot(t.Context(), tc.owner, tc.file, tc.size, tc.ct)
		var se *upload.SlotError
		if !errors.As(err, &se) || *se != tc.want {
			t.Errorf("%s: %v (%#v), want %+v", tc.name, err, se, tc.want)
		}
	}
	ids, err := f.db.UploadIDs(t.Context(), owner)
	if err != nil || len(ids) != 2 {
		t.Fatalf("refused requests recorded slots: %v %v", ids, err)
	}
}

func TestPutAndGet(t *testing.T) {
	f := newFixture(t, nil)
	const body = "\xff\xd8\xff\xe0 not really a JPEG <script>alert(1)</script>"
	s := f.slot(t, "photo.jpg", int64(len(body)), "image/jpeg")
	a := put(t, s, body, "image/jpeg")
	if a.code != http.StatusCreated || a.header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("PUT: %d %q %v", a.code, a.body, a.header)
	}
	a = do(t, "GET", s.GetURL, nil, "Origin: https://web.example")
	if a.code != 200 || a.body != body {
		t.Fatalf("GET: %d %q", a.code, a.body)
	}
	for k, want := range map[string]string{
		"Content-Type":                "image/jpeg",
		"Content-Length":              fmt.Sprint(len(body)),
		"X-Content-Type-Options":      "nosniff",
		"Content-Security-Policy":     "default-src 'none'",
		"Access-Control-Allow-Origin": "*",
		"Content-Disposition":         "", // an image shows in place
	} {
		if got := a.header.Get(k); got != want {
			t.Errorf("GET %s: %q, want %q", k, got, want)
		}
	}
	if a := do(t, "HEAD", s.GetURL, nil); a.code != 200 || a.body != "" || a.header.Get("Content-Length") != fmt.Sprint(len(body)) {
		t.Errorf("HEAD: %d %q %v", a.code, a.body, a.header)
	}
	if a := do(t, "GET", s.GetURL, nil, "Range: bytes=4-6"); a.code != http.StatusPartialContent || a.body != body[4:7] {
		t.Errorf("Range: %d %q", a.code, a.body)
	}
	// The file is where the package says: DIR/OWNER/ID/NAME.
	id := strings.Split(strings.TrimPrefix(s.GetURL, f.srv.URL+upload.Path), "/")[0]
	if files := f.files(t); len(files) != 1 || files[0] != filepath.Join(owner, id, "photo.jpg") {
		t.Errorf("files on disk: %v", files)
	}
	// A second PUT, even signed, replaces nothing.
	if a := put(t, s, strings.Repeat("x", len(body)), "image/jpeg"); a.code != http.StatusConflict {
		t.Errorf("second PUT: %d %q", a.code, a.body)
	}
	if a := do(t, "GET", s.GetURL, nil); a.body != body {
		t.Errorf("GET after a second PUT: %q", a.body)
	}
	// A name that is not the slot's names nothing.
	if a := do(t, "GET", strings.TrimSuffix(s.GetURL, "photo.jpg")+"other.jpg", nil); a.code != 404 {
		t.Errorf("GET with another name: %d", a.code)
	}
}

// Whatever is not an image, audio or video (SVG included) is an
// attachment; a slot without a content type is served as
// application/octet-stream, whatever the PUT said.
func TestContentDisposition(t *testing.T) {
	f := newFixture(t, nil)
	for _, tc := range []struct{ name, slotType, putType, wantType, wantDisposition string }{
		{"page.html", "text/html", "text/html", "text/html", "attachment; filename=page.html"},
		{"logo.svg", "image/svg+xml", "image/svg+xml", "image/svg+xml", "attachment; filename=logo.svg"},
		{"voice.ogg", "audio/ogg; codecs=opus", "audio/ogg;codecs=opus", "audio/ogg; codecs=opus", ""},
		{"clip.mp4", "video/mp4", "video/mp4", "video/mp4", ""},
		{"notes.txt", "", "text/html", "application/octet-stream", "attachment; filename=notes.txt"},
		{"사진 (1).txt", "text/plain; charset=utf-8", "text/plain; charset=utf-8", "text/plain; charset=utf-8",
			"attachment; filename*=utf-8''%EC%82%AC%EC%A7%84%20%281%29.txt"},
	} {
		s := f.slot(t, tc.name, 3, tc.slotType)
		if a := put(t, s, "abc", tc.putType); a.code != http.StatusCreated {
			t.Fatalf("%s: PUT %d %q", tc.name, a.code, a.body)
		}
		a := do(t, "GET", s.GetURL, nil)
		if a.code != 200 || a.header.Get("Content-Type") != tc.wantType || a.header.Get("Content-Disposition") != tc.wantDisposition ||
			a.header.Get("X-Content-Type-Options") != "nosniff" || a.header.Get("Content-Security-Policy") != "default-src 'none'" {
			t.Errorf("%s: GET %d, Content-Type %q, Content-Disposition %q, headers %v; want %q, %q",
				tc.name, a.code, a.header.Get("Content-Type"), a.header.Get("Content-Disposition"), a.header, tc.wantType, tc.wantDisposition)
		}
	}
}

// A browser's preflight for a PUT from another origin is allowed.
func TestCORSPreflight(t *testing.T) {
	f := newFixture(t, nil)
	s := f.slot(t, "a.png", 1, "image/png")
	a := do(t, "OPTIONS", s.PutURL, nil, "Origin: https://web.example", "Access-Control-Request-Method: PUT",
		"Access-Control-Request-Headers: content-type")
	if a.code != http.StatusNoContent || a.header.Get("Access-Control-Allow-Origin") != "*" ||
		!strings.Contains(a.header.Get("Access-Control-Allow-Methods"), "PUT") ||
		!strings.EqualFold(a.header.Get("Access-Control-Allow-Headers"), "Content-Type") {
		t.Fatalf("preflight: %d %v", a.code, a.header)
	}
	if a := do(t, "DELETE", s.GetURL, nil); a.code != http.StatusMethodNotAllowed {
		t.Errorf("DELETE: %d", a.code)
	}
}

// Bad PUTs get a clear error and store nothing.
func TestPutRefused(t *testing.T) {
	const body = "0123456789"
	for _, tc := range []struct {
		name    string
		send    func(t *testing.T, f *fixture, s upload.Slot) answer
		code    int
		message string
	}{
		{"shorter than the slot", func(t *testing.T, f *fixture, s upload.Slot) answer {
			return put(t, s, body[:9], "text/plain")
		}, 400, "the slot is for 10 bytes, not 9"},
		{"longer than the slot", func(t *testing.T, f *fixture, s upload.Slot) answer {
			return put(t, s, body+"!", "text/plain")
		}, 413, "the slot is for 10 bytes, not 11"},
		{"chunked, without a length", func(t *testing.T, f *fixture, s upload.Slot) answer {
			return do(t, "PUT", s.PutURL, io.MultiReader(strings.NewReader(body)), "Content-Type: text/plain")
		}, 411, "send Content-Length: 10"},
		{"another content type", func(t *testing.T, f *fixture, s upload.Slot) answer {
			return put(t, s, body, "text/html")
		}, 415, "the slot is for Content-Type: text/plain"},
		{"no content type", func(t *testing.T, f *fixture, s upload.Slot) answer {
			return put(t, s, body, "")
		}, 415, "the slot is for Content-Type: text/plain"},
		{"no token", func(t *testing.T, f *fixture, s upload.Slot) answer {
			return do(t, "PUT", s.GetURL, strings.NewReader(body), "Content-Type: text/plain")
		}, 403, "this is not a valid upload URL for this file"},
		{"a forged token", func(t *testing.T, f *fixture, s upload.Slot) answer {
			u := s.PutURL[:len(s.PutURL)-4] + "AAAA"
			return do(t, "PUT", u, strings.NewReader(body), "Content-Type: text/plain")
		}, 403, "this is not a valid upload URL for this file"},
		{"the token of another slot", func(t *testing.T, f *fixture, s upload.Slot) answer {
			other := f.slot(t, "other.txt", 10, "text/plain")
			_, token, _ := strings.Cut(other.PutURL, "?")
			return do(t, "PUT", s.GetURL+"?"+token, strings.NewReader(body), "Content-Type: text/plain")
		}, 403, "this is not a valid upload URL for this file"},
		{"an expired slot", func(t *testing.T, f *fixture, s upload.Slot) answer {
			f.advance(upload.DefaultPutWindow + time.Second)
			return put(t, s, body, "text/plain")
		}, 403, "this upload URL expired; request a new slot"},
		{"another name, with the slot's token", func(t *testing.T, f *fixture, s upload.Slot) answer {
			base, token, _ := strings.Cut(s.PutURL, "?")
			return do(t, "PUT", strings.TrimSuffix(base, "notes.txt")+"evil.html?"+token, strings.NewReader(body), "Content-Type: text/plain")
		}, 404, "no such file"},
		{"a traversing name", func(t *testing.T, f *fixture, s upload.Slot) answer {
			base, token, _ := strings.Cut(s.PutURL, "?")
			return do(t, "PUT", strings.TrimSuffix(base, "notes.txt")+"..%2F..%2F..%2Fsecret.key?"+token,
				strings.NewReader(body), "Content-Type: text/plain")
		}, 404, "no such file"},
		{"a traversing path", func(t *testing.T, f *fixture, s upload.Slot) answer {
			_, token, _ := strings.Cut(s.PutURL, "?")
			return do(t, "PUT", f.srv.URL+upload.Path+"..%2F..%2Fsecret.key/x?"+token, strings.NewReader(body), "Content-Type: text/plain")
		}, 404, "no such file"},
		{"a body that ends early", func(t *testing.T, f *fixture, s upload.Slot) answer {
			// Content-Length 10, 5 bytes, then the client hangs up.
			c := rawPut(t, f, s, "Content-Type: text/plain\r\nContent-Length: 10\r\n\r\n01234")
			c.(*net.TCPConn).CloseWrite()
			return readAnswer(t, c)
		}, 400, "received 5 of 10 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			s := f.slot(t, "notes.txt", 10, "text/plain")
			a := tc.send(t, f, s)
			if a.code != tc.code || strings.TrimSpace(a.body) != tc.message {
				t.Errorf("%d %q, want %d %q", a.code, a.body, tc.code, tc.message)
			}
			if a.header.Get("Access-Control-Allow-Origin") != "*" {
				t.Errorf("no CORS header on the error: a web client could not read it")
			}
			f.nothingStored(t, s)
			if _, err := os.Stat(filepath.Join(f.data, "secret.key")); err == nil {
				t.Errorf("a file was written outside the uploads")
			}
		})
	}
}

// A PUT whose body stalls is cut after BodyIdleTimeout and leaves nothing.
func TestPutStalled(t *testing.T) {
	f := newFixture(t, func(s *upload.Service) { s.BodyIdleTimeout = 200 * time.Millisecond })
	s := f.slot(t, "notes.txt", 10, "text/plain")
	c := rawPut(t, f, s, "Content-Type: text/plain\r\nContent-Length: 10\r\n\r\n01234")
	// The client sends nothing more; the server gives up and answers.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	a := readAnswer(t, c)
	if a.code != 400 || !strings.Contains(a.body, "received 5 of 10 bytes") {
		t.Errorf("%d %q", a.code, a.body)
	}
	f.nothingStored(t, s)
}

// rawPut opens a connection and sends the PUT of s with head (headers
// after the request line, and the start of the body).
func rawPut(t *testing.T, f *fixture, s upload.Slot, head string) net.Conn {
	t.Helper()
	u, err := url.Parse(s.PutURL)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, "PUT "+u.RequestURI()+" HTTP/1.1\r\nHost: "+u.Host+"\r\n"+head); err != nil {
		t.Fatal(err)
	}
	return c
}

func readAnswer(t *testing.T, c net.Conn) answer {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}
}

// Two PUTs of one slot at once: the second is refused while the first
// streams, and the first one's file is what is served.
func TestPutConcurrent(t *testing.T) {
	f := newFixture(t, nil)
	s := f.slot(t, "notes.txt", 10, "text/plain")
	c := rawPut(t, f, s, "Content-Type: text/plain\r\nContent-Length: 10\r\n\r\n01234")
	// The first PUT is under way once its temporary file exists.
	deadline := time.Now().Add(10 * time.Second)
	for len(f.files(t)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the first PUT made no temporary file in 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if a := put(t, s, "abcdefghij", "text/plain"); a.code != http.StatusConflict {
		t.Errorf("second PUT: %d %q", a.code, a.body)
	}
	io.WriteString(c, "56789")
	if a := readAnswer(t, c); a.code != http.StatusCreated {
		t.Fatalf("first PUT: %d %q", a.code, a.body)
	}
	if a := do(t, "GET", s.GetURL, nil); a.body != "0123456789" {
		t.Errorf("GET: %q", a.body)
	}
}
