package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The Grafana dashboard's queries are checked against what the daemon
// really exports: every metric name an expression uses must be in a live
// scrape, and every expression must run on a real Prometheus server that
// scrapes the daemon and return at least one series.

const dashboardPath = "../../deploy/grafana/rotator-dashboard.json"

// promJob is the scrape job of the test's Prometheus; the dashboard's $job
// variable is set to it.
const promJob = "rotator"

// grafanaVars stands in for Grafana's variables when a query is run.
var grafanaVars = map[string]string{
	"__rate_interval": "1m",
	"__range":         "5m",
	"__interval":      "15s",
	"job":             promJob,
}

type dashPanel struct {
	ID          int             `json:"id"`
	Type        string          `json:"type"`
	Title       string          `json:"title"`
	Description string          `json:"description"`
	Datasource  json.RawMessage `json:"datasource"`
	Targets     []struct {
		RefID      string          `json:"refId"`
		Expr       string          `json:"expr"`
		Datasource json.RawMessage `json:"datasource"`
	} `json:"targets"`
	// Panels holds a collapsed row's panels.
	Panels []dashPanel `json:"panels"`
}

type dashVariable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Datasource json.RawMessage `json:"datasource"`
}

type dashboardFile struct {
	UID        string      `json:"uid"`
	Title      string      `json:"title"`
	Panels     []dashPanel `json:"panels"`
	Templating struct {
		List []dashVariable `json:"list"`
	} `json:"templating"`
}

// dashQuery is one target expression and where it sits.
type dashQuery struct {
	panel, refID, expr string
}

func (q dashQuery) String() string { return fmt.Sprintf("panel %q query %s", q.panel, q.refID) }

func loadDashboard(t *testing.T, path string) dashboardFile {
	t.Helper()
	raw, err := os.ReadFile(path)
	must(t, err)
	var d dashboardFile
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return d
}

// walkPanels visits every panel, including those nested in rows.
func walkPanels(ps []dashPanel, visit func(dashPanel)) {
	for _, p := range ps {
		visit(p)
		walkPanels(p.Panels, visit)
	}
}

func dashboardQueries(d dashboardFile) []dashQuery {
	var qs []dashQuery
	walkPanels(d.Panels, func(p dashPanel) {
		for _, tg := range p.Targets {
			qs = append(qs, dashQuery{panel: p.Title, refID: tg.RefID, expr: tg.Expr})
		}
	})
	return qs
}

// labelValuesRE matches a Grafana Prometheus variable query of the form
// label_values(metric, label).
var labelValuesRE = regexp.MustCompile(`^\s*label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$`)

// variableQuery returns the text of a query variable's query, which Grafana
// stores either as a string or as {"query": "..."}.
func variableQuery(v dashVariable) string {
	var s string
	if json.Unmarshal(v.Query, &s) == nil {
		return s
	}
	var o struct {
		Query string `json:"query"`
	}
	_ = json.Unmarshal(v.Query, &o)
	return o.Query
}

// grafanaVarRE matches $name, ${name}, ${name:format} and [[name]].
var grafanaVarRE = regexp.MustCompile(`\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)\]\]`)

// substitute replaces the Grafana variables of an expression as Grafana
// would for the test's Prometheus. A $ followed by a digit is a
// label_replace back-reference, left alone; any other unknown variable is an
// error.
func substitute(expr string) (string, error) {
	var unknown []string
	out := grafanaVarRE.ReplaceAllStringFunc(expr, func(m string) string {
		sub := grafanaVarRE.FindStringSubmatch(m)
		name := sub[1] + sub[2] + sub[3]
		if v, ok := grafanaVars[name]; ok {
			return v
		}
		if name[0] >= '0' && name[0] <= '9' {
			return m
		}
		unknown = append(unknown, m)
		return m
	})
	if len(unknown) > 0 {
		return "", fmt.Errorf("unknown Grafana variable %s", strings.Join(unknown, ", "))
	}
	return out, nil
}

