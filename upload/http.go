package upload

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"dialtone/internal/datadir"
)

// defaultBodyIdleTimeout ends a PUT whose body sends nothing for this long.
const defaultBodyIdleTimeout = time.Minute

// completeTimeout bounds the store call that marks a received file stored.
const completeTimeout = 30 * time.Second

// ServeHTTP serves Path: PUT stores a slot's file, GET and HEAD serve it,
// OPTIONS answers CORS preflights. Every answer allows any origin (CORS),
// so that web clients on other sites can upload and show files; nothing
// here uses cookies.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	switch r.Method {
	case http.MethodOptions:
		h.Set("Access-Control-Allow-Methods", "GET, HEAD, PUT, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Content-Type")
		h.Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
	case http.MethodPut:
		s.put(w, r)
	case http.MethodGet, http.MethodHead:
		s.get(w, r)
	default:
		h.Set("Allow", "GET, HEAD, PUT, OPTIONS")
		fail(w, http.StatusMethodNotAllowed, "method not allowed")
	}
}

// fail answers with a short plain-text reason.
func fail(w http.ResponseWriter, code int, reason string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	io.WriteString(w, reason+"\n")
}

// slotOf returns the slot that the path of r names, or false (and
// answers 404) when it names none: a malformed path, an unknown id, or a
// name that is not the slot's.
func (s *Service) slotOf(w http.ResponseWriter, r *http.Request) (Record, bool) {
	rest, ok := strings.CutPrefix(r.URL.Path, Path)
	id, name, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 || !validID(id) || name == "" {
		fail(w, http.StatusNotFound, "no such file")
		return Record{}, false
	}
	rec, err := s.Store.Upload(r.Context(), id)
	if errors.Is(err, ErrNotFound) || err == nil && rec.Name != name {
		fail(w, http.StatusNotFound, "no such file")
		return Record{}, false
	}
	if err != nil {
		s.log().Error("upload: reading a slot", "id", id, "err", err)
		fail(w, http.StatusInternalServerError, "try again later")
		return Record{}, false
	}
	return rec, true
}

// put stores the body of r as the slot's file when it matches the slot
// exactly: a valid signature, in time, the size in Content-Length and the
// content type requested. The body goes to a temporary file in the slot's
// directory and gets its name only whole, so that a GET never sees half a
// file; whatever fails, nothing of it stays.
func (s *Service) put(w http.ResponseWriter, r *http.Request) {
	rec, ok := s.slotOf(w, r)
	if !ok {
		return
	}
	switch {
	case !s.validToken(rec, r.URL.Query().Get("token")):
		fail(w, http.StatusForbidden, "this is not a valid upload URL for this file")
		return
	case !rec.Stored.IsZero():
		fail(w, http.StatusConflict, "this file is uploaded already")
		return
	case !s.now().Before(rec.PutExpires):
		fail(w, http.StatusForbidden, "this upload URL expired; request a new slot")
		return
	case r.ContentLength < 0:
		fail(w, http.StatusLengthRequired, fmt.Sprintf("send Content-Length: %d", rec.Size))
		return
	case r.ContentLength > rec.Size:
		fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the slot is for %d bytes, not %d", rec.Size, r.ContentLength))
		return
	case r.ContentLength != rec.Size:
		fail(w, http.StatusBadRequest, fmt.Sprintf("the slot is for %d bytes, not %d", rec.Size, r.ContentLength))
		return
	}
	if rec.ContentType != "" {
		if got, err := NormalizeContentType(r.Header.Get("Content-Type")); err != nil || got != rec.ContentType {
			fail(w, http.StatusUnsupportedMediaType, fmt.Sprintf("the slot is for Content-Type: %s", rec.ContentType))
			return
		}
	}
	if _, busy := s.putting.LoadOrStore(rec.ID, true); busy {
		fail(w, http.StatusConflict, "this file is being uploaded already")
		return
	}
	defer s.putting.Delete(rec.ID)

	code, reason, err := s.store(w, r, rec)
	if err != nil {
		s.log().Error("upload: storing a file", "id", rec.ID, "owner", rec.Owner, "err", err)
	}
	if code != http.StatusCreated {
		fail(w, code, reason)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusCreated)
}

