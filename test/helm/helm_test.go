// Package helm renders deploy/helm/rotator with the Helm library and checks
// it against the kustomize variants in deploy/, which it must reproduce.
package helm

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resource"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/rotator-dev/rotator/internal/config"
)

const (
	chartDir    = "../../deploy/helm/rotator"
	releaseName = "rotator"
	namespace   = "rotator-system"
)

// key names one rendered object.
type key struct{ Kind, Namespace, Name string }

func (k key) String() string { return k.Kind + " " + k.Namespace + "/" + k.Name }

// objects are rendered manifests by kind, namespace and name.
type objects map[key]map[string]any

func (o objects) keys() []string {
	var out []string
	for k := range o {
		out = append(out, k.String())
	}
	sort.Strings(out)
	return out
}

func (o objects) ofKind(kind string) []key {
	var out []key
	for k := range o {
		if k.Kind == kind {
			out = append(out, k)
		}
	}
	return out
}

func (o objects) get(t *testing.T, kind, ns, name string) map[string]any {
	t.Helper()
	obj, ok := o[key{kind, ns, name}]
	if !ok {
		t.Fatalf("no %s %s/%s rendered; have %v", kind, ns, name, o.keys())
	}
	return obj
}

// into decodes part of an object (path of map keys) into a typed value.
func into(t *testing.T, obj map[string]any, v any, path ...string) {
	t.Helper()
	var cur any = obj
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("no %s in object", strings.Join(path, "."))
		}
		cur = m[p]
	}
	js, err := json.Marshal(cur)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(js, v); err != nil {
		t.Fatalf("decode %s: %v", strings.Join(path, "."), err)
	}
}

func loadChart(t *testing.T, path string) *chart.Chart {
	t.Helper()
	c, err := loader.Load(path)
	if err != nil {
		t.Fatalf("load chart %s: %v", path, err)
	}
	return c
}

func readValues(t *testing.T, file string) map[string]any {
	t.Helper()
	v, err := chartutil.ReadValuesFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// renderChart renders the chart as `helm install rotator -n rotator-system`
// would, returning the error instead of failing.
func renderChart(c *chart.Chart, values map[string]any) (map[string]string, error) {
	vals, err := chartutil.ToRenderValues(c, values,
		chartutil.ReleaseOptions{Name: releaseName, Namespace: namespace, Revision: 1, IsInstall: true},
		chartutil.DefaultCapabilities)
	if err != nil {
		return nil, err
	}
	return engine.Render(c, vals)
}

// helmObjects renders the chart and parses every manifest.
func helmObjects(t *testing.T, values map[string]any) objects {
	t.Helper()
	files, err := renderChart(loadChart(t, chartDir), values)
	if err != nil {
		t.Fatalf("render chart: %v", err)
	}
	return parseRendered(t, files)
}

func parseRendered(t *testing.T, files map[string]string) objects {
	t.Helper()
	out := objects{}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		if !strings.HasSuffix(name, ".yaml") {
			continue // NOTES.txt, _helpers.tpl
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(files[name]), 4096)
		for {
			var obj map[string]any
			if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v\n%s", name, err, files[name])
			}
			if obj == nil {
				continue
			}
			k := objKey(obj)
			if _, dup := out[k]; dup {
				t.Fatalf("%s rendered twice", k)
			}
			out[k] = obj
		}
	}
	return out
}

func objKey(obj map[string]any) key {
	meta, _ := obj["metadata"].(map[string]any)
	ns, _ := meta["namespace"].(string)
	name, _ := meta["name"].(string)
	kind, _ := obj["kind"].(string)
	return key{kind, ns, name}
}

// kustomizeObjects renders a kustomization as test/deploy does, less the
// Namespace, which the chart leaves to --create-namespace.
func kustomizeObjects(t *testing.T, dir string) objects {
	t.Helper()
	out := objects{}
	for _, r := range kustomizeResources(t, dir) {
		if r.GetKind() == "Namespace" {
			continue
		}
		obj, err := r.Map()
		if err != nil {
			t.Fatal(err)
		}
		out[objKey(obj)] = obj
	}
	return out
}

func kustomizeResources(t *testing.T, dir string) []*resource.Resource {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	return m.Resources()
}

