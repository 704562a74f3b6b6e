package stream

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the server's Prometheus metrics.
type Metrics struct {
	Connections   *prometheus.CounterVec // accepted connections by listener
	Sessions      prometheus.Gauge       // bound sessions now
	Pending       prometheus.Gauge       // connections not yet authenticated
	Logins        prometheus.Counter
	LoginFailures prometheus.Counter
	Stanzas       *prometheus.CounterVec // routed stanzas by kind
	StreamErrors  *prometheus.CounterVec // stream errors sent by condition
	SlowClosed    prometheus.Counter     // sessions closed because they could not keep up
	// WriteQueuePeak is the most bytes one session's or federation
	// link's write queue held since the start: how close they come to
	// the limit.
	WriteQueuePeak prometheus.GaugeFunc
	// RateWaited is the time readers waited because their connection
	// sent faster than its rate (XMPPD_C2S_RATE, XMPPD_S2S_RATE).
	RateWaited prometheus.Counter

	// Messages, Presences and IQs are the Stanzas counters of each kind.
	Messages, Presences, IQs prometheus.Counter

	queuePeak atomic.Int64
}

// NewMetrics makes the metrics and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xmppd_connections_total", Help: "Accepted connections by listener.",
		}, []string{"listener"}),
		Sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "xmppd_sessions", Help: "Bound client sessions.",
		}),
		Pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "xmppd_unauthenticated_connections", Help: "Connections that have not authenticated yet.",
		}),
		Logins: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "xmppd_logins_total", Help: "Successful SASL authentications.",
		}),
		LoginFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "xmppd_login_failures_total", Help: "Failed SASL authentications.",
		}),
		Stanzas: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xmppd_stanzas_routed_total", Help: "Stanzas routed by kind.",
		}, []string{"kind"}),
		StreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xmppd_stream_errors_total", Help: "Stream errors sent, by condition.",
		}, []string{"condition"}),
		SlowClosed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "xmppd_slow_sessions_closed_total", Help: "Sessions closed because their write queue overflowed.",
		}),
	}
	m.WriteQueuePeak = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "xmppd_write_queue_peak_bytes", Help: "The most bytes one session's or federation link's write queue held since the start.",
	}, func() float64 { return float64(m.queuePeak.Load()) })
	m.RateWaited = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "xmppd_rate_limited_seconds_total", Help: "Time connections' reads waited because they sent faster than their rate.",
	})
	m.Messages = m.Stanzas.WithLabelValues("message")
	m.Presences = m.Stanzas.WithLabelValues("presence")
	m.IQs = m.Stanzas.WithLabelValues("iq")
	if reg != nil {
		reg.MustRegister(m.Connections, m.Sessions, m.Pending, m.Logins, m.LoginFailures, m.Stanzas, m.StreamErrors, m.SlowClosed, m.WriteQueuePeak, m.RateWaited)
	}
	return m
}

// notePeak raises the queue peak to n if n is more. The common case, no
// new peak, only reads it.
func (m *Metrics) notePeak(n int64) {
	for p := m.queuePeak.Load(); n > p && !m.queuePeak.CompareAndSwap(p, n); p = m.queuePeak.Load() {
	}
}
