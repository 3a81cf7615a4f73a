// Package deploy renders the kustomize variants with the kustomize library
// and checks what a cluster would receive.
package deploy

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

func render(t *testing.T, dir string) resmap.ResMap {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	return m
}

func kinds(m resmap.ResMap) map[string]int {
	out := map[string]int{}
	for _, r := range m.Resources() {
		out[r.GetKind()]++
	}
	return out
}

// field reads a nested field of the first resource of kind.
func field(t *testing.T, m resmap.ResMap, kind string, path ...string) any {
	t.Helper()
	for _, r := range m.Resources() {
		if r.GetKind() != kind {
			continue
		}
		obj, err := r.Map()
		if err != nil {
			t.Fatal(err)
		}
		var cur any = obj
		for _, p := range path {
			switch c := cur.(type) {
			case map[string]any:
				cur = c[p]
			case []any:
				if len(c) == 0 {
					return nil
				}
				cur = c[0].(map[string]any)[p]
			default:
				return nil
			}
		}
		return cur
	}
	t.Fatalf("no %s rendered", kind)
	return nil
}

func TestVariantsRender(t *testing.T) {
	common := map[string]int{"Namespace": 1, "ServiceAccount": 1, "ConfigMap": 1, "Secret": 1, "Role": 3, "RoleBinding": 3}

	d := render(t, "../../deploy/daemon")
	want := map[string]int{"Deployment": 1, "Service": 1, "PodDisruptionBudget": 1, "ServiceMonitor": 1}
	for k, v := range common {
		want[k] = v
	}
	if got := kinds(d); !equal(got, want) {
		t.Fatalf("daemon variant kinds = %v, want %v", got, want)
	}
	container := []string{"spec", "template", "spec", "containers"}
	if args := field(t, d, "Deployment", append(container, "args")...).([]any); args[0] != "daemon" {
		t.Fatalf("deployment args = %v", args)
	}
	if p := field(t, d, "Deployment", append(container, "readinessProbe", "httpGet", "path")...); p != "/readyz" {
		t.Fatalf("readiness probe = %v", p)
	}
	if p := field(t, d, "Deployment", append(container, "livenessProbe", "httpGet", "path")...); p != "/healthz" {
		t.Fatalf("liveness probe = %v", p)
	}
	if ro := field(t, d, "Deployment", append(container, "securityContext", "readOnlyRootFilesystem")...); ro != true {
		t.Fatalf("readOnlyRootFilesystem = %v", ro)
	}
	if nr := field(t, d, "Deployment", "spec", "template", "spec", "securityContext", "runAsNonRoot"); nr != true {
		t.Fatalf("runAsNonRoot = %v", nr)
	}
	if lim := field(t, d, "Deployment", append(container, "resources", "limits", "memory")...); lim == nil {
		t.Fatal("no memory limit")
	}

	if g := field(t, d, "Deployment", "spec", "template", "spec", "terminationGracePeriodSeconds"); g == nil || g.(int) < 300 {
		t.Errorf("terminationGracePeriodSeconds = %v; a cycle in flight at SIGTERM may take 5 minutes", g)
	}
	podLabels := asStrings(field(t, d, "Deployment", "spec", "template", "metadata", "labels"))
	for _, sel := range []struct{ kind, what string }{{"Deployment", "its pods"}, {"PodDisruptionBudget", "the rotator's pods"}} {
		if m := asStrings(field(t, d, sel.kind, "spec", "selector", "matchLabels")); !selects(m, podLabels) {
			t.Errorf("%s selector %v does not select %s %v", sel.kind, m, sel.what, podLabels)
		}
	}
	if m := asStrings(field(t, d, "Service", "spec", "selector")); !selects(m, podLabels) {
		t.Errorf("Service selector %v does not select the rotator's pods %v", m, podLabels)
	}
	serviceLabels := asStrings(field(t, d, "Service", "metadata", "labels"))
	if m := asStrings(field(t, d, "ServiceMonitor", "spec", "selector", "matchLabels")); !selects(m, serviceLabels) {
		t.Errorf("ServiceMonitor selector %v does not select the Service's labels %v", m, serviceLabels)
	}
	assertHardened(t, "Deployment", field(t, d, "Deployment", "spec", "template", "spec"))

	c := render(t, "../../deploy/cronjob")
	want = map[string]int{"CronJob": 1, "ServiceMonitor": 1}
	for k, v := range common {
		want[k] = v
	}
	if got := kinds(c); !equal(got, want) {
		t.Fatalf("cronjob variant kinds = %v, want %v", got, want)
	}
	if p := field(t, c, "CronJob", "spec", "concurrencyPolicy"); p != "Forbid" {
		t.Fatalf("concurrencyPolicy = %v", p)
	}
	jobContainer := []string{"spec", "jobTemplate", "spec", "template", "spec", "containers"}
	if args := field(t, c, "CronJob", append(jobContainer, "args")...).([]any); args[0] != "run-once" {
		t.Fatalf("cronjob args = %v", args)
	}
	assertHardened(t, "CronJob", field(t, c, "CronJob", "spec", "jobTemplate", "spec", "template", "spec"))
	// The runs push to the Pushgateway the ServiceMonitor scrapes, keeping
	// the pushed job label the alert rules select on.
	pushgateway := ""
	for _, e := range field(t, c, "CronJob", append(jobContainer, "env")...).([]any) {
		if e := e.(map[string]any); e["name"] == "ROTATOR_PUSHGATEWAY" {
			pushgateway, _ = e["value"].(string)
		}
	}
	smNamespaces := field(t, c, "ServiceMonitor", "spec", "namespaceSelector", "matchNames").([]any)
	if len(smNamespaces) != 1 || !strings.Contains(pushgateway, "."+smNamespaces[0].(string)+".svc") {
		t.Errorf("ROTATOR_PUSHGATEWAY %q is not in the namespace the ServiceMonitor scrapes (%v)", pushgateway, smNamespaces)
	}
	endpoint := field(t, c, "ServiceMonitor", "spec", "endpoints").([]any)[0].(map[string]any)
	if endpoint["honorLabels"] != true {
		t.Error("the Pushgateway's ServiceMonitor must honor labels, or job rotator-run-once arrives as exported_job")
	}
	// Per-target Roles stay in the target namespaces; only the Lease Role
	// lives with the rotator.
	roles := map[string]int{}
	for _, r := range d.Resources() {
		if r.GetKind() == "Role" {
			roles[r.GetNamespace()]++
		}
	}
	if !equal(roles, map[string]int{"default": 1, "game-servers": 1, "rotator-system": 1}) {
		t.Fatalf("Roles by namespace = %v", roles)
	}
	for _, m := range []resmap.ResMap{d, c} {
		for _, r := range m.Resources() {
			if r.GetKind() == "Namespace" {
				continue
			}
			if ns := r.GetNamespace(); ns == "" {
				t.Errorf("%s/%s has no namespace", r.GetKind(), r.GetName())
			}
		}
	}
}

