// Package webdriver drives headless Chromium through chromedriver's W3C
// WebDriver HTTP API, for tests that must see a page in a real browser with
// its real CSP, cookies and form handling. It needs the Debian packages
// chromium and chromium-driver and nothing else: no Selenium, no Node.
//
// Start runs one chromedriver on a free loopback port and opens one browser
// session on a fresh profile; Quit ends both. Every command is bounded by
// Options.Timeout. StartT wraps the same for tests.
package webdriver

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
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
	"time"
)

const (
	// ChromiumPath and ChromedriverPath are where Debian installs them.
	ChromiumPath     = "/usr/bin/chromium"
	ChromedriverPath = "/usr/bin/chromedriver"
	// DefaultTimeout bounds one WebDriver command; starting a browser is
	// the slowest of them.
	DefaultTimeout = 60 * time.Second
	// PhoneWidth, PhoneHeight: an iPhone 12-14 screen in CSS pixels.
	PhoneWidth, PhoneHeight = 390, 844
	// elementKey names an element reference in WebDriver JSON.
	elementKey = "element-6066-11e4-a52e-4f735466cecf"
	// readyTimeout bounds chromedriver's start, until /status says ready.
	readyTimeout = 20 * time.Second
)

// Options configure Start. The zero value is a phone-sized browser from
// Debian's packages.
type Options struct {
	Chromium, Chromedriver string // default ChromiumPath, ChromedriverPath
	// Width, Height: the emulated phone screen in CSS pixels; default
	// PhoneWidth, PhoneHeight.
	Width, Height int
	// Timeout bounds each command; default DefaultTimeout.
	Timeout time.Duration
	// LogFile receives chromedriver's log; default a file in the profile's
	// temporary directory, removed by Quit.
	LogFile string
}

func (o *Options) defaults() {
	if o.Chromium == "" {
		o.Chromium = ChromiumPath
	}
	if o.Chromedriver == "" {
		o.Chromedriver = ChromedriverPath
	}
	if o.Width == 0 || o.Height == 0 {
		o.Width, o.Height = PhoneWidth, PhoneHeight
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
}

// Missing returns an error naming the first of Chromium and chromedriver
// that is not installed, or nil.
func Missing(o Options) error {
	o.defaults()
	for _, p := range []string{o.Chromium, o.Chromedriver} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%s is missing (apt-get install chromium chromium-driver): %w", p, err)
		}
	}
	return nil
}

// Driver is one chromedriver process and one browser session.
type Driver struct {
	opts    Options
	pid     int           // chromedriver's, and its process group's; 0 when stopped
	exited  chan struct{} // closed when chromedriver is reaped
	tmp     string        // the profile and, by default, the log
	root    string        // http://127.0.0.1:PORT
	base    string        // root + /session/ID
	client  *http.Client
	LogFile string // chromedriver's log
}

