package muc

// Affiliation is a user's long-lived standing in a room (XEP-0045 §5.2),
// ordered so that a higher one has every privilege of a lower one
// (outcast below none).
type Affiliation int8

// Affiliations.
const (
	Outcast Affiliation = iota - 1
	NoAffiliation
	Member
	Admin
	Owner
)

var affNames = map[Affiliation]string{Outcast: "outcast", NoAffiliation: "none", Member: "member", Admin: "admin", Owner: "owner"}

// String is the affiliation's name in the protocol.
func (a Affiliation) String() string { return affNames[a] }

// ParseAffiliation reads an affiliation name; ok is false for an unknown one.
func ParseAffiliation(s string) (Affiliation, bool) {
	for a, n := range affNames {
		if n == s {
			return a, true
		}
	}
	return NoAffiliation, false
}

// Role is an occupant's standing while in the room (XEP-0045 §5.1).
type Role int8

// Roles, ordered by privilege.
const (
	NoRole Role = iota
	Visitor
	Participant
	Moderator
)

var roleNames = map[Role]string{NoRole: "none", Visitor: "visitor", Participant: "participant", Moderator: "moderator"}

// String is the role's name in the protocol.
func (r Role) String() string { return roleNames[r] }

// ParseRole reads a role name; ok is false for an unknown one.
func ParseRole(s string) (Role, bool) {
	for r, n := range roleNames {
		if n == s {
			return r, true
		}
	}
	return NoRole, false
}

// DefaultRole is the role an occupant of affiliation a gets on entering
// (XEP-0045 §5.1.2): owners and admins moderate; in a moderated room
// those without affiliation only listen.
func DefaultRole(a Affiliation, moderated bool) Role {
	switch {
	case a >= Admin:
		return Moderator
	case a == Outcast:
		return NoRole
	case moderated && a == NoAffiliation:
		return Visitor
	}
	return Participant
}

// CanEnter reports whether a user of affiliation a may enter a room
// (XEP-0045 §5.2.1: outcasts never, members-only rooms members and up).
func CanEnter(a Affiliation, membersOnly bool) bool {
	if a == Outcast {
		return false
	}
	return !membersOnly || a >= Member
}

// CanSpeak reports whether an occupant of role r may send messages to all
// occupants (XEP-0045 §5.1.1: visitors may not).
func CanSpeak(r Role) bool { return r >= Participant }

// CanChangeSubject: moderators always, participants when the room lets
// them (muc#roomconfig_changesubject).
func CanChangeSubject(r Role, participantsMay bool) bool {
	return r == Moderator || participantsMay && r == Participant
}

// CanInvite: an occupant or member may invite when the room allows
// invitations; admins and owners always (XEP-0045 §7.8: in a members-only
// room only they, unless muc#roomconfig_allowinvites).
func CanInvite(a Affiliation, allowInvites bool) bool {
	if a == Outcast {
		return false
	}
	return a >= Admin || allowInvites
}

// Actor is who asks for a change: their affiliation and role.
type Actor struct {
	Aff  Affiliation
	Role Role
}

// CanSetRole reports whether actor may change the role of an occupant
// whose affiliation and role are targetAff, targetRole to newRole
// (XEP-0045 §8.2–8.6, §9.6–9.7): moderators kick and grant or revoke
// voice, admins and owners grant and revoke moderation; nobody changes the
// role of an admin or owner, and a moderator that is not an admin cannot
// touch another moderator.
func CanSetRole(actor Actor, targetAff Affiliation, targetRole, newRole Role) bool {
	if actor.Role != Moderator || targetAff >= Admin {
		return false
	}
	if newRole == Moderator || targetRole == Moderator {
		return actor.Aff >= Admin
	}
	return true // kick, voice, revoke voice of participants and visitors
}

// CanSetAffiliation reports whether actor may change a user's affiliation
// from target to next (XEP-0045 §9, §10): owners change anything; admins
// ban, and edit the member list, for users that are neither admins nor
// owners.
func CanSetAffiliation(actor Affiliation, target, next Affiliation) bool {
	switch actor {
	case Owner:
		return true
	case Admin:
		return target < Admin && next < Admin
	}
	return false
}

// CanConfigure: only owners configure and destroy a room (§10.2, §10.9).
func CanConfigure(a Affiliation) bool { return a == Owner }

// CanListAffiliation reports whether actor may read the list of users with
// affiliation list (§9.5, §10.5): admins the members and outcasts (and the
// admins and owners), owners all; members the members of a members-only
// room.
func CanListAffiliation(actor Affiliation, list Affiliation, membersOnly bool) bool {
	if actor >= Admin {
		return true
	}
	return actor == Member && membersOnly && list == Member
}
