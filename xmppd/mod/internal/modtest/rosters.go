package modtest

import (
	"context"
	"maps"
	"slices"
	"sync"

	"mellium.im/xmpp/jid"

	"dialtone/auth"
	"dialtone/roster"
)

// Rosters is an in-memory roster.Store that records its calls.
type Rosters struct {
	mu      sync.Mutex
	items   map[string]map[string]roster.Item
	version map[string]int64
	fail    error    // returned by every call when set (SetFail)
	calls   []string // "Method owner" of every call, in order
}

// NewRosters returns an empty store.
func NewRosters() *Rosters {
	return &Rosters{items: map[string]map[string]roster.Item{}, version: map[string]int64{}}
}

func cloneItem(it roster.Item) roster.Item {
	it.Groups = slices.Clone(it.Groups)
	return it
}

func (s *Rosters) Roster(ctx context.Context, owner string) ([]roster.Item, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "Roster "+owner)
	if s.fail != nil {
		return nil, 0, s.fail
	}
	var out []roster.Item
	for _, k := range slices.Sorted(maps.Keys(s.items[owner])) {
		out = append(out, cloneItem(s.items[owner][k]))
	}
	return out, s.version[owner], nil
}

func (s *Rosters) RosterItem(ctx context.Context, owner, contact string) (roster.Item, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "RosterItem "+owner)
	if s.fail != nil {
		return roster.Item{}, s.fail
	}
	it, ok := s.items[owner][contact]
	if !ok {
		return roster.Item{}, auth.ErrNotFound
	}
	return cloneItem(it), nil
}

func (s *Rosters) PutRosterItem(ctx context.Context, owner string, it roster.Item) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "write "+owner)
	if s.fail != nil {
		return 0, s.fail
	}
	if s.items[owner] == nil {
		s.items[owner] = map[string]roster.Item{}
	}
	s.items[owner][it.Contact] = cloneItem(it)
	s.version[owner]++
	return s.version[owner], nil
}

func (s *Rosters) DeleteRosterItem(ctx context.Context, owner, contact string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "write "+owner)
	if s.fail != nil {
		return 0, s.fail
	}
	if _, ok := s.items[owner][contact]; !ok {
		return s.version[owner], nil // like storage: nothing changes
	}
	delete(s.items[owner], contact)
	s.version[owner]++
	return s.version[owner], nil
}

func (s *Rosters) RosterCount(ctx context.Context, owner string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "RosterCount "+owner)
	if s.fail != nil {
		return 0, s.fail
	}
	return len(s.items[owner]), nil
}

// TakeCalls returns the calls recorded since the last TakeCalls.
func (s *Rosters) TakeCalls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.calls
	s.calls = nil
	return c
}

// Get returns a stored item and whether it exists.
func (s *Rosters) Get(owner, contact jid.JID) (roster.Item, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.items[owner.Localpart()][contact.String()]
	return it, ok
}

// Put seeds an item without going through a module.
func (s *Rosters) Put(owner jid.JID, it roster.Item) {
	if _, err := s.PutRosterItem(context.Background(), owner.Localpart(), it); err != nil {
		panic(err)
	}
}

// SetFail makes every call fail with err (nil: none).
func (s *Rosters) SetFail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = err
}
