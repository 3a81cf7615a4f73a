package helm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/rotator-dev/rotator/internal/testenv"
)

// startAPIServer runs a real kube-apiserver for one test. Without the
// binaries the test skips locally and fails under CI, as cmd/rotator's do.
func startAPIServer(t *testing.T) *testenv.Cluster {
	t.Helper()
	c, err := testenv.Start(t.TempDir())
	if err != nil {
		if errors.Is(err, testenv.ErrNoAssets) && os.Getenv("CI") == "" {
			t.Skip(err)
		}
		t.Fatalf("this test needs a kube-apiserver: %v", err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	return c
}

// monitoringKinds are the Prometheus Operator's kinds the manifests use.
// The test API server has no CRDs for them, so they are decoded strictly
// into the operator's own Go types instead: an unknown or misplaced field
// fails as it would against the CRD schema.
var monitoringKinds = map[string]func() any{
	"ServiceMonitor": func() any { return &monitoringv1.ServiceMonitor{} },
	"PrometheusRule": func() any { return &monitoringv1.PrometheusRule{} },
}

// TestManifestsAcceptedByAPIServer sends every object that kustomize and
// the chart render to a real kube-apiserver as a dry-run create with strict
// field validation: schema, defaulting and validation run, and a field the
// API does not know is an error, not silently dropped.
func TestManifestsAcceptedByAPIServer(t *testing.T) {
	c := startAPIServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dyn, err := dynamic.NewForConfig(c.Config)
	must(t, err)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.Clientset.Discovery()))

	// The namespaces the manifests put objects in must exist for a dry run.
	for _, ns := range []string{namespace, "game-servers", "monitoring"} {
		_, err := c.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}

	monitoringOn := map[string]any{
		"prometheusRule": map[string]any{"enabled": true},
		"grafana": map[string]any{
			"dashboard": map[string]any{"enabled": true, "namespace": "monitoring"},
			"alerts":    map[string]any{"enabled": true, "namespace": "monitoring"},
		},
	}
	rule := yamlFile(t, "../../deploy/prometheus/prometheusrule.yaml")
	cases := map[string]objects{
		"kustomize daemon":             kustomizeObjectsWithNamespace(t, "../../deploy/daemon"),
		"kustomize cronjob":            kustomizeObjectsWithNamespace(t, "../../deploy/cronjob"),
		"kustomize namespace-selector": kustomizeObjectsWithNamespace(t, "../deploy/testdata/namespace-selector"),
		"deploy/prometheus":            {objKey(rule): rule},
		"helm daemon, monitoring on":   helmObjects(t, with(t, "testdata/daemon.yaml", monitoringOn)),
		"helm cronjob":                 helmObjects(t, readValues(t, "testdata/cronjob.yaml")),
		"helm namespace-selector":      helmObjects(t, readValues(t, "testdata/namespace-selector.yaml")),
	}
	names := make([]string, 0, len(cases))
	for n := range cases {
		names = append(names, n)
	}
	sort.Strings(names)

	seen := map[string]int{}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			for id, obj := range cases[name] {
				seen[id.Kind]++
				if newTyped, ok := monitoringKinds[id.Kind]; ok {
					if err := decodeStrict(obj, newTyped()); err != nil {
						t.Errorf("%s: not a valid %s: %v", id, id.Kind, err)
					}
					continue
				}
				if err := dryRunCreate(ctx, dyn, mapper, obj); err != nil {
					t.Errorf("%s: the API server refuses it: %v", id, err)
				}
			}
		})
	}
	// The check covers what ships: every kind the rotator installs.
	for _, kind := range []string{"Deployment", "CronJob", "PodDisruptionBudget", "Service", "ServiceAccount",
		"ConfigMap", "Secret", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "Namespace",
		"ServiceMonitor", "PrometheusRule"} {
		if seen[kind] == 0 {
			t.Errorf("no %s was checked", kind)
		}
	}
}

// The check is real: objects the API server or the CRD types must refuse.
func TestManifestCheckRefusesBadObjects(t *testing.T) {
	c := startAPIServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dyn, err := dynamic.NewForConfig(c.Config)
	must(t, err)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.Clientset.Discovery()))

	h := helmObjects(t, readValues(t, "testdata/daemon.yaml"))
	deploy := h.get(t, "Deployment", namespace, "rotator")
	bad := []map[string]any{
		withField(t, deploy, "readOnlyRootFilesytem", "spec", "template", "spec", "containers", 0, "securityContext"),
		withField(t, deploy, "replica", "spec"),
	}
	badReplicas := copyObject(t, deploy)
	badReplicas["spec"].(map[string]any)["replicas"] = -1
	bad = append(bad, badReplicas)
	for _, obj := range bad {
		if err := dryRunCreate(ctx, dyn, mapper, obj); err == nil {
			t.Errorf("a bad Deployment was accepted: %v", obj["spec"])
		}
	}

	sm := copyObject(t, h.get(t, "ServiceMonitor", namespace, "rotator"))
	sm["spec"].(map[string]any)["endpoint"] = []any{}
	if err := decodeStrict(sm, &monitoringv1.ServiceMonitor{}); err == nil {
		t.Error("a ServiceMonitor with an unknown field was accepted")
	}
}

func copyObject(t *testing.T, obj map[string]any) map[string]any {
	t.Helper()
	raw, err := json.Marshal(obj)
	must(t, err)
	var out map[string]any
	must(t, json.Unmarshal(raw, &out))
	return out
}

// withField returns a copy of obj with an extra field "name": true at path,
// where an int in the path indexes a list.
func withField(t *testing.T, obj map[string]any, name string, path ...any) map[string]any {
	t.Helper()
	out := copyObject(t, obj)
	var cur any = out
	for _, p := range path {
		switch p := p.(type) {
		case string:
			cur = cur.(map[string]any)[p]
		case int:
			cur = cur.([]any)[p]
		}
	}
	cur.(map[string]any)[name] = true
	return out
}

func dryRunCreate(ctx context.Context, dyn dynamic.Interface, mapper *restmapper.DeferredDiscoveryRESTMapper, obj map[string]any) error {
	u := &unstructured.Unstructured{Object: obj}
	gvk := u.GroupVersionKind()
	m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return fmt.Errorf("map %s: %w", gvk, err)
	}
	var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
	if m.Scope.Name() == "namespace" {
		if u.GetNamespace() == "" {
			return fmt.Errorf("%s %s has no namespace", gvk.Kind, u.GetName())
		}
		ri = dyn.Resource(m.Resource).Namespace(u.GetNamespace())
	}
	_, err = ri.Create(ctx, u, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"})
	if apierrors.IsAlreadyExists(err) {
		// The Namespace created above: storage reports the clash only
		// after validation has passed.
		return nil
	}
	return err
}

func decodeStrict(obj map[string]any, into any) error {
	raw, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	return yaml.UnmarshalStrict(raw, into)
}

// kustomizeObjectsWithNamespace renders a kustomization with everything in
// it, the Namespace too.
func kustomizeObjectsWithNamespace(t *testing.T, dir string) objects {
	t.Helper()
	out := objects{}
	for _, r := range kustomizeResources(t, dir) {
		obj, err := r.Map()
		must(t, err)
		out[objKey(obj)] = obj
	}
	return out
}
