package s2s

import (
	"context"
	"os"
	"os/exec"
	osuser "os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// ejabberd is a running ejabberd.test on 127.0.0.3.
type ejabberd struct {
	*process
	args []string // ejabberdctl's options for this instance
	c2s  int
}

func (e *ejabberd) ctl(t *testing.T, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ejabberdctl", append(append([]string{}, e.args...), args...)...)
	asEjabberd(cmd)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// asEjabberd runs cmd as the package's ejabberd user when the test runs as
// root. ejabberdctl would otherwise use su, which starts a new session that
// the test could not stop by its process group.
func asEjabberd(cmd *exec.Cmd) {
	if os.Getuid() != 0 {
		return
	}
	u, err := osuser.Lookup("ejabberd")
	if err != nil {
		return
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	cmd.Dir = u.HomeDir
	cmd.Env = append(os.Environ(), "HOME="+u.HomeDir, "USER=ejabberd", "LOGNAME=ejabberd")
}

// startEjabberd starts ejabberd from the configuration rendered from
// testdata/ejabberd.yml.tmpl. As root, ejabberdctl runs it as the
// package's ejabberd user, so its directories belong to that user.
func startEjabberd(t *testing.T, dir string, p *pki, users map[string]string) *ejabberd {
	t.Helper()
	edir := filepath.Join(dir, "ejabberd")
	spool, logs := filepath.Join(edir, "spool"), filepath.Join(edir, "logs")
	for _, d := range []string{edir, spool, logs} {
		os.MkdirAll(d, 0o755)
	}
	if os.Getuid() == 0 {
		if u, err := osuser.Lookup("ejabberd"); err == nil {
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			for _, d := range []string{edir, spool, logs} {
				os.Chown(d, uid, gid)
			}
		}
	}
	cert, key := p.issue(t, ejabberdDomain)
	e := &ejabberd{c2s: freePort(t, ejabberdIP)}
	node := "dialtone-s2s-" + strconv.Itoa(os.Getpid()) + "@localhost"
	td := testdata(t)
	render(t, filepath.Join(td, "ejabberd.yml.tmpl"), filepath.Join(edir, "ejabberd.yml"), map[string]any{
		"Domain": ejabberdDomain, "IP": ejabberdIP, "C2SPort": e.c2s, "Cert": cert, "Key": key, "CA": p.caFile,
	})
	render(t, filepath.Join(td, "ejabberdctl.cfg.tmpl"), filepath.Join(edir, "ejabberdctl.cfg"), map[string]any{
		"Node": node, "Dir": edir, "DistPort": freePort(t, "127.0.0.1"),
	})
	names := map[string]string{ejabberdDomain: ejabberdIP, prosodyDomain: prosodyIP}
	for d, r := range dialtoneRoutes() {
		names[d] = r.IP
	}
	dns := serveDNS(t, names)
	render(t, filepath.Join(td, "inetrc.tmpl"), filepath.Join(edir, "inetrc"), map[string]any{"DNSPort": dns})
	e.args = []string{"--config-dir", edir, "--spool", spool, "--logs", logs, "--node", node}
	cmd := exec.Command("ejabberdctl", append(append([]string{}, e.args...), "foreground")...)
	asEjabberd(cmd)
	e.process = start(t, "ejabberd", cmd, filepath.Join(edir, "stdout.log"), filepath.Join(logs, "ejabberd.log"), filepath.Join(logs, "error.log"))
	waitListening(t, ejabberdIP+":5269", 60*time.Second, e.done, "ejabberd")
	waitListening(t, ejabberdIP+":"+strconv.Itoa(e.c2s), 10*time.Second, e.done, "ejabberd")
	for u, pw := range users {
		if out, err := e.ctl(t, 30*time.Second, "register", u, ejabberdDomain, pw); err != nil {
			t.Fatalf("ejabberdctl register %s: %v\n%s", u, err, out)
		}
	}
	return e
}

// requireEjabberd skips the test (fails it in CI) without ejabberd or
// the permission to run it.
func requireEjabberd(t *testing.T) {
	t.Helper()
	require(t, "ejabberd", have("ejabberdctl") && have("erl"), "install the Debian package ejabberd")
	// Debian's ejabberdctl runs only as root (it then switches to the
	// ejabberd user) or as that user.
	u, _ := osuser.Current()
	require(t, "permission to run ejabberdctl", os.Getuid() == 0 || u != nil && u.Username == "ejabberd", "run the tests as root or as the user ejabberd")
}

func TestS2SEjabberd(t *testing.T) {
	if testing.Short() {
		t.Skip("interop: not with -short (make check); make test runs it")
	}
	requireEjabberd(t)
	requireSlixmpp(t)
	dir := shortTempDir(t)
	xmppdBin, xmppctl := build(t, dir)
	p := newPKI(t, dir)
	users := map[string]string{"carol": "carol-pw", "dave": "dave-pw", "erin": "erin-pw", "frank": "frank-pw"}
	// One ejabberd for both phases (it starts slowly); it trusts the test
	// CA, so what changes is Dialtone's certificate and trust.
	e := startEjabberd(t, dir, p, users)
	names := [][2]string{{"carol", "dave"}, {"erin", "frank"}}
	for i, ph := range phases {
		if ph.bidi {
			continue // ejabberd does not offer XEP-0288
		}
		t.Run(ph.name, func(t *testing.T) {
			pdir := filepath.Join(dir, ph.name)
			os.MkdirAll(pdir, 0o755)
			x := startXmppd(t, xmppdBin, pdir, p, ph.trusted)
			peer := []user{
				{jid: names[i][0] + "@" + ejabberdDomain, password: users[names[i][0]], host: ejabberdIP, port: e.c2s},
				{jid: names[i][1] + "@" + ejabberdDomain, password: users[names[i][1]], host: ejabberdIP, port: e.c2s},
			}
			exercise(t, x, xmppctl, peer, ph, [2]string{"+8210222200" + strconv.Itoa(i) + "1", "+8210222200" + strconv.Itoa(i) + "2"},
				[2]string{"010-4444-0" + strconv.Itoa(i) + "01", "010-4444-0" + strconv.Itoa(i) + "02"})
			x.stop(t)
		})
	}
}
