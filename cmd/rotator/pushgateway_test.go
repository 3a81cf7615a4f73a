package main

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"sigs.k8s.io/yaml"

	"github.com/rotator-dev/rotator/internal/gitlabemu"
)

const prometheusRulePath = "../../deploy/prometheus/prometheusrule.yaml"

// TestRunOncePushesToPushgateway follows the CronJob's metrics end to end:
// run-once pushes to a real Pushgateway, a real Prometheus scrapes it as the
// shipped ServiceMonitor does (honor_labels) and evaluates the shipped
// PrometheusRule. A failed first run makes RotatorCycleFailing pending for
// job rotator-run-once, and a success clears it; a failed run leaves what it
// could not learn (the last success, the token's expiry) as the run before
// pushed it; an unreachable Pushgateway is logged and leaves the exit status
// alone.
func TestRunOncePushesToPushgateway(t *testing.T) {
	pgwBin := lookPathOrFail(t, "prometheus-pushgateway", "prometheus-pushgateway")
	promBin := lookPathOrFail(t, "prometheus", "prometheus")
	w := newWorld(t)
	pgw := startPushgateway(t, pgwBin)
	w.env["ROTATOR_PUSHGATEWAY"] = "http://" + pgw

	dir := t.TempDir()
	writeRuleSpec(t, prometheusRulePath, filepath.Join(dir, "rules.yaml"))
	prom := startPrometheusWith(t, promBin, dir, fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [rules.yaml]
scrape_configs:
  - job_name: pushgateway
    honor_labels: true
    static_configs:
      - targets: [%q]
        labels: {namespace: monitoring, pod: prometheus-pushgateway-0}
`, pgw))
	// One group per install, named after its Lease.
	instance := w.namespaces[0] + "/rotator"
	job := map[string]string{"job": "rotator-run-once", "instance": instance}
	with := func(extra ...string) map[string]string {
		l := map[string]string{"job": "rotator-run-once", "instance": instance}
		for i := 0; i+1 < len(extra); i += 2 {
			l[extra[i]] = extra[i+1]
		}
		return l
	}

	// 1. GitLab fails every list: the first run fails at observe.
	w.emu.InjectFault(gitlabemu.Fault{Endpoint: gitlabemu.EndpointListDeployTokens, Status: 500})
	code, _, stderr := w.run("run-once")
	if code != 1 || !strings.Contains(stderr, `"action":"push-metrics"`) {
		t.Fatalf("failing run: exit %d, want 1 and a push-metrics log line\n%s", code, stderr)
	}
	fams := w.scrapePushgateway(pgw)
	wantSample(t, fams, "rotator_cycles_total", with("result", "failure"), 1)
	wantSample(t, fams, "rotator_cycles_total", with("result", "success"), 0)
	wantSample(t, fams, "rotator_errors_total", with("stage", "observe"), 1)
	// GitLab gives access tokens a date of expiry: midnight UTC.
	wantSample(t, fams, "rotator_gitlab_api_token_expiry_timestamp_seconds", job, float64(w.now.Add(300*24*time.Hour).Truncate(24*time.Hour).Unix()))
	for _, name := range []string{"rotator_last_success_timestamp_seconds", "rotator_token_expiry_timestamp_seconds", "rotator_managed_tokens", "rotator_leader"} {
		if _, ok := sample(fams, name, job); ok {
			t.Errorf("a run that could not observe pushed %s", name)
		}
	}
	for name, f := range fams {
		if _, ok := sample(fams, name, job); ok && !strings.HasPrefix(name, "rotator_") && name != "push_time_seconds" && name != "push_failure_time_seconds" {
			t.Errorf("run-once pushed %s (%s); only rotator_* metrics belong in the group", name, f.GetHelp())
		}
	}
	// Prometheus sees the push under its own job, and the rules call it.
	w.eventually(30*time.Second, "RotatorCycleFailing pending for job rotator-run-once", func() bool {
		return alertState(t, prom, "RotatorCycleFailing", `job="rotator-run-once"`) == "pending"
	})
	if s := alertState(t, prom, "RotatorAbsent", ""); s != "" {
		t.Errorf("RotatorAbsent is %s although a run pushed just now", s)
	}

	// 2. GitLab recovers: the run rotates and pushes the whole picture.
	w.emu.ClearFaults()
	w.mustRun("run-once")
	tok := w.assertConverged()
	fams = w.scrapePushgateway(pgw)
	wantSample(t, fams, "rotator_cycles_total", with("result", "success"), 1)
	wantSample(t, fams, "rotator_cycles_total", with("result", "failure"), 0)
	wantSample(t, fams, "rotator_errors_total", with("stage", "observe"), 0)
	wantSample(t, fams, "rotator_rotations_total", with("result", "success"), 1)
	wantSample(t, fams, "rotator_managed_tokens", job, 1)
	wantSample(t, fams, "rotator_token_expiry_timestamp_seconds", job, float64(tok.ExpiresAt.Unix()))
	for _, ns := range w.namespaces {
		wantSample(t, fams, "rotator_target_synced", with("namespace", ns, "secret", "gitlab"), 1)
	}
	lastSuccess, ok := sample(fams, "rotator_last_success_timestamp_seconds", job)
	if !ok || lastSuccess < float64(w.now.Unix()) {
		t.Fatalf("last success %v (present %v) after a successful run at %s", lastSuccess, ok, w.now)
	}
	w.eventually(30*time.Second, "RotatorCycleFailing cleared", func() bool {
		return alertState(t, prom, "RotatorCycleFailing", "") == ""
	})

	// 3. GitLab fails again: the failure is pushed, and what this run could
	// not learn stands from the last.
	w.advance(time.Hour)
	w.emu.InjectFault(gitlabemu.Fault{Endpoint: gitlabemu.EndpointListDeployTokens, Status: 500})
	if code, _, stderr := w.run("run-once"); code != 1 {
		t.Fatalf("failing run: exit %d, want 1\n%s", code, stderr)
	}
	fams = w.scrapePushgateway(pgw)
	wantSample(t, fams, "rotator_cycles_total", with("result", "failure"), 1)
	wantSample(t, fams, "rotator_cycles_total", with("result", "success"), 0)
	wantSample(t, fams, "rotator_last_success_timestamp_seconds", job, lastSuccess)
	wantSample(t, fams, "rotator_token_expiry_timestamp_seconds", job, float64(tok.ExpiresAt.Unix()))
	wantSample(t, fams, "rotator_managed_tokens", job, 1)
	for _, ns := range w.namespaces {
		wantSample(t, fams, "rotator_target_synced", with("namespace", ns, "secret", "gitlab"), 1)
	}
	w.emu.ClearFaults()

	// 4. No Pushgateway: logged once, and the cycle's result is the exit
	// status (nothing to do, so 0).
	code, _, stderr = w.run("run-once", "--pushgateway", "http://127.0.0.1:1")
	if code != 0 || strings.Count(stderr, "could not push metrics") != 1 {
		t.Fatalf("unreachable Pushgateway: exit %d, want 0 and one 'could not push metrics' line\n%s", code, stderr)
	}

	// 5. A run that cannot take the Lease has failed, and says so.
	code, _, stderr = w.run("run-once", "--force", "--lease-namespace", "no-such-namespace")
	if code != 1 {
		t.Fatalf("run-once without its Lease namespace: exit %d, want 1\n%s", code, stderr)
	}
	leaseless := map[string]string{"job": "rotator-run-once", "instance": "no-such-namespace/rotator", "result": "failure"}
	wantSample(t, w.scrapePushgateway(pgw), "rotator_cycles_total", leaseless, 1)

	// 6. Uninstalling deletes the group as docs/operations.md says: the
	// instance holds a "/", so its URL element is base64url-encoded.
	group := base64.URLEncoding.EncodeToString([]byte(instance))
	req, err := http.NewRequest(http.MethodDelete, "http://"+pgw+"/metrics/job/rotator-run-once/instance@base64/"+group, nil)
	must(t, err)
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	resp.Body.Close()
	if _, ok := sample(w.scrapePushgateway(pgw), "push_time_seconds", job); ok || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE of the group: %s, and the group is still there: %v", resp.Status, ok)
	}
}

// TestRunOnceWithoutPushgatewayPushesNothing: the push is opt-in.
func TestRunOnceWithoutPushgatewayPushesNothing(t *testing.T) {
	pgw := startPushgateway(t, lookPathOrFail(t, "prometheus-pushgateway", "prometheus-pushgateway"))
	w := newWorld(t)
	w.mustRun("run-once")
	fams := w.scrapePushgateway(pgw)
	if _, ok := sample(fams, "push_time_seconds", map[string]string{"job": "rotator-run-once"}); ok {
		t.Fatal("run-once without runOnce.pushgateway pushed metrics")
	}
}

func lookPathOrFail(t *testing.T, bin, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(bin)
	if err != nil {
		t.Fatalf("this test runs a real %s and there is none in PATH (%v); install Debian's %s package (hack/test.sh does)", bin, err, pkg)
	}
	return path
}

// startPushgateway runs a Pushgateway on a free loopback port until the
// test ends, and returns its host:port. Its persistence file is the test's
// own: Debian's build defaults to one shared file under /var/lib.
func startPushgateway(t *testing.T, bin string) string {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	dir := t.TempDir()
	logFile, err := os.Create(filepath.Join(dir, "pushgateway.log"))
	must(t, err)
	cmd := exec.Command(bin, "--web.listen-address="+addr, "--persistence.file="+filepath.Join(dir, "pushgateway.data"), "--log.level=warn")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	must(t, cmd.Start())
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); _ = logFile.Close(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	for deadline := time.Now().Add(15 * time.Second); ; {
		select {
		case <-exited:
			out, _ := os.ReadFile(logFile.Name())
			t.Fatalf("pushgateway exited at start:\n%s", out)
		default:
		}
		if resp, err := http.Get("http://" + addr + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("pushgateway not ready after 15s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// scrapePushgateway reads what the Pushgateway serves; the raw text also
// joins the world's transcript, so the leak check covers it.
func (w *world) scrapePushgateway(addr string) map[string]*dto.MetricFamily {
	w.t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	must(w.t, err)
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	must(w.t, err)
	w.mu.Lock()
	w.transcript.Write(raw)
	w.mu.Unlock()
	fams, err := scrapeFamilies(addr)
	must(w.t, err)
	return fams
}

func wantSample(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string, want float64) {
	t.Helper()
	got, ok := sample(fams, name, labels)
	if !ok {
		t.Errorf("Pushgateway has no %s%v", name, labels)
	} else if got != want {
		t.Errorf("Pushgateway %s%v = %v, want %v", name, labels, got, want)
	}
}

// writeRuleSpec extracts .spec from a PrometheusRule, as the Prometheus
// Operator hands it to Prometheus.
func writeRuleSpec(t *testing.T, from, to string) {
	t.Helper()
	raw, err := os.ReadFile(from)
	must(t, err)
	var obj struct {
		Spec any `json:"spec"`
	}
	must(t, yaml.Unmarshal(raw, &obj))
	spec, err := yaml.Marshal(obj.Spec)
	must(t, err)
	must(t, os.WriteFile(to, spec, 0o600))
}

// alertState is "pending", "firing", or "" when Prometheus has no such alert
// matching the extra label matchers.
func alertState(t *testing.T, p *promServer, alert, matchers string) string {
	t.Helper()
	sel := fmt.Sprintf(`ALERTS{alertname=%q`, alert)
	if matchers != "" {
		sel += "," + matchers
	}
	series, err := p.query(sel + "}")
	if err != nil {
		t.Fatalf("query ALERTS: %v", err)
	}
	state := ""
	for _, s := range series {
		if s.Metric["alertstate"] == "firing" || state == "" {
			state = s.Metric["alertstate"]
		}
	}
	return state
}
