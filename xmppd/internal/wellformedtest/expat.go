// Package wellformedtest helps the tests that check the server accepts and
// forwards only namespace-well-formed XML: an independent parser to judge
// (Python's expat, as XMPP clients use it) and stanzas that must be refused.
package wellformedtest

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"dialtone/internal/testbin"
)

// expat is the independent judge of well-formedness: the XML parser of
// Python's standard library, namespace-aware, as clients use it: with the
// namespace separator of nbxmpp (' ') and of ElementTree, so slixmpp
// ('}'). One python process per test binary (per fuzz worker)
// reads documents from a pipe; it ends when the binary does (its stdin
// closes).
var expat struct {
	once sync.Once
	mu   sync.Mutex
	in   io.Writer
	out  *bufio.Reader
	err  error
}

const expatScript = `
import sys, struct, pyexpat
inp, out = sys.stdin.buffer, sys.stdout
while True:
    h = inp.read(4)
    if len(h) < 4:
        break
    doc = inp.read(struct.unpack('>I', h)[0])
    res = 'ok'
    for sep in (' ', '}'):
        p = pyexpat.ParserCreate(namespace_separator=sep)
        try:
            p.Parse(doc, True)
        except pyexpat.ExpatError as e:
            res = 'error: %s (namespace separator %r)' % (e, sep)
            break
    out.write(res + '\n')
    out.flush()
`

// Expat returns nil when expat parses doc with namespaces, else its
// complaint. The test is skipped when there is no python with expat.
func Expat(t testing.TB, doc []byte) error {
	t.Helper()
	expat.once.Do(func() {
		cmd := exec.Command(testbin.Python, "-c", expatScript)
		in, err := cmd.StdinPipe()
		if err != nil {
			expat.err = err
			return
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			expat.err = err
			return
		}
		if err := cmd.Start(); err != nil {
			expat.err = err
			return
		}
		expat.in, expat.out = in, bufio.NewReader(out)
	})
	if expat.err != nil {
		t.Skipf("no expat through %s: %v", testbin.Python, expat.err)
	}
	expat.mu.Lock()
	defer expat.mu.Unlock()
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(doc)))
	if _, err := expat.in.Write(append(n[:], doc...)); err != nil {
		t.Fatalf("expat helper: %v", err)
	}
	line, err := expat.out.ReadString('\n')
	if err != nil {
		t.Fatalf("expat helper: %v", err)
	}
	line = strings.TrimSpace(line)
	if line == "ok" {
		return nil
	}
	return fmt.Errorf("expat: %s", strings.TrimPrefix(line, "error: "))
}
