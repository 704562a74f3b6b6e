package turn

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"dialtone/internal/testbin"
)

// TestCoturnAcceptsCredentials starts a real coturn (Debian package
// coturn) on loopback with use-auth-secret, and allocates a relay with
// turnutils_uclient using the credentials that Services hands out: they
// are accepted, while a wrong password and expired credentials are not.
func TestCoturnAcceptsCredentials(t *testing.T) {
	testbin.RequirePrograms(t, "install the Debian package coturn", "turnserver", "turnutils_uclient")
	const secret = "coturn test secret"
	port := freeUDPAndTCPPort(t)
	startCoturn(t, port, secret)

	uri, err := ParseURI("turn:127.0.0.1:" + strconv.Itoa(port) + "?transport=udp")
	if err != nil {
		t.Fatal(err)
	}
	servers := &Servers{URIs: []URI{uri}, Secret: []byte(secret)}
	now := time.Now()
	good := servers.Services(now, "+12025550123")[0]
	if good.Username == "" || good.Password == "" {
		t.Fatalf("no credentials in %+v", good)
	}
	if out, err := uclient(t, port, good.Username, good.Password); err != nil {
		t.Fatalf("coturn refused the credentials of Services: %v\n%s", err, out)
	}

	_, wrongPassword := Credential([]byte("another secret"), good.Expires, "+12025550123")
	expired := servers.Services(now.Add(-25*time.Hour), "+12025550123")[0]
	for _, bad := range []struct{ what, user, pass string }{
		{"a password made with another secret", good.Username, wrongPassword},
		{"credentials that expired an hour ago", expired.Username, expired.Password},
	} {
		if out, err := uclient(t, port, bad.user, bad.pass); err == nil {
			t.Errorf("coturn accepted %s\n%s", bad.what, out)
		}
	}
}

// uclient allocates a relay on the TURN server at 127.0.0.1:port and
// sends three packets through it (client to client); err when that failed.
func uclient(t *testing.T, port int, user, pass string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "turnutils_uclient", "-y", "-n", "3", "-m", "1",
		"-p", strconv.Itoa(port), "-u", user, "-w", pass, "127.0.0.1")
	return cmd.CombinedOutput()
}

// startCoturn runs turnserver on 127.0.0.1:port (UDP and TCP, no TLS) with
// the TURN REST API secret, its state in a temporary dir, until the test
// ends; it is stopped by its PID.
func startCoturn(t *testing.T, port int, secret string) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "turnserver.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("turnserver", "-n", // no configuration file
		"--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", "--listening-port="+strconv.Itoa(port),
		"--use-auth-secret", "--static-auth-secret="+secret, "--realm=dialtone.test",
		// The test's two clients are both on loopback.
		"--allow-loopback-peers",
		"--no-tls", "--no-dtls", "--no-cli",
		"--userdb="+filepath.Join(dir, "turndb"), "--pidfile="+filepath.Join(dir, "turnserver.pid"),
		"--log-file=stdout", "--simple-log")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting turnserver: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		logFile.Close()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("turnserver log:\n%s", b)
		}
	})
	// It listens on TCP too: a connection tells that it is up.
	testbin.WaitListening(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 20*time.Second, exited, "turnserver")
}

// freeUDPAndTCPPort returns a loopback port that was free for both UDP and
// TCP a moment ago.
func freeUDPAndTCPPort(t *testing.T) int {
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		ln.Close()
		if err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no loopback port free for both UDP and TCP in 50 tries")
	return 0
}
