// Package web is the server's HTTP side: health and metrics now; the home
// page, the password API, WebSocket and host-meta join it later.
package web

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// healthTimeout bounds one health check, so that a stuck store makes
// /healthz answer 503 instead of hanging the prober.
const healthTimeout = 5 * time.Second

// Options are what the HTTP handler serves.
type Options struct {
	// Health reports whether the server and its store are up; nil means
	// always up.
	Health func(ctx context.Context) error
	// Gatherer supplies /metrics; nil means prometheus.DefaultGatherer.
	Gatherer prometheus.Gatherer
}

// New returns the handler for XMPPD_HTTP_ADDR: GET /healthz answers 200
// "ok" when Health returns nil and 503 with the error otherwise; GET
// /metrics answers in the Prometheus text format.
func New(opts Options) http.Handler {
	g := opts.Gatherer
	if g == nil {
		g = prometheus.DefaultGatherer
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", healthz(opts.Health))
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	return mux
}

func healthz(check func(context.Context) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if check != nil {
			ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
			defer cancel()
			if err := check(ctx); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				w.Write([]byte("unavailable: " + err.Error() + "\n"))
				return
			}
		}
		w.Write([]byte("ok"))
	}
}
