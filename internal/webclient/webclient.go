// Package webclient holds the web chat client that xmppd serves at /chat
// (SPEC.md "Web client and one-tap login"): Converse.js, MPL-2.0, in
// converse/ (fetched from the npm registry by update.sh, its integrity
// hash pinned, and kept byte for byte as released: SHA256SUMS lists them),
// and Dialtone's plugin and style that set it up for this server
// (dialtone.js, dialtone.css). Everything is embedded in the binary;
// nothing is loaded from another host at run time.
package webclient

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"
)

// ConverseVersion is the Converse.js release in converse/ (update.sh's
// VERSION).
const ConverseVersion = "14.0.0"

//go:embed converse dialtone.js dialtone.css
var files embed.FS

// Our own files, served beside Converse's.
const (
	// PluginJS sets Converse up (a module, loaded after converse.min.js).
	PluginJS = "dialtone.js"
	// PluginCSS adjusts its look.
	PluginCSS = "dialtone.css"
	// ConverseJS and ConverseCSS are the bundle and its stylesheet.
	ConverseJS  = "converse.min.js"
	ConverseCSS = "converse.min.css"
)

// ID names this build's set of files: a prefix of the SHA-256 of every
// file, so that a URL that contains it can be cached for good.
var ID = sync.OnceValue(func() string {
	h := sha256.New()
	fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := files.ReadFile(p)
		sum := sha256.Sum256(b)
		h.Write([]byte(p + "\x00"))
		h.Write(sum[:])
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))[:16]
})

// open returns the bytes of a served name: ours at the top, Converse's
// under converse/.
func open(name string) ([]byte, bool) {
	if name == "" || strings.Contains(name, "..") || !fs.ValidPath(name) {
		return nil, false
	}
	p := "converse/" + name
	if name == PluginJS || name == PluginCSS {
		p = name
	}
	b, err := files.ReadFile(p)
	return b, err == nil
}

// contentTypes are those of the files served; anything else is bytes.
var contentTypes = map[string]string{
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".json": "application/json",
	".ttf":  "font/ttf",
	".png":  "image/png",
	".ico":  "image/x-icon",
	"":      "text/plain; charset=utf-8", // LICENSE, COPYRIGHT, VERSION, SHA256SUMS
}

// compressible are the types worth gzip (the bundle shrinks to a quarter,
// which a phone on a slow network feels).
var compressible = map[string]bool{".js": true, ".css": true, ".json": true, ".ttf": true, "": true}

// gzipped holds each compressible file, compressed on first request.
var gzipped sync.Map // name -> func() []byte

func compressed(name string, b []byte) []byte {
	f, _ := gzipped.LoadOrStore(name, sync.OnceValue(func() []byte {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		zw.Write(b)
		zw.Close()
		return buf.Bytes()
	}))
	return f.(func() []byte)()
}

// Handler serves the files at prefix + "/" + ID() + "/NAME" (prefix
// without a trailing slash): with their content types, gzip when the
// client takes it, and cached for a year, since a new build has a new
// ID. Any other path is 404.
func Handler(prefix string) http.Handler {
	base := prefix + "/" + ID() + "/"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := strings.CutPrefix(r.URL.Path, base)
		b, found := open(name)
		if !ok || !found {
			http.NotFound(w, r)
			return
		}
		ext := path.Ext(name)
		ct, known := contentTypes[ext]
		if !known {
			ct = "application/octet-stream"
		}
		h := w.Header()
		h.Set("Content-Type", ct)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
		if compressible[ext] {
			h.Set("Vary", "Accept-Encoding")
			if acceptsGzip(r) {
				b = compressed(name, b)
				h.Set("Content-Encoding", "gzip")
			}
		}
		http.ServeContent(w, r, "", zeroTime, bytes.NewReader(b))
	})
}

// acceptsGzip reports whether r's Accept-Encoding lists gzip without q=0.
func acceptsGzip(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept-Encoding") {
		for part := range strings.SplitSeq(v, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if strings.EqualFold(strings.TrimSpace(coding), "gzip") {
				q := strings.ReplaceAll(params, " ", "")
				return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
			}
		}
	}
	return false
}

// zeroTime leaves Last-Modified out: the ID in the URL is the version.
var zeroTime time.Time

// Path returns the URL path of a served file under prefix.
func Path(prefix, name string) string { return prefix + "/" + ID() + "/" + name }
