// Package admin is the protocol through which xmppctl reaches the running
// server (SPEC.md "xmppctl") for what only the server can do, such as
// closing an account's sessions. It runs over a Unix socket of mode 0600,
// so only the server's user (and root) can use it.
//
// The protocol is one JSON object per line in each direction: the client
// writes a request, the server answers it, and the client may send the
// next request on the same connection:
//
//	→ {"op":"kick","number":"+821012345678","condition":"not-authorized"}
//	← {"closed":2}
//	← {"error":"why it failed"}
//	→ {"op":"wake"}
//	← {"closed":0}
//	→ {"op":"forget","number":"+821012345678"}
//	← {"closed":0}
package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// ErrNoServer is returned (wrapped) by the client functions when no server
// listens on the socket: the server is not running.
var ErrNoServer = errors.New("no server is listening")

// Handler carries out the requests on the server side.
type Handler interface {
	// Kick closes every session of the account number (canonical form)
	// with the stream error condition (e.g. "not-authorized") and reports
	// how many it closed; zero sessions is not an error.
	Kick(ctx context.Context, number string, condition string) (closed int, err error)
	// Wake nudges the SMS worker: something was queued in the outbox
	// (by xmppctl, on the store) and should go now, not at its next pass.
	Wake()
}

// Forgetter is the optional part of a Handler that drops what the server
// keeps in memory of an account xmppctl deleted or released in the store
// (its group memberships, its cached block list), so that the number's
// next owner does not inherit it.
type Forgetter interface {
	Forget(ctx context.Context, number string) error
}

// Limits of the server side. Variables so that tests can shorten them.
var (
	// idleTimeout closes a connection that sends no complete request for this long.
	idleTimeout = 30 * time.Second
	// handleTimeout bounds one request's work in the handler.
	handleTimeout = 30 * time.Second
	// writeTimeout bounds writing one answer.
	writeTimeout = 10 * time.Second
	// clientTimeout bounds a whole client call whose context has no deadline.
	clientTimeout = 45 * time.Second
)

const (
	maxLine  = 64 << 10 // longest request or answer line
	maxConns = 16       // connections served at once; more wait in the backlog
)

// Operations.
const (
	opKick   = "kick"
	opWake   = "wake"
	opForget = "forget"
)

type request struct {
	Op        string `json:"op"`
	Number    string `json:"number,omitempty"`
	Condition string `json:"condition,omitempty"`
}

type response struct {
	Closed int    `json:"closed"`
	Error  string `json:"error,omitempty"`
}

// Serve listens on the Unix socket at path (mode 0600) and answers
// requests with h until ctx is done; it then closes the connections,
// removes the socket file and returns nil. A stale socket file left by a
// server that died is removed first; if another server answers on path,
// Serve returns an error at once without touching it.
func Serve(ctx context.Context, path string, h Handler, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	ln, err := listen(path)
	if err != nil {
		return err
	}
	log.Info("admin socket listening", "path", path)

	// Whatever ends Serve also ends the connections, and Serve returns
	// only after they are gone.
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	defer ln.Close()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	sem := make(chan struct{}, maxConns)
	idle := idleTimeout
	for {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		conn, err := ln.Accept()
		if err != nil {
			<-sem
			if ctx.Err() != nil {
				return nil
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return fmt.Errorf("admin: accept on %s: %w", path, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			serveConn(ctx, conn, h, log, idle)
		}()
	}
}

// listen makes the socket at path, removing a stale one first.
func listen(path string) (*net.UnixListener, error) {
	if st, err := os.Lstat(path); err == nil {
		if st.Mode()&fs.ModeSocket == 0 {
			return nil, fmt.Errorf("admin: %s exists and is not a socket; not touching it", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("admin: another server is listening on %s", path)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("admin: checking %s for a running server: %w", path, err)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("admin: remove stale socket: %w", err)
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	// The window between bind and chmod is harmless: the socket answers
	// nobody until Accept, and the data dir itself is not world-writable.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin: %w", err)
	}
	return ln, nil
}

func serveConn(ctx context.Context, conn net.Conn, h Handler, log *slog.Logger, idle time.Duration) {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	r := bufio.NewReaderSize(conn, 4096)
	enc := json.NewEncoder(conn)
	for {
		conn.SetReadDeadline(time.Now().Add(idle))
		line, err := readLine(r)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrDeadlineExceeded) {
				log.Warn("admin connection", "err", err)
			}
			return
		}
		var req request
		var resp response
		if err := json.Unmarshal(line, &req); err != nil {
			resp.Error = "malformed request: " + err.Error()
		} else {
			resp = handle(ctx, h, req, log)
		}
		conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		if err := enc.Encode(resp); err != nil {
			return
		}
	}
}

// errLineTooLong: a line longer than maxLine ends the connection.
var errLineTooLong = errors.New("line too long")

// readLine returns the next complete line (without its newline). A line
// cut short by EOF or a deadline is an error, never a request.
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		frag, err := r.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > maxLine {
			return nil, errLineTooLong
		}
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return nil, err
		}
	}
}

