package router

import (
	"context"
	"testing"
)

func TestRerouted(t *testing.T) {
	ctx := context.Background()
	if IsRerouted(ctx) {
		t.Fatal("a plain context is marked")
	}
	if !IsRerouted(Rerouted(ctx)) {
		t.Fatal("a rerouted context is not marked")
	}
	if !IsRerouted(context.WithoutCancel(Rerouted(ctx))) {
		t.Fatal("the mark is lost with the cancellation")
	}
}