// store writes the body of r to the file of rec and marks it stored; it
// returns the status to answer with, the reason for a client error, and
// the server-side error worth logging, if any.
func (s *Service) store(w http.ResponseWriter, r *http.Request, rec Record) (code int, reason string, err error) {
	dir := s.slotDir(rec)
	tmp, f, err := createTemp(s.Dir, dir)
	if err != nil {
		return http.StatusInternalServerError, "try again later", err
	}
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(tmp)
			// The slot's directory goes too, unless another file is in it.
			os.Remove(dir)
		}
	}()
	// net/http ends the body at Content-Length, which is rec.Size.
	body := &idleReader{r: r.Body, rc: http.NewResponseController(w), idle: s.bodyIdleTimeout()}
	out := &fileWriter{f: f}
	n, err := io.Copy(out, body)
	if out.err != nil {
		// The disk, not the client (full, say).
		return http.StatusInternalServerError, "try again later", out.err
	}
	if err != nil || n != rec.Size {
		// The client went away, stalled or sent less than it said.
		return http.StatusBadRequest, fmt.Sprintf("received %d of %d bytes", n, rec.Size), nil
	}
	if err := f.Sync(); err != nil {
		return http.StatusInternalServerError, "try again later", err
	}
	if err := f.Close(); err != nil {
		return http.StatusInternalServerError, "try again later", err
	}
	final := filepath.Join(dir, rec.Name)
	// Link, not rename: a file already there is never replaced.
	if err := os.Link(tmp, final); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return http.StatusConflict, "this file is uploaded already", nil
		}
		return http.StatusInternalServerError, "try again later", err
	}
	os.Remove(tmp)
	// The whole file is here: a client that hangs up now does not undo it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), completeTimeout)
	defer cancel()
	if err := s.Store.CompleteUpload(ctx, rec.ID, s.now()); err != nil {
		os.Remove(final)
		if errors.Is(err, ErrNotFound) {
			// Removed meanwhile, with its account or by the sweeper.
			return http.StatusNotFound, "no such file", nil
		}
		return http.StatusInternalServerError, "try again later", err
	}
	done = true
	s.log().Debug("file uploaded", "owner", rec.Owner, "id", rec.ID, "size", rec.Size)
	return http.StatusCreated, "", nil
}

// fileWriter writes to f and keeps the first write error, so that a
// failed copy can tell the disk's fault from the client's.
type fileWriter struct {
	f   *os.File
	err error
}

func (w *fileWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if err != nil && w.err == nil {
		w.err = err
	}
	return n, err
}

func (s *Service) bodyIdleTimeout() time.Duration {
	if s.BodyIdleTimeout > 0 {
		return s.BodyIdleTimeout
	}
	return defaultBodyIdleTimeout
}

// idleReader reads a request body with a deadline for each read, so that
// a client that stops sending frees its connection and slot.
type idleReader struct {
	r    io.Reader
	rc   *http.ResponseController
	idle time.Duration
}

func (b *idleReader) Read(p []byte) (int, error) {
	b.rc.SetReadDeadline(time.Now().Add(b.idle))
	return b.r.Read(p)
}

// createTemp makes the slot directory dir below root and a new temporary
// file in it. The sweeper removes an owner's directory once it is empty,
// which may happen between the two steps: then they are tried again.
func createTemp(root, dir string) (name string, f *os.File, err error) {
	for range 3 {
		if err = makeDirs(root, dir); err != nil {
			return "", nil, err
		}
		suffix := make([]byte, 8)
		rand.Read(suffix)
		// A leading dot: no sanitized name starts with one, so a
		// temporary file never has a slot's name.
		name = filepath.Join(dir, ".put-"+hex.EncodeToString(suffix))
		f, err = os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, datadir.FileMode)
		if !errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	if err != nil {
		return "", nil, err
	}
	return name, f, nil
}

// makeDirs makes the slot directory dir below root, each missing level
// mode 0700 whatever the umask (SPEC.md "Accounts": the data dir is
// private).
func makeDirs(root, dir string) error {
	rel, err := filepath.Rel(filepath.Dir(root), dir)
	if err != nil {
		return err
	}
	path := filepath.Dir(root)
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		path = filepath.Join(path, part)
		err := os.Mkdir(path, datadir.DirMode)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return err
		}
		if err := os.Chmod(path, datadir.DirMode); err != nil {
			return err
		}
	}
	return nil
}

// get serves the file of a stored slot with the content type it was
// uploaded as, never sniffed, never able to run script on this origin;
// anything but images, audio and video is an attachment. Ranges are
// served (players seek in audio and video).
func (s *Service) get(w http.ResponseWriter, r *http.Request) {
	rec, ok := s.slotOf(w, r)
	if !ok {
		return
	}
	if rec.Stored.IsZero() {
		fail(w, http.StatusNotFound, "no such file")
		return
	}
	f, err := os.Open(filepath.Join(s.slotDir(rec), rec.Name))
	if errors.Is(err, fs.ErrNotExist) {
		// Removed a moment ago (expired, or with its account).
		fail(w, http.StatusNotFound, "no such file")
		return
	}
	if err != nil {
		s.log().Error("upload: opening a file", "id", rec.ID, "err", err)
		fail(w, http.StatusInternalServerError, "try again later")
		return
	}
	defer f.Close()
	h := w.Header()
	ct := rec.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	h.Set("Content-Type", ct)
	if !inline(ct) {
		h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": rec.Name}))
	}
	// The file under this URL never changes, but it goes when it expires
	// or its account is deleted: no shared cache keeps it.
	h.Set("Cache-Control", "private, max-age=86400")
	http.ServeContent(w, r, "", rec.Stored, f)
}
