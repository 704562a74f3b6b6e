package cluster

import (
	"context"
	"hash/fnv"

	"dialtone/xmppd/router"
)

// Owner returns the node that owns key among the nodes alive now (this
// one and Peers): the one of highest rendezvous weight (highest random
// weight hashing of key and node name). Every node that sees the same
// nodes picks the same owner, and when a node comes or goes only the keys
// it owned, or now owns, move. A group lives on the owner of its JID.
func (c *Cluster) Owner(key string) string {
	return owner(key, c.cfg.Node, c.Peers())
}

// OwnerAmong is the node Owner picks for key when the alive nodes are
// nodes (not empty).
func OwnerAmong(key string, nodes []string) string {
	return owner(key, nodes[0], nodes[1:])
}

// owner is Owner over the nodes self and peers.
func owner(key, self string, peers []string) string {
	best, top := self, weight(key, self)
	for _, n := range peers {
		if w := weight(key, n); w > top || w == top && n > best {
			best, top = n, w
		}
	}
	return best
}

// weight is the rendezvous weight of node for key.
func weight(key, node string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	h.Write([]byte{0})
	h.Write([]byte(node))
	// FNV's last bytes mix poorly into the high bits: finish with a
	// 64-bit mixer (splitmix64) so that weights compare fairly.
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Forward hands the stanza b (its bytes, unchanged) to node, which gives
// it to its OnForward function: it is handled there, not here (a stanza
// for a group that node runs). Like a stanza to a session there, it is
// kept until node acknowledges it: sent again when lost, handed again to
// Route here when node dies first (Owner has changed then), and bounced
// with remote-server-timeout when node never takes it. False when node is
// not known (it just died: route the stanza again).
func (c *Cluster) Forward(node string, b []byte) bool {
	c.mu.Lock()
	p := c.peers[node]
	c.mu.Unlock()
	if p == nil {
		return false
	}
	return c.send(p, b, nil)
}

// OnForward sets what this node does with the stanzas other nodes hand it
// with Forward; without one they are dropped. Call it before Start.
func (c *Cluster) OnForward(fn func(ctx context.Context, st *router.Stanza)) {
	c.onForward = fn
}

// OnChange adds fn to what runs when the set of alive nodes changes (a
// node joins, restarts, dies or leaves; after the mirrors of a node gone
// left the table): what Owner returns may have changed. fn must not
// block. Call it before Start.
func (c *Cluster) OnChange(fn func()) {
	c.onChange = append(c.onChange, fn)
}

func (c *Cluster) changed() {
	for _, fn := range c.onChange {
		fn()
	}
}

// forwarded handles a stanza another node handed over with Forward.
func (c *Cluster) forwarded(b []byte) {
	st, err := parseStanza(b)
	if err != nil {
		c.log.Error("cluster: a stanza handed over by another node cannot be read", "err", err)
		return
	}
	if c.onForward != nil {
		c.onForward(context.WithoutCancel(c.ctx), st)
	}
}
