// Package alerts tests the shipped alert rules: the PrometheusRule with
// promtool, its Grafana-managed twin against it, and both against the
// runbooks they link to.
package alerts

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const (
	prometheusRuleFile = "../../deploy/prometheus/prometheusrule.yaml"
	grafanaRuleFile    = "../../deploy/grafana/alert-rules.yaml"
	promtoolTestFile   = "testdata/rules_test.yaml"
	runbookFile        = "../../docs/runbooks.md"
	runbookURLPrefix   = "https://github.com/rotator-dev/rotator/blob/main/docs/runbooks.md#"
)

// The alerts the issue and the docs promise; a rule renamed or dropped
// breaks users' routing, so the set is fixed here.
var wantAlerts = []string{
	"RotatorCycleFailing",
	"RotatorTokenExpiringSoon",
	"RotatorAbsent",
	"RotatorTargetOutOfSync",
	"RotatorGitLabAPITokenExpiringSoon",
}

type prometheusRule struct {
	Kind string `json:"kind"`
	Spec struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert"`
				Expr        string            `json:"expr"`
				For         string            `json:"for"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

type alertRule struct {
	Expr        string
	For         string
	Labels      map[string]string
	Annotations map[string]string
}

// readYAML decodes path; strict refuses fields into does not name, so a
// typo in a test file cannot silently drop a case.
func readYAML(t *testing.T, path string, into any, strict bool) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	decode := yaml.Unmarshal
	if strict {
		decode = yaml.UnmarshalStrict
	}
	if err := decode(raw, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func loadPrometheusRule(t *testing.T) (prometheusRule, map[string]alertRule) {
	t.Helper()
	var pr prometheusRule
	readYAML(t, prometheusRuleFile, &pr, false)
	if pr.Kind != "PrometheusRule" {
		t.Fatalf("%s: kind %q, want PrometheusRule", prometheusRuleFile, pr.Kind)
	}
	rules := map[string]alertRule{}
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			if _, dup := rules[r.Alert]; dup {
				t.Fatalf("alert %s defined twice", r.Alert)
			}
			rules[r.Alert] = alertRule{Expr: r.Expr, For: r.For, Labels: r.Labels, Annotations: r.Annotations}
		}
	}
	return pr, rules
}

func promtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: install Debian's prometheus package (apt-get install prometheus); hack/test.sh does")
	}
	return path
}

// TestPromtool extracts .spec from the PrometheusRule, as the Prometheus
// Operator hands it to Prometheus, and runs promtool's checks and unit tests.
func TestPromtool(t *testing.T) {
	bin := promtool(t)
	var obj map[string]any
	readYAML(t, prometheusRuleFile, &obj, false)
	spec, err := yaml.Marshal(obj["spec"])
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), spec, 0o644); err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(promtoolTestFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules_test.yaml"), tests, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"check", "rules", "rules.yaml"}, {"test", "rules", "rules_test.yaml"}} {
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
	}
}

func TestTheAlertsAreTheOnesDocumented(t *testing.T) {
	_, rules := loadPrometheusRule(t)
	var got []string
	for name := range rules {
		got = append(got, name)
	}
	slices.Sort(got)
	want := slices.Clone(wantAlerts)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("alerts %v, want %v", got, want)
	}
}

// TestEveryAlertFiresAndClears reads the promtool tests: each alert needs a
// case in which it fires and, later in the same input, one in which it no
// longer does (or a case in which it never fires).
func TestEveryAlertFiresAndClears(t *testing.T) {
	type ruleCase struct {
		EvalTime  string           `json:"eval_time"`
		AlertName string           `json:"alertname"`
		ExpAlerts []map[string]any `json:"exp_alerts"`
	}
	var file struct {
		RuleFiles          []string `json:"rule_files"`
		EvaluationInterval string   `json:"evaluation_interval"`
		Tests              []struct {
			Name           string           `json:"name"`
			Interval       string           `json:"interval"`
			InputSeries    []map[string]any `json:"input_series"`
			AlertRuleTests []ruleCase       `json:"alert_rule_test"`
		} `json:"tests"`
	}
	readYAML(t, promtoolTestFile, &file, true)
	fires := map[string]bool{}
	quiet := map[string]bool{} // cleared after firing, or never fired in its input
	for _, tc := range file.Tests {
		firesHere := func(name string) bool {
			return slices.ContainsFunc(tc.AlertRuleTests, func(c ruleCase) bool { return c.AlertName == name && len(c.ExpAlerts) > 0 })
		}
		fired := map[string]bool{}
		for _, c := range tc.AlertRuleTests {
			switch {
			case len(c.ExpAlerts) > 0:
				fires[c.AlertName], fired[c.AlertName] = true, true
			case fired[c.AlertName] || !firesHere(c.AlertName):
				quiet[c.AlertName] = true
			}
		}
	}
	for _, name := range wantAlerts {
		if !fires[name] {
			t.Errorf("%s: no promtool case expects it to fire", name)
		}
		if !quiet[name] {
			t.Errorf("%s: no promtool case expects it to clear after firing, or never to fire", name)
		}
	}
}

var runbookAnchor = regexp.MustCompile(`(?m)^#+\s+(\S+)\s*$`)

func TestAlertsCarrySummaryDescriptionAndRunbook(t *testing.T) {
	_, rules := loadPrometheusRule(t)
	raw, err := os.ReadFile(runbookFile)
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, m := range runbookAnchor.FindAllStringSubmatch(string(raw), -1) {
		anchors[strings.ToLower(m[1])] = true
	}
	for name, r := range rules {
		for _, key := range []string{"summary", "description", "runbook_url"} {
			if strings.TrimSpace(r.Annotations[key]) == "" {
				t.Errorf("%s: no %s annotation", name, key)
			}
		}
		if r.Labels["severity"] == "" {
			t.Errorf("%s: no severity label", name)
		}
		anchor, ok := strings.CutPrefix(r.Annotations["runbook_url"], runbookURLPrefix)
		if !ok {
			t.Errorf("%s: runbook_url %q is not under %s", name, r.Annotations["runbook_url"], runbookURLPrefix)
			continue
		}
		if anchor != strings.ToLower(name) || !anchors[anchor] {
			t.Errorf("%s: runbook_url anchor %q has no heading `## %s` in %s", name, anchor, name, runbookFile)
		}
	}
}

// TestGrafanaRulesMatchPrometheusRule: the Grafana-managed rules must alert on
// exactly what the PrometheusRule alerts on.
func TestGrafanaRulesMatchPrometheusRule(t *testing.T) {
	_, want := loadPrometheusRule(t)
	var file struct {
		APIVersion int `json:"apiVersion"`
		Groups     []struct {
			OrgID    int    `json:"orgId"`
			Name     string `json:"name"`
			Folder   string `json:"folder"`
			Interval string `json:"interval"`
			Rules    []struct {
				UID       string `json:"uid"`
				Title     string `json:"title"`
				Condition string `json:"condition"`
				Data      []struct {
					RefID             string         `json:"refId"`
					RelativeTimeRange map[string]int `json:"relativeTimeRange"`
					DatasourceUID     string         `json:"datasourceUid"`
					Model             map[string]any `json:"model"`
				} `json:"data"`
				NoDataState  string            `json:"noDataState"`
				ExecErrState string            `json:"execErrState"`
				For          string            `json:"for"`
				Labels       map[string]string `json:"labels"`
				Annotations  map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	}
	readYAML(t, grafanaRuleFile, &file, true)
	if file.APIVersion != 1 || len(file.Groups) == 0 {
		t.Fatalf("%s: not a Grafana alerting provisioning file (apiVersion 1, groups)", grafanaRuleFile)
	}
	seen := map[string]bool{}
	uids := map[string]bool{}
	for _, g := range file.Groups {
		if g.Folder == "" || g.Interval == "" {
			t.Errorf("group %q: folder and interval are required", g.Name)
		}
		for _, r := range g.Rules {
			w, ok := want[r.Title]
			if !ok {
				t.Errorf("Grafana rule %q is not in the PrometheusRule", r.Title)
				continue
			}
			seen[r.Title] = true
			if r.UID == "" || uids[r.UID] || len(r.UID) > 40 {
				t.Errorf("%s: uid %q must be set, unique and at most 40 characters", r.Title, r.UID)
			}
			uids[r.UID] = true
			queries := map[string]map[string]any{}
			for _, d := range r.Data {
				queries[d.RefID] = d.Model
				if d.DatasourceUID != "__expr__" && d.DatasourceUID == "" {
					t.Errorf("%s: query %s has no datasourceUid", r.Title, d.RefID)
				}
			}
			cond, ok := queries[r.Condition]
			if !ok || cond["expression"] != "is_number($A)" {
				t.Errorf("%s: condition %q must be the math expression is_number($A)", r.Title, r.Condition)
			}
			expr, _ := queries["A"]["expr"].(string)
			if normalize(expr) != normalize(w.Expr) {
				t.Errorf("%s: Grafana query\n  %s\ndiffers from the PrometheusRule's\n  %s", r.Title, normalize(expr), normalize(w.Expr))
			}
			if queries["A"]["instant"] != true {
				t.Errorf("%s: query A must be instant, as Prometheus evaluates rules", r.Title)
			}
			if r.For != w.For {
				t.Errorf("%s: for %q, PrometheusRule says %q", r.Title, r.For, w.For)
			}
			if r.Labels["severity"] != w.Labels["severity"] {
				t.Errorf("%s: severity %q, PrometheusRule says %q", r.Title, r.Labels["severity"], w.Labels["severity"])
			}
			if r.Annotations["runbook_url"] != w.Annotations["runbook_url"] || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: needs the PrometheusRule's runbook_url, a summary and a description", r.Title)
			}
			if r.ExecErrState != "Error" {
				t.Errorf("%s: execErrState %q; a query that fails must alert, not read as all clear", r.Title, r.ExecErrState)
			}
			if r.NoDataState != "OK" {
				t.Errorf("%s: noDataState %q; the query returns nothing while all is well, so it must be OK", r.Title, r.NoDataState)
			}
		}
	}
	for _, name := range wantAlerts {
		if !seen[name] {
			t.Errorf("%s has no Grafana rule", name)
		}
	}
}

func normalize(expr string) string { return strings.Join(strings.Fields(expr), " ") }
