// Package upload is HTTP File Upload (XEP-0363) on the server's HTTP
// listener: a slot request (RequestSlot) reserves room in the account's
// quota and returns a signed PUT URL and a GET URL; the Service, mounted
// at Path, takes the PUT (streamed to DATA_DIR/uploads, exactly the size
// and content type requested) and serves the file to anyone with the GET
// URL, with headers that keep a browser from running what it serves.
// Sweep removes expired files and what account deletions left behind.
//
// On disk a file is DIR/OWNER/ID/NAME: OWNER the account (so that an
// account's files go with one removal), ID 128 random bits, NAME the
// client's file name reduced to one safe path element (SanitizeName).
package upload

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Namespace is XEP-0363's namespace: the disco feature of the upload
// service and the namespace of the slot request.
const Namespace = "urn:xmpp:http:upload:0"

// Path is where the Service is mounted on the HTTP listener; the URLs of
// slots are PublicURL + Path + ID + "/" + NAME.
const Path = "/upload/"

// DefaultPutWindow is how long a slot's PUT URL is valid (SPEC.md "Files
// and calls": 5 minutes).
const DefaultPutWindow = 5 * time.Minute

// Errors of the Store.
var (
	// ErrNotFound: no such slot (never made, expired, or removed with
	// its account), or, from CompleteUpload, one that is stored already.
	ErrNotFound = errors.New("upload: no such slot")
	// ErrOverQuota: the reservation would take the owner over the quota.
	ErrOverQuota = errors.New("upload: quota exceeded")
)

// Record is one slot: reserved at the request, stored once its PUT
// completed.
type Record struct {
	// ID is the slot's random directory: 32 lower-case hex digits.
	ID string
	// Owner is the account that asked for the slot (a canonical number).
	Owner string
	// Name is the sanitized file name (SanitizeName).
	Name string
	// Size is the exact size in bytes that the PUT must have.
	Size int64
	// ContentType is the requested content type, normalised
	// (NormalizeContentType); "" when the request gave none.
	ContentType string
	// Created is when the slot was made; PutExpires when its PUT URL
	// stops working.
	Created, PutExpires time.Time
	// Stored is when the PUT completed; zero while it has not.
	Stored time.Time
}

// Store keeps the slots and counts the quota. Implemented by package
// storage (table uploads, removed with the account).
type Store interface {
	// ReserveUpload records r (not stored yet) unless the owner's bytes,
	// those stored and those reserved by slots whose PUT URL is still
	// valid at now, plus r.Size exceed quota (quota <= 0: no quota); then
	// it returns ErrOverQuota and records nothing. used is the owner's
	// bytes before r, in both cases. Concurrent reservations of one owner
	// are serialised, so that together they never exceed the quota.
	ReserveUpload(ctx context.Context, r Record, quota int64, now time.Time) (used int64, err error)
	// Upload returns the slot id, or ErrNotFound.
	Upload(ctx context.Context, id string) (Record, error)
	// CompleteUpload marks the slot id stored at t; ErrNotFound when it
	// is gone or stored already.
	CompleteUpload(ctx context.Context, id string, t time.Time) error
	// ExpireUploads deletes up to batch slots, stored ones that were
	// stored before storedBefore (zero: none) and ones never stored whose
	// PUT URL expired before reservedBefore, and returns them.
	ExpireUploads(ctx context.Context, storedBefore, reservedBefore time.Time, batch int) ([]Record, error)
	// UploadIDs returns the ids of every slot of owner, stored or not.
	UploadIDs(ctx context.Context, owner string) ([]string, error)
}

// Slot is the answer to a slot request (XEP-0363 <slot/>).
type Slot struct {
	// PutURL takes the file: HTTP PUT with exactly the requested size
	// (Content-Length) and content type.
	PutURL string
	// GetURL serves the file once the PUT completed.
	GetURL string
	// PutHeaders are headers the PUT must carry (<header/> elements);
	// none today: the PUT URL carries its signature.
	PutHeaders map[string]string
}

// SlotError is a refused slot request, with what its stanza error says
// (RFC 6120 §8.3): Type "modify" or "cancel", Condition the defined
// condition ("not-acceptable", "bad-request"), Text the human-readable
// reason, and MaxFileSize > 0 for XEP-0363's
// <file-too-large><max-file-size>N</max-file-size></file-too-large>.
type SlotError struct {
	Type, Condition, Text string
	MaxFileSize           int64
}

func (e *SlotError) Error() string { return "upload: " + e.Text }

// Service is the upload service. Set the fields before use; Store, Dir,
// PublicURL and Key are required.
type Service struct {
	Store Store
	// Dir is where files live: DATA_DIR/uploads, made (mode 0700) when the
	// first file arrives.
	Dir string
	// PublicURL is the base URL of the HTTP listener as clients reach it
	// (XMPPD_PUBLIC_URL), without a trailing slash.
	PublicURL string
	// Key signs the PUT URLs (the server's secret key, at least 16 bytes).
	Key []byte
	// MaxFileSize is the largest file in bytes (XMPPD_UPLOAD_MAX_FILE_SIZE);
	// 0: no limit.
	MaxFileSize int64
	// Quota is the bytes one account may have stored and reserved
	// (XMPPD_UPLOAD_QUOTA); 0: no quota.
	Quota int64
	// Expiry is how long after its upload a file is removed
	// (XMPPD_UPLOAD_EXPIRY); 0: kept.
	Expiry time.Duration
	// PutWindow is how long a PUT URL is valid; 0: DefaultPutWindow.
	PutWindow time.Duration
	// BodyIdleTimeout ends a PUT whose body stalls this long; 0: one minute.
	BodyIdleTimeout time.Duration
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Log receives failures that clients see as 500; nil discards them.
	Log *slog.Logger

	// putting holds the ids whose PUT is under way, so that two PUTs of
	// one slot do not race.
	putting sync.Map
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Service) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (s *Service) putWindow() time.Duration {
	if s.PutWindow > 0 {
		return s.PutWindow
	}
	return DefaultPutWindow
}