// PromQL words that are never metric names. Aggregations and functions are
// recognised by the "(" that follows them instead.
var (
	labelListKeywords = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}
	otherKeywords     = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true, "inf": true, "nan": true}
)

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdentChar(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// skipString returns the index after the string literal that starts at i.
func skipString(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && q != '`':
			j++
		case s[j] == q:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated string at offset %d", i)
}

func unquote(lit string) string {
	if lit[0] == '\'' {
		lit = `"` + strings.ReplaceAll(lit[1:len(lit)-1], `"`, `\"`) + `"`
	}
	if v, err := strconv.Unquote(lit); err == nil {
		return v
	}
	return lit[1 : len(lit)-1]
}

// closing returns the index of the bracket that closes the one at i,
// skipping string literals.
func closing(s string, i int) (int, error) {
	open, shut := s[i], map[byte]byte{'(': ')', '[': ']', '{': '}'}[s[i]]
	depth := 0
	for j := i; j < len(s); j++ {
		switch c := s[j]; {
		case c == '"' || c == '\'' || c == '`':
			k, err := skipString(s, j)
			if err != nil {
				return 0, err
			}
			j = k - 1
		case c == open:
			depth++
		case c == shut:
			depth--
			if depth == 0 {
				return j, nil
			}
		}
	}
	return 0, fmt.Errorf("unclosed %q at offset %d", open, i)
}

// matcherNames returns the metric names set inside a selector's braces:
// {__name__="x"}, or a quoted name on its own ({"x"}, Prometheus 3).
func matcherNames(body string) ([]string, error) {
	var names []string
	lastIdent, lastOp := "", ""
	for i := 0; i < len(body); {
		c := body[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			j, err := skipString(body, i)
			if err != nil {
				return nil, err
			}
			switch {
			case lastIdent == "__name__" && lastOp == "=":
				names = append(names, unquote(body[i:j]))
			case lastIdent == "__name__":
				return nil, fmt.Errorf("__name__ %s: only an exact name can be checked", lastOp)
			case lastOp == "":
				names = append(names, unquote(body[i:j]))
			}
			lastIdent, lastOp = "", ""
			i = j
		case isIdentStart(c):
			j := i
			for j < len(body) && isIdentChar(body[j]) {
				j++
			}
			lastIdent, lastOp = body[i:j], ""
			i = j
		case c == '=' || c == '!' || c == '~':
			lastOp += string(c)
			i++
		case c == ',':
			lastIdent, lastOp = "", ""
			i++
		default:
			i++
		}
	}
	return names, nil
}

// promqlMetricNames lists the metric names a PromQL expression selects, in
// order of first use. It is a small lexer, not a parser: string literals,
// label matchers, range and subquery brackets, label lists after
// by/without/on/ignoring/group_left/group_right, numbers, durations and
// keywords are skipped; a word followed by "(" is a function or
// aggregation; every other word is a metric name. The expression must have
// its Grafana variables substituted.
func promqlMetricNames(expr string) ([]string, error) {
	var names []string
	add := func(n ...string) {
		for _, x := range n {
			if !slices.Contains(names, x) {
				names = append(names, x)
			}
		}
	}
	s, depth := expr, 0
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '(':
			depth++
			i++
		case c == ')':
			if depth--; depth < 0 {
				return nil, fmt.Errorf("unmatched ) at offset %d", i)
			}
			i++
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			j, err := skipString(s, i)
			if err != nil {
				return nil, err
			}
			i = j
		case c == '{':
			j, err := closing(s, i)
			if err != nil {
				return nil, err
			}
			n, err := matcherNames(s[i+1 : j])
			if err != nil {
				return nil, err
			}
			add(n...)
			i = j + 1
		case c == '[':
			j, err := closing(s, i)
			if err != nil {
				return nil, err
			}
			i = j + 1
		case isDigit(c) || (c == '.' && i+1 < len(s) && isDigit(s[i+1])):
			// Numbers, hex, exponents and durations such as 1h30m.
			for i < len(s) && (isIdentChar(s[i]) || s[i] == '.') {
				i++
			}
		case isIdentStart(c):
			j := i
			for j < len(s) && isIdentChar(s[j]) {
				j++
			}
			word, lower := s[i:j], strings.ToLower(s[i:j])
			k := j
			for k < len(s) && strings.IndexByte(" \t\r\n", s[k]) >= 0 {
				k++
			}
			nextIsParen := k < len(s) && s[k] == '('
			// An aggregation may put its grouping first: sum by (x) (...).
			if m := k; !nextIsParen && m < len(s) && isIdentStart(s[m]) {
				for m < len(s) && isIdentChar(s[m]) {
					m++
				}
				if w := strings.ToLower(s[k:m]); w == "by" || w == "without" {
					nextIsParen = true
				}
			}
			switch {
			case labelListKeywords[lower]:
				if nextIsParen {
					end, err := closing(s, k)
					if err != nil {
						return nil, err
					}
					j = end + 1
				}
			case otherKeywords[lower], nextIsParen:
			default:
				add(word)
			}
			i = j
		case c == '$':
			return nil, fmt.Errorf("unsubstituted variable at offset %d", i)
		default:
			i++
		}
	}
	if depth != 0 {
		return nil, errors.New("unclosed (")
	}
	return names, nil
}

