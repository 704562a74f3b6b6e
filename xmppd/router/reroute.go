package router

import "context"

// reroutedKey marks the context of a stanza routed a second time.
type reroutedKey struct{}

// Rerouted returns ctx marked for a stanza that is routed again after it
// was routed once already and possibly delivered: a node of a cluster took
// it for a session and died (or lost the session) before it acknowledged
// it. The stanza is the one routed the first time, bytes unchanged; the
// hooks that act once per stanza (the archive, which gives it its
// stanza-id) leave it as it is, so that a second delivery is the same
// stanza (id, origin-id, stanza-id), which clients drop as a duplicate.
// Only the server marks a context so: nothing a client sends can.
func Rerouted(ctx context.Context) context.Context {
	return context.WithValue(ctx, reroutedKey{}, true)
}

// IsRerouted reports whether ctx is that of a stanza routed again
// (Rerouted).
func IsRerouted(ctx context.Context) bool {
	v, _ := ctx.Value(reroutedKey{}).(bool)
	return v
}