// The chart, from documented values, renders what each kustomize variant
// does: the same objects (the Namespace aside), the same RBAC, pod specs,
// config, Service ports, PDB and ServiceMonitor endpoints.
func TestChartMatchesKustomize(t *testing.T) {
	cases := []struct{ name, values, kustomization string }{
		{"daemon", "testdata/daemon.yaml", "../../deploy/daemon"},
		{"cronjob", "testdata/cronjob.yaml", "../../deploy/cronjob"},
		{"namespace-selector", "testdata/namespace-selector.yaml", "../deploy/testdata/namespace-selector"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := helmObjects(t, readValues(t, tc.values))
			k := kustomizeObjects(t, tc.kustomization)
			if hk, kk := h.keys(), k.keys(); !reflect.DeepEqual(hk, kk) {
				t.Fatalf("objects differ\nhelm:      %v\nkustomize: %v", hk, kk)
			}
			for id, kobj := range k {
				hobj := h[id]
				switch id.Kind {
				case "Role", "ClusterRole":
					var hr, kr []rbacv1.PolicyRule
					into(t, hobj, &hr, "rules")
					into(t, kobj, &kr, "rules")
					if !reflect.DeepEqual(hr, kr) {
						t.Errorf("%s rules\nhelm:      %+v\nkustomize: %+v", id, hr, kr)
					}
				case "RoleBinding", "ClusterRoleBinding":
					for _, f := range []string{"roleRef", "subjects"} {
						var hv, kv any
						into(t, hobj, &hv, f)
						into(t, kobj, &kv, f)
						if !reflect.DeepEqual(hv, kv) {
							t.Errorf("%s %s\nhelm:      %v\nkustomize: %v", id, f, hv, kv)
						}
					}
				case "Deployment":
					same(t, id, hobj, kobj, "spec", "replicas")
					samePodSpec(t, id, hobj, kobj, "spec", "template", "spec")
				case "CronJob":
					var hs, ks batchv1.CronJobSpec
					into(t, hobj, &hs, "spec")
					into(t, kobj, &ks, "spec")
					hs.JobTemplate.Spec.Template, ks.JobTemplate.Spec.Template = corev1.PodTemplateSpec{}, corev1.PodTemplateSpec{}
					if !reflect.DeepEqual(hs, ks) {
						t.Errorf("%s spec\nhelm:      %+v\nkustomize: %+v", id, hs, ks)
					}
					samePodSpec(t, id, hobj, kobj, "spec", "jobTemplate", "spec", "template", "spec")
				case "ConfigMap":
					var hc, kc map[string]string
					into(t, hobj, &hc, "data")
					into(t, kobj, &kc, "data")
					var hy, ky any
					must(t, yaml.Unmarshal([]byte(hc["config.yaml"]), &hy))
					must(t, yaml.Unmarshal([]byte(kc["config.yaml"]), &ky))
					if !reflect.DeepEqual(hy, ky) {
						t.Errorf("config.yaml\nhelm:\n%s\nkustomize:\n%s", hc["config.yaml"], kc["config.yaml"])
					}
				case "Service":
					same(t, id, hobj, kobj, "spec", "ports")
				case "PodDisruptionBudget":
					same(t, id, hobj, kobj, "spec", "minAvailable")
				case "ServiceMonitor":
					same(t, id, hobj, kobj, "spec", "endpoints")
					same(t, id, hobj, kobj, "spec", "namespaceSelector")
					// The daemon's selects the rotator's pods (checked
					// below); the Pushgateway's someone else's Service.
					if strings.HasSuffix(id.Name, "-pushgateway") {
						same(t, id, hobj, kobj, "spec", "selector")
					}
				}
			}
			// Both select the rotator's pods; the chart adds the
			// release to the selector, as Helm charts do.
			// The Service, its ServiceMonitor and the PodDisruptionBudget
			// find them in turn.
			if id := (key{"Deployment", namespace, "rotator"}); h[id] != nil {
				var pods, svcLabels map[string]string
				into(t, h[id], &pods, "spec", "template", "metadata", "labels")
				selectorSelects := func(what string, obj map[string]any, labels map[string]string, path ...string) {
					t.Helper()
					var sel map[string]string
					into(t, obj, &sel, path...)
					if len(sel) == 0 {
						t.Errorf("%s has an empty selector", what)
					}
					for k, v := range sel {
						if labels[k] != v {
							t.Errorf("%s selector %v does not match %v", what, sel, labels)
						}
					}
				}
				selectorSelects("Deployment", h[id], pods, "spec", "selector", "matchLabels")
				if svc := h[key{"Service", namespace, "rotator-metrics"}]; svc != nil {
					selectorSelects("Service", svc, pods, "spec", "selector")
					into(t, svc, &svcLabels, "metadata", "labels")
				} else {
					t.Error("no Service rotator-metrics beside the Deployment")
				}
				if sm := h[key{"ServiceMonitor", namespace, "rotator"}]; sm != nil {
					selectorSelects("ServiceMonitor", sm, svcLabels, "spec", "selector", "matchLabels")
				}
				if pdb := h[key{"PodDisruptionBudget", namespace, "rotator"}]; pdb != nil {
					selectorSelects("PodDisruptionBudget", pdb, pods, "spec", "selector", "matchLabels")
				}
			}
		})
	}
}

