package pubsub

import (
	"errors"
	"testing"
)

func TestApply(t *testing.T) {
	const limit = 10
	tests := []struct {
		name   string
		fields map[string]string
		want   func(*Config)
		err    error
	}{
		{"open", map[string]string{FieldAccessModel: "open"}, func(c *Config) { c.AccessModel = AccessOpen }, nil},
		{"whitelist", map[string]string{FieldAccessModel: "whitelist"}, func(c *Config) { c.AccessModel = AccessWhitelist }, nil},
		{"roster access unsupported", map[string]string{FieldAccessModel: "roster"}, nil, ErrBadValue},
		{"max_items max", map[string]string{FieldMaxItems: "max"}, func(c *Config) { c.MaxItems = limit }, nil},
		{"max_items clamped", map[string]string{FieldMaxItems: "1000"}, func(c *Config) { c.MaxItems = limit }, nil},
		{"max_items 5", map[string]string{FieldMaxItems: "5"}, func(c *Config) { c.MaxItems = 5 }, nil},
		{"max_items 0", map[string]string{FieldMaxItems: "0"}, nil, ErrBadValue},
		{"max_items junk", map[string]string{FieldMaxItems: "x"}, nil, ErrBadValue},
		{"persist true", map[string]string{FieldPersistItems: "1"}, func(*Config) {}, nil},
		{"persist false", map[string]string{FieldPersistItems: "false"}, nil, ErrBadValue},
		{"send_last never", map[string]string{FieldSendLast: "never"}, func(c *Config) { c.SendLast = SendNever }, nil},
		{"send_last bad", map[string]string{FieldSendLast: "sometimes"}, nil, ErrBadValue},
		{"notify_retract off", map[string]string{FieldNotifyRetract: "0"}, func(c *Config) { c.NotifyRetract = false }, nil},
		{"publish_model open", map[string]string{FieldPublishModel: "open"}, nil, ErrBadValue},
		{"unknown ignored", map[string]string{"pubsub#itemreply": "owner"}, func(*Config) {}, nil},
		{"title", map[string]string{FieldTitle: "My bookmarks"}, func(c *Config) { c.Title = "My bookmarks" }, nil},
	}
	for _, tt := range tests {
		got, err := Apply(Default(), tt.fields, limit)
		if !errors.Is(err, tt.err) {
			t.Errorf("%s: err %v, want %v", tt.name, err, tt.err)
			continue
		}
		if tt.err != nil {
			continue
		}
		want := Default()
		tt.want(&want)
		if got != want {
			t.Errorf("%s: %+v, want %+v", tt.name, got, want)
		}
	}
}

func TestPreconditions(t *testing.T) {
	const limit = 10
	open := Default()
	open.AccessModel = AccessOpen
	full := open
	full.MaxItems = limit
	tests := []struct {
		name   string
		node   Config
		fields map[string]string
		ok     bool
	}{
		{"same access", open, map[string]string{FieldAccessModel: "open"}, true},
		{"other access", Default(), map[string]string{FieldAccessModel: "open"}, false},
		{"max is the cap", full, map[string]string{FieldMaxItems: "max", FieldAccessModel: "open"}, true},
		{"over the cap is the cap", full, map[string]string{FieldMaxItems: "99"}, true},
		{"max_items differ", open, map[string]string{FieldMaxItems: "max"}, false},
		{"persist", open, map[string]string{FieldPersistItems: "true"}, true},
		{"bad value", open, map[string]string{FieldAccessModel: "authorize"}, false},
		{"unknown field", open, map[string]string{"pubsub#children": "x"}, false},
		{"none", open, nil, true},
	}
	for _, tt := range tests {
		err := Preconditions(tt.node, tt.fields, limit)
		if (err == nil) != tt.ok || err != nil && !errors.Is(err, ErrPrecondition) {
			t.Errorf("%s: %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestCanRead(t *testing.T) {
	for _, tt := range []struct {
		access string
		rel    Relation
		ok     bool
	}{
		{AccessOpen, Stranger, true},
		{AccessPresence, Stranger, false},
		{AccessPresence, Subscriber, true},
		{AccessWhitelist, Subscriber, false},
		{AccessWhitelist, Owner, true},
		{AccessPresence, Owner, true},
	} {
		c := Default()
		c.AccessModel = tt.access
		if got := CanRead(c, tt.rel); got != tt.ok {
			t.Errorf("%s/%d: %v", tt.access, tt.rel, got)
		}
	}
}

func TestEncodeDecode(t *testing.T) {
	c := Config{AccessModel: AccessWhitelist, MaxItems: 7, SendLast: SendNever, NotifyRetract: false, Title: "a&b=c", Type: "urn:x"}
	if got := Decode(c.Encode()); got != c {
		t.Fatalf("%+v", got)
	}
	if got := Decode("garbage%%"); got != Default() {
		t.Fatalf("garbage: %+v", got)
	}
}
