// Package scramtest is a SCRAM client (RFC 5802) for tests, written from
// the RFC rather than from the server's code, that can do what honest
// clients do (channel binding of either type, XEP-0474's check) and what
// attackers do (claim "y" where -PLUS was offered, bind to other data).
package scramtest

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strconv"
	"strings"
)

// Client is one SCRAM exchange, client side.
type Client struct {
	Mechanism string // e.g. SCRAM-SHA-256-PLUS
	User      string
	Password  string
	// Flag is the gs2 channel binding flag: "n", "y" or "p=TYPE"; empty:
	// "p=" + BindingType for a -PLUS mechanism, "n" otherwise.
	Flag        string
	BindingType string
	BindingData []byte // appended to the gs2 header in c=

	h               func() hash.Hash
	gs2, clientBare string
	nonce           string
	serverSig       []byte
	// Downgrade is the d= attribute of the server-first-message, nil
	// without one.
	Downgrade []byte
}

// Hash returns the hash of a SCRAM mechanism name, nil when unknown.
func Hash(mechanism string) func() hash.Hash {
	switch strings.TrimSuffix(mechanism, "-PLUS") {
	case "SCRAM-SHA-1":
		return sha1.New
	case "SCRAM-SHA-256":
		return sha256.New
	case "SCRAM-SHA-512":
		return sha512.New
	}
	return nil
}

// First returns the client-first-message.
func (c *Client) First() []byte {
	c.h = Hash(c.Mechanism)
	flag := c.Flag
	if flag == "" {
		flag = "n"
		if strings.HasSuffix(c.Mechanism, "-PLUS") {
			flag = "p=" + c.BindingType
		}
	}
	c.gs2 = flag + ",,"
	c.nonce = rand.Text()
	c.clientBare = "n=" + c.User + ",r=" + c.nonce
	return []byte(c.gs2 + c.clientBare)
}

// Final answers server-first with the client-final-message.
func (c *Client) Final(serverFirst []byte) ([]byte, error) {
	var salt []byte
	iter := 0
	nonce := ""
	for _, f := range strings.Split(string(serverFirst), ",") {
		k, v, _ := strings.Cut(f, "=")
		var err error
		switch k {
		case "r":
			nonce = v
		case "s":
			salt, err = base64.StdEncoding.DecodeString(v)
		case "i":
			iter, err = strconv.Atoi(v)
		case "d":
			c.Downgrade, err = base64.StdEncoding.DecodeString(v)
		}
		if err != nil {
			return nil, fmt.Errorf("server-first %q: %w", serverFirst, err)
		}
	}
	if !strings.HasPrefix(nonce, c.nonce) || salt == nil || iter <= 0 {
		return nil, fmt.Errorf("bad server-first %q", serverFirst)
	}
	salted, err := pbkdf2.Key(c.h, c.Password, salt, iter, c.h().Size())
	if err != nil {
		return nil, err
	}
	clientKey := mac(c.h, salted, "Client Key")
	d := c.h()
	d.Write(clientKey)
	stored := d.Sum(nil)
	without := "c=" + base64.StdEncoding.EncodeToString(append([]byte(c.gs2), c.BindingData...)) + ",r=" + nonce
	auth := c.clientBare + "," + string(serverFirst) + "," + without
	proof := mac(c.h, stored, auth)
	subtle.XORBytes(proof, proof, clientKey)
	c.serverSig = mac(c.h, mac(c.h, salted, "Server Key"), auth)
	return []byte(without + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
}

// Verify checks the server-final-message.
func (c *Client) Verify(serverFinal []byte) error {
	if string(serverFinal) != "v="+base64.StdEncoding.EncodeToString(c.serverSig) {
		return errors.New("wrong server signature")
	}
	return nil
}

// DowngradeOK reports whether the d= the server sent is XEP-0474's hash
// of the mechanisms and channel binding types the client saw (types nil:
// no XEP-0440 element seen).
func (c *Client) DowngradeOK(mechanisms, types []string) bool {
	s := strings.Join(slices.Sorted(slices.Values(mechanisms)), ",")
	if types != nil {
		s += "|" + strings.Join(slices.Sorted(slices.Values(types)), ",")
	}
	d := c.h()
	d.Write([]byte(s))
	return hmac.Equal(d.Sum(nil), c.Downgrade)
}

func mac(h func() hash.Hash, key []byte, data string) []byte {
	m := hmac.New(h, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}