func equal(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// decode converts a rendered resource into a typed object.
func decode(t *testing.T, m resmap.ResMap, kind, namespace, name string, into any) {
	t.Helper()
	for _, r := range m.Resources() {
		if r.GetKind() != kind || r.GetNamespace() != namespace || r.GetName() != name {
			continue
		}
		js, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(js, into); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("no %s %s/%s rendered", kind, namespace, name)
}

// An overlay with the namespace-selector component: the daemon variant plus
// cluster-wide RBAC for a namespaceSelector target.
func TestNamespaceSelectorComponent(t *testing.T) {
	m := render(t, "testdata/namespace-selector")
	want := map[string]int{"Namespace": 1, "ServiceAccount": 1, "ConfigMap": 1, "Secret": 1, "Role": 3, "RoleBinding": 3,
		"Deployment": 1, "Service": 1, "PodDisruptionBudget": 1, "ServiceMonitor": 1,
		"ClusterRole": 2, "ClusterRoleBinding": 2}
	if got := kinds(m); !equal(got, want) {
		t.Fatalf("kinds = %v, want %v", got, want)
	}

	var namespaces rbacv1.ClusterRole
	decode(t, m, "ClusterRole", "", "rotator-namespaces", &namespaces)
	wantNS := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"list", "watch"}}}
	if !reflect.DeepEqual(namespaces.Rules, wantNS) {
		t.Errorf("rotator-namespaces rules = %+v, want %+v", namespaces.Rules, wantNS)
	}
	// rotator-targets grants in every namespace exactly what a per-target
	// Role grants in one.
	var targets rbacv1.ClusterRole
	decode(t, m, "ClusterRole", "", "rotator-targets", &targets)
	var perTarget rbacv1.Role
	decode(t, m, "Role", "default", "rotator", &perTarget)
	if !reflect.DeepEqual(targets.Rules, perTarget.Rules) {
		t.Errorf("rotator-targets rules = %+v, want the per-target Role's %+v", targets.Rules, perTarget.Rules)
	}
	for _, name := range []string{"rotator-namespaces", "rotator-targets"} {
		var b rbacv1.ClusterRoleBinding
		decode(t, m, "ClusterRoleBinding", "", name, &b)
		if b.RoleRef != (rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: name}) {
			t.Errorf("ClusterRoleBinding %s roleRef = %+v", name, b.RoleRef)
		}
		wantSubj := []rbacv1.Subject{{Kind: "ServiceAccount", Name: "rotator", Namespace: "rotator-system"}}
		if !reflect.DeepEqual(b.Subjects, wantSubj) {
			t.Errorf("ClusterRoleBinding %s subjects = %+v", name, b.Subjects)
		}
	}

	var cm corev1.ConfigMap
	decode(t, m, "ConfigMap", "rotator-system", "rotator-config", &cm)
	if !strings.Contains(cm.Data["config.yaml"], "namespaceSelector: team=games") {
		t.Errorf("config.yaml has no selector target:\n%s", cm.Data["config.yaml"])
	}
	for _, r := range m.Resources() {
		clusterScoped := map[string]bool{"Namespace": true, "ClusterRole": true, "ClusterRoleBinding": true}[r.GetKind()]
		if ns := r.GetNamespace(); clusterScoped != (ns == "") {
			t.Errorf("%s/%s has namespace %q", r.GetKind(), r.GetName(), ns)
		}
	}
}

