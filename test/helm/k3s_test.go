package helm

import (
	"bytes"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"sigs.k8s.io/yaml"
)

// k3sTree copies hack/k3s-helmchart.sh and the chart into a temporary
// checkout, so a test can add files to the chart without touching the repo.
func k3sTree(t *testing.T) (root string) {
	t.Helper()
	root = t.TempDir()
	copyTree(t, "../../deploy/helm/rotator", filepath.Join(root, "deploy/helm/rotator"))
	copyTree(t, "../../hack/k3s-helmchart.sh", filepath.Join(root, "hack/k3s-helmchart.sh"))
	return root
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.Walk(from, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		dst := filepath.Join(to, rel)
		if info.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, data, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

func runK3sScript(t *testing.T, root, values string) (stdout, stderr string, code int) {
	t.Helper()
	valuesFile := filepath.Join(t.TempDir(), "my-values.yaml")
	must(t, os.WriteFile(valuesFile, []byte(values), 0o600))
	cmd := exec.Command("bash", filepath.Join(root, "hack/k3s-helmchart.sh"), valuesFile)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

// TestK3sHelmChartCarriesTheChart: the HelmChart the script prints holds the
// chart as `helm package` would (.helmignore applied) and the values as
// given, and renders as the chart folder does.
func TestK3sHelmChartCarriesTheChart(t *testing.T) {
	root := k3sTree(t)
	// An editor's backup beside a template: Helm would render it as a
	// second Deployment if it were packaged.
	backup := filepath.Join(root, "deploy/helm/rotator/templates/deployment.yaml~")
	must(t, os.WriteFile(backup, []byte("kind: Deployment\n"), 0o644))
	values := "gitlab: {project: my-group/my-game}\ngitlabToken: {existingSecret: rotator-gitlab-token}\n"
	out, stderr, code := runK3sScript(t, root, values)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var hc struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
		Spec struct {
			TargetNamespace string `json:"targetNamespace"`
			CreateNamespace bool   `json:"createNamespace"`
			ChartContent    string `json:"chartContent"`
			ValuesContent   string `json:"valuesContent"`
		} `json:"spec"`
	}
	must(t, yaml.UnmarshalStrict([]byte(out), &hc, yaml.DisallowUnknownFields))
	if hc.APIVersion != "helm.cattle.io/v1" || hc.Kind != "HelmChart" || hc.Metadata.Namespace != "kube-system" || hc.Spec.TargetNamespace != namespace {
		t.Fatalf("not a HelmChart for %s:\n%s", namespace, out)
	}
	if strings.TrimSpace(hc.Spec.ValuesContent) != strings.TrimSpace(values) {
		t.Errorf("valuesContent %q, want the values file %q", hc.Spec.ValuesContent, values)
	}
	tgz, err := base64.StdEncoding.DecodeString(hc.Spec.ChartContent)
	must(t, err)
	c, err := loader.LoadArchive(bytes.NewReader(tgz))
	must(t, err)
	for _, f := range c.Templates {
		if strings.HasSuffix(f.Name, "~") {
			t.Errorf("the archive carries %s, which .helmignore excludes", f.Name)
		}
	}
	var vals map[string]any
	must(t, yaml.Unmarshal([]byte(hc.Spec.ValuesContent), &vals))
	a, err := renderChart(c, vals)
	must(t, err)
	b, err := renderChart(loadChart(t, chartDir), vals)
	must(t, err)
	if !reflect.DeepEqual(a, b) {
		t.Error("the HelmChart's chart renders differently from deploy/helm/rotator")
	}
}

// The token must not end up in clear text in kube-system.
func TestK3sHelmChartRefusesAnInlineToken(t *testing.T) {
	root := k3sTree(t)
	for _, values := range []string{
		"gitlabToken:\n  value: glpat-secret\n",
		"gitlabToken: {value: glpat-secret}\n",
	} {
		out, stderr, code := runK3sScript(t, root, values)
		if code != 2 || out != "" || !strings.Contains(stderr, "gitlabToken.existingSecret") {
			t.Errorf("values %q: exit %d, stdout %d bytes, stderr %q; want exit 2, nothing printed, a pointer to existingSecret", values, code, len(out), stderr)
		}
		if strings.Contains(stderr, "glpat-secret") {
			t.Errorf("values %q: the error repeats the token", values)
		}
	}
}