func same(t *testing.T, id key, h, k map[string]any, path ...string) {
	t.Helper()
	var hv, kv any
	into(t, h, &hv, path...)
	into(t, k, &kv, path...)
	if !reflect.DeepEqual(hv, kv) {
		t.Errorf("%s %s\nhelm:      %v\nkustomize: %v", id, strings.Join(path, "."), hv, kv)
	}
}

// samePodSpec compares pod specs as Kubernetes reads them: containers
// (image, args, env, ports, probes, securityContext, resources, mounts),
// volumes, serviceAccountName, securityContext, restartPolicy.
func samePodSpec(t *testing.T, id key, h, k map[string]any, path ...string) {
	t.Helper()
	var hs, ks corev1.PodSpec
	into(t, h, &hs, path...)
	into(t, k, &ks, path...)
	if len(hs.Containers) == 0 || hs.ServiceAccountName == "" || len(hs.Volumes) == 0 {
		t.Fatalf("%s: empty pod spec rendered: %+v", id, hs)
	}
	if !reflect.DeepEqual(hs, ks) {
		hj, _ := json.MarshalIndent(hs, "", "  ")
		kj, _ := json.MarshalIndent(ks, "", "  ")
		t.Errorf("%s pod spec\nhelm:\n%s\nkustomize:\n%s", id, hj, kj)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// with returns the values file plus overrides (a shallow merge).
func with(t *testing.T, file string, overrides map[string]any) map[string]any {
	v := readValues(t, file)
	for k, o := range overrides {
		v[k] = o
	}
	return v
}

func TestSingleReplicaDropsPDB(t *testing.T) {
	h := helmObjects(t, with(t, "testdata/daemon.yaml", map[string]any{"replicas": 1}))
	if pdbs := h.ofKind("PodDisruptionBudget"); len(pdbs) != 0 {
		t.Fatalf("replicas 1 rendered %v", pdbs)
	}
	var replicas int
	into(t, h.get(t, "Deployment", namespace, "rotator"), &replicas, "spec", "replicas")
	if replicas != 1 {
		t.Fatalf("replicas = %d", replicas)
	}
	if len(helmObjects(t, readValues(t, "testdata/daemon.yaml")).ofKind("PodDisruptionBudget")) != 1 {
		t.Fatal("replicas 2 rendered no PodDisruptionBudget")
	}
}

func TestExistingTokenSecret(t *testing.T) {
	for _, file := range []string{"testdata/daemon.yaml", "testdata/cronjob.yaml"} {
		h := helmObjects(t, with(t, file, map[string]any{"gitlabToken": map[string]any{"existingSecret": "gitlab-api", "key": "api-token"}}))
		if s := h.ofKind("Secret"); len(s) != 0 {
			t.Errorf("%s with existingSecret rendered %v", file, s)
		}
		var pod corev1.PodSpec
		if len(h.ofKind("Deployment")) == 1 {
			into(t, h.get(t, "Deployment", namespace, "rotator"), &pod, "spec", "template", "spec")
		} else {
			into(t, h.get(t, "CronJob", namespace, "rotator"), &pod, "spec", "jobTemplate", "spec", "template", "spec")
		}
		var mounted string
		for _, v := range pod.Volumes {
			if v.Name == "gitlab-token" && v.Secret != nil {
				mounted = v.Secret.SecretName
			}
		}
		if mounted != "gitlab-api" {
			t.Errorf("%s: token volume mounts Secret %q, want gitlab-api", file, mounted)
		}
		// The config reads the token from the named key.
		cfg := renderedConfig(t, h)
		if !strings.Contains(cfg, "tokenFile: /var/run/secrets/rotator/gitlab/api-token") {
			t.Errorf("%s: config does not read the key api-token:\n%s", file, cfg)
		}
	}
	// Neither a value nor an existing Secret: refused, not a placeholder.
	_, err := renderChart(loadChart(t, chartDir), map[string]any{})
	if err == nil || !strings.Contains(err.Error(), "gitlabToken.existingSecret") {
		t.Fatalf("render without a token: %v", err)
	}
}

func renderedConfig(t *testing.T, h objects) string {
	t.Helper()
	var data map[string]string
	into(t, h.get(t, "ConfigMap", namespace, "rotator-config"), &data, "data")
	return data["config.yaml"]
}

// The rendered config.yaml passes the rotator's own config validation, for
// every values file and for settings passed through `config`.
func TestRenderedConfigValidates(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	must(t, os.WriteFile(token, []byte("glpat-"+strings.Repeat("x", 20)+"\n"), 0o600))
	cases := map[string]map[string]any{
		"daemon":             readValues(t, "testdata/daemon.yaml"),
		"cronjob":            readValues(t, "testdata/cronjob.yaml"),
		"namespace-selector": readValues(t, "testdata/namespace-selector.yaml"),
		"self-hosted group": with(t, "testdata/daemon.yaml", map[string]any{
			"gitlab":          map[string]any{"url": "https://gitlab.example.com", "project": "", "group": "games", "registryHost": "registry.example.com:5050"},
			"secretName":      "gitlab-registry",
			"serviceAccounts": []any{"agones-sdk"},
			"config":          map[string]any{"schedule": "@hourly", "token": map[string]any{"renewBefore": "7d"}, "verify": map[string]any{"repository": "games/fleet"}},
		}),
		// docs/operations.md passes the GitLab settings through config.
		"gitlab through config": with(t, "testdata/daemon.yaml", map[string]any{
			"config": map[string]any{"gitlab": map[string]any{"url": "https://gitlab.com", "project": "games/fleet"}},
		}),
	}
	for name, values := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.yaml")
			must(t, os.WriteFile(path, []byte(renderedConfig(t, helmObjects(t, values))), 0o600))
			// tokenFile points into the pod; the token is read from a
			// file here instead.
			env := map[string]string{"ROTATOR_GITLAB_TOKEN_FILE": token}
			c, err := config.Load(config.Sources{File: path, Env: func(k string) (string, bool) { v, ok := env[k]; return v, ok }})
			if err != nil {
				t.Fatalf("rendered config.yaml is refused: %v", err)
			}
			if len(c.Targets) == 0 {
				t.Fatal("no targets")
			}
			if name == "gitlab through config" && (c.GitLab.Project != "games/fleet" || c.GitLab.TokenFile != token) {
				t.Fatalf("config did not override gitlab.project: %+v", c.GitLab)
			}
		})
	}
	// And the check is real: a config the rotator refuses.
	bad := with(t, "testdata/daemon.yaml", map[string]any{"token": map[string]any{"prefix": "k8s-pull", "lifetime": "400d"}})
	path := filepath.Join(t.TempDir(), "config.yaml")
	must(t, os.WriteFile(path, []byte(renderedConfig(t, helmObjects(t, bad))), 0o600))
	env := map[string]string{"ROTATOR_GITLAB_TOKEN_FILE": token}
	if _, err := config.Load(config.Sources{File: path, Env: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}); err == nil {
		t.Fatal("a 400d lifetime passed validation")
	}
}