func asStrings(v any) map[string]string {
	out := map[string]string{}
	m, _ := v.(map[string]any)
	for k, x := range m {
		out[k], _ = x.(string)
	}
	return out
}

// selects is label-selector matching: every key of sel has its value in labels.
func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false // an empty selector here is a mistake, not "everything"
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// assertHardened checks the pod and container security settings of the
// restricted Pod Security Standard, plus a read-only root.
func assertHardened(t *testing.T, kind string, podSpec any) {
	t.Helper()
	spec := podSpec.(map[string]any)
	psc, _ := spec["securityContext"].(map[string]any)
	if psc["runAsNonRoot"] != true {
		t.Errorf("%s: pod runAsNonRoot = %v", kind, psc["runAsNonRoot"])
	}
	if sp, _ := psc["seccompProfile"].(map[string]any); sp["type"] != "RuntimeDefault" {
		t.Errorf("%s: pod seccompProfile = %v, want RuntimeDefault", kind, psc["seccompProfile"])
	}
	for _, c := range spec["containers"].([]any) {
		c := c.(map[string]any)
		sc, _ := c["securityContext"].(map[string]any)
		if sc["allowPrivilegeEscalation"] != false {
			t.Errorf("%s %s: allowPrivilegeEscalation = %v, want false", kind, c["name"], sc["allowPrivilegeEscalation"])
		}
		if sc["readOnlyRootFilesystem"] != true {
			t.Errorf("%s %s: readOnlyRootFilesystem = %v", kind, c["name"], sc["readOnlyRootFilesystem"])
		}
		caps, _ := sc["capabilities"].(map[string]any)
		if drop, _ := caps["drop"].([]any); len(drop) != 1 || drop[0] != "ALL" {
			t.Errorf("%s %s: capabilities.drop = %v, want [ALL]", kind, c["name"], caps["drop"])
		}
		if add := caps["add"]; add != nil {
			t.Errorf("%s %s: capabilities.add = %v, want none", kind, c["name"], add)
		}
	}
}

// deployTree copies deploy/ into an in-memory file system at /deploy, so a
// test can add overlays beside it as a user would.
func deployTree(t *testing.T) filesys.FileSystem {
	t.Helper()
	mem := filesys.MakeFsInMemory()
	err := filepath.WalkDir("../../deploy", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel("../../deploy", path)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return mem.WriteFile(filepath.Join("/deploy", rel), data)
	})
	if err != nil {
		t.Fatal(err)
	}
	return mem
}

