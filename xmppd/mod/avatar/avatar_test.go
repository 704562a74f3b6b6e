package avatar

import "testing"

func TestFindUpdate(t *testing.T) {
	for _, tc := range []struct {
		inner      string
		start, end int
		photo      bool
	}{
		{"", -1, -1, false},
		{"<show>away</show>", -1, -1, false},
		{"<show>away</show><x xmlns='vcard-temp:x:update'/>", 17, 49, false},
		{"<x xmlns='vcard-temp:x:update'><photo/></x><c/>", 0, 43, true},
		{"<x xmlns='vcard-temp:x:update'><photo>ab</photo></x>", 0, 52, true},
		{"<x xmlns='urn:other'><photo/></x>", -1, -1, false},
		{"<y><x xmlns='vcard-temp:x:update'/></y>", -1, -1, false}, // not a child of the presence
		{"<x xmlns='vcard-temp:x:update'>", -1, -1, false},         // broken
	} {
		start, end, photo := findUpdate([]byte(tc.inner))
		if start != tc.start || end != tc.end || photo != tc.photo {
			t.Errorf("%s: %d %d %v, want %d %d %v", tc.inner, start, end, photo, tc.start, tc.end, tc.photo)
		}
	}
}
