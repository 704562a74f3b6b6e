package account

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"dialtone/offline"
	"dialtone/sms"
)

// TxStore is the store a group of messages is kept through: one
// transaction of it (storage.DB.InTx gives one).
type TxStore interface {
	OfflineStore
	sms.NoticeStore
	sms.LoginLinkStore
}

// ErrGroupClosed is what a message handed to a Group that stopped gets.
var ErrGroupClosed = errors.New("account: the offline store is shutting down")

// Group keeps messages for offline receivers as Offline.Keep does, many
// in one transaction: one writer takes every message waiting (up to Max),
// plans each one's notice in that transaction (so the decisions of the
// messages before it in the group count, uncommitted) and stores it in a
// savepoint of its own (a refusal undoes only it), commits once, and only
// then tells each sender. A sender does not wait for the commit (Keep
// returns at once), so one session's messages go in one group. Set the
// fields, then Run it.
type Group struct {
	Offline *Offline
	// Notices holds the locks of the group's receivers and senders until
	// the commit (Offline.Notices must be the same).
	Notices *sms.Notices
	// InTx runs fn in one transaction of the store, committed when fn
	// returns nil.
	InTx func(ctx context.Context, fn func(tx TxStore) error) error
	// Max is the most messages of one transaction; 0: 512.
	Max int
	// Queue bounds the messages waiting for the writer; a sender past it
	// waits. 0: 8192.
	Queue int

	once    sync.Once
	ch      chan *keepJob
	mu      sync.RWMutex // held shared while a job is queued; Run takes it to stop
	closed  atomic.Bool
	stopped chan struct{}
	// Commits and Stored count the transactions committed and the messages
	// in them (for the benchmark and the metrics).
	Commits, Stored atomic.Int64
}

type keepJob struct {
	m        Message
	limit    int
	deadline time.Time
	done     func(Kept, error)
}

func (g *Group) init() {
	g.once.Do(func() {
		q := g.Queue
		if q <= 0 {
			q = 8192
		}
		g.ch = make(chan *keepJob, q)
		g.stopped = make(chan struct{})
	})
}

// Keep queues m for the next group and returns; done is called once, on
// the writer, with what keeping it did: after the commit, or with the
// error that kept it from being stored (the sender must be told). The
// message has StoreTimeout from now to be committed; the sender's session
// ending does not cancel it. Keep waits only while the queue is full
// (until ctx ends).
func (g *Group) Keep(ctx context.Context, m Message, limit int, done func(Kept, error)) {
	g.init()
	timeout := g.Offline.StoreTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	j := &keepJob{m: m, limit: limit, deadline: time.Now().Add(timeout), done: done}
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.closed.Load() {
		done(Kept{}, ErrGroupClosed)
		return
	}
	select {
	case g.ch <- j:
	case <-g.stopped:
		done(Kept{}, ErrGroupClosed)
	case <-ctx.Done():
		done(Kept{}, fmt.Errorf("account: waiting to store a message for %s: %w", m.Owner, ctx.Err()))
	}
}

// Run writes the groups until ctx ends, then what was queued before that
// (each under its own deadline), and returns.
func (g *Group) Run(ctx context.Context) {
	g.init()
	max := g.Max
	if max <= 0 {
		max = 512
	}
	var pending []*keepJob
	for {
		if len(pending) == 0 {
			select {
			case j := <-g.ch:
				pending = append(pending, j)
			case <-ctx.Done():
				g.stop()
				return
			}
		}
	fill:
		for len(pending) < max {
			select {
			case j := <-g.ch:
				pending = append(pending, j)
			default:
				break fill
			}
		}
		n := g.write(context.WithoutCancel(ctx), pending)
		pending = append(pending[:0], pending[n:]...)
	}
}

// stop refuses new messages and writes those queued.
func (g *Group) stop() {
	g.closed.Store(true)
	close(g.stopped)
	g.mu.Lock() // every Keep under way has queued its message or given up
	defer g.mu.Unlock()
	var pending []*keepJob
	for {
		select {
		case j := <-g.ch:
			pending = append(pending, j)
			continue
		default:
		}
		break
	}
	for len(pending) > 0 {
		pending = pending[g.write(context.Background(), pending):]
	}
}

// result is what keeping one message of a group did.
type result struct {
	kept Kept
	err  error
}

// write keeps a prefix of jobs in one transaction and reports how many:
// all of them, unless a later one's receiver or sender is locked by
// someone else (that one then waits, out of any transaction, for the next).
func (g *Group) write(ctx context.Context, jobs []*keepJob) int {
	hold := g.Notices.Hold()
	first := jobs[0]
	in, _ := g.Offline.incoming(first.m)
	wctx, cancel := context.WithDeadline(ctx, first.deadline)
	err := hold.Take(wctx, string(in.To), in.Counter, true)
	cancel()
	if err != nil {
		first.done(Kept{}, fmt.Errorf("account: keeping a message for %s: %w", first.m.Owner, err))
		return 1
	}
	var last time.Time // the group's deadline: the latest of its messages'
	for _, j := range jobs {
		if j.deadline.After(last) {
			last = j.deadline
		}
	}
	gctx, cancel := context.WithDeadline(ctx, last)
	defer cancel()
	res := make([]result, 0, len(jobs))
	err = g.InTx(gctx, func(tx TxStore) error {
		for i, j := range jobs {
			in, s := g.Offline.incoming(j.m)
			if i > 0 && hold.Take(gctx, string(in.To), in.Counter, false) != nil {
				break // commit these, then wait for that lock
			}
			if time.Now().After(j.deadline) {
				res = append(res, result{err: fmt.Errorf("account: keeping a message for %s: %w", j.m.Owner, context.DeadlineExceeded)})
				continue
			}
			var id int64
			limits := offline.Limits{Messages: j.limit, Bytes: g.Offline.Bytes}
			nr, err := hold.Notify(gctx, tx, tx, in, func(ctx context.Context, plan sms.NoticePlan) (err error) {
				id, err = tx.StoreOffline(ctx, j.m.Message, limits, plan)
				return err
			})
			kept, err := g.Offline.outcome(j.m, s, nr, err)
			kept.ID = id
			res = append(res, result{kept, err})
		}
		return nil
	})
	if err != nil {
		hold.Forget()
	}
	hold.Release()
	if err == nil {
		g.Commits.Add(1)
		g.Stored.Add(int64(len(res)))
	}
	for i, r := range res {
		if err != nil && r.err == nil {
			// nothing of the group is stored: each sender learns it
			r = result{err: fmt.Errorf("account: keeping a message for %s: %w", jobs[i].m.Owner, err)}
		}
		if r.err != nil {
			r.kept.ID = 0
		}
		jobs[i].done(r.kept, r.err)
	}
	if len(res) == 0 { // the transaction did not even start
		first.done(Kept{}, fmt.Errorf("account: keeping a message for %s: %w", first.m.Owner, err))
		return 1
	}
	return len(res)
}
