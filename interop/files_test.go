package interop

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// requirePlugin skips (or in CI fails) like requireSlixmpp when a
// slixmpp plugin cannot be imported (xep_0363 needs python3-aiohttp).
func requirePlugin(t *testing.T, plugin string) {
	t.Helper()
	requireSlixmpp(t)
	out, err := exec.Command(python, "-c", "import slixmpp.plugins."+plugin).CombinedOutput()
	if err == nil {
		return
	}
	msg := "slixmpp plugin " + plugin + " does not load (" + err.Error() + "): " + strings.TrimSpace(string(out))
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip("!!! SKIPPED, NOT PASSED: " + msg)
}

// runScript runs interop/NAME with args and decodes the JSON it prints
// into res; the script's stderr is shown when the test fails.
func runScript(t *testing.T, name string, res any, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, append([]string{name}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	t.Logf("%s:\n%s", name, stdout.String())
	defer func() {
		if t.Failed() {
			b := stderr.Bytes()
			if len(b) > 30000 {
				b = b[len(b)-30000:]
			}
			t.Logf("%s stderr (end):\n%s", name, b)
		}
	}()
	if err := json.Unmarshal(stdout.Bytes(), res); err != nil {
		t.Fatalf("%s output is not JSON (%v); exit: %v", name, err, runErr)
	}
	if runErr != nil {
		t.Fatalf("%s failed: exit %v", name, runErr)
	}
}

// slixmpp's XEP-0363 plugin finds upload.localhost, uploads a file and
// the GET URL it got serves the same bytes; a request over the advertised
// limit gets not-acceptable with <file-too-large/>.
func TestSlixmppUpload(t *testing.T) {
	if testing.Short() {
		t.Skip("interop: not with -short (make check); make test runs it")
	}
	requirePlugin(t, "xep_0363")
	const a = "+821012345678"
	// The default public URL: http://localhost:PORT of the HTTP listener.
	s, dir, pw := serverWithAccounts(t, map[string]string{"XMPPD_UPLOAD_MAX_FILE_SIZE": "2000000"}, a)
	pass := pw[0]
	file := filepath.Join(dir, "photo.bin")
	content := make([]byte, 300<<10)
	rand.Read(content)
	if err := os.WriteFile(file, content, 0o600); err != nil {
		t.Fatal(err)
	}
	var res struct {
		OK          bool   `json:"ok"`
		Error       string `json:"error"`
		GetURL      string `json:"get_url"`
		Service     string `json:"service"`
		MaxFileSize int64  `json:"max_file_size"`
		TooBig      string `json:"too_big"`
		TooBigXML   string `json:"too_big_xml"`
	}
	runScript(t, "slixmpp_upload.py", &res, "--port", s.c2s, "--jid", a+"@localhost", "--password", pass, "--file", file)
	if !res.OK || res.Service != "upload.localhost" || res.MaxFileSize != 2000000 {
		t.Fatalf("upload: %+v", res)
	}
	if res.TooBig != "not-acceptable" || !strings.Contains(res.TooBigXML, "file-too-large") || !strings.Contains(res.TooBigXML, "<max-file-size>2000000</max-file-size>") {
		t.Errorf("over the limit: %s %s", res.TooBig, res.TooBigXML)
	}
	resp, err := httpGet(res.GetURL)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(resp, content) {
		t.Fatalf("GET %s: %d bytes, not what was uploaded", res.GetURL, len(resp))
	}
	s.stop(t)
}

func httpGet(u string) ([]byte, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}
