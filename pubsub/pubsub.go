// Package pubsub holds the rules of the personal eventing service
// (XEP-0163 on the XEP-0060 subset of SPEC.md "Personal data and
// encryption") as pure functions: node configuration and its form fields,
// publish-options preconditions, the access models, item limits. It also
// declares the store of nodes and items, which package storage implements.
// The XMPP side is xmppd/mod/pep.
package pubsub

import (
	"context"
	"errors"
	"net/url"
	"strconv"
)

// Access models (XEP-0060 §4.5) that the service supports.
const (
	AccessOpen      = "open"
	AccessPresence  = "presence"
	AccessWhitelist = "whitelist"
)

// Form field names of node configuration (XEP-0060 §16.4.4).
const (
	FieldAccessModel   = "pubsub#access_model"
	FieldMaxItems      = "pubsub#max_items"
	FieldPersistItems  = "pubsub#persist_items"
	FieldSendLast      = "pubsub#send_last_published_item"
	FieldNotifyRetract = "pubsub#notify_retract"
	FieldDeliverNotif  = "pubsub#deliver_notifications"
	FieldDeliverPay    = "pubsub#deliver_payloads"
	FieldTitle         = "pubsub#title"
	FieldType          = "pubsub#type"
	FieldPublishModel  = "pubsub#publish_model"
	FormTypeConfig     = "http://jabber.org/protocol/pubsub#node_config"
	FormTypeOptions    = "http://jabber.org/protocol/pubsub#publish-options"
)

// Values of send_last_published_item.
const (
	SendNever            = "never"
	SendOnSub            = "on_sub"
	SendOnSubAndPresence = "on_sub_and_presence"
)

// Errors of the rules; the module maps each to its XEP-0060 condition.
var (
	// ErrBadValue: a field's value is not one the service takes
	// (not-acceptable, or for publish-options precondition-not-met).
	ErrBadValue = errors.New("pubsub: unsupported configuration value")
	// ErrPrecondition: a publish-options field differs from the node's
	// configuration (XEP-0060 §7.1.5: precondition-not-met).
	ErrPrecondition = errors.New("pubsub: precondition not met")
	// ErrNotFound: no such node or item.
	ErrNotFound = errors.New("pubsub: not found")
)

// Config is a node's configuration.
type Config struct {
	AccessModel   string // AccessOpen, AccessPresence, AccessWhitelist
	MaxItems      int    // items kept, at least 1
	SendLast      string // SendNever, SendOnSub, SendOnSubAndPresence
	NotifyRetract bool
	Title, Type   string
}

// Default is a new node's configuration with maxItems the service's cap:
// presence access (XEP-0163 §4), one item.
func Default() Config {
	return Config{AccessModel: AccessPresence, MaxItems: 1, SendLast: SendOnSubAndPresence, NotifyRetract: true}
}

// Encode serialises c for the store.
func (c Config) Encode() string {
	v := url.Values{}
	v.Set("access", c.AccessModel)
	v.Set("max", strconv.Itoa(c.MaxItems))
	v.Set("send_last", c.SendLast)
	v.Set("notify_retract", strconv.FormatBool(c.NotifyRetract))
	if c.Title != "" {
		v.Set("title", c.Title)
	}
	if c.Type != "" {
		v.Set("type", c.Type)
	}
	return v.Encode()
}

// Decode reads a configuration written by Encode; what is missing or
// unreadable keeps its default.
func Decode(s string) Config {
	c := Default()
	v, _ := url.ParseQuery(s)
	if a := v.Get("access"); validAccess(a) {
		c.AccessModel = a
	}
	if n, err := strconv.Atoi(v.Get("max")); err == nil && n >= 1 {
		c.MaxItems = n
	}
	if s := v.Get("send_last"); validSendLast(s) {
		c.SendLast = s
	}
	if b, err := strconv.ParseBool(v.Get("notify_retract")); err == nil {
		c.NotifyRetract = b
	}
	c.Title, c.Type = v.Get("title"), v.Get("type")
	return c
}

func validAccess(a string) bool {
	return a == AccessOpen || a == AccessPresence || a == AccessWhitelist
}

func validSendLast(s string) bool {
	return s == SendNever || s == SendOnSub || s == SendOnSubAndPresence
}

// parseBool reads an xs:boolean ("1", "true", "0", "false").
func parseBool(s string) (bool, error) {
	switch s {
	case "1", "true":
		return true, nil
	case "0", "false":
		return false, nil
	}
	return false, ErrBadValue
}

// maxItems reads a max_items value: a number, or "max" for the cap;
// numbers above the cap are clamped to it (SPEC.md).
func maxItems(s string, limit int) (int, error) {
	if s == "max" {
		return limit, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, ErrBadValue
	}
	return min(n, limit), nil
}