// RequestSlot makes a slot for owner's file of size bytes (XEP-0363 §4).
// filename is sanitized (only its last path element is kept, and only
// safe characters of it); contentType may be empty. A refusal is a
// *SlotError: over XMPPD_UPLOAD_MAX_FILE_SIZE or over the quota,
// not-acceptable with file-too-large (SPEC.md; for the quota its
// max-file-size is what is left); a negative size, a malformed content
// type or an owner that cannot be a directory, bad-request. Other errors
// are the store's.
func (s *Service) RequestSlot(ctx context.Context, owner, filename string, size int64, contentType string) (Slot, error) {
	if !safeOwner(owner) {
		return Slot{}, &SlotError{Type: "modify", Condition: "bad-request", Text: "this account cannot upload files"}
	}
	if size < 0 {
		return Slot{}, &SlotError{Type: "modify", Condition: "bad-request", Text: "the size must be a whole number of bytes, 0 or more"}
	}
	if s.MaxFileSize > 0 && size > s.MaxFileSize {
		return Slot{}, &SlotError{Type: "modify", Condition: "not-acceptable", MaxFileSize: s.MaxFileSize,
			Text: fmt.Sprintf("File too large. The maximum file size is %d bytes", s.MaxFileSize)}
	}
	ctype, err := NormalizeContentType(contentType)
	if err != nil {
		return Slot{}, &SlotError{Type: "modify", Condition: "bad-request", Text: err.Error()}
	}
	now := s.now().UTC()
	r := Record{
		ID:          newID(),
		Owner:       owner,
		Name:        SanitizeName(filename),
		Size:        size,
		ContentType: ctype,
		Created:     now.Truncate(time.Microsecond),
		// Whole seconds: the signature covers them as a Unix time.
		PutExpires: now.Add(s.putWindow()).Truncate(time.Second),
	}
	used, err := s.Store.ReserveUpload(ctx, r, s.Quota, now)
	if errors.Is(err, ErrOverQuota) {
		left := max(s.Quota-used, 0)
		return Slot{}, &SlotError{Type: "modify", Condition: "not-acceptable", MaxFileSize: left,
			Text: fmt.Sprintf("Upload quota reached: %d of %d bytes in use, %d left", used, s.Quota, left)}
	}
	if err != nil {
		return Slot{}, fmt.Errorf("upload: reserve a slot for %s: %w", owner, err)
	}
	get := s.getURL(r)
	return Slot{PutURL: get + "?token=" + s.token(r), GetURL: get}, nil
}

// getURL is where the file of r is served.
func (s *Service) getURL(r Record) string {
	return s.PublicURL + Path + r.ID + "/" + url.PathEscape(r.Name)
}

// token signs what the PUT of r may store: the slot, its name, size and
// content type, and until when.
func (s *Service) token(r Record) string {
	// A key of its own, so that a signature made here means nothing to
	// the other users of the secret key (cookies, sealed SMS).
	k := hmac.New(sha256.New, s.Key)
	k.Write([]byte("dialtone upload PUT URL v1"))
	mac := hmac.New(sha256.New, k.Sum(nil))
	for _, f := range []string{r.ID, r.Owner, r.Name, strconv.FormatInt(r.Size, 10), r.ContentType, strconv.FormatInt(r.PutExpires.Unix(), 10)} {
		// Length-prefixed, so that no two field lists write the same bytes.
		mac.Write([]byte(strconv.Itoa(len(f)) + ":" + f))
	}
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// validToken reports, in constant time, whether token is r's.
func (s *Service) validToken(r Record, token string) bool {
	return hmac.Equal([]byte(token), []byte(s.token(r)))
}

// newID is a slot's random directory name: 128 bits, unguessable (XEP-0363
// §8: "long randomized parts").
func newID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// validID reports whether id has the form newID makes.
func validID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for _, c := range []byte(id) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// safeOwner reports whether owner can be a directory name of its own:
// letters, digits and "+._-", not starting with a dot (canonical numbers
// are "+" and digits).
func safeOwner(owner string) bool {
	if owner == "" || len(owner) > 64 || owner[0] == '.' {
		return false
	}
	for _, c := range []byte(owner) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || strings.IndexByte("+._-", c) >= 0) {
			return false
		}
	}
	return true
}

// ownerDir is where owner's files live.
func (s *Service) ownerDir(owner string) string { return filepath.Join(s.Dir, owner) }

// slotDir is the directory of r's file.
func (s *Service) slotDir(r Record) string { return filepath.Join(s.Dir, r.Owner, r.ID) }
