// Package groups holds the domain types of group chats (XEP-0045 rooms at
// groups.DOMAIN) as the store keeps them: rooms, affiliations, the room
// archive and the invitations kept for numbers that have not logged in
// yet. The protocol is package xmppd/mod/muc; the SQL is package storage.
package groups

import (
	"context"
	"time"
)

// Room is a persistent room as stored.
type Room struct {
	// JID is the room's bare JID (name@groups.DOMAIN).
	JID string
	// Config is the room's configuration, encoded by the module (JSON);
	// the store keeps it as it is.
	Config []byte
	// Subject and SubjectBy are the room's subject and the nick that set it.
	Subject, SubjectBy string
	// VCard is the room's vCard (vcard-temp, the avatar), empty when none.
	VCard []byte
	// Created is when the room was made.
	Created time.Time
}

// Affiliation is one user's standing in a room (XEP-0045 §5.2).
type Affiliation struct {
	Room string // the room's bare JID
	JID  string // the user's bare JID
	// Affiliation is owner, admin, member or outcast.
	Affiliation string
	// Nick is the nick the member reserved, Reason why (a ban's reason).
	Nick, Reason string
	// Owner is the number of a local JID (its account owns the row,
	// which goes with it), "" for a remote one.
	Owner string
}

// Message is one message of a room's archive.
type Message struct {
	Room string
	// ID is the message's stanza-id (XEP-0359) and archive id; unique.
	ID     string
	Stamp  time.Time
	Nick   string // the sender's nick
	Sender string // the sender's bare JID
	// Stanza is the message as the room sent it (from the occupant JID,
	// no 'to'), in jabber:client without a namespace declaration.
	Stanza []byte
}

// Query selects archived messages (XEP-0313 with XEP-0059 paging). The
// zero Query is every message, oldest first.
type Query struct {
	Start, End time.Time // inclusive bounds; zero: none
	// AfterID and BeforeID page: messages strictly after or before the
	// one with that id (an unknown id is an error: ErrUnknownID).
	AfterID, BeforeID string
	// Last asks for the newest page (RSM <before/> empty, or BeforeID).
	Last bool
	// Max bounds the page; <= 0: no bound.
	Max int
	// Nick and Sender filter by the sender (XEP-0313 'with' on a room:
	// an occupant JID gives the nick, a real bare JID the sender); "":
	// any.
	Nick, Sender string
}

// Invitation is an invitation to a room kept for a number until it logs
// in (SPEC.md "Group chats").
type Invitation struct {
	Invitee string // the invitee's canonical number
	Room    string // the room's bare JID
	Inviter string // the inviter's bare JID
	Reason  string
	// Password is the room's password, if it has one, for the invitation.
	Password string
	Stamp    time.Time
}

// Store is what the group chat module needs from the store.
type Store interface {
	// Rooms returns every stored (persistent) room.
	MUCRooms(ctx context.Context) ([]Room, error)
	// PutMUCRoom stores (replaces) a room.
	PutMUCRoom(ctx context.Context, r Room) error
	// DeleteMUCRoom removes a room with its affiliations and archive.
	DeleteMUCRoom(ctx context.Context, room string) error
	// MUCAffiliations returns the affiliations of every stored room.
	MUCAffiliations(ctx context.Context) ([]Affiliation, error)
	// SetMUCAffiliation stores a; an empty Affiliation (or "none")
	// removes the user's.
	SetMUCAffiliation(ctx context.Context, a Affiliation) error
	// AppendMUCArchive archives messages, in order, in one transaction.
	AppendMUCArchive(ctx context.Context, msgs []Message) error
	// MUCArchive returns the messages of room that q selects, oldest
	// first, and whether the page is the last one in its direction.
	MUCArchive(ctx context.Context, room string, q Query) (msgs []Message, complete bool, err error)
	// MUCInvitations returns the invitations kept for a number, oldest
	// first; DeleteMUCInvitations removes them once delivered.
	MUCInvitations(ctx context.Context, invitee string) ([]Invitation, error)
	DeleteMUCInvitations(ctx context.Context, invitee string) error
}

// ErrUnknownID is returned by MUCArchive for an AfterID or BeforeID that
// is not in the room's archive (XEP-0313: item-not-found).
var ErrUnknownID = errorString("groups: no archived message with that id")

type errorString string

func (e errorString) Error() string { return string(e) }
