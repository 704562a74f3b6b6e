package sms

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"
)

func TestLogGateway(t *testing.T) {
	var buf bytes.Buffer
	var g Gateway = LogGateway{Log: slog.New(slog.NewJSONHandler(&buf, nil))}
	m := SMS{ID: "id-1", To: "+821012345678", Text: "Your localhost password is abcDEF23456. Log in with your phone number.", Purpose: PurposePassword}
	if err := g.Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("%v: %q", err, buf.String())
	}
	want := map[string]any{"level": "INFO", "msg": "sms", "id": "id-1", "to": "+821012345678", "purpose": "password", "text": m.Text}
	for k, v := range want {
		if rec[k] != v {
			t.Errorf("%s = %v, want %v", k, rec[k], v)
		}
	}
}

func TestLogGatewayErrors(t *testing.T) {
	var buf bytes.Buffer
	g := LogGateway{Log: slog.New(slog.NewJSONHandler(&buf, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := g.Send(ctx, SMS{To: "+15551234567", Text: "x"}); err == nil {
		t.Error("cancelled context: no error")
	}
	if err := g.Send(context.Background(), SMS{Text: "x"}); err == nil {
		t.Error("no receiver: no error")
	}
	if buf.Len() != 0 {
		t.Errorf("failed sends were logged: %q", buf.String())
	}
}

func TestLogGatewayNilLogger(t *testing.T) {
	var buf bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	defer slog.SetDefault(old)
	if err := (LogGateway{}).Send(context.Background(), SMS{To: "+15551234567", Text: "hello", Purpose: PurposeTest}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(buf.Bytes(), []byte("text=hello")) {
		t.Errorf("default logger got %q", buf.String())
	}
}

func TestTexts(t *testing.T) {
	if got, want := PasswordText("example.com", "abc234DEF5"), "Your example.com password is abc234DEF5. Log in with your phone number."; got != want {
		t.Errorf("PasswordText = %q, want %q", got, want)
	}
	if got := TestText("example.com"); got != "This is a test message from example.com." {
		t.Errorf("TestText = %q", got)
	}
}
