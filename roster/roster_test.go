package roster

import "testing"

// The nine states of RFC 6121 Appendix A, written as in its tables.
var appendixStates = map[string]Item{
	"None":                  {Subscription: SubNone},
	"None + Pending Out":    {Subscription: SubNone, PendingOut: true},
	"None + Pending In":     {Subscription: SubNone, PendingIn: true},
	"None + Pending Out+In": {Subscription: SubNone, PendingOut: true, PendingIn: true},
	"To":                    {Subscription: SubTo},
	"To + Pending In":       {Subscription: SubTo, PendingIn: true},
	"From":                  {Subscription: SubFrom},
	"From + Pending Out":    {Subscription: SubFrom, PendingOut: true},
	"Both":                  {Subscription: SubBoth},
}

// TestAppendixA checks every row of the eight tables of RFC 6121 Appendix
// A ("" = no state change).
func TestAppendixA(t *testing.T) {
	tables := []struct {
		name string
		fn   func(Item) Item
		rows map[string]string
	}{
		{"A.2.1 outbound subscribe", OutSubscribe, map[string]string{
			"None": "None + Pending Out", "None + Pending Out": "", "None + Pending In": "None + Pending Out+In",
			"None + Pending Out+In": "", "To": "", "To + Pending In": "", "From": "From + Pending Out",
			"From + Pending Out": "", "Both": "",
		}},
		{"A.2.2 outbound unsubscribe", OutUnsubscribe, map[string]string{
			"None": "", "None + Pending Out": "None", "None + Pending In": "", "None + Pending Out+In": "None + Pending In",
			"To": "None", "To + Pending In": "None + Pending In", "From": "", "From + Pending Out": "From", "Both": "From",
		}},
		{"A.2.3 outbound subscribed", OutSubscribed, map[string]string{
			"None": "", "None + Pending Out": "", "None + Pending In": "From", "None + Pending Out+In": "From + Pending Out",
			"To": "", "To + Pending In": "Both", "From": "", "From + Pending Out": "", "Both": "",
		}},
		{"A.2.4 outbound unsubscribed", OutUnsubscribed, map[string]string{
			"None": "", "None + Pending Out": "", "None + Pending In": "None", "None + Pending Out+In": "None + Pending Out",
			"To": "", "To + Pending In": "To", "From": "None", "From + Pending Out": "None + Pending Out", "Both": "To",
		}},
		{"A.3.1 inbound subscribe", InSubscribe, map[string]string{
			"None": "None + Pending In", "None + Pending Out": "None + Pending Out+In", "None + Pending In": "",
			"None + Pending Out+In": "", "To": "To + Pending In", "To + Pending In": "", "From": "",
			"From + Pending Out": "", "Both": "",
		}},
		{"A.3.2 inbound unsubscribe", InUnsubscribe, map[string]string{
			"None": "", "None + Pending Out": "", "None + Pending In": "None", "None + Pending Out+In": "None + Pending Out",
			"To": "", "To + Pending In": "To", "From": "None", "From + Pending Out": "None + Pending Out", "Both": "To",
		}},
		{"A.3.3 inbound subscribed", InSubscribed, map[string]string{
			"None": "", "None + Pending Out": "To", "None + Pending In": "", "None + Pending Out+In": "To + Pending In",
			"To": "", "To + Pending In": "", "From": "", "From + Pending Out": "Both", "Both": "",
		}},
		{"A.3.4 inbound unsubscribed", InUnsubscribed, map[string]string{
			"None": "", "None + Pending Out": "None", "None + Pending In": "", "None + Pending Out+In": "None + Pending In",
			"To": "None", "To + Pending In": "None + Pending In", "From": "", "From + Pending Out": "From", "Both": "From",
		}},
	}
	for _, tb := range tables {
		if len(tb.rows) != len(appendixStates) {
			t.Fatalf("%s: %d rows", tb.name, len(tb.rows))
		}
		for from, to := range tb.rows {
			if to == "" {
				to = from
			}
			got := tb.fn(appendixStates[from])
			if !SameState(got, appendixStates[to]) {
				t.Errorf("%s: %s -> %+v, want %s", tb.name, from, got, to)
			}
		}
	}
}

// The predicates read the states as the tables name them.
func TestPredicates(t *testing.T) {
	for name, it := range appendixStates {
		from := name == "From" || name == "From + Pending Out" || name == "Both"
		to := name == "To" || name == "To + Pending In" || name == "Both"
		if HasFrom(it) != from || HasTo(it) != to || Empty(it) != (name == "None") {
			t.Errorf("%s: HasFrom %v HasTo %v Empty %v", name, HasFrom(it), HasTo(it), Empty(it))
		}
	}
	if Empty(Item{Subscription: SubNone, Approved: true}) {
		t.Error("a pre-approval is state")
	}
	hidden := Item{Contact: "a@b", Subscription: SubNone, PendingIn: true}
	if !SameView(hidden, Item{Contact: "a@b", Subscription: SubNone}) || SameState(hidden, Item{Contact: "a@b", Subscription: SubNone}) {
		t.Error("a request from someone not in the roster is stored state that clients do not see")
	}
	shown := Item{Contact: "a@b", Subscription: SubBoth, InRoster: true, Groups: []string{"x"}}
	if SameView(shown, Item{Contact: "a@b", Subscription: SubBoth, InRoster: true, Groups: []string{"y"}}) {
		t.Error("groups are seen")
	}
}
