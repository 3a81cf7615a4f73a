package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every bad input ends in one line naming what is wrong, exit status 2, and
// not a single request to GitLab or Kubernetes.
func TestBadInputTouchesNothing(t *testing.T) {
	w := newWorld(t)
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		must(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	empty := file("empty", "")
	crlf := file("crlf", w.pat+"\r\n")
	notCA := file("not-a-ca.pem", "hello\n")
	typo := file("typo.yaml", "token:\n  renewBefor: 3d\n")
	placeholder := file("placeholder", "REPLACE-ME\n")

	cases := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"invalid cron", []string{"daemon", "--schedule", "61 * * * *"}, nil, "schedule"},
		{"renewBefore equal to lifetime", []string{"run-once", "--token-lifetime", "30d", "--renew-before", "30d"}, nil, "token.renewBefore"},
		{"renewBefore beyond lifetime", []string{"run-once", "--renew-before", "40d"}, nil, "token.renewBefore"},
		{"unknown scope", []string{"run-once", "--token-scopes", "read_registry,read_everything"}, nil, "token.scopes"},
		{"project and group", []string{"run-once", "--group", "games"}, nil, "gitlab"},
		{"neither project nor group", []string{"run-once", "--project", ""}, nil, "project"},
		{"bad URL", []string{"run-once", "--gitlab-url", "htp://gitlab"}, nil, "gitlab.url"},
		{"http without allow", []string{"run-once", "--gitlab-allow-insecure-http=false"}, nil, "gitlab.url"},
		{"missing token file", []string{"run-once", "--gitlab-token-file", filepath.Join(dir, "nope")}, nil, "gitlab.tokenFile"},
		{"empty token file", []string{"run-once", "--gitlab-token-file", empty}, nil, "gitlab.tokenFile"},
		{"unreadable token file", []string{"run-once", "--gitlab-token-file", dir}, nil, "gitlab.tokenFile"},
		{"token file with CRLF", []string{"run-once", "--gitlab-token-file", crlf}, nil, "gitlab.tokenFile"},
		{"invalid namespace", []string{"run-once", "--namespaces", "Game_Servers"}, nil, "namespace"},
		{"invalid secret name", []string{"run-once", "--secret-name", "GitLab!"}, nil, "secretName"},
		{"invalid serviceaccount", []string{"run-once", "--service-accounts", "default,Agones SDK"}, nil, "serviceAccounts"},
		{"reserved prefix", []string{"run-once", "--token-prefix", "gitlab-deploy-token"}, nil, "token.prefix"},
		{"unreadable CA", []string{"run-once", "--gitlab-ca-file", filepath.Join(dir, "missing.pem")}, nil, "gitlab.caFile"},
		{"CA without certificates", []string{"run-once", "--gitlab-ca-file", notCA}, nil, "gitlab.caFile"},
		{"unknown YAML key", []string{"run-once", "--config", typo}, nil, "renewBefor"},
		{"negative duration", []string{"run-once", "--token-lifetime", "-3d"}, nil, "token-lifetime"},
		{"lifetime over 365d", []string{"run-once", "--token-lifetime", "400d"}, nil, "token.lifetime"},
		{"bad selector", []string{"run-once", "--namespace-selector", "team in (a"}, nil, "namespace"},
		{"bad log format", []string{"run-once", "--log-format", "xml"}, nil, "log.format"},
		{"bad listen", []string{"daemon", "--listen", "8080"}, nil, "daemon.listen"},
		{"retryMax below retryMin", []string{"daemon", "--retry-min", "10m", "--retry-max", "1m"}, nil, "daemon.retryMax"},
		{"bad verify repository", []string{"run-once", "--verify-repository", "Games/Fleet"}, nil, "verify.repository"},
		{"bad bool env", []string{"run-once"}, map[string]string{"ROTATOR_VERIFY": "yes please"}, "ROTATOR_VERIFY"},
		{"bad ROTATOR_NOW", []string{"run-once"}, map[string]string{"ROTATOR_NOW": "tomorrow"}, "ROTATOR_NOW"},
		{"unknown flag", []string{"run-once", "--frobnicate"}, nil, "frobnicate"},
		{"extra argument", []string{"status", "now"}, nil, "takes no arguments"},
		{"bad status output", []string{"status", "-o", "yaml"}, nil, "--output"},
		{"registry host with scheme", []string{"run-once", "--registry-host", "https://registry.example"}, nil, "gitlab.registryHost"},
		{"Pushgateway URL with a password", []string{"run-once", "--pushgateway", "http://u:hunter2@pgw:9091"}, nil, "runOnce.pushgateway"},
		{"Pushgateway URL without a scheme", []string{"run-once"}, map[string]string{"ROTATOR_PUSHGATEWAY": "pgw:9091"}, "ROTATOR_PUSHGATEWAY"},
		{"the manifests' placeholder token", []string{"run-once", "--gitlab-token-file", placeholder}, nil, "placeholder"},
	}
	before := len(w.emu.Requests())
	kube0, err := cluster.Requests("rotator")
	must(t, err)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			saved := w.env
			w.env = map[string]string{"KUBECONFIG": cluster.KubeconfigPath}
			for k, v := range tc.env {
				w.env[k] = v
			}
			defer func() { w.env = saved }()
			code, _, stderr := w.run(tc.args...)
			msg := strings.TrimSpace(stderr)
			if code != 2 {
				t.Fatalf("exit %d, want 2; stderr %q", code, msg)
			}
			if strings.Contains(msg, "\n") || !strings.Contains(msg, tc.want) {
				t.Fatalf("want one line naming %q, got %q", tc.want, msg)
			}
			if strings.Contains(msg, "hunter2") {
				t.Fatalf("the error repeats a password: %q", msg)
			}
		})
	}
	if n := len(w.emu.Requests()) - before; n != 0 {
		t.Fatalf("bad input made %d GitLab requests", n)
	}
	kube1, err := cluster.Requests("rotator")
	must(t, err)
	if n := len(kube1) - len(kube0); n != 0 {
		t.Fatalf("bad input made %d Kubernetes requests", n)
	}
	// The counters do see a good run's requests.
	w.run("status")
	if len(w.emu.Requests()) == before {
		t.Fatal("GitLab request counter saw nothing from a good run")
	}
	if kube2, _ := cluster.Requests("rotator"); len(kube2) == len(kube1) {
		t.Fatal("Kubernetes request counter saw nothing from a good run")
	}
	t.Logf("%d bad inputs: each exit 2 with one line, 0 GitLab and 0 Kubernetes requests", len(cases))
}
