// Package tlscert provides the server's TLS certificate: the operator's PEM
// files when configured, otherwise a self-signed certificate for the domain
// that is made once and kept in the data dir, so that clients that accepted
// it once keep trusting it across restarts.
package tlscert

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"path/filepath"
	"strings"
	"time"

	"dialtone/internal/datadir"
)

// File names of the generated certificate and key inside the data dir.
const (
	CertFileName = "cert.pem"
	KeyFileName  = "key.pem"
)

// Validity is how long a generated certificate is valid.
const Validity = 10 * 365 * 24 * time.Hour

// renewBefore: a kept certificate that expires sooner than this is replaced.
const renewBefore = 30 * 24 * time.Hour

// Load returns the server certificate. With certFile and keyFile set it
// loads them. Otherwise it uses dataDir/cert.pem and dataDir/key.pem,
// generating a self-signed ECDSA P-256 certificate for domain (and
// *.domain) first when they do not exist, do not cover domain, or are
// about to expire.
func Load(certFile, keyFile, dataDir, domain string) (tls.Certificate, error) {
	if certFile != "" || keyFile != "" {
		if certFile == "" || keyFile == "" {
			return tls.Certificate{}, errors.New("tlscert: a certificate file and a key file are both needed")
		}
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("tlscert: load %s and %s: %w", certFile, keyFile, err)
		}
		return cert, nil
	}
	if domain == "" {
		return tls.Certificate{}, errors.New("tlscert: no domain for the self-signed certificate")
	}
	certPath := filepath.Join(dataDir, CertFileName)
	keyPath := filepath.Join(dataDir, KeyFileName)

	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	switch {
	case err == nil:
		if usable(cert, domain, time.Now()) {
			// Earlier versions wrote cert.pem 0644.
			for _, p := range []string{certPath, keyPath} {
				if err := datadir.Restrict(p); err != nil {
					return tls.Certificate{}, fmt.Errorf("tlscert: %w", err)
				}
			}
			return cert, nil
		}
	case errors.Is(err, fs.ErrNotExist):
	default:
		// A damaged pair is not replaced silently: a client that pinned
		// the old certificate would see a different one for no clear reason.
		return tls.Certificate{}, fmt.Errorf("tlscert: load %s and %s: %w (remove both to generate a new certificate)", certPath, keyPath, err)
	}

	certPEM, keyPEM, err := Generate(domain, time.Now())
	if err != nil {
		return tls.Certificate{}, err
	}
	// Key first: a cert.pem without its key.pem is never left behind.
	// Both 0600, as every file in the data dir (SPEC.md "Accounts").
	if err := datadir.WriteFile(keyPath, keyPEM); err != nil {
		return tls.Certificate{}, fmt.Errorf("tlscert: %w", err)
	}
	if err := datadir.WriteFile(certPath, certPEM); err != nil {
		return tls.Certificate{}, fmt.Errorf("tlscert: %w", err)
	}
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tlscert: %w", err)
	}
	return cert, nil
}

// usable reports whether cert (with Leaf set) covers domain and is valid
// for a while longer at now.
func usable(cert tls.Certificate, domain string, now time.Time) bool {
	leaf := cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return false
		}
	}
	if now.Before(leaf.NotBefore) || now.Add(renewBefore).After(leaf.NotAfter) {
		return false
	}
	return leaf.VerifyHostname(domain) == nil
}

// New is Generate's certificate, ready for a tls.Config (tests, tools).
func New(domain string, now time.Time) (tls.Certificate, error) {
	certPEM, keyPEM, err := Generate(domain, now)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// Generate makes a self-signed ECDSA P-256 certificate for domain and
// *.domain (or for the IP address, when domain is one), valid for
// Validity from now, and returns the certificate and key in PEM.
func Generate(domain string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("tlscert: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("tlscert: serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: domain, Organization: []string{"Dialtone (self-signed)"}},
		NotBefore:    now.Add(-time.Hour), // tolerate clients whose clock is a little behind
		NotAfter:     now.Add(Validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		// ClientAuth too: a server presents its certificate as a client on
		// outgoing federation links.
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	if ip := net.ParseIP(domain); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{domain, "*." + domain}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("tlscert: create certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("tlscert: marshal key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM, nil
}

// Fingerprint returns the SHA-256 fingerprint of cert's leaf certificate
// as upper-case hex bytes separated by colons ("AB:CD:…"), the form that
// clients such as Gajim and Conversations show when asking to trust it.
func Fingerprint(cert tls.Certificate) string {
	if len(cert.Certificate) == 0 {
		return ""
	}
	sum := sha256.Sum256(cert.Certificate[0])
	var b bytes.Buffer
	for i, c := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(strings.ToUpper(hex.EncodeToString([]byte{c})))
	}
	return b.String()
}
