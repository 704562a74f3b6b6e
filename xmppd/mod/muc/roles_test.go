package muc

import "testing"

// The privileges of roles and affiliations, from XEP-0045 §5.1.1 and
// §5.2.1 (tables 3 and 5) and the rules of §8–§10.
func TestRolePrivileges(t *testing.T) {
	for _, tc := range []struct {
		role                  Role
		speak, subject, subjP bool // subjP: with muc#roomconfig_changesubject
	}{
		{NoRole, false, false, false},
		{Visitor, false, false, false},
		{Participant, true, false, true},
		{Moderator, true, true, true},
	} {
		if got := CanSpeak(tc.role); got != tc.speak {
			t.Errorf("CanSpeak(%s) = %v", tc.role, got)
		}
		if got := CanChangeSubject(tc.role, false); got != tc.subject {
			t.Errorf("CanChangeSubject(%s, false) = %v", tc.role, got)
		}
		if got := CanChangeSubject(tc.role, true); got != tc.subjP {
			t.Errorf("CanChangeSubject(%s, true) = %v", tc.role, got)
		}
	}
}

func TestAffiliationPrivileges(t *testing.T) {
	for _, tc := range []struct {
		aff                              Affiliation
		enterOpen, enterMembers          bool
		configure                        bool
		defaultRole, defaultModeratedRol Role
		listMembers, listOwners          bool // in a members-only room
		inviteClosed                     bool // allowinvites off
	}{
		{Outcast, false, false, false, NoRole, NoRole, false, false, false},
		{NoAffiliation, true, false, false, Participant, Visitor, false, false, false},
		{Member, true, true, false, Participant, Participant, true, false, false},
		{Admin, true, true, false, Moderator, Moderator, true, true, true},
		{Owner, true, true, true, Moderator, Moderator, true, true, true},
	} {
		name := tc.aff.String()
		if got := CanEnter(tc.aff, false); got != tc.enterOpen {
			t.Errorf("%s: CanEnter(open) = %v", name, got)
		}
		if got := CanEnter(tc.aff, true); got != tc.enterMembers {
			t.Errorf("%s: CanEnter(members-only) = %v", name, got)
		}
		if got := CanConfigure(tc.aff); got != tc.configure {
			t.Errorf("%s: CanConfigure = %v", name, got)
		}
		if got := DefaultRole(tc.aff, false); got != tc.defaultRole {
			t.Errorf("%s: DefaultRole = %s", name, got)
		}
		if got := DefaultRole(tc.aff, true); got != tc.defaultModeratedRol {
			t.Errorf("%s: DefaultRole(moderated) = %s", name, got)
		}
		if got := CanListAffiliation(tc.aff, Member, true); got != tc.listMembers {
			t.Errorf("%s: list members = %v", name, got)
		}
		if got := CanListAffiliation(tc.aff, Owner, true); got != tc.listOwners {
			t.Errorf("%s: list owners = %v", name, got)
		}
		if got := CanInvite(tc.aff, false); got != tc.inviteClosed {
			t.Errorf("%s: CanInvite(closed) = %v", name, got)
		}
		if got := CanInvite(tc.aff, true); got != (tc.aff != Outcast) {
			t.Errorf("%s: CanInvite(open) = %v", name, got)
		}
	}
}

func TestCanSetRole(t *testing.T) {
	mod := func(a Affiliation) Actor { return Actor{Aff: a, Role: Moderator} }
	for _, tc := range []struct {
		name       string
		actor      Actor
		targetAff  Affiliation
		targetRole Role
		newRole    Role
		want       bool
	}{
		{"participant cannot kick", Actor{NoAffiliation, Participant}, NoAffiliation, Participant, NoRole, false},
		{"moderator kicks participant", mod(NoAffiliation), NoAffiliation, Participant, NoRole, true},
		{"moderator kicks member", mod(Member), Member, Participant, NoRole, true},
		{"moderator kicks visitor", mod(NoAffiliation), NoAffiliation, Visitor, NoRole, true},
		{"nobody kicks an admin", mod(Owner), Admin, Moderator, NoRole, false},
		{"nobody kicks an owner", mod(Owner), Owner, Moderator, NoRole, false},
		{"moderator grants voice", mod(NoAffiliation), NoAffiliation, Visitor, Participant, true},
		{"moderator revokes voice", mod(NoAffiliation), Member, Participant, Visitor, true},
		{"no revoking an admin's voice", mod(Owner), Admin, Moderator, Visitor, false},
		{"plain moderator cannot grant moderation", mod(Member), Member, Participant, Moderator, false},
		{"admin grants moderation", mod(Admin), Member, Participant, Moderator, true},
		{"owner revokes moderation", mod(Owner), NoAffiliation, Moderator, Participant, true},
		{"plain moderator cannot kick a moderator", mod(NoAffiliation), NoAffiliation, Moderator, NoRole, false},
		{"admin kicks a moderator without affiliation", mod(Admin), NoAffiliation, Moderator, NoRole, true},
		{"visitor cannot grant voice", Actor{NoAffiliation, Visitor}, NoAffiliation, Visitor, Participant, false},
	} {
		if got := CanSetRole(tc.actor, tc.targetAff, tc.targetRole, tc.newRole); got != tc.want {
			t.Errorf("%s: got %v", tc.name, got)
		}
	}
}

func TestCanSetAffiliation(t *testing.T) {
	all := []Affiliation{Outcast, NoAffiliation, Member, Admin, Owner}
	for _, actor := range all {
		for _, target := range all {
			for _, next := range all {
				want := false
				switch actor {
				case Owner:
					want = true
				case Admin:
					// §9: admins ban and edit the member list of users below admin.
					want = target <= Member && next <= Member
				}
				if got := CanSetAffiliation(actor, target, next); got != want {
					t.Errorf("%s sets %s → %s: got %v, want %v", actor, target, next, got, want)
				}
			}
		}
	}
}
