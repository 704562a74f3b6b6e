package stream

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Accept accepts connections on l until it is closed, and hands each to
// handle (on Accept's goroutine: handle starts the connection's own).
// Temporary trouble (out of file descriptors) is waited out with a
// back-off, never spun on. It returns net.ErrClosed once l is closed or
// closing reports true.
func Accept(l net.Listener, log *slog.Logger, name string, closing func() bool, handle func(net.Conn)) error {
	var delay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if closing() || errors.Is(err, net.ErrClosed) {
				return net.ErrClosed
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			log.Warn("accept failed", "listener", name, "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		handle(nc)
	}
}

// RemoteIP is the peer's address of c, without the port.
func RemoteIP(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return host
}

// Wait waits for wg, or for ctx to end first.
func Wait(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
