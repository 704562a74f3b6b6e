package daemon_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"dialtone/auth"
	"dialtone/upload"
)

// uploadFile asks the running daemon for a slot of owner and PUTs body
// through its HTTP listener; the slot's URLs are on XMPPD_PUBLIC_URL,
// so the request goes to the listener with the URL's path.
func (s *daemonUnderTest) uploadFile(t *testing.T, owner, name, ct string, size int64, body io.Reader) upload.Slot {
	t.Helper()
	slot, err := s.d.Uploads.RequestSlot(t.Context(), owner, name, size, ct)
	if err != nil {
		t.Fatalf("RequestSlot: %v", err)
	}
	req, err := http.NewRequest("PUT", s.local(t, slot.PutURL), body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", ct)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %d", resp.StatusCode)
	}
	return slot
}

// local is u (on XMPPD_PUBLIC_URL) with the daemon's listener as host.
func (s *daemonUnderTest) local(t *testing.T, u string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	p.Scheme, p.Host = "http", s.d.Addr("http")
	return p.String()
}

// getStatus GETs u from the daemon's listener and returns the status.
func (s *daemonUnderTest) getStatus(t *testing.T, u string) int {
	t.Helper()
	resp, err := http.Get(s.local(t, u))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// A 50 MB file goes up and comes down through the daemon without the
// server holding it in memory: the process's peak RSS grows by far less
// than the file. The slot's URLs are on XMPPD_PUBLIC_URL (a TLS proxy's
// https URL), not on the address the request came to. Not parallel: it
// measures the whole test process.
func TestUploadStreamed50MB(t *testing.T) {
	const size = 50 << 20
	const publicURL = "https://chat.example.test"
	s := startDaemon(t, noticeEnv(t, "", map[string]string{
		"XMPPD_PUBLIC_URL":           publicURL,
		"XMPPD_TRUSTED_PROXIES":      "127.0.0.1/32",
		"XMPPD_UPLOAD_MAX_FILE_SIZE": strconv.Itoa(size),
	}))
	owner := s.newUser(t).num

	// The body is made while it is sent, and hashed on the way.
	sent := sha256.New()
	body := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{1}), size), sent)
	rss := startRSSPeak(t)
	slot := s.uploadFile(t, owner, "video.mp4", "video/mp4", size, body)
	if !strings.HasPrefix(slot.GetURL, publicURL+upload.Path) || !strings.HasPrefix(slot.PutURL, publicURL+upload.Path) {
		t.Errorf("slot URLs %q, %q: not on XMPPD_PUBLIC_URL", slot.PutURL, slot.GetURL)
	}
	resp, err := http.Get(s.local(t, slot.GetURL))
	if err != nil {
		t.Fatal(err)
	}
	got := sha256.New()
	n, err := io.Copy(got, resp.Body)
	resp.Body.Close()
	if err != nil || n != size || !bytes.Equal(got.Sum(nil), sent.Sum(nil)) {
		t.Fatalf("GET: %d bytes, %v; the file came back different", n, err)
	}
	growth := rss.growth(t)
	t.Logf("peak RSS grew by %.1f MiB for a %d MiB file", float64(growth)/(1<<20), size>>20)
	if growth > size/4 {
		t.Errorf("peak RSS grew by %d bytes for a file of %d: the file was held in memory", growth, size)
	}
	// On disk, whole, under DATA_DIR/uploads/OWNER.
	matches, _ := filepath.Glob(filepath.Join(s.env["XMPPD_DATA_DIR"], "uploads", owner, "*", "video.mp4"))
	if len(matches) != 1 {
		t.Fatalf("files on disk: %v", matches)
	}
	if st, err := os.Stat(matches[0]); err != nil || st.Size() != size {
		t.Fatalf("stored file: %v %v", st, err)
	}
}

// rssPeak measures how far the process's resident memory rises above
// where it was at the start: the kernel's high-water mark (VmHWM), reset
// at the start; where it cannot be reset, samples of VmRSS.
type rssPeak struct {
	baseline int64
	reset    bool
	stop     chan struct{}
	sampled  chan int64
}

func startRSSPeak(t *testing.T) *rssPeak {
	t.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	p := &rssPeak{baseline: procStatus(t, "VmRSS")}
	p.reset = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
	if !p.reset {
		p.stop, p.sampled = make(chan struct{}), make(chan int64, 1)
		go func() {
			peak := int64(0)
			tick := time.NewTicker(2 * time.Millisecond)
			defer tick.Stop()
			for {
				if v := procStatus(t, "VmRSS"); v > peak {
					peak = v
				}
				select {
				case <-p.stop:
					p.sampled <- peak
					return
				case <-tick.C:
				}
			}
		}()
	}
	return p
}

// growth is the peak since startRSSPeak minus the baseline, in bytes.
func (p *rssPeak) growth(t *testing.T) int64 {
	t.Helper()
	if p.reset {
		return procStatus(t, "VmHWM") - p.baseline
	}
	close(p.stop)
	return <-p.sampled - p.baseline
}

// procStatus reads a "kB" field of /proc/self/status, in bytes.
func procStatus(t *testing.T, field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skipf("!!! SKIPPED, NOT PASSED: no /proc/self/status to measure memory: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// The files of an account go with it, on both stores: when a password
// request recycles it for a new owner of the number, and when it is
// released unused.
func TestUploadsGoWithTheAccount(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { testUploadsGoWithTheAccount(t, b.url(t)) })
	}
}

func testUploadsGoWithTheAccount(t *testing.T, dbURL string) {
	s := startDaemon(t, noticeEnv(t, dbURL, map[string]string{
		"XMPPD_RECYCLE_AFTER":         "1h",
		"XMPPD_UNCLAIMED_ACCOUNT_TTL": "1s", // swept every 250ms
	}))
	uploads := filepath.Join(s.env["XMPPD_DATA_DIR"], "uploads")
	gone := func(owner string, slot upload.Slot) func() bool {
		return func() bool {
			_, err := os.Stat(filepath.Join(uploads, owner))
			return os.IsNotExist(err) && s.getStatus(t, slot.GetURL) == http.StatusNotFound
		}
	}

	t.Run("recycled", func(t *testing.T) {
		u := s.newUser(t)
		ctx := t.Context()
		if err := s.d.DB.RecordLogin(ctx, auth.Number(u.num), time.Now().Add(-2*time.Hour)); err != nil {
			t.Fatal(err)
		}
		slot := s.uploadFile(t, u.num, "old owner.jpg", "image/jpeg", 3, strings.NewReader("abc"))
		if code := s.getStatus(t, slot.GetURL); code != 200 {
			t.Fatalf("GET before the recycle: %d", code)
		}
		postPassword(t, s, u.num)
		// The recycle is done before the new password is texted.
		if !gone(u.num, slot)() {
			t.Errorf("the old owner's file is still there after the recycle")
		}
	})

	t.Run("released", func(t *testing.T) {
		// The file first, then the account, so that the sweeper cannot
		// release the account before the file is there.
		num := s.newNumber()
		slot := s.uploadFile(t, num, "unused.txt", "text/plain", 3, strings.NewReader("abc"))
		creds, err := auth.NewCredentials("a password")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.d.DB.SetCredentials(t.Context(), auth.Number(num), creds); err != nil {
			t.Fatal(err)
		}
		waitForLong(t, 20*time.Second, "the released account's file to go", gone(num, slot))
	})
}