// Start runs chromedriver on a free loopback port and opens a browser
// session with a fresh profile. Call Quit when done, also after an error
// of a later command.
func Start(o Options) (*Driver, error) {
	o.defaults()
	if err := Missing(o); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "webdriver")
	if err != nil {
		return nil, err
	}
	d := &Driver{opts: o, tmp: tmp, client: &http.Client{Timeout: o.Timeout}, LogFile: o.LogFile}
	if d.LogFile == "" {
		d.LogFile = filepath.Join(tmp, "chromedriver.log")
	}
	// A port free a moment ago may be taken by the time chromedriver
	// binds it; try again with another.
	for attempt := 0; ; attempt++ {
		err = d.startDriver()
		if err == nil {
			break
		}
		d.stopDriver()
		if attempt == 2 {
			os.RemoveAll(tmp)
			return nil, err
		}
	}
	if err := d.newSession(); err != nil {
		d.Quit()
		return nil, err
	}
	return d, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (d *Driver) startDriver() error {
	port, err := freePort()
	if err != nil {
		return err
	}
	cmd := exec.Command(d.opts.Chromedriver, "--port="+strconv.Itoa(port), "--log-path="+d.LogFile)
	// Its own process group, so that the browsers it started go with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting chromedriver: %w", err)
	}
	d.pid = cmd.Process.Pid
	d.exited = make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(d.exited) }()
	d.root = fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(readyTimeout)
	for {
		var status struct {
			Ready bool `json:"ready"`
		}
		if err := d.call("GET", d.root+"/status", nil, &status); err == nil && status.Ready {
			return nil
		}
		select {
		case <-d.exited:
			return fmt.Errorf("chromedriver on port %d exited: %v", port, waitErr)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("chromedriver did not get ready within %v", readyTimeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stopDriver kills chromedriver's process group by its PID: chromedriver
// and the browsers it started.
func (d *Driver) stopDriver() {
	if d.pid == 0 {
		return
	}
	// The group outlives chromedriver when it exited on its own, so kill
	// it either way; the PID cannot be reused before it is reaped.
	syscall.Kill(-d.pid, syscall.SIGKILL)
	select {
	case <-d.exited:
	case <-time.After(5 * time.Second):
	}
	d.pid = 0
}

func (d *Driver) newSession() error {
	caps := map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName": "chrome",
		"goog:chromeOptions": map[string]any{
			"binary": d.opts.Chromium,
			"args": []string{
				"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
				"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
				"--user-data-dir=" + filepath.Join(d.tmp, "profile"), "--hide-scrollbars", "--force-prefers-reduced-motion",
			},
			"mobileEmulation": map[string]any{
				"deviceMetrics": map[string]any{"width": d.opts.Width, "height": d.opts.Height, "pixelRatio": 2, "touch": true},
			},
		},
		"timeouts": map[string]any{"pageLoad": 30000, "script": 10000, "implicit": 0},
	}}}
	var session struct {
		SessionID string `json:"sessionId"`
	}
	if err := d.call("POST", d.root+"/session", caps, &session); err != nil {
		return fmt.Errorf("new WebDriver session: %w", err)
	}
	d.base = d.root + "/session/" + session.SessionID
	return nil
}

// Quit ends the session, stops chromedriver and the browser, and removes
// the profile. It is safe to call more than once.
func (d *Driver) Quit() {
	if d.base != "" && d.pid != 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if req, err := http.NewRequestWithContext(ctx, "DELETE", d.base, nil); err == nil {
			if resp, err := d.client.Do(req); err == nil {
				resp.Body.Close()
			}
		}
		cancel()
	}
	d.base = ""
	d.stopDriver()
	if d.tmp != "" {
		// The log outlives Quit only when it was put elsewhere.
		os.RemoveAll(d.tmp)
		d.tmp = ""
	}
}

// ReadLog returns the end of chromedriver's log, at most n bytes.
func (d *Driver) ReadLog(n int) []byte {
	b, _ := os.ReadFile(d.LogFile)
	return b[max(0, len(b)-n):]
}

