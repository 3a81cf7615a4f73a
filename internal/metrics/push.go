package metrics

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/push"
	dto "github.com/prometheus/client_model/go"
)

// PushJob is the Pushgateway job that run-once pushes under. Alert rules
// select it by this name, so it is fixed. The group's instance label tells
// installs apart (see Push).
const PushJob = "rotator-run-once"

// Push sends one run-once cycle's rotator_* metrics to a Pushgateway, which
// keeps them for Prometheus between runs. After a success the run's metrics
// replace the whole group. After a failure they replace only the metrics
// this run learned: gauges it could not learn are absent from the registry,
// so what earlier runs pushed (the last success, the token's expiry) stands.
// rotator_leader is not pushed: a finished run leads nothing. instance
// names the install (its Lease, "<namespace>/<name>"), so that two installs
// sharing a Pushgateway keep a group each.
func (m *Metrics) Push(ctx context.Context, client *http.Client, url, instance string, success bool) error {
	pusher := push.New(url, PushJob).Grouping("instance", instance).Client(client).Gatherer(prometheus.GathererFunc(m.gatherPushable))
	var err error
	if success {
		err = pusher.PushContext(ctx)
	} else {
		err = pusher.AddContext(ctx)
	}
	if err != nil {
		// The client library quotes the Pushgateway's whole answer.
		msg := err.Error()
		if len(msg) > maxErrorLen {
			msg = msg[:maxErrorLen] + "…"
		}
		return fmt.Errorf("push metrics to the Pushgateway: %s", msg)
	}
	return nil
}

const maxErrorLen = 300

func (m *Metrics) gatherPushable() ([]*dto.MetricFamily, error) {
	all, err := m.registry.Gather()
	if err != nil {
		return nil, err
	}
	var out []*dto.MetricFamily
	for _, mf := range all {
		if name := mf.GetName(); strings.HasPrefix(name, "rotator_") && name != "rotator_leader" {
			out = append(out, mf)
		}
	}
	return out, nil
}
