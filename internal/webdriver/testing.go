package webdriver

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// T is a Driver for a test: each method fails the test on an error.
type T struct {
	D      *Driver
	tb     testing.TB
	shots  string
	prefix string
	count  int
}

// StartT starts a browser for tb and quits it when tb ends. When Chromium
// or chromedriver is missing it skips the test loudly, except in CI
// (CI=true), where that is a broken set-up and fails it. Screenshots go to
// $DIALTONE_SCREENSHOTS, $TEST_ARTIFACTS/screenshots/TEST, or to a
// temporary directory of the test, as
// PREFIX-NN-NAME.png (NN-NAME.png without a prefix). Chromedriver logs to
// $DIALTONE_CHROMEDRIVER_LOG when Options.LogFile is empty, and the end of
// its log is shown when the test fails.
func StartT(tb testing.TB, o Options, shotPrefix string) *T {
	tb.Helper()
	if err := Missing(o); err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatal(err)
		}
		tb.Skipf("!!! SKIPPED, NOT PASSED: the browser test needs %v", err)
	}
	if o.LogFile == "" {
		o.LogFile = os.Getenv("DIALTONE_CHROMEDRIVER_LOG")
	}
	d, err := Start(o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			if b := d.ReadLog(4096); len(b) > 0 {
				tb.Logf("chromedriver log (last 4 KiB):\n%s", b)
			}
		}
		d.Quit()
	})
	shots := os.Getenv("DIALTONE_SCREENSHOTS")
	if a := os.Getenv("TEST_ARTIFACTS"); shots == "" && a != "" {
		// A CI's artefact directory: one folder per test.
		shots = filepath.Join(a, "screenshots", strings.ReplaceAll(tb.Name(), "/", "_"))
	}
	if shots == "" {
		shots = tb.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		tb.Fatal(err)
	}
	tb.Logf("screenshots in %s", shots)
	return &T{D: d, tb: tb, shots: shots, prefix: shotPrefix}
}

func (t *T) check(err error) {
	t.tb.Helper()
	if err != nil {
		t.tb.Fatal(err)
	}
}

// Open navigates to url.
func (t *T) Open(url string) { t.tb.Helper(); t.check(t.D.Open(url)) }

// Type clears the element that matches css and types text into it.
func (t *T) Type(css, text string) { t.tb.Helper(); t.check(t.D.Type(css, text)) }

// Click clicks the element that matches css.
func (t *T) Click(css string) { t.tb.Helper(); t.check(t.D.Click(css)) }

// Submit clicks a form's button and waits for the page that answers.
func (t *T) Submit(css string) { t.tb.Helper(); t.check(t.D.Submit(css)) }

// Text returns the rendered text of the element that matches css.
func (t *T) Text(css string) string {
	t.tb.Helper()
	s, err := t.D.Text(css)
	t.check(err)
	return s
}

// URL returns the address of the current page.
func (t *T) URL() string {
	t.tb.Helper()
	s, err := t.D.URL()
	t.check(err)
	return s
}

// Title returns the title of the current page.
func (t *T) Title() string {
	t.tb.Helper()
	s, err := t.D.Title()
	t.check(err)
	return s
}

// Source returns the current page's HTML, or the error as text: it is for
// failure messages.
func (t *T) Source() string {
	s, err := t.D.Source()
	if err != nil {
		return fmt.Sprintf("(no page source: %v)", err)
	}
	return s
}

// Screenshot saves the whole page as [PREFIX-]NN-name.png and returns its path.
func (t *T) Screenshot(name string) string {
	t.tb.Helper()
	png, err := t.D.Screenshot()
	t.check(err)
	t.count++
	file := fmt.Sprintf("%02d-%s.png", t.count, name)
	if t.prefix != "" {
		file = t.prefix + "-" + file
	}
	path := filepath.Join(t.shots, file)
	t.check(os.WriteFile(path, png, 0o644))
	return path
}

// ConsoleErrors returns what the browser logged at SEVERE (Driver.ConsoleErrors).
func (t *T) ConsoleErrors() []string { return t.D.ConsoleErrors() }
