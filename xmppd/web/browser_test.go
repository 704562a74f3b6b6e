package web

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The browser test drives headless Chromium through chromedriver's W3C
// WebDriver HTTP API: the page must work in a real browser, with its real
// CSP, cookies and form handling, at a phone's size.

const (
	chromiumPath     = "/usr/bin/chromium"
	chromedriverPath = "/usr/bin/chromedriver"
	// webdriverTimeout bounds one WebDriver command; starting a browser is
	// the slowest of them.
	webdriverTimeout = 60 * time.Second
	// phoneWidth, phoneHeight: an iPhone 12-14 screen in CSS pixels.
	phoneWidth, phoneHeight = 390, 844
	// elementKey names an element reference in WebDriver JSON.
	elementKey = "element-6066-11e4-a52e-4f735466cecf"
)

// requireChromium skips the test when Chromium or chromedriver is missing,
// except in CI (CI=true), where that is a broken set-up and fails.
func requireChromium(t *testing.T) {
	t.Helper()
	for _, p := range []string{chromiumPath, chromedriverPath} {
		if _, err := os.Stat(p); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is missing (apt-get install chromium chromium-driver): %v", p, err)
			}
			t.Skipf("SKIPPING the browser test: %s is missing (apt-get install chromium chromium-driver)", p)
		}
	}
}

// webdriver is one chromedriver process and one browser session.
type webdriver struct {
	t       *testing.T
	base    string // http://127.0.0.1:PORT/session/ID
	client  *http.Client
	shots   string
	counter int
}

func startWebdriver(t *testing.T) *webdriver {
	t.Helper()
	requireChromium(t)
	port := freePort(t)
	profile := t.TempDir() // removed after the browser is gone (cleanups run last-in first-out)
	logFile := filepath.Join(t.TempDir(), "chromedriver.log")
	if p := os.Getenv("DIALTONE_CHROMEDRIVER_LOG"); p != "" {
		logFile = p
	}
	cmd := exec.Command(chromedriverPath, "--port="+strconv.Itoa(port), "--log-path="+logFile)
	// Its own process group, so that the browsers it started go with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting chromedriver: %v", err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		syscall.Kill(-pid, syscall.SIGKILL)
		cmd.Wait()
		if t.Failed() {
			if b, err := os.ReadFile(logFile); err == nil && len(b) > 0 {
				t.Logf("chromedriver log (last 4 KiB):\n%s", b[max(0, len(b)-4096):])
			}
		}
	})
	wd := &webdriver{t: t, client: &http.Client{Timeout: webdriverTimeout}}
	root := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(20 * time.Second)
	for {
		var status struct {
			Ready bool `json:"ready"`
		}
		if err := wd.call("GET", root+"/status", nil, &status); err == nil && status.Ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("chromedriver did not get ready within 20s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	caps := map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName": "chrome",
		"goog:chromeOptions": map[string]any{
			"binary": chromiumPath,
			"args": []string{
				"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
				"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
				"--user-data-dir=" + profile, "--hide-scrollbars", "--force-prefers-reduced-motion",
			},
			"mobileEmulation": map[string]any{
				"deviceMetrics": map[string]any{"width": phoneWidth, "height": phoneHeight, "pixelRatio": 2, "touch": true},
			},
		},
		"timeouts": map[string]any{"pageLoad": 30000, "script": 10000, "implicit": 0},
	}}}
	var session struct {
		SessionID string `json:"sessionId"`
	}
	if err := wd.call("POST", root+"/session", caps, &session); err != nil {
		t.Fatalf("new WebDriver session: %v", err)
	}
	wd.base = root + "/session/" + session.SessionID
	t.Cleanup(func() { wd.call("DELETE", wd.base, nil, nil) })

	wd.shots = os.Getenv("DIALTONE_SCREENSHOTS")
	if wd.shots == "" {
		wd.shots = t.TempDir()
	} else if err := os.MkdirAll(wd.shots, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", wd.shots)
	return wd
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// call sends one WebDriver command and decodes its "value" into out.
func (wd *webdriver) call(method, url string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), webdriverTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := wd.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	var envelope struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(b, &envelope); err != nil {
		return fmt.Errorf("%s %s: %d %.300s", method, url, resp.StatusCode, b)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %d %.500s", method, url, resp.StatusCode, envelope.Value)
	}
	if out != nil {
		return json.Unmarshal(envelope.Value, out)
	}
	return nil
}

func (wd *webdriver) do(method, path string, body, out any) {
	wd.t.Helper()
	if err := wd.call(method, wd.base+path, body, out); err != nil {
		wd.t.Fatal(err)
	}
}

func (wd *webdriver) open(url string) {
	wd.t.Helper()
	wd.do("POST", "/url", map[string]string{"url": url}, nil)
}

func (wd *webdriver) find(css string) string {
	wd.t.Helper()
	var el map[string]string
	wd.do("POST", "/element", map[string]string{"using": "css selector", "value": css}, &el)
	return el[elementKey]
}

func (wd *webdriver) typeInto(css, text string) {
	wd.t.Helper()
	el := wd.find(css)
	wd.do("POST", "/element/"+el+"/clear", map[string]any{}, nil)
	wd.do("POST", "/element/"+el+"/value", map[string]string{"text": text}, nil)
}

func (wd *webdriver) click(css string) {
	wd.t.Helper()
	wd.do("POST", "/element/"+wd.find(css)+"/click", map[string]any{}, nil)
}

