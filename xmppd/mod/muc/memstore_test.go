package muc_test

import (
	"context"
	"errors"
	"slices"
	"sync"

	"dialtone/groups"
)

// memStore is an in-memory groups.Store for the module's tests (the SQL
// stores pass the same contract in storage/storetest).
type memStore struct {
	mu      sync.Mutex
	rooms   map[string]groups.Room
	affs    map[[2]string]groups.Affiliation
	archive []groups.Message
	invites []groups.Invitation
	// failArchive makes that many AppendMUCArchive calls fail (a store
	// that is down).
	failArchive int
}

func newMemStore() *memStore {
	return &memStore{rooms: map[string]groups.Room{}, affs: map[[2]string]groups.Affiliation{}}
}

func (s *memStore) MUCRooms(context.Context) ([]groups.Room, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []groups.Room
	for _, r := range s.rooms {
		out = append(out, r)
	}
	return out, nil
}

func (s *memStore) PutMUCRoom(_ context.Context, r groups.Room) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rooms[r.JID] = r
	return nil
}

func (s *memStore) DeleteMUCRoom(_ context.Context, room string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.rooms, room)
	for k := range s.affs {
		if k[0] == room {
			delete(s.affs, k)
		}
	}
	s.archive = slices.DeleteFunc(s.archive, func(m groups.Message) bool { return m.Room == room })
	return nil
}

func (s *memStore) MUCAffiliations(context.Context) ([]groups.Affiliation, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []groups.Affiliation
	for _, a := range s.affs {
		out = append(out, a)
	}
	return out, nil
}

func (s *memStore) SetMUCAffiliation(_ context.Context, a groups.Affiliation) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a.Affiliation == "" || a.Affiliation == "none" {
		delete(s.affs, [2]string{a.Room, a.JID})
	} else {
		s.affs[[2]string{a.Room, a.JID}] = a
	}
	return nil
}

func (s *memStore) AppendMUCArchive(_ context.Context, msgs []groups.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failArchive > 0 {
		s.failArchive--
		return errors.New("store down")
	}
	s.archive = append(s.archive, msgs...)
	return nil
}

func (s *memStore) MUCArchive(_ context.Context, room string, q groups.Query) ([]groups.Message, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Paging ids are positions in the room's archive, found whether or
	// not the filters select them (as in the SQL stores).
	var inRoom []groups.Message
	for _, m := range s.archive {
		if m.Room == room {
			inRoom = append(inRoom, m)
		}
	}
	idx := func(id string) int {
		return slices.IndexFunc(inRoom, func(m groups.Message) bool { return m.ID == id })
	}
	lo, hi := 0, len(inRoom)
	if q.AfterID != "" {
		i := idx(q.AfterID)
		if i < 0 {
			return nil, false, groups.ErrUnknownID
		}
		lo = i + 1
	}
	if q.BeforeID != "" {
		i := idx(q.BeforeID)
		if i < 0 {
			return nil, false, groups.ErrUnknownID
		}
		hi = i
	}
	var all []groups.Message
	for _, m := range inRoom[lo:max(lo, hi)] {
		if (q.Start.IsZero() || !m.Stamp.Before(q.Start)) && (q.End.IsZero() || !m.Stamp.After(q.End)) &&
			(q.Nick == "" || m.Nick == q.Nick) && (q.Sender == "" || m.Sender == q.Sender) {
			all = append(all, m)
		}
	}
	if q.Max <= 0 || len(all) <= q.Max {
		return all, true, nil
	}
	if q.Last {
		return all[len(all)-q.Max:], false, nil
	}
	return all[:q.Max], false, nil
}

func (s *memStore) MUCInvitations(_ context.Context, invitee string) ([]groups.Invitation, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []groups.Invitation
	for _, inv := range s.invites {
		if inv.Invitee == invitee {
			out = append(out, inv)
		}
	}
	return out, nil
}

func (s *memStore) DeleteMUCInvitations(_ context.Context, invitee string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.invites = slices.DeleteFunc(s.invites, func(inv groups.Invitation) bool { return inv.Invitee == invitee })
	return nil
}