// RBAC follows the config: Secret and ServiceAccount names per target, no
// ServiceAccount rule when there are none (an empty resourceNames would
// allow every name), a selector-only config has no per-namespace Role, and
// the Lease Role follows daemon.leaseName.
func TestRBACFollowsConfig(t *testing.T) {
	h := helmObjects(t, with(t, "testdata/daemon.yaml", map[string]any{
		"secretName": "pull",
		"targets": []any{
			map[string]any{"namespace": "a"},
			map[string]any{"namespace": "a", "secretName": "pull-2", "serviceAccounts": []any{"builder"}},
			map[string]any{"namespace": "b", "serviceAccounts": []any{}},
		},
		"config": map[string]any{"daemon": map[string]any{"leaseName": "rot"}},
	}))
	rules := func(ns, name string) []rbacv1.PolicyRule {
		var r []rbacv1.PolicyRule
		into(t, h.get(t, "Role", ns, name), &r, "rules")
		return r
	}
	a := rules("a", "rotator")
	if got := names(a, "secrets"); !reflect.DeepEqual(got, []string{"pull", "pull-2"}) {
		t.Errorf("namespace a secrets = %v", got)
	}
	if got := names(a, "serviceaccounts"); !reflect.DeepEqual(got, []string{"default", "agones-sdk", "builder"}) {
		t.Errorf("namespace a serviceaccounts = %v", got)
	}
	for _, r := range rules("b", "rotator") {
		if r.Resources[0] == "serviceaccounts" {
			t.Errorf("namespace b patches no ServiceAccount but has rule %+v", r)
		}
	}
	if got := names(rules(namespace, "rotator-lease"), "leases"); !reflect.DeepEqual(got, []string{"rot", "rot-request"}) {
		t.Errorf("lease names = %v", got)
	}
	if n := len(h.ofKind("ClusterRole")); n != 0 {
		t.Errorf("namespace targets only, but %d ClusterRoles", n)
	}

	sel := helmObjects(t, with(t, "testdata/daemon.yaml", map[string]any{
		"targets": []any{map[string]any{"namespaceSelector": "team=games", "secretName": "games-pull"}},
	}))
	for _, id := range sel.ofKind("Role") {
		if id.Name != "rotator-lease" {
			t.Errorf("selector-only config rendered %s", id)
		}
	}
	var cr []rbacv1.PolicyRule
	into(t, sel.get(t, "ClusterRole", "", "rotator-targets"), &cr, "rules")
	if got := names(cr, "secrets"); !reflect.DeepEqual(got, []string{"games-pull"}) {
		t.Errorf("ClusterRole rotator-targets secrets = %v", got)
	}
	sel.get(t, "ClusterRole", "", "rotator-namespaces")

	// serviceAccounts: null is unset to the rotator, so RBAC must cover
	// the defaults it will patch.
	null := helmObjects(t, with(t, "testdata/daemon.yaml", map[string]any{
		"targets": []any{map[string]any{"namespace": "a", "serviceAccounts": nil}},
	}))
	var nr []rbacv1.PolicyRule
	into(t, null.get(t, "Role", "a", "rotator"), &nr, "rules")
	if got := names(nr, "serviceaccounts"); !reflect.DeepEqual(got, []string{"default", "agones-sdk"}) {
		t.Errorf("target serviceAccounts: null, Role a grants serviceaccounts %v, want the defaults", got)
	}
}

