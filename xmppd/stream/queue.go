package stream

import "sync"

// outQueue is a stream's bounded write queue. It holds no memory while
// the session is idle (a channel of QueueSize slots would cost every idle
// session tens of KiB), and no goroutine either: a writer goroutine runs
// only while there is something to write, and takes everything queued in
// one swap. Its stack was, with the reader's, most of an idle session's
// memory.
type outQueue struct {
	mu        sync.Mutex
	items     [][]byte
	spare     [][]byte
	max       int
	bytes     int // queued and not yet written, those being written included
	closed    bool
	ready     bool   // writers may run (after the bind result was written)
	writing   bool   // a writer goroutine is running or about to
	killed    bool   // the session is closing
	finishing bool   // the final writer was started
	write     func() // starts a writer goroutine
	finish    func() // starts the final writer
}

// push adds b; false when the queue is full (max elements, or maxBytes)
// or closed. m learns the most bytes held. (Both are arguments, not
// fields, to keep idle sessions small.)
func (q *outQueue) push(b []byte, maxBytes int, m *Metrics) (ok, full bool) {
	q.mu.Lock()
	switch {
	case q.closed:
		q.mu.Unlock()
		return false, false
	case len(q.items) >= q.max, q.bytes >= maxBytes:
		// Bytes are checked before adding: a queue holds at most
		// maxBytes plus one stanza.
		q.mu.Unlock()
		return false, true
	}
	q.items = append(q.items, b)
	q.bytes += len(b)
	m.notePeak(int64(q.bytes))
	start := q.ready && !q.writing && !q.killed
	if start {
		q.writing = true
	}
	q.mu.Unlock()
	if start {
		q.write()
	}
	return true, false
}

// open lets writers run from now on, starting them for anything queued
// meanwhile (and the final writer if the session was closed meanwhile).
func (q *outQueue) open(write, finish func()) {
	q.mu.Lock()
	q.ready, q.write, q.finish = true, write, finish
	startWrite := len(q.items) > 0 && !q.writing && !q.killed
	if startWrite {
		q.writing = true
	}
	startFinish := q.killed && !q.finishing
	if startFinish {
		q.finishing = true
	}
	q.mu.Unlock()
	if startWrite {
		write()
	}
	if startFinish {
		finish()
	}
}

// kill marks the session closing and starts the final writer once writers
// may run.
func (q *outQueue) kill() {
	q.mu.Lock()
	q.killed = true
	start := q.ready && !q.finishing
	if start {
		q.finishing = true
	}
	finish := q.finish
	q.mu.Unlock()
	if start {
		finish()
	}
}

// take returns everything queued (owned by the caller until the next
// take); nil when there is nothing, and then the calling writer must end.
func (q *outQueue) take() [][]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 || q.killed {
		q.writing = false
		return nil
	}
	items := q.items
	q.items = q.spare[:0]
	q.spare = nil
	return items
}

// wrote takes n written bytes off the count.
func (q *outQueue) wrote(n int) {
	q.mu.Lock()
	q.bytes -= n
	q.mu.Unlock()
}

// give hands a slice back for reuse; big ones are dropped, so a burst
// does not pin memory.
func (q *outQueue) give(items [][]byte) {
	if cap(items) > 256 {
		return
	}
	clear(items)
	q.mu.Lock()
	if q.spare == nil {
		q.spare = items[:0]
	}
	q.mu.Unlock()
}

// close refuses further items and returns what was still queued.
func (q *outQueue) close() [][]byte {
	q.mu.Lock()
	q.closed = true
	items := q.items
	q.items = nil
	q.mu.Unlock()
	return items
}
