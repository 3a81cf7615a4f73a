package helm

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	"sigs.k8s.io/yaml"
)

// A packaged chart cannot read files outside its folder, so it carries
// copies of the monitoring files in deploy/; they must not drift.
var chartCopies = map[string]string{
	"files/prometheusrule.yaml":    "../../deploy/prometheus/prometheusrule.yaml",
	"files/alert-rules.yaml":       "../../deploy/grafana/alert-rules.yaml",
	"files/rotator-dashboard.json": "../../deploy/grafana/rotator-dashboard.json",
}

func TestChartMonitoringFilesMatchDeploy(t *testing.T) {
	for copyPath, original := range chartCopies {
		got, err := os.ReadFile(chartDir + "/" + copyPath)
		must(t, err)
		want, err := os.ReadFile(original)
		must(t, err)
		if !bytes.Equal(got, want) {
			t.Errorf("%s/%s differs from %s; copy it again: cp %s deploy/helm/rotator/%s",
				chartDir, copyPath, original, strings.TrimPrefix(original, "../../"), copyPath)
		}
	}
}

func yamlFile(t *testing.T, path string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(path)
	must(t, err)
	var v map[string]any
	must(t, yaml.Unmarshal(raw, &v))
	return v
}

// Off by default, then each switch renders its object with the content of
// deploy/: the PrometheusRule's spec, the dashboard, and the Grafana alert
// rules pointed at the configured data source.
func TestChartMonitoringTemplates(t *testing.T) {
	off := helmObjects(t, readValues(t, "testdata/daemon.yaml"))
	if n := len(off.ofKind("PrometheusRule")); n != 0 {
		t.Errorf("defaults rendered %d PrometheusRules", n)
	}
	for _, id := range off.ofKind("ConfigMap") {
		if id.Name != "rotator-config" {
			t.Errorf("defaults rendered %s", id)
		}
	}

	on := helmObjects(t, with(t, "testdata/daemon.yaml", map[string]any{
		"prometheusRule": map[string]any{"enabled": true, "labels": map[string]any{"release": "kps"}},
		"grafana": map[string]any{
			"dashboard": map[string]any{"enabled": true, "namespace": "monitoring", "labels": map[string]any{"grafana_dashboard": "1"}},
			"alerts":    map[string]any{"enabled": true, "labels": map[string]any{"grafana_alert": "1"}, "datasourceUid": "my-prom"},
		},
	}))

	rule := on.get(t, "PrometheusRule", namespace, "rotator")
	var labels map[string]string
	into(t, rule, &labels, "metadata", "labels")
	if labels["release"] != "kps" || labels["app.kubernetes.io/name"] != "rotator" {
		t.Errorf("PrometheusRule labels %v", labels)
	}
	var gotSpec, wantSpec any
	into(t, rule, &gotSpec, "spec")
	into(t, yamlFile(t, chartCopies["files/prometheusrule.yaml"]), &wantSpec, "spec")
	if !reflect.DeepEqual(gotSpec, wantSpec) {
		t.Errorf("PrometheusRule spec differs from deploy/prometheus:\nhelm: %v\nfile: %v", gotSpec, wantSpec)
	}

	var dash map[string]string
	dashCM := on.get(t, "ConfigMap", "monitoring", "rotator-dashboard")
	into(t, dashCM, &dash, "data")
	into(t, dashCM, &labels, "metadata", "labels")
	if labels["grafana_dashboard"] != "1" {
		t.Errorf("dashboard ConfigMap labels %v", labels)
	}
	wantDash, err := os.ReadFile(chartCopies["files/rotator-dashboard.json"])
	must(t, err)
	var gotJSON, wantJSON any
	must(t, json.Unmarshal([]byte(dash["rotator-dashboard.json"]), &gotJSON))
	must(t, json.Unmarshal(wantDash, &wantJSON))
	if !reflect.DeepEqual(gotJSON, wantJSON) {
		t.Error("dashboard ConfigMap differs from deploy/grafana/rotator-dashboard.json")
	}

	var alerts map[string]string
	into(t, on.get(t, "ConfigMap", namespace, "rotator-alert-rules"), &alerts, "data")
	var rules struct {
		Groups []struct {
			Rules []struct {
				Title string
				Data  []struct {
					RefID         string `json:"refId"`
					DatasourceUID string `json:"datasourceUid"`
				}
			}
		}
	}
	must(t, yaml.Unmarshal([]byte(alerts["rotator-alert-rules.yaml"]), &rules))
	queries := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			for _, d := range r.Data {
				switch d.DatasourceUID {
				case "my-prom":
					queries++
				case "__expr__":
				default:
					t.Errorf("%s query %s: datasourceUid %q, want my-prom", r.Title, d.RefID, d.DatasourceUID)
				}
			}
		}
	}
	if queries != 5 {
		t.Errorf("%d queries point at my-prom, want one for each of the 5 alerts", queries)
	}

	// The CronJob pushes to a Pushgateway; the same rules alert on it.
	cron := helmObjects(t, with(t, "testdata/cronjob.yaml", map[string]any{
		"prometheusRule": map[string]any{"enabled": true},
	}))
	if n := len(cron.ofKind("PrometheusRule")); n != 1 {
		t.Errorf("mode cronjob rendered %d PrometheusRules, want 1", n)
	}
	const defaultPushgateway = "http://prometheus-pushgateway.monitoring.svc:9091"
	if got := cronJobEnv(t, cron)["ROTATOR_PUSHGATEWAY"]; got != defaultPushgateway {
		t.Errorf("mode cronjob: ROTATOR_PUSHGATEWAY %q, want %q", got, defaultPushgateway)
	}
	if n := len(cron.ofKind("ServiceMonitor")); n != 1 {
		t.Errorf("mode cronjob rendered %d ServiceMonitors, want 1 for the Pushgateway", n)
	}
	// Without a Pushgateway there is nothing to push to or scrape.
	quiet := helmObjects(t, with(t, "testdata/cronjob.yaml", map[string]any{
		"cronjob": map[string]any{"pushgateway": map[string]any{"url": ""}},
	}))
	if _, ok := cronJobEnv(t, quiet)["ROTATOR_PUSHGATEWAY"]; ok {
		t.Error("cronjob.pushgateway.url empty, but ROTATOR_PUSHGATEWAY is set")
	}
	if n := len(quiet.ofKind("ServiceMonitor")); n != 0 {
		t.Errorf("cronjob.pushgateway.url empty, but %d ServiceMonitors rendered", n)
	}

	_, err = renderChart(loadChart(t, chartDir), with(t, "testdata/daemon.yaml", map[string]any{
		"grafana": map[string]any{"alerts": map[string]any{"enabled": true, "datasourceUid": ""}},
	}))
	if err == nil || !strings.Contains(err.Error(), "grafana.alerts.datasourceUid is required") {
		t.Errorf("empty datasourceUid: %v", err)
	}
}

// cronJobEnv is the rotator container's env in the one rendered CronJob.
func cronJobEnv(t *testing.T, objs objects) map[string]string {
	t.Helper()
	keys := objs.ofKind("CronJob")
	if len(keys) != 1 {
		t.Fatalf("%d CronJobs rendered, want 1", len(keys))
	}
	var cj batchv1.CronJob
	raw, err := json.Marshal(objs[keys[0]])
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &cj); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, c := range cj.Spec.JobTemplate.Spec.Template.Spec.Containers {
		for _, e := range c.Env {
			env[e.Name] = e.Value
		}
	}
	return env
}
