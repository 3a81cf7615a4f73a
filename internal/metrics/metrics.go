// Package metrics exports the rotator's Prometheus metrics. Names and labels
// are an interface: alert rules and the dashboard depend on them.
package metrics

import (
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rotator-dev/rotator/internal/rotation"
	"github.com/rotator-dev/rotator/internal/schedule"
)

// Metrics is the rotator's metric set on its own registry.
type Metrics struct {
	registry  *prometheus.Registry
	cycles    *prometheus.CounterVec
	rotations *prometheus.CounterVec
	errors    *prometheus.CounterVec
	// Gauges learned from a cycle are vectors without labels so that they
	// stay absent until known: a 0 would read as "expired in 1970" and fire
	// alerts, and a pushed 0 would overwrite what an earlier run learned.
	lastSuccess    *prometheus.GaugeVec
	tokenExpiry    *prometheus.GaugeVec
	tokenRenewal   *prometheus.GaugeVec
	apiTokenExpiry *prometheus.GaugeVec
	managedTokens  *prometheus.GaugeVec
	leader         prometheus.Gauge
	targetSynced   *prometheus.GaugeVec
	cycleDuration  prometheus.Histogram
	renewBefore    time.Duration
}

// New registers every metric. Every result and stage series starts at 0 so
// that increase() sees the first failure.
func New(version, goVersion string, renewBefore time.Duration) *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		cycles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rotator_cycles_total", Help: "Cycles run, by result (success or failure).",
		}, []string{"result"}),
		rotations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rotator_rotations_total", Help: "Token rotations attempted, by result (success or failure).",
		}, []string{"result"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rotator_errors_total", Help: "Failures by stage: observe, create, verify, write, patch, revoke.",
		}, []string{"stage"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rotator_last_success_timestamp_seconds", Help: "End of the last successful cycle, Unix seconds.",
		}, nil),
		tokenExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rotator_token_expiry_timestamp_seconds", Help: "Expiry of the current deploy token, Unix seconds.",
		}, nil),
		tokenRenewal: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rotator_token_renewal_timestamp_seconds", Help: "When the current deploy token will be rotated, Unix seconds.",
		}, nil),
		managedTokens: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rotator_managed_tokens", Help: "Active managed deploy tokens in GitLab (1 when healthy).",
		}, nil),
		targetSynced: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rotator_target_synced", Help: "1 when the target Secret holds the current token and all its ServiceAccounts list it.",
		}, []string{"namespace", "secret"}),
		cycleDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "rotator_cycle_duration_seconds", Help: "Cycle wall time.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120},
		}),
		apiTokenExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rotator_gitlab_api_token_expiry_timestamp_seconds", Help: "Expiry of the rotator's own GitLab API token, Unix seconds.",
		}, nil),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rotator_leader", Help: "1 on the replica that acts, 0 on standbys; aggregate other series over leaders.",
		}),
		renewBefore: renewBefore,
	}
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "rotator_build_info", Help: "Always 1; labels name the build.",
	}, []string{"version", "goversion"})
	buildInfo.WithLabelValues(version, goVersion).Set(1)

	for _, result := range []string{"success", "failure"} {
		m.cycles.WithLabelValues(result)
		m.rotations.WithLabelValues(result)
	}
	for _, stage := range rotation.Stages {
		m.errors.WithLabelValues(string(stage))
	}
	m.registry.MustRegister(m.cycles, m.rotations, m.errors, m.lastSuccess, m.tokenExpiry, m.tokenRenewal,
		m.managedTokens, m.leader, m.targetSynced, m.cycleDuration, m.apiTokenExpiry, buildInfo,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

// Registry is exposed for tests that gather directly.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// ObserveCycle records one cycle's report. Dry runs are not cycles.
func (m *Metrics) ObserveCycle(rep rotation.Report) {
	m.cycleDuration.Observe(rep.Duration.Seconds())
	for _, e := range rep.Outcome.Errors {
		m.errors.WithLabelValues(string(e.Stage)).Inc()
	}
	if rep.Err != nil {
		m.cycles.WithLabelValues("failure").Inc()
	} else {
		m.cycles.WithLabelValues("success").Inc()
		m.lastSuccess.WithLabelValues().Set(float64(rep.Started.Add(rep.Duration).Unix()))
	}
	if rep.Plan.Rotation != nil && rep.Applied {
		if rep.Outcome.Created != nil && rep.Outcome.Written > 0 && len(rep.Outcome.FailedTargets) == 0 {
			m.rotations.WithLabelValues("success").Inc()
		} else {
			m.rotations.WithLabelValues("failure").Inc()
		}
	}
	if rep.ObserveFailed() {
		return // observe failed: what is known from earlier cycles stands
	}
	if cur := rep.Current(); cur != nil && cur.ExpiresAt != nil {
		m.tokenExpiry.WithLabelValues().Set(float64(cur.ExpiresAt.Unix()))
		m.tokenRenewal.WithLabelValues().Set(float64(schedule.RenewalTime(*cur.ExpiresAt, m.renewBefore).Unix()))
	}
	m.managedTokens.WithLabelValues().Set(float64(rep.ActiveManagedTokens()))
	m.targetSynced.Reset()
	for key, ok := range rep.TargetsSynced() {
		ns, secret, _ := strings.Cut(key, "/")
		v := 0.0
		if ok {
			v = 1
		}
		m.targetSynced.WithLabelValues(ns, secret).Set(v)
	}
}

// SetLeader records whether this replica acts.
func (m *Metrics) SetLeader(leading bool) {
	v := 0.0
	if leading {
		v = 1
	}
	m.leader.Set(v)
}

// SetAPITokenExpiry records the rotator's own API token expiry.
func (m *Metrics) SetAPITokenExpiry(t time.Time) {
	m.apiTokenExpiry.WithLabelValues().Set(float64(t.Unix()))
}
