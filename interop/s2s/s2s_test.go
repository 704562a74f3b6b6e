// Package s2s runs Dialtone's federation against real XMPP servers from
// Debian (Prosody, ejabberd), each on its own loopback address, with
// slixmpp users on both sides.
//
// Addresses: dialtone.test on 127.0.0.4, prosody.test on 127.0.0.2,
// ejabberd.test on 127.0.0.3, every server's s2s on port 5269 of its own
// address. No DNS is needed: xmppd gets XMPPD_S2S_ROUTES, Prosody a small
// test module (testdata/mod_dialtone_test_routes.lua), ejabberd SRV
// answers from a DNS responder of the test's own (dns_test.go).
package s2s

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"dialtone/internal/testbin"
)

const (
	python = "/usr/bin/python3"

	dialtoneDomain = "dialtone.test"
	dialtoneIP     = "127.0.0.4"
	prosodyDomain  = "prosody.test"
	prosodyIP      = "127.0.0.2"
	ejabberdDomain = "ejabberd.test"
	ejabberdIP     = "127.0.0.3"
)

// require skips the test when a tool is missing, except in CI (CI=true),
// where that is a broken set-up and fails.
func require(t *testing.T, what string, ok bool, hint string) {
	t.Helper()
	if ok {
		return
	}
	msg := fmt.Sprintf("%s is missing (%s)", what, hint)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip("!!! SKIPPED, NOT PASSED: " + msg)
}

func have(bin string) bool {
	_, err := exec.LookPath(bin)
	return err == nil
}

func requireSlixmpp(t *testing.T) {
	t.Helper()
	err := exec.Command(python, "-c", "import slixmpp").Run()
	require(t, "slixmpp", err == nil, "install the Debian package python3-slixmpp")
}

// pki is a test CA and certificates it issued, as PEM files in dir.
type pki struct {
	dir    string
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caFile string
}

func newPKI(t *testing.T, dir string) *pki {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Dialtone interop CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p := &pki{dir: dir, caCert: cert, caKey: key, caFile: filepath.Join(dir, "ca.pem")}
	writePEM(t, p.caFile, "CERTIFICATE", der, 0o644)
	return p
}

// issue writes domain.pem and domain.key, a certificate for domain and
// the names in also (DNS names) signed by the CA, and returns their paths.
func (p *pki) issue(t *testing.T, domain string, also ...string) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: domain},
		DNSNames:     append([]string{domain}, also...),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(p.dir, domain+".pem"), filepath.Join(p.dir, domain+".key")
	writePEM(t, certFile, "CERTIFICATE", der, 0o644)
	writePEM(t, keyFile, "PRIVATE KEY", kder, 0o644) // the peers may run as their own users
	return certFile, keyFile
}

func writePEM(t *testing.T, path, typ string, der []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		t.Fatal(err)
	}
}

func freePort(t *testing.T, ip string) int {
	t.Helper()
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitListening waits until addr accepts TCP connections.
func waitListening(t *testing.T, addr string, timeout time.Duration, exited <-chan struct{}, what string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			t.Fatalf("%s exited before listening on %s", what, addr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not listening on %s after %v: %v", what, addr, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// process is a server the test started; it is stopped by its PID.
type process struct {
	name    string
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	logs    []string
}

func start(t *testing.T, name string, cmd *exec.Cmd, logs ...string) *process {
	t.Helper()
	out, err := os.Create(logs[0])
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{}), logs: logs}
	go func() {
		p.waitErr = cmd.Wait()
		out.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			p.dump(t)
		}
	})
	return p
}

// stop sends SIGTERM to the process and its group (wrapper scripts such as
// ejabberdctl exit at once while the VM they started is still shutting
// down), waits for the whole group to be gone, and kills what is left after
// ten seconds.
func (p *process) stop(t *testing.T) {
	pgid := p.cmd.Process.Pid
	select {
	case <-p.done:
		if !groupAlive(pgid) {
			return
		}
	default:
	}
	syscall.Kill(-pgid, syscall.SIGTERM)
	deadline := time.After(10 * time.Second)
	select {
	case <-p.done:
	case <-deadline:
	}
	for groupAlive(pgid) {
		select {
		case <-deadline:
			t.Logf("%s did not stop on SIGTERM; killing it", p.name)
			syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.done
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	<-p.done
}

// groupAlive tells whether a live (not zombie) process is in process group
// pgid, from /proc.
func groupAlive(pgid int) bool {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(b[i+1:]))
		if len(fields) >= 3 && fields[0] != "Z" && fields[2] == strconv.Itoa(pgid) {
			return true
		}
	}
	return false
}

