package tlscert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestGenerateOnceAndReuse(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data") // does not exist yet
	cert, err := Load("", "", dir, "chat.example")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key %T, want ECDSA P-256", leaf.PublicKey)
	}
	if got := strings.Join(leaf.DNSNames, ","); got != "chat.example,*.chat.example" {
		t.Errorf("DNS names %q", got)
	}
	for _, h := range []string{"chat.example", "conference.chat.example"} {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("VerifyHostname(%s): %v", h, err)
		}
	}
	if err := leaf.VerifyHostname("other.example"); err == nil {
		t.Error("certificate covers other.example")
	}
	if life := leaf.NotAfter.Sub(time.Now()); life < Validity-2*time.Hour || life > Validity {
		t.Errorf("valid for %v more, want about %v", life, Validity)
	}
	// Self-signed: it verifies against itself as a root.
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "chat.example", Roots: roots}); err != nil {
		t.Errorf("does not verify against itself: %v", err)
	}

	st, err := os.Stat(filepath.Join(dir, KeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key.pem mode %v, want 0600", st.Mode().Perm())
	}
	if _, err := os.Stat(filepath.Join(dir, CertFileName)); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("data dir holds %d entries, want cert.pem and key.pem only", len(entries))
	}

	again, err := Load("", "", dir, "chat.example")
	if err != nil {
		t.Fatal(err)
	}
	if Fingerprint(again) != Fingerprint(cert) {
		t.Error("second Load made a new certificate instead of reusing the kept one")
	}

	// A different domain gets a new certificate.
	other, err := Load("", "", dir, "other.example")
	if err != nil {
		t.Fatal(err)
	}
	if Fingerprint(other) == Fingerprint(cert) {
		t.Error("domain changed but the certificate was kept")
	}
	if err := other.Leaf.VerifyHostname("other.example"); err != nil {
		t.Error(err)
	}
}

func TestLocalhostAndIP(t *testing.T) {
	cert, err := Load("", "", t.TempDir(), "localhost")
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.Leaf.VerifyHostname("localhost"); err != nil {
		t.Error(err)
	}
	cert, err = Load("", "", t.TempDir(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.Leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Error(err)
	}
}

func TestExpiringIsReplaced(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM, err := Generate("localhost", time.Now().Add(-Validity+time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, CertFileName), certPEM, 0o644)
	os.WriteFile(filepath.Join(dir, KeyFileName), keyPEM, 0o600)
	old, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := Load("", "", dir, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	if Fingerprint(cert) == Fingerprint(old) {
		t.Error("a certificate expiring within the hour was reused")
	}
}

func TestDamagedIsNotReplaced(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, CertFileName), []byte("garbage"), 0o644)
	os.WriteFile(filepath.Join(dir, KeyFileName), []byte("garbage"), 0o600)
	if _, err := Load("", "", dir, "localhost"); err == nil {
		t.Fatal("damaged files: no error")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, CertFileName)); string(b) != "garbage" {
		t.Error("damaged cert.pem was overwritten")
	}
}

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM, err := Generate("files.example", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cf, kf := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	os.WriteFile(cf, certPEM, 0o644)
	os.WriteFile(kf, keyPEM, 0o600)
	data := filepath.Join(dir, "data")
	cert, err := Load(cf, kf, data, "localhost") // files win over the domain
	if err != nil {
		t.Fatal(err)
	}
	if cert.Leaf.Subject.CommonName != "files.example" {
		t.Errorf("loaded %q", cert.Leaf.Subject.CommonName)
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Error("Load with files wrote to the data dir")
	}

	if _, err := Load(filepath.Join(dir, "missing.pem"), kf, data, "localhost"); err == nil {
		t.Error("missing certificate file: no error")
	}
	if _, err := Load(cf, "", data, "localhost"); err == nil {
		t.Error("certificate without key: no error")
	}
	if _, err := Load(kf, cf, data, "localhost"); err == nil {
		t.Error("swapped files: no error")
	}
}

func TestFingerprint(t *testing.T) {
	cert, err := Load("", "", t.TempDir(), "localhost")
	if err != nil {
		t.Fatal(err)
	}
	fp := Fingerprint(cert)
	if !regexp.MustCompile(`^([0-9A-F]{2}:){31}[0-9A-F]{2}$`).MatchString(fp) {
		t.Fatalf("fingerprint %q", fp)
	}
	sum := sha256.Sum256(cert.Certificate[0])
	if want := fmt.Sprintf("%X", sum[:1]) + ":" + fmt.Sprintf("%X", sum[1:2]); !strings.HasPrefix(fp, want) {
		t.Errorf("fingerprint %q does not start with %q", fp, want)
	}
	if Fingerprint(tls.Certificate{}) != "" {
		t.Error("empty certificate has a fingerprint")
	}
}

// TestFileModes: the generated certificate is 0600 like every file of the
// data dir, under any umask and in an existing data dir others may enter;
// one that an earlier version wrote 0644 is narrowed when it is reused.
// Not parallel: the umask is the process's.
func TestFileModes(t *testing.T) {
	old := syscall.Umask(0)
	t.Cleanup(func() { syscall.Umask(old) })
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	check := func(when string) {
		t.Helper()
		for _, name := range []string{CertFileName, KeyFileName} {
			st, err := os.Stat(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Errorf("%s: %s mode %v, want 0600", when, name, st.Mode().Perm())
			}
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 2 {
			t.Errorf("%s: the data dir holds %d entries, want cert.pem and key.pem only", when, len(entries))
		}
	}
	if _, err := Load("", "", dir, "chat.example"); err != nil {
		t.Fatal(err)
	}
	check("generated")
	os.Chmod(filepath.Join(dir, CertFileName), 0o644)
	if _, err := Load("", "", dir, "chat.example"); err != nil {
		t.Fatal(err)
	}
	check("reused")
}
