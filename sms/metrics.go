package sms

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the SMS worker's Prometheus metrics.
type Metrics struct {
	// Sent counts SMS and calls the gateway accepted, by purpose.
	Sent *prometheus.CounterVec
	// Failures counts attempts that failed (each retry once), and messages
	// dropped because they cannot be sent at all, by purpose.
	Failures *prometheus.CounterVec
	// Pending is the number of messages in the outbox, as of the last pass.
	Pending prometheus.Gauge
}

// NewMetrics makes the metrics and registers them with reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sms_sent_total", Help: "SMS (and calls) accepted by the gateway, by purpose.",
		}, []string{"purpose"}),
		Failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sms_send_failures_total", Help: "Failed attempts to hand an SMS to the gateway, by purpose.",
		}, []string{"purpose"}),
		Pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sms_outbox_pending", Help: "SMS in the outbox waiting for the gateway to accept them.",
		}),
	}
	// The known purposes show as 0 before the first SMS, so that rate()
	// and alerts see the series from the start.
	for _, p := range []string{PurposePassword, PurposeNotice, PurposeTest, PurposePIN} {
		m.Sent.WithLabelValues(p)
		m.Failures.WithLabelValues(p)
	}
	if reg != nil {
		reg.MustRegister(m.Sent, m.Failures, m.Pending)
	}
	return m
}

func (m *Metrics) sent(purpose string) {
	if m != nil {
		m.Sent.WithLabelValues(purpose).Inc()
	}
}

func (m *Metrics) failed(purpose string) {
	if m != nil {
		m.Failures.WithLabelValues(purpose).Inc()
	}
}

func (m *Metrics) pending(n int) {
	if m != nil {
		m.Pending.Set(float64(n))
	}
}