func (p *process) dump(t *testing.T) {
	for _, l := range p.logs {
		b, _ := os.ReadFile(l)
		const max = 15000
		if len(b) > max {
			b = append([]byte("…"), b[len(b)-max:]...)
		}
		t.Logf("%s (%s):\n%s", p.name, filepath.Base(l), b)
	}
}

func render(t *testing.T, tmplFile, out string, data any) {
	t.Helper()
	tmpl, err := template.ParseFiles(tmplFile)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, data); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func testdata(t *testing.T) string {
	t.Helper()
	d, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// xmppd is a running Dialtone on dialtone.test.
type xmppd struct {
	*process
	env  []string
	c2s  int
	http int
	sms  *smsReceiver // the webhook SMS gateway
}

type route struct {
	IP   string
	Port int
}

// startXmppd starts Dialtone. trusted: it trusts the test CA and presents
// a certificate from it (SASL EXTERNAL both ways); otherwise it presents
// its own self-signed certificate and accepts the peers' only as insecure
// domains (dialback both ways). extra holds more variables, "NAME=value".
func startXmppd(t *testing.T, bin, dir string, p *pki, trusted bool, extra ...string) *xmppd {
	t.Helper()
	dataDir := filepath.Join(dir, "xmppd")
	os.MkdirAll(dataDir, 0o700)
	x := &xmppd{c2s: freePort(t, dialtoneIP), http: freePort(t, dialtoneIP), sms: newSMSReceiver(t)}
	vars := map[string]string{
		"XMPPD_DOMAIN":              dialtoneDomain,
		"XMPPD_DATA_DIR":            dataDir,
		"XMPPD_C2S_ADDR":            dialtoneIP + ":" + strconv.Itoa(x.c2s),
		"XMPPD_C2S_DIRECT_TLS_ADDR": "",
		"XMPPD_HTTP_ADDR":           dialtoneIP + ":" + strconv.Itoa(x.http),
		"XMPPD_S2S_ADDR":            dialtoneIP + ":5269",
		"XMPPD_S2S_ROUTES":          prosodyDomain + "=" + prosodyIP + ":5269," + ejabberdDomain + "=" + ejabberdIP + ":5269",
		"XMPPD_DEFAULT_REGION":      "KR",
		"XMPPD_LOG_LEVEL":           "debug",
		// Notices of offline messages go to the test's receiver; one
		// remote domain may have new numbers texted once a day
		// (offline_test.go).
		"XMPPD_SMS_GATEWAY":                       "webhook",
		"XMPPD_SMS_WEBHOOK_URL":                   x.sms.URL,
		"XMPPD_NOTICE_NEW_NUMBERS_PER_SENDER_DAY": "1",
	}
	if trusted {
		// Valid for the component hosts too: they authenticate with
		// SASL EXTERNAL like the domain (muc_test.go).
		cert, key := p.issue(t, dialtoneDomain, groupsHost, apiHost)
		vars["XMPPD_TLS_CERT_FILE"], vars["XMPPD_TLS_KEY_FILE"] = cert, key
		vars["SSL_CERT_FILE"] = p.caFile // Go's "system roots" become the test CA
	} else {
		vars["XMPPD_S2S_INSECURE_DOMAINS"] = prosodyDomain + "," + ejabberdDomain
		vars["SSL_CERT_FILE"] = filepath.Join(dir, "no-roots.pem")
		os.WriteFile(vars["SSL_CERT_FILE"], nil, 0o644)
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "XMPPD_") && !strings.HasPrefix(kv, "SSL_CERT_") {
			x.env = append(x.env, kv)
		}
	}
	for k, v := range vars {
		x.env = append(x.env, k+"="+v)
	}
	x.env = append(x.env, extra...)
	cmd := exec.Command(bin)
	cmd.Env = x.env
	x.process = start(t, "xmppd", cmd, filepath.Join(dir, "xmppd.log"))
	waitListening(t, dialtoneIP+":5269", 30*time.Second, x.done, "xmppd")
	waitListening(t, dialtoneIP+":"+strconv.Itoa(x.c2s), 5*time.Second, x.done, "xmppd")
	return x
}

// account makes a Dialtone account and returns its password.
func (x *xmppd) account(t *testing.T, xmppctl, number string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, xmppctl, "account", "reset", number, "--print")
	cmd.Env = x.env
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("xmppctl account reset %s: %v", number, err)
	}
	return strings.TrimSpace(string(out))
}

// metric sums the samples of a metric whose labels include all of want.
func (x *xmppd) metric(t *testing.T, name string, want ...string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + dialtoneIP + ":" + strconv.Itoa(x.http) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
lines:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		for _, w := range want {
			if !strings.Contains(line, w) {
				continue lines
			}
		}
		f := strings.Fields(line)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		sum += v
	}
	return sum
}