func renderIn(t *testing.T, fsys filesys.FileSystem, dir string) resmap.ResMap {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fsys, dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	return m
}

// TestNoPrometheusOperatorComponent: on a cluster without the Prometheus
// Operator's CRDs, the component drops the ServiceMonitors and nothing else.
func TestNoPrometheusOperatorComponent(t *testing.T) {
	for _, variant := range []string{"daemon", "cronjob"} {
		t.Run(variant, func(t *testing.T) {
			fsys := deployTree(t)
			overlay := "/deploy/test-" + variant
			must(t, fsys.WriteFile(overlay+"/kustomization.yaml", []byte(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [../`+variant+`]
components: [../components/no-prometheus-operator]
`)))
			with, without := kinds(renderIn(t, fsys, "/deploy/"+variant)), kinds(renderIn(t, fsys, overlay))
			if with["ServiceMonitor"] != 1 || without["ServiceMonitor"] != 0 {
				t.Fatalf("ServiceMonitors: %d in the variant, %d with the component; want 1 and 0", with["ServiceMonitor"], without["ServiceMonitor"])
			}
			delete(with, "ServiceMonitor")
			if !equal(with, without) {
				t.Fatalf("the component dropped more than the ServiceMonitor: %v, then %v", with, without)
			}
		})
	}
}

// TestExampleOverlayWhereTheDocsCopyIt: docs/operations.md copies the
// example overlay to deploy/examples/my-cluster and adds a token file.
func TestExampleOverlayWhereTheDocsCopyIt(t *testing.T) {
	fsys := deployTree(t)
	for _, f := range []string{"kustomization.yaml", "config.yaml"} {
		data, err := fsys.ReadFile("/deploy/examples/overlay/" + f)
		must(t, err)
		must(t, fsys.WriteFile("/deploy/examples/my-cluster/"+f, data))
	}
	must(t, fsys.WriteFile("/deploy/examples/my-cluster/token", []byte("glpat-example\n")))
	m := renderIn(t, fsys, "/deploy/examples/my-cluster")
	if kinds(m)["Deployment"] != 1 {
		t.Fatalf("the copied overlay renders %v", kinds(m))
	}
	var s corev1.Secret
	decode(t, m, "Secret", "rotator-system", "rotator-gitlab-token", &s)
	if string(s.Data["token"]) != "glpat-example\n" {
		t.Fatal("the copied overlay's Secret does not hold its token file")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestRBACIsExactlyWhatTheCycleUses pins the shipped rules. The RBAC tests in
// cmd/rotator prove these are enough (no request of the rotator is ever
// refused); this proves nothing was added: every extra verb or resource is
// a grant the rotator never uses.
func TestRBACIsExactlyWhatTheCycleUses(t *testing.T) {
	core := func(resource string, names []string, verbs ...string) rbacv1.PolicyRule {
		return rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{resource}, ResourceNames: names, Verbs: verbs}
	}
	lease := func(names []string, verbs ...string) rbacv1.PolicyRule {
		return rbacv1.PolicyRule{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, ResourceNames: names, Verbs: verbs}
	}
	perTarget := []rbacv1.PolicyRule{
		core("secrets", nil, "create"), // the first write; create cannot be limited by name
		core("secrets", []string{"gitlab"}, "get", "list", "watch", "update"),
		core("serviceaccounts", []string{"default", "agones-sdk"}, "get", "list", "watch", "update"),
		core("events", nil, "create"),
	}
	want := map[string][]rbacv1.PolicyRule{
		"default/rotator":              perTarget,
		"game-servers/rotator":         perTarget,
		"rotator-system/rotator-lease": {lease(nil, "create"), lease([]string{"rotator"}, "get", "update"), lease([]string{"rotator-request"}, "get", "list", "watch", "update")},
	}
	for _, variant := range []string{"daemon", "cronjob"} {
		m := render(t, "../../deploy/"+variant)
		got := map[string][]rbacv1.PolicyRule{}
		for _, r := range m.Resources() {
			if r.GetKind() != "Role" {
				continue
			}
			var role rbacv1.Role
			decode(t, m, "Role", r.GetNamespace(), r.GetName(), &role)
			got[r.GetNamespace()+"/"+r.GetName()] = role.Rules
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: Roles\n%+v\nwant\n%+v", variant, got, want)
		}
	}
}