// scrapeFamilies GETs /metrics and parses it.
func scrapeFamilies(addr string) (map[string]*dto.MetricFamily, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

// seriesNames turns metric families into the series names Prometheus
// stores for them: a histogram's _bucket, _sum and _count, a summary's own
// name plus _sum and _count.
func seriesNames(fams map[string]*dto.MetricFamily) map[string]bool {
	out := map[string]bool{}
	for name, f := range fams {
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			out[name+"_bucket"], out[name+"_sum"], out[name+"_count"] = true, true, true
		case dto.MetricType_SUMMARY:
			out[name], out[name+"_sum"], out[name+"_count"] = true, true, true
		default:
			out[name] = true
		}
	}
	return out
}

func sample(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		for k, v := range labels {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

// promServer is a real Prometheus server started for one test.
type promServer struct {
	base string
}

type promResponse struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	} `json:"data"`
}

type promSeries struct {
	Metric map[string]string `json:"metric"`
	// Value is [time, "value"] in an instant query's answer.
	Value []any `json:"value"`
}

func (s promSeries) String() string {
	if len(s.Value) == 2 {
		return fmt.Sprint(s.Value[1])
	}
	return "?"
}

// query runs an instant query and returns its series. A query Prometheus
// refuses comes back as an error with Prometheus's message.
func (p *promServer) query(expr string) ([]promSeries, error) {
	resp, err := http.PostForm(p.base+"/api/v1/query", url.Values{"query": {expr}})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var r promResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("HTTP %d: %.300s", resp.StatusCode, body)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("status %s: %s: %s", r.Status, r.ErrorType, r.Error)
	}
	switch r.Data.ResultType {
	case "vector", "matrix":
		var series []promSeries
		if err := json.Unmarshal(r.Data.Result, &series); err != nil {
			return nil, err
		}
		return series, nil
	default:
		return nil, fmt.Errorf("result type %s, want a vector: Grafana panels need series", r.Data.ResultType)
	}
}

func (p *promServer) labelValues(label, match string) ([]string, error) {
	resp, err := http.Get(p.base + "/api/v1/label/" + label + "/values?" + url.Values{"match[]": {match}}.Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string   `json:"status"`
		Error  string   `json:"error"`
		Data   []string `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, err
	}
	if r.Status != "success" {
		return nil, errors.New(r.Error)
	}
	return r.Data, nil
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	must(t, ln.Close())
	return port
}

// startPrometheus runs the prometheus binary on a free loopback port with a
// temporary TSDB, scraping target every second. The target carries the
// labels the Prometheus Operator adds (namespace, pod), so the daemon's own
// namespace label arrives as exported_namespace, as it does in a cluster.
// The server is killed when the test ends.
func startPrometheus(t *testing.T, bin, target string) *promServer {
	t.Helper()
	return startPrometheusWith(t, bin, t.TempDir(), fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: %s
    static_configs:
      - targets: [%q]
        labels: {namespace: rotator-system, pod: rotator-test-0}
`, promJob, target))
}

