package sms

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"time"
)

// Hold is what a group of notices written in one transaction (the group
// commit of offline messages) holds until that transaction ends: the
// locks of their receivers and senders, so that nobody decides about them
// from what is not committed yet, and what to wake once it is. One
// goroutine uses it.
type Hold struct {
	n          *Notices
	held       [len(Notices{}.stripes)]bool
	any        bool
	wake, poke bool
}

// ErrWouldWait is returned by Hold.Take without wait when a lock is held
// elsewhere: the group should commit what it has, then wait for it.
var ErrWouldWait = errors.New("sms: a notice lock is held elsewhere")

// Hold returns an empty hold.
func (n *Notices) Hold() *Hold {
	n.init()
	return &Hold{n: n}
}

// Take takes the locks a notice to to, from the sender counted as counter,
// needs and h does not hold yet. Without wait it takes none and returns
// ErrWouldWait when one is held elsewhere; with wait it waits for them
// (until ctx ends), which is allowed only on an empty h: the locks of one
// waiter are taken in order, and a group's are not.
func (h *Hold) Take(ctx context.Context, to, counter string, wait bool) error {
	var idx [2]int
	k := 0
	for _, key := range []string{"to " + to, "from " + counter} {
		if key == "from " {
			continue
		}
		i := int(maphash.String(h.n.seed, key) % uint64(len(h.n.stripes)))
		if !h.held[i] && (k == 0 || idx[0] != i) {
			idx[k] = i
			k++
		}
	}
	if k == 2 && idx[0] > idx[1] {
		idx[0], idx[1] = idx[1], idx[0]
	}
	if wait && h.any {
		return errors.New("sms: Hold.Take waiting on a hold that is not empty")
	}
	for j, i := range idx[:k] {
		if wait {
			select {
			case h.n.stripes[i] <- struct{}{}:
			case <-ctx.Done():
				h.undo(idx[:j])
				return fmt.Errorf("sms: waiting for another notice to the same receiver or from the same sender: %w", ctx.Err())
			}
		} else {
			select {
			case h.n.stripes[i] <- struct{}{}:
			default:
				h.undo(idx[:j])
				return ErrWouldWait
			}
		}
	}
	for _, i := range idx[:k] {
		h.held[i], h.any = true, true
	}
	return nil
}

func (h *Hold) undo(idx []int) {
	for _, i := range idx {
		<-h.n.stripes[i]
	}
}

// Notify is Notices.Notify for a message whose locks h holds (Take),
// reading and writing through store, and storing login links in links
// (nil: none), which are the group's transaction: the decisions of the
// group's earlier messages count for this one before they are committed.
// What it queues is woken up by Release.
func (h *Hold) Notify(ctx context.Context, store NoticeStore, links LoginLinkStore, in Incoming, write NoticeWrite) (NoticeResult, error) {
	v := storeView{Notices: h.n, Store: store}
	if h.n.Links != nil {
		l := *h.n.Links
		l.Store = links
		v.Links = &l
	}
	res, wake, poke, err := h.n.planAndWrite(ctx, func(now time.Time) (NoticePlan, NoticeResult, error) {
		return v.plan(ctx, in, now)
	}, write)
	h.wake, h.poke = h.wake || wake, h.poke || poke
	return res, err
}

// Release, once the group's transaction ended, lets its locks go and
// wakes what its notices need (only a committed group has any: call
// Forget after a rollback). h is empty again.
func (h *Hold) Release() {
	for i, held := range h.held {
		if held {
			<-h.n.stripes[i]
		}
	}
	h.n.kick(h.wake, h.poke)
	*h = Hold{n: h.n}
}

// Forget drops what h would wake: its group was rolled back.
func (h *Hold) Forget() { h.wake, h.poke = false, false }