// names lists the resourceNames that rules grant on resource.
func names(rs []rbacv1.PolicyRule, resource string) []string {
	var out []string
	for _, r := range rs {
		if r.Resources[0] == resource && len(r.ResourceNames) > 0 {
			out = append(out, r.ResourceNames...)
		}
	}
	return out
}

// Values that would render a workload the rotator cannot run, or put a
// token in a ConfigMap, are refused with the value's name.
func TestChartRefusesValuesItCannotHonour(t *testing.T) {
	cases := []struct {
		name   string
		values map[string]any
		want   string
	}{
		{"listen port the probes do not use", map[string]any{"config": map[string]any{"daemon": map[string]any{"listen": ":9090"}}}, "config.daemon.listen"},
		{"listen on loopback only", map[string]any{"config": map[string]any{"daemon": map[string]any{"listen": "127.0.0.1:8080"}}}, "config.daemon.listen"},
		{"Pushgateway URL without a scheme", map[string]any{"mode": "cronjob", "cronjob": map[string]any{"pushgateway": map[string]any{"url": "pgw:9091"}}}, "cronjob.pushgateway.url"},
		{"Pushgateway URL with a password", map[string]any{"mode": "cronjob", "cronjob": map[string]any{"pushgateway": map[string]any{"url": "http://u:glpat-x@pgw:9091"}}}, "cronjob.pushgateway.url"},
		{"replicas without leader election", map[string]any{"config": map[string]any{"daemon": map[string]any{"leaderElection": false}}}, "config.daemon.leaderElection"},
		{"a token under config.gitlab", map[string]any{"config": map[string]any{"gitlab": map[string]any{"token": "glpat-x"}}}, "config.gitlab.token"},
		{"both token sources", map[string]any{"gitlabToken": map[string]any{"value": "glpat-x", "existingSecret": "mine"}}, "not both"},
		{"config.gitlab null", map[string]any{"config": map[string]any{"gitlab": nil}}, "config.gitlab"},
		{"a token as config.token", map[string]any{"config": map[string]any{"token": "glpat-x"}}, "config.token: must be a mapping"},
	}
	for _, c := range cases {
		_, err := renderChart(loadChart(t, chartDir), with(t, "testdata/daemon.yaml", c.values))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %s", c.name, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "glpat-x") {
			t.Errorf("%s: the error repeats the token", c.name)
		}
	}
	// The same settings that fit are accepted.
	helmObjects(t, with(t, "testdata/daemon.yaml", map[string]any{
		"replicas": 1,
		"config":   map[string]any{"daemon": map[string]any{"listen": ":8080", "leaderElection": false}, "gitlab": map[string]any{"timeout": "10s"}},
	}))
	// A second release in the namespace gets its own Lease.
	other := helmObjects(t, with(t, "testdata/daemon.yaml", map[string]any{"fullnameOverride": "team-b-rotator"}))
	var cm map[string]string
	into(t, other.get(t, "ConfigMap", "rotator-system", "team-b-rotator-config"), &cm, "data")
	if !strings.Contains(cm["config.yaml"], "leaseName: team-b-rotator") {
		t.Errorf("fullnameOverride team-b-rotator, config:\n%s", cm["config.yaml"])
	}
	var lr []rbacv1.PolicyRule
	into(t, other.get(t, "Role", "rotator-system", "team-b-rotator-lease"), &lr, "rules")
	if got := names(lr, "leases"); !slices.Contains(got, "team-b-rotator") || slices.Contains(got, "rotator") {
		t.Errorf("Lease Role of team-b-rotator names %v", got)
	}
}