// startPrometheusWith runs prometheus with config cfg written into dir, so
// that relative rule_files resolve there.
func startPrometheusWith(t *testing.T, bin, dir, cfg string) *promServer {
	t.Helper()
	cfgPath := filepath.Join(dir, "prometheus.yml")
	must(t, os.WriteFile(cfgPath, []byte(cfg), 0o600))
	// A port found free can be taken before prometheus binds it; try again
	// then.
	for attempt := 1; ; attempt++ {
		p, portTaken := runPrometheus(t, bin, cfgPath, dir, attempt)
		if p != nil {
			return p
		}
		if !portTaken || attempt == 3 {
			t.Fatal("prometheus did not start")
		}
	}
}

// runPrometheus starts one prometheus process and waits until it is ready.
// It returns nil and whether the port was taken if the process exited.
func runPrometheus(t *testing.T, bin, cfgPath, dir string, attempt int) (*promServer, bool) {
	t.Helper()
	port := freePort(t)
	logPath := filepath.Join(dir, fmt.Sprintf("prometheus-%d.log", attempt))
	logFile, err := os.Create(logPath)
	must(t, err)
	cmd := exec.Command(bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, fmt.Sprintf("data-%d", attempt)),
		"--storage.tsdb.retention.time=1h",
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port),
		"--log.level=warn")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		t.Fatalf("start prometheus: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = logFile.Close()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	p := &promServer{base: fmt.Sprintf("http://127.0.0.1:%d", port)}
	for deadline := time.Now().Add(15 * time.Second); ; {
		select {
		case <-exited:
			out, _ := os.ReadFile(logPath)
			if strings.Contains(string(out), "address already in use") {
				t.Logf("prometheus lost port %d to another process", port)
				return nil, true
			}
			t.Logf("prometheus exited at start (%s):\n%s", cmd.ProcessState, out)
			return nil, false
		default:
		}
		if resp, err := http.Get(p.base + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, false
			}
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(logPath)
			t.Fatalf("prometheus not ready on port %d after 15s:\n%s", port, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDashboardQueriesAgainstLiveMetrics runs the daemon until it has
// finished a successful cycle, checks each dashboard query's metric names
// against its /metrics, then runs each query on a real Prometheus that
// scrapes the daemon: the query must be valid and return at least one series.
func TestDashboardQueriesAgainstLiveMetrics(t *testing.T) {
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("the dashboard test runs a real Prometheus server, and there is no prometheus binary in PATH (%v); "+
			"install it with `apt-get install prometheus` (Debian/Ubuntu; promtool comes with it)", err)
	}
	dash := loadDashboard(t, dashboardPath)
	queries := dashboardQueries(dash)
	if len(queries) == 0 {
		t.Fatalf("%s has no queries", dashboardPath)
	}

	w := newWorld(t)
	r := w.startDaemon(nil)
	// Prometheus scrapes from the start, so the rate() queries have samples
	// by the time the daemon has finished its first cycles.
	prom := startPrometheus(t, promBin, r.d.Addr())
	var fams map[string]*dto.MetricFamily
	w.eventually(20*time.Second, "a successful cycle and the API token's expiry in /metrics", func() bool {
		fams, err = scrapeFamilies(r.d.Addr())
		if err != nil {
			t.Logf("scrape: %v", err)
			return false
		}
		ok, _ := sample(fams, "rotator_cycles_total", map[string]string{"result": "success"})
		_, api := sample(fams, "rotator_gitlab_api_token_expiry_timestamp_seconds", nil)
		return ok >= 1 && api
	})
	exported := seriesNames(fams)

	// Three samples of the last metric to appear: enough for rate() and
	// increase() over every series.
	w.eventually(20*time.Second, "Prometheus to scrape the daemon three times after its first success", func() bool {
		s, err := prom.query(`count_over_time(rotator_gitlab_api_token_expiry_timestamp_seconds{job="` + promJob + `"}[1m]) >= 3`)
		return err == nil && len(s) > 0
	})

	used := map[string]bool{}
	for _, q := range queries {
		expr, err := substitute(q.expr)
		if err != nil {
			t.Errorf("%s: %v\n  expr: %s", q, err, q.expr)
			continue
		}
		names, err := promqlMetricNames(expr)
		if err != nil {
			t.Errorf("%s: cannot read metric names: %v\n  expr: %s", q, err, expr)
		}
		if len(names) == 0 && err == nil {
			t.Errorf("%s uses no metric\n  expr: %s", q, expr)
		}
		var missing []string
		for _, n := range names {
			used[n] = true
			if !exported[n] {
				missing = append(missing, n)
			}
		}
		if len(missing) > 0 {
			t.Errorf("%s uses %s, which the daemon does not export\n  expr: %s", q, strings.Join(missing, ", "), expr)
		}
		series, err := prom.query(expr)
		switch {
		case err != nil:
			t.Errorf("%s: Prometheus refuses the query: %v\n  expr: %s", q, err, expr)
		case len(series) == 0:
			t.Errorf("%s returns no series from a live daemon (metrics used: %s)\n  expr: %s", q, strings.Join(names, ", "), expr)
		default:
			t.Logf("ok  %-28s %s: %d series, first %s, from %s", q.panel, q.refID, len(series), series[0], strings.Join(names, ", "))
		}
		// The targets table must name the targets' namespaces, not the
		// daemon's own (exported_namespace handling).
		if strings.Contains(expr, "exported_namespace") && err == nil {
			var got []string
			for _, s := range series {
				got = append(got, s.Metric["namespace"]+"/"+s.Metric["secret"])
			}
			sort.Strings(got)
			want := []string{w.namespaces[0] + "/gitlab", w.namespaces[1] + "/gitlab"}
			if !slices.Equal(got, want) {
				t.Errorf("%s: rows %v, want %v", q, got, want)
			}
		}
	}

	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		text := variableQuery(v)
		m := labelValuesRE.FindStringSubmatch(text)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(metric, label), which this test can check", v.Name, text)
			continue
		}
		used[m[1]] = true
		if !exported[m[1]] {
			t.Errorf("variable %s uses %s, which the daemon does not export", v.Name, m[1])
		}
		vals, err := prom.labelValues(m[2], m[1])
		if err != nil || !slices.Contains(vals, grafanaVars[v.Name]) {
			t.Errorf("variable %s: %s gives %v (%v), want it to offer %q", v.Name, text, vals, err, grafanaVars[v.Name])
		}
	}

	var unused []string
	for n := range exported {
		if strings.HasPrefix(n, "rotator_") && !used[n] && !strings.HasSuffix(n, "_sum") && !strings.HasSuffix(n, "_count") {
			unused = append(unused, n)
		}
	}
	sort.Strings(unused)
	t.Logf("%d queries checked; rotator series not on the dashboard: %v", len(queries), unused)
}