func handle(ctx context.Context, h Handler, req request, log *slog.Logger) response {
	ctx, cancel := context.WithTimeout(ctx, handleTimeout)
	defer cancel()
	switch req.Op {
	case opKick:
		if req.Number == "" || req.Condition == "" {
			return response{Error: "kick needs a number and a condition"}
		}
		n, err := h.Kick(ctx, req.Number, req.Condition)
		if err != nil {
			log.Warn("admin kick failed", "number", req.Number, "condition", req.Condition, "err", err)
			return response{Error: err.Error()}
		}
		log.Info("admin kick", "number", req.Number, "condition", req.Condition, "closed", n)
		return response{Closed: n}
	case opWake:
		h.Wake()
		return response{}
	case opForget:
		f, ok := h.(Forgetter)
		if !ok || req.Number == "" {
			return response{Error: "forget needs a number and a server that forgets"}
		}
		if err := f.Forget(ctx, req.Number); err != nil {
			log.Warn("admin forget failed", "number", req.Number, "err", err)
			return response{Error: err.Error()}
		}
		log.Info("admin forget", "number", req.Number)
		return response{}
	default:
		return response{Error: fmt.Sprintf("unknown op %q", req.Op)}
	}
}

// Kick asks the server listening on path to close every session of number
// with the stream error condition, and returns how many it closed. When no
// server runs it returns an error that matches errors.Is(err, ErrNoServer).
func Kick(ctx context.Context, path, number, condition string) (closed int, err error) {
	resp, err := call(ctx, path, request{Op: opKick, Number: number, Condition: condition})
	if err != nil {
		return 0, err
	}
	return resp.Closed, nil
}

// Wake asks the server listening on path to send what waits in the SMS
// outbox now. When no server runs it returns an error that matches
// errors.Is(err, ErrNoServer): then nobody sends it but the caller.
func Wake(ctx context.Context, path string) error {
	_, err := call(ctx, path, request{Op: opWake})
	return err
}

// Forget asks the server listening on path to drop what it keeps in
// memory of the account number, which was deleted or released in the
// store. When no server runs it returns an error that matches
// errors.Is(err, ErrNoServer): then there is nothing to drop.
func Forget(ctx context.Context, path, number string) error {
	_, err := call(ctx, path, request{Op: opForget, Number: number})
	return err
}

func call(ctx context.Context, path string, req request) (response, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, clientTimeout)
		defer cancel()
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return response{}, fmt.Errorf("admin: %w on %s", ErrNoServer, path)
		}
		return response{}, fmt.Errorf("admin: %w", err)
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	b, err := json.Marshal(req)
	if err != nil {
		return response{}, fmt.Errorf("admin: %w", err)
	}
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return response{}, fmt.Errorf("admin: send request: %w", ctxErr(ctx, err))
	}
	line, err := readLine(bufio.NewReaderSize(conn, 4096))
	if err != nil {
		return response{}, fmt.Errorf("admin: read answer: %w", ctxErr(ctx, err))
	}
	var resp response
	if err := json.Unmarshal(line, &resp); err != nil {
		return response{}, fmt.Errorf("admin: malformed answer: %w", err)
	}
	if resp.Error != "" {
		return response{}, fmt.Errorf("admin: server: %s", resp.Error)
	}
	return resp, nil
}

// ctxErr prefers the context's error, which says why a read was cut short.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	// The connection deadline is the context's; it may fire first.
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return context.DeadlineExceeded
	}
	return err
}