func TestModesAndServiceMonitor(t *testing.T) {
	noSM := helmObjects(t, with(t, "testdata/daemon.yaml", map[string]any{"serviceMonitor": map[string]any{"enabled": false}}))
	if n := len(noSM.ofKind("ServiceMonitor")); n != 0 {
		t.Errorf("serviceMonitor.enabled false rendered %d ServiceMonitors", n)
	}
	if len(noSM.ofKind("Deployment")) != 1 || len(noSM.ofKind("Service")) != 1 {
		t.Errorf("serviceMonitor.enabled false dropped more: %v", noSM.keys())
	}
	_, err := renderChart(loadChart(t, chartDir), with(t, "testdata/daemon.yaml", map[string]any{"mode": "job"}))
	if err == nil || !strings.Contains(err.Error(), "mode must be daemon or cronjob") {
		t.Errorf("mode job: %v", err)
	}
}

// The chart packaged as `helm package` does (what a K3s HelmChart's
// chartContent carries) loads and renders the same.
func TestPackagedChart(t *testing.T) {
	c := loadChart(t, chartDir)
	tgz, err := chartutil.Save(c, t.TempDir())
	must(t, err)
	if filepath.Base(tgz) != "rotator-0.1.0.tgz" {
		t.Errorf("packaged as %s", filepath.Base(tgz))
	}
	values := readValues(t, "testdata/daemon.yaml")
	a, err := renderChart(c, values)
	must(t, err)
	b, err := renderChart(loadChart(t, tgz), values)
	must(t, err)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the packaged chart renders differently")
	}
	if notes := a["rotator/templates/NOTES.txt"]; !bytes.Contains([]byte(notes), []byte("rotator-system")) {
		t.Errorf("NOTES.txt:\n%s", notes)
	}
}

// Every template reads only values that exist, as `helm lint --strict`
// demands: a typo in a value name fails here instead of rendering empty.
func TestStrictRender(t *testing.T) {
	c := loadChart(t, chartDir)
	cases := map[string]map[string]any{
		"monitoring on": with(t, "testdata/daemon.yaml", map[string]any{
			"prometheusRule": map[string]any{"enabled": true},
			"grafana":        map[string]any{"dashboard": map[string]any{"enabled": true}, "alerts": map[string]any{"enabled": true}},
		}),
	}
	for _, file := range []string{"testdata/daemon.yaml", "testdata/cronjob.yaml", "testdata/namespace-selector.yaml"} {
		cases[file] = readValues(t, file)
	}
	for name, values := range cases {
		vals, err := chartutil.ToRenderValues(c, values,
			chartutil.ReleaseOptions{Name: releaseName, Namespace: namespace, Revision: 1, IsInstall: true},
			chartutil.DefaultCapabilities)
		must(t, err)
		if _, err := (engine.Engine{Strict: true}).Render(c, vals); err != nil {
			t.Errorf("%s: strict render: %v", name, err)
		}
	}
}
