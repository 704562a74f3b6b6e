package storage

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"dialtone/auth"
)

// loginStamps is the group commit of RecordLogin: every login writes its
// stamp, and one transaction (one fsync) per stamp serialised concurrent
// logins behind each other's commits on SQLite's one write lock. One
// writer takes every stamp waiting and commits them together; each
// caller still returns only once its stamp is committed (the first login
// of an account makes it active, which must not be lost).
type loginStamps struct {
	once sync.Once
	ch   chan *stampJob
	quit chan struct{}
	done chan struct{}
	stop sync.Once
}

type stampJob struct {
	n    string
	t    time.Time
	err  error
	done chan struct{}
}

// maxStamps bounds the stamps of one transaction.
const maxStamps = 256

var errStoreClosed = errors.New("storage: closed")

func (s *loginStamps) start(b backend) {
	s.once.Do(func() {
		s.ch = make(chan *stampJob, maxStamps)
		s.quit = make(chan struct{})
		s.done = make(chan struct{})
		go s.run(b)
	})
}

// close stops the writer after it wrote what was queued.
func (s *loginStamps) close() {
	s.once.Do(func() { // never started: a record after close finds it closed
		s.quit, s.done = make(chan struct{}), make(chan struct{})
		close(s.done)
	})
	s.stop.Do(func() {
		close(s.quit)
		<-s.done
	})
}

func (s *loginStamps) run(b backend) {
	defer close(s.done)
	batch := make([]*stampJob, 0, maxStamps)
	for {
		select {
		case j := <-s.ch:
			batch = append(batch[:0], j)
		case <-s.quit:
			for {
				select {
				case j := <-s.ch:
					s.write(b, []*stampJob{j})
				default:
					return
				}
			}
		}
	fill:
		for len(batch) < maxStamps {
			select {
			case j := <-s.ch:
				batch = append(batch, j)
			default:
				break fill
			}
		}
		s.write(b, batch)
	}
}

// write commits batch in one transaction and tells each caller.
func (s *loginStamps) write(b backend, batch []*stampJob) {
	ctx, cancel := context.WithTimeout(context.Background(), defaultBusyTimeout)
	defer cancel()
	err := b.inTx(ctx, func(q querier) error {
		for _, j := range batch {
			changed, err := q.exec(ctx, `UPDATE accounts SET state = ?, last_login = ? WHERE number = ?`,
				string(auth.StateActive), j.t, j.n)
			if err != nil {
				return err
			}
			if changed == 0 {
				j.err = auth.ErrNotFound
			}
		}
		return nil
	})
	for _, j := range batch {
		if err != nil {
			j.err = err
		}
		close(j.done)
	}
}

// record queues a stamp and waits for its commit (or ctx).
func (s *loginStamps) record(ctx context.Context, b backend, n string, t time.Time) error {
	s.start(b)
	j := &stampJob{n: n, t: t, done: make(chan struct{})}
	select {
	case s.ch <- j:
	case <-s.quit:
		return errStoreClosed
	case <-ctx.Done():
		return fmt.Errorf("waiting to write: %w", ctx.Err())
	}
	select {
	case <-j.done:
		return j.err
	case <-ctx.Done():
		return fmt.Errorf("waiting for the commit: %w", ctx.Err())
	}
}