// call sends one WebDriver command to url and decodes its "value" into out.
func (d *Driver) call(method, url string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := d.client.Do(req)
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

// Do sends one command of the session: path is relative to
// /session/{id}, such as "/url".
func (d *Driver) Do(method, path string, body, out any) error {
	if d.base == "" {
		return errors.New("webdriver: no session")
	}
	return d.call(method, d.base+path, body, out)
}

// Open navigates to url and waits for it to load.
func (d *Driver) Open(url string) error {
	return d.Do("POST", "/url", map[string]string{"url": url}, nil)
}

// Find returns the reference of the first element that matches css.
func (d *Driver) Find(css string) (string, error) {
	var el map[string]string
	if err := d.Do("POST", "/element", map[string]string{"using": "css selector", "value": css}, &el); err != nil {
		return "", err
	}
	if el[elementKey] == "" {
		return "", fmt.Errorf("webdriver: no element reference for %s", css)
	}
	return el[elementKey], nil
}

// Type clears the element that matches css and types text into it.
func (d *Driver) Type(css, text string) error {
	el, err := d.Find(css)
	if err != nil {
		return err
	}
	if err := d.Do("POST", "/element/"+el+"/clear", map[string]any{}, nil); err != nil {
		return err
	}
	return d.Do("POST", "/element/"+el+"/value", map[string]string{"text": text}, nil)
}

// Click clicks the element that matches css.
func (d *Driver) Click(css string) error {
	el, err := d.Find(css)
	if err != nil {
		return err
	}
	return d.Do("POST", "/element/"+el+"/click", map[string]any{}, nil)
}

// Submit clicks a button that posts a form and waits for the next page: a
// click returns once the event is dispatched, not when the page that
// answers the post has loaded.
func (d *Driver) Submit(css string) error {
	before, err := d.Find("html")
	if err != nil {
		return err
	}
	if err := d.Click(css); err != nil {
		return err
	}
	deadline := time.Now().Add(d.opts.Timeout)
	for {
		el, err := d.Find("html")
		if err == nil && el != before {
			var state string
			if err := d.Execute("return document.readyState", &state); err != nil {
				return err
			}
			if state == "complete" {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no new page within %v after clicking %s", d.opts.Timeout, css)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Execute runs a synchronous script without arguments and decodes what it
// returns into out.
func (d *Driver) Execute(script string, out any) error {
	return d.Do("POST", "/execute/sync", map[string]any{"script": script, "args": []any{}}, out)
}

// Text returns the rendered text of the element that matches css.
func (d *Driver) Text(css string) (string, error) {
	el, err := d.Find(css)
	if err != nil {
		return "", err
	}
	var s string
	err = d.Do("GET", "/element/"+el+"/text", nil, &s)
	return s, err
}

func (d *Driver) getString(path string) (string, error) {
	var s string
	err := d.Do("GET", path, nil, &s)
	return s, err
}

// URL returns the address of the current page.
func (d *Driver) URL() (string, error) { return d.getString("/url") }

// Title returns the title of the current page.
func (d *Driver) Title() (string, error) { return d.getString("/title") }

// Source returns the current page's HTML.
func (d *Driver) Source() (string, error) { return d.getString("/source") }

// Screenshot returns a PNG of the whole page (through the DevTools
// protocol, which W3C WebDriver lacks), or of the screen when that fails.
func (d *Driver) Screenshot() ([]byte, error) {
	var height float64
	if err := d.Execute("return document.documentElement.scrollHeight", &height); err != nil {
		return nil, err
	}
	var shot struct {
		Data string `json:"data"`
	}
	err := d.Do("POST", "/goog/cdp/execute", map[string]any{"cmd": "Page.captureScreenshot", "params": map[string]any{
		"format": "png", "captureBeyondViewport": true,
		"clip": map[string]any{"x": 0, "y": 0, "width": d.opts.Width, "height": max(height, float64(d.opts.Height)), "scale": 1},
	}}, &shot)
	if err != nil {
		if err := d.Do("GET", "/screenshot", nil, &shot.Data); err != nil {
			return nil, err
		}
	}
	return base64.StdEncoding.DecodeString(shot.Data)
}

// ConsoleErrors returns what the browser logged at SEVERE, such as CSP
// violations, except failed loads (4xx answers to refused forms are
// expected). Not every chromedriver offers the log; then it returns nil.
func (d *Driver) ConsoleErrors() []string {
	var entries []struct {
		Level   string `json:"level"`
		Message string `json:"message"`
	}
	if err := d.Do("POST", "/se/log", map[string]string{"type": "browser"}, &entries); err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if e.Level == "SEVERE" && !strings.Contains(e.Message, "Failed to load resource") {
			out = append(out, e.Message)
		}
	}
	return out
}