// TestDashboardStructure checks what Grafana needs to import the dashboard
// and what an operator needs to read it, without a cluster.
func TestDashboardStructure(t *testing.T) {
	d := loadDashboard(t, dashboardPath)
	if d.UID != "rotator" || d.Title != "rotator" {
		t.Errorf("uid %q title %q, want rotator/rotator", d.UID, d.Title)
	}
	hasDS := false
	for _, v := range d.Templating.List {
		if v.Name == "datasource" && v.Type == "datasource" && string(v.Query) == `"prometheus"` {
			hasDS = true
		}
	}
	if !hasDS {
		t.Error("no datasource variable of type prometheus")
	}
	usesVar := func(raw json.RawMessage) bool {
		var ds struct {
			Type, UID string
		}
		return json.Unmarshal(raw, &ds) == nil && ds.Type == "prometheus" && ds.UID == "${datasource}"
	}
	ids := map[int]string{}
	walkPanels(d.Panels, func(p dashPanel) {
		if other, dup := ids[p.ID]; dup {
			t.Errorf("panels %q and %q share id %d", other, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		if p.Type == "row" {
			return
		}
		if strings.TrimSpace(p.Description) == "" {
			t.Errorf("panel %q has no description", p.Title)
		}
		if !usesVar(p.Datasource) {
			t.Errorf("panel %q datasource %s, want ${datasource}", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no queries", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Datasource != nil && !usesVar(tg.Datasource) {
				t.Errorf("panel %q query %s datasource %s, want ${datasource}", p.Title, tg.RefID, tg.Datasource)
			}
		}
	})
}

// TestDashboardMetricNameLexer pins promqlMetricNames and the panel walk
// on cases the dashboard may grow into.
func TestDashboardMetricNameLexer(t *testing.T) {
	cases := []struct {
		expr string
		want []string
	}{
		{`max(rotator_token_expiry_timestamp_seconds{job="rotator"}) - time()`, []string{"rotator_token_expiry_timestamp_seconds"}},
		{`sum by (result) (increase(rotator_cycles_total{job="x", result=~"fail.*"}[1m]))`, []string{"rotator_cycles_total"}},
		{`histogram_quantile(0.95, sum by (le) (rate(a_bucket[5m:1m])))`, []string{"a_bucket"}},
		{`sum(x) without (pod, le) / ignoring (a) group_left (b) z offset 5m`, []string{"x", "z"}},
		{`a and on (instance) (b == bool 1) or c unless on() d`, []string{"a", "b", "c", "d"}},
		{`label_replace(x, "namespace", "$1", "exported_namespace", "(.+)")`, []string{"x"}},
		{`SUM BY (job) (rate(y[1h30m] @ end())) * 1e3 + Inf - NaN`, []string{"y"}},
		{`{__name__="q", job='by'} + {"utf8.name"} + record:rule:sum`, []string{"q", "utf8.name", "record:rule:sum"}},
		{`count by (version) (rotator_build_info) # a comment with words`, []string{"rotator_build_info"}},
		{`rotator_leader == on (instance) group_right rotator_leader`, []string{"rotator_leader"}},
	}
	for _, c := range cases {
		got, err := promqlMetricNames(c.expr)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("promqlMetricNames(%s) = %v, %v; want %v", c.expr, got, err, c.want)
		}
	}
	for _, bad := range []string{`x + $job`, `x{a="b}`, `rate(x[5m]`, `x)`, `{__name__=~"rot.*"}`} {
		if got, err := promqlMetricNames(bad); err == nil {
			t.Errorf("promqlMetricNames(%s) = %v, want an error", bad, got)
		}
	}
	if got, err := substitute(`rate(x{job="$job"}[$__rate_interval]) and ${job:raw} "$1"`); err != nil ||
		got != `rate(x{job="rotator"}[1m]) and rotator "$1"` {
		t.Errorf("substitute = %q, %v", got, err)
	}
	if _, err := substitute(`x{ns="$namespace"}`); err == nil {
		t.Error("an unknown variable was not reported")
	}

	// Panels in a collapsed row are found.
	var d dashboardFile
	must(t, json.Unmarshal([]byte(`{"panels":[
		{"type":"stat","title":"top","targets":[{"refId":"A","expr":"a"}]},
		{"type":"row","title":"r","collapsed":true,"panels":[
			{"type":"timeseries","title":"inner","targets":[{"refId":"A","expr":"b"},{"refId":"B","expr":"c"}]}]}]}`), &d))
	var got []string
	for _, q := range dashboardQueries(d) {
		got = append(got, q.panel+":"+q.expr)
	}
	if want := []string{"top:a", "inner:b", "inner:c"}; !slices.Equal(got, want) {
		t.Errorf("queries %v, want %v", got, want)
	}
}
