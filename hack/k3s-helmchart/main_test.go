package main

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"sigs.k8s.io/yaml"
)

const chartDir = "../../deploy/helm/rotator"

func writeValues(t *testing.T, values string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "my-values.yaml")
	if err := os.WriteFile(p, []byte(values), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// copyChart copies the chart, so a test can add files to it.
func copyChart(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "rotator")
	err := filepath.Walk(chartDir, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(chartDir, path)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestHelmChartCarriesChartAndValues(t *testing.T) {
	chart := copyChart(t)
	// An editor's backup beside a template: packaged, Helm would render it
	// as a second Deployment.
	if err := os.WriteFile(filepath.Join(chart, "templates", "deployment.yaml~"), []byte("kind: Deployment\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	values := "# mine\ngitlab: {project: my-group/my-game}\ngitlabToken:\n  existingSecret: rotator-gitlab-token\n  value: \"\"\n"
	var out, errOut bytes.Buffer
	if code := run([]string{"--chart", chart, writeValues(t, values)}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
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
	if err := yaml.UnmarshalStrict(out.Bytes(), &hc); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if hc.APIVersion != "helm.cattle.io/v1" || hc.Kind != "HelmChart" || hc.Metadata.Namespace != "kube-system" || hc.Spec.TargetNamespace != "rotator-system" {
		t.Fatalf("not a HelmChart for rotator-system:\n%s", out.String())
	}
	if hc.Spec.ValuesContent != strings.TrimRight(values, "\n") {
		t.Errorf("valuesContent %q, want the values file as written %q", hc.Spec.ValuesContent, values)
	}
	tgz, err := base64.StdEncoding.DecodeString(hc.Spec.ChartContent)
	if err != nil {
		t.Fatal(err)
	}
	packaged, err := loader.LoadArchive(bytes.NewReader(tgz))
	if err != nil {
		t.Fatal(err)
	}
	folder, err := loader.LoadDir(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(packaged.Templates) != len(folder.Templates) {
		t.Errorf("the HelmChart carries %d templates, the chart has %d", len(packaged.Templates), len(folder.Templates))
	}
	for _, f := range packaged.Templates {
		if strings.HasSuffix(f.Name, "~") {
			t.Errorf("the archive carries %s, which .helmignore excludes", f.Name)
		}
	}
}

// Every YAML spelling of a token is refused, and nothing else is.
func TestInlineTokenRefused(t *testing.T) {
	refused := []string{
		"gitlabToken:\n  value: glpat-secret\n",
		"gitlabToken: {value: glpat-secret}\n",
		"gitlabToken:\n  \"value\": glpat-secret\n",
		"gitlabToken:\n  value :  glpat-secret\n",
		"gitlabToken:\n  value:\n    glpat-secret\n",
		"gitlabToken:\n  value: |\n    glpat-secret\n",
		`{"gitlabToken": {"value": "glpat-secret"}}`,
	}
	for _, values := range refused {
		var out, errOut bytes.Buffer
		code := run([]string{"--chart", chartDir, writeValues(t, values)}, &out, &errOut)
		if code != 2 || out.Len() != 0 || !strings.Contains(errOut.String(), "gitlabToken.existingSecret") {
			t.Errorf("values %q: exit %d, %d bytes out, stderr %q; want exit 2, nothing printed, a pointer to existingSecret", values, code, out.Len(), errOut.String())
		}
		if strings.Contains(errOut.String(), "glpat-secret") {
			t.Errorf("values %q: the error repeats the token", values)
		}
	}
	accepted := []string{
		"gitlabToken:\n  existingSecret: s\n  value: \"\"\n",
		"gitlabToken:\n  existingSecret: s\n  value: null\n",
		"gitlabToken: {existingSecret: s}\n# set value: here\n",
		"gitlabToken: {existingSecret: s}\ntolerations: [{key: k, value: rotator, effect: NoSchedule}]\n",
	}
	for _, values := range accepted {
		var out, errOut bytes.Buffer
		if code := run([]string{"--chart", chartDir, writeValues(t, values)}, &out, &errOut); code != 0 {
			t.Errorf("values %q: exit %d: %s", values, code, errOut.String())
		}
	}
}
