package xmppd

import "testing"

func TestSupportedVersion(t *testing.T) {
	for v, want := range map[string]bool{"1.0": true, "2.0": true, "1.10": true, "01.0": true, "0.9": false, "": false, "1": false, "1.x": false, "-1.0": false, "99999999999999999999.0": true} {
		if supportedVersion(v) != want {
			t.Errorf("supportedVersion(%q) = %v", v, !want)
		}
	}
}