// Apply returns c with the form fields set (node configuration, or
// publish-options on a node being created); limit is
// XMPPD_PEP_MAX_ITEMS. Unknown fields are ignored (XEP-0060 §8.2.4 lets
// a service keep what it does not support), unsupported values of known
// ones are ErrBadValue.
func Apply(c Config, fields map[string]string, limit int) (Config, error) {
	for k, v := range fields {
		var err error
		switch k {
		case FieldAccessModel:
			if !validAccess(v) {
				return c, ErrBadValue
			}
			c.AccessModel = v
		case FieldMaxItems:
			c.MaxItems, err = maxItems(v, limit)
		case FieldPersistItems:
			// Items always persist; asking for none is not supported.
			var b bool
			if b, err = parseBool(v); err == nil && !b {
				err = ErrBadValue
			}
		case FieldSendLast:
			if !validSendLast(v) {
				return c, ErrBadValue
			}
			c.SendLast = v
		case FieldNotifyRetract:
			c.NotifyRetract, err = parseBool(v)
		case FieldDeliverNotif, FieldDeliverPay:
			var b bool
			if b, err = parseBool(v); err == nil && !b {
				err = ErrBadValue // notifications always carry payloads
			}
		case FieldPublishModel:
			if v != "publishers" {
				err = ErrBadValue // only the owner publishes
			}
		case FieldTitle:
			c.Title = v
		case FieldType:
			c.Type = v
		}
		if err != nil {
			return c, err
		}
	}
	return c, nil
}

// Preconditions checks publish-options against an existing node's
// configuration (XEP-0060 §7.1.5): every field the service knows must
// have the node's value (max_items "max" means the cap, and a number
// above the cap counts as the cap), else ErrPrecondition. A field the
// service does not know cannot be met either.
func Preconditions(c Config, fields map[string]string, limit int) error {
	want, err := Apply(c, fields, limit)
	if err != nil {
		return ErrPrecondition
	}
	if want != c {
		return ErrPrecondition
	}
	for k := range fields {
		if !knownField(k) {
			return ErrPrecondition
		}
	}
	return nil
}

func knownField(k string) bool {
	switch k {
	case FieldAccessModel, FieldMaxItems, FieldPersistItems, FieldSendLast, FieldNotifyRetract,
		FieldDeliverNotif, FieldDeliverPay, FieldPublishModel, FieldTitle, FieldType:
		return true
	}
	return false
}

// Relation is what a requester is to the owner of the service.
type Relation uint8

// Relations, from least to most.
const (
	Stranger   Relation = iota // anyone else
	Subscriber                 // has a presence subscription to the owner (from or both)
	Owner                      // the account itself
)

// CanRead reports whether someone with relation rel may retrieve items
// of, subscribe to and be notified of a node with configuration c.
func CanRead(c Config, rel Relation) bool {
	switch {
	case rel == Owner:
		return true
	case c.AccessModel == AccessOpen:
		return true
	case c.AccessModel == AccessPresence:
		return rel >= Subscriber
	}
	return false // whitelist: the owner alone (no affiliations are kept)
}

// Item is one published item.
type Item struct {
	ID      string
	Payload []byte // the payload element, standalone XML
}

// Node is a node and its configuration.
type Node struct {
	Name   string
	Config Config
}

// Subscription is an explicit subscription (XEP-0060 §6.1) to a node.
type Subscription struct {
	Node string
	JID  string // the subscriber, bare or full, as it subscribed
}

// Store keeps nodes and items per owner (the account's canonical number).
// Implemented by package storage; removed with the account.
type Store interface {
	// PEPNodes returns every node of owner.
	PEPNodes(ctx context.Context, owner string) ([]Node, error)
	// PEPNode returns one node, or ErrNotFound.
	PEPNode(ctx context.Context, owner, node string) (Config, error)
	// PutPEPNode creates the node or replaces its configuration, then
	// drops the oldest items beyond c.MaxItems.
	PutPEPNode(ctx context.Context, owner, node string, c Config) error
	// DeletePEPNode removes the node with its items and subscriptions;
	// ErrNotFound when there is none.
	DeletePEPNode(ctx context.Context, owner, node string) error
	// PublishPEPItem stores it as the newest item of node (replacing an
	// item of the same id), creating the node with c when it does not
	// exist, and drops the oldest items beyond the node's MaxItems. It
	// returns the node's configuration and whether it was created.
	PublishPEPItem(ctx context.Context, owner, node string, c Config, it Item) (Config, bool, error)
	// RetractPEPItem removes one item; ErrNotFound when node or item is
	// not there.
	RetractPEPItem(ctx context.Context, owner, node, id string) error
	// PEPItems returns the items of node, newest first: those of ids
	// when ids is not empty (in the store's order), else at most max
	// (max <= 0: all). ErrNotFound when the node does not exist.
	PEPItems(ctx context.Context, owner, node string, ids []string, max int) ([]Item, error)
	// SubscribePEP records sub's subscription to node (kept when it
	// exists); ErrNotFound when the node does not exist.
	SubscribePEP(ctx context.Context, owner, node, sub string) error
	// UnsubscribePEP removes it; ErrNotFound when there is none.
	UnsubscribePEP(ctx context.Context, owner, node, sub string) error
	// PEPSubscriptions returns the subscriptions to owner's nodes (to
	// node alone when it is not empty), by node and subscriber.
	PEPSubscriptions(ctx context.Context, owner, node string) ([]Subscription, error)
}