// submit clicks a button that posts a form and waits for the next page:
// a click returns once the event is dispatched, not when the page that
// answers the post has loaded.
func (wd *webdriver) submit(css string) {
	wd.t.Helper()
	before := wd.find("html")
	wd.click(css)
	deadline := time.Now().Add(webdriverTimeout)
	for {
		var el map[string]string
		err := wd.call("POST", wd.base+"/element", map[string]string{"using": "css selector", "value": "html"}, &el)
		if err == nil && el[elementKey] != before {
			var state string
			wd.do("POST", "/execute/sync", map[string]any{"script": "return document.readyState", "args": []any{}}, &state)
			if state == "complete" {
				return
			}
		}
		if time.Now().After(deadline) {
			wd.t.Fatalf("no new page after clicking %s", css)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (wd *webdriver) text(css string) string {
	wd.t.Helper()
	var s string
	wd.do("GET", "/element/"+wd.find(css)+"/text", nil, &s)
	return s
}

func (wd *webdriver) url() string {
	wd.t.Helper()
	var s string
	wd.do("GET", "/url", nil, &s)
	return s
}

func (wd *webdriver) title() string {
	wd.t.Helper()
	var s string
	wd.do("GET", "/title", nil, &s)
	return s
}

// screenshot saves the page as NN-name.png, all of it (through the
// DevTools protocol, which W3C WebDriver lacks), or the phone's screen
// when that fails.
func (wd *webdriver) screenshot(name string) {
	wd.t.Helper()
	wd.counter++
	var height float64
	wd.do("POST", "/execute/sync", map[string]any{"script": "return document.documentElement.scrollHeight", "args": []any{}}, &height)
	var shot struct {
		Data string `json:"data"`
	}
	err := wd.call("POST", wd.base+"/goog/cdp/execute", map[string]any{"cmd": "Page.captureScreenshot", "params": map[string]any{
		"format": "png", "captureBeyondViewport": true,
		"clip": map[string]any{"x": 0, "y": 0, "width": phoneWidth, "height": max(height, phoneHeight), "scale": 1},
	}}, &shot)
	if err != nil {
		wd.t.Logf("full-page screenshot: %v; taking the screen only", err)
		wd.do("GET", "/screenshot", nil, &shot.Data)
	}
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil {
		wd.t.Fatal(err)
	}
	path := filepath.Join(wd.shots, fmt.Sprintf("%02d-%s.png", wd.counter, name))
	if err := os.WriteFile(path, png, 0o644); err != nil {
		wd.t.Fatal(err)
	}
}

// consoleErrors returns what the browser logged at SEVERE, such as CSP
// violations, except failed loads.
func (wd *webdriver) consoleErrors() []string {
	wd.t.Helper()
	var entries []struct {
		Level   string `json:"level"`
		Message string `json:"message"`
	}
	if err := wd.call("POST", wd.base+"/se/log", map[string]string{"type": "browser"}, &entries); err != nil {
		return nil // not every chromedriver offers the log
	}
	var out []string
	for _, e := range entries {
		// 4xx answers to failed logins and refused forms are expected.
		if e.Level == "SEVERE" && !strings.Contains(e.Message, "Failed to load resource") {
			out = append(out, e.Message)
		}
	}
	return out
}

func TestBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	f := newFixture(t, false)
	wd := startWebdriver(t)
	expect := func(what, got, want string) {
		t.Helper()
		if !strings.Contains(got, want) {
			var src string
			wd.call("GET", wd.base+"/source", nil, &src)
			t.Fatalf("%s: %q does not contain %q; the page:\n%s", what, got, want, src)
		}
	}

	wd.open(f.srv.URL + "/")
	expect("home title", wd.title(), "Dialtone")
	wd.screenshot("home")

	// A new user gives the number in national form.
	wd.typeInto("#new-phone", testNational)
	wd.submit("#get-password")
	expect("sent page", wd.text("#sent"), "+82 10-1234-5678")
	wd.screenshot("sent")

	password := f.passwords.texted(t, testNumber)
	wd.typeInto("#login-password", "not-the-password")
	wd.submit("#login")
	expect("wrong password", wd.text("#login-error"), msgWrongLogin)
	wd.screenshot("wrong-password")

	wd.typeInto("#login-password", password)
	wd.submit("#login")
	expect("account url", wd.url(), "/account")
	expect("JID", wd.text("#jid"), "+821012345678@"+testDomain)
	expect("waiting", wd.text("#waiting"), "3")
	expect("fingerprint", wd.text("#fingerprint"), testFingerprt)
	wd.screenshot("account")

	wd.typeInto("#name", "Kim Min-jun")
	wd.submit("#save-name")
	expect("name saved", wd.text("#notice"), "display name is saved")
	f.mu.Lock()
	name := f.names[string(testNumber)]
	f.mu.Unlock()
	if name != "Kim Min-jun" {
		t.Errorf("display name %q", name)
	}
	wd.screenshot("name-saved")

	wd.typeInto("#new-password", "new password 1")
	wd.typeInto("#new-password2", "new password 2")
	wd.submit("#change-password")
	expect("passwords differ", wd.text("#password-error"), msgPasswordDiffer)
	wd.screenshot("password-mismatch")

	const newPassword = "tangerine-lantern-42"
	wd.typeInto("#new-password", newPassword)
	wd.typeInto("#new-password2", newPassword)
	wd.submit("#change-password")
	expect("password changed", wd.text("#notice"), "password is changed")
	wd.screenshot("password-changed")

	wd.submit("#logout")
	expect("logged out", wd.text("[role=status]"), "logged out")
	wd.screenshot("logged-out")

	wd.typeInto("#login-phone", "+82 10 1234 5678")
	wd.typeInto("#login-password", newPassword)
	wd.submit("#login")
	expect("logged in again", wd.text("#jid"), "+821012345678@"+testDomain)
	wd.screenshot("logged-in-again")

	if errs := wd.consoleErrors(); len(errs) > 0 {
		t.Errorf("the browser logged errors (a CSP violation?):\n%s", strings.Join(errs, "\n"))
	}
}