// user is an XMPP account somewhere.
type user struct {
	jid, password, host string
	port                int
}

// chat runs testdata/s2s_chat.py: a asks b for a subscription, both see
// each other's presence and exchange messages.
func chat(t *testing.T, a, b user) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 75*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, filepath.Join(testdata(t), "s2s_chat.py"),
		"--a", a.jid, "--a-password", a.password, "--a-host", a.host, "--a-port", strconv.Itoa(a.port),
		"--b", b.jid, "--b-password", b.password, "--b-host", b.host, "--b-port", strconv.Itoa(b.port),
		"--step-timeout", "20", "--debug")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var res struct {
		OK    bool              `json:"ok"`
		Error string            `json:"error"`
		Steps []json.RawMessage `json:"steps"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil || runErr != nil || !res.OK {
		e := stderr.Bytes()
		if len(e) > 20000 {
			e = e[len(e)-20000:]
		}
		t.Fatalf("%s -> %s: %s (exit %v)\nstdout: %s\nslixmpp log (end):\n%s", a.jid, b.jid, res.Error, runErr, stdout.String(), e)
	}
	t.Logf("%s -> %s: %d steps passed", a.jid, b.jid, len(res.Steps))
}

// phase is one way of authenticating the links.
type phase struct {
	name    string
	trusted bool   // everyone trusts the test CA: SASL EXTERNAL
	bidi    bool   // the peer may offer XEP-0288 (one link for both ways)
	method  string // what xmppd must have used in both directions
}

var phases = []phase{
	{name: "sasl-external", trusted: true, method: "external"},
	{name: "dialback", trusted: false, method: "dialback"},
	{name: "sasl-external-bidi", trusted: true, bidi: true, method: "external"},
}

func build(t *testing.T, dir string) (xmppdBin, xmppctlBin string) {
	bins := testbin.Build(t, dir, "xmppd", "xmppctl")
	return bins["xmppd"], bins["xmppctl"]
}

// shortTempDir is a temporary directory with a short path (Unix sockets
// live in it), readable by the peers' own users.
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "s2s")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() {
		if !t.Failed() {
			os.RemoveAll(dir)
		} else {
			t.Logf("files kept in %s", dir)
		}
	})
	return dir
}

// exercise runs both directions between Dialtone and a peer, checks how
// xmppd authenticated, then has the peer's users write to offline numbers
// here (latent: two never-used numbers in national form).
func exercise(t *testing.T, x *xmppd, xmppctl string, peer []user, ph phase, numbers, latent [2]string) {
	t.Helper()
	d := []user{
		{jid: numbers[0] + "@" + dialtoneDomain, host: dialtoneIP, port: x.c2s},
		{jid: numbers[1] + "@" + dialtoneDomain, host: dialtoneIP, port: x.c2s},
	}
	for i := range d {
		d[i].password = x.account(t, xmppctl, numbers[i])
	}
	chat(t, d[0], peer[0]) // Dialtone user asks first
	chat(t, peer[1], d[1]) // the peer's user asks first
	ok := x.metric(t, "xmppd_s2s_auth_total", `method="`+ph.method+`"`, `result="ok"`)
	other := "dialback"
	if ph.method == "dialback" {
		other = "external"
	}
	wrong := x.metric(t, "xmppd_s2s_auth_total", `method="`+other+`"`, `result="ok"`)
	in := x.metric(t, "xmppd_s2s_auth_total", `direction="in"`, `result="ok"`)
	out := x.metric(t, "xmppd_s2s_auth_total", `direction="out"`, `result="ok"`)
	t.Logf("xmppd authentications: %s %v, %s %v; incoming %v, outgoing %v; rejected %v",
		ph.method, ok, other, wrong, in, out, x.metric(t, "xmppd_s2s_rejected_total"))
	if ok == 0 || wrong != 0 {
		t.Errorf("%s: want every link authenticated by %s, got %s %v and %s %v", ph.name, ph.method, ph.method, ok, other, wrong)
	}
	if out == 0 {
		t.Errorf("%s: xmppd never authenticated to the peer", ph.name)
	}
	if ph.bidi && in != 0 {
		t.Errorf("%s: the peer opened %v links of its own; with XEP-0288 it should use xmppd's", ph.name, in)
	}
	if !ph.bidi && in == 0 {
		t.Errorf("%s: the peer never authenticated to xmppd", ph.name)
	}
	// d[0] has logged in (active) and is offline now.
	offlineFromPeer(t, x, xmppctl, peer, d[0], latent)
}
