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

// runK3sScript runs hack/k3s-helmchart.sh as the docs do, from the
// checkout, with a values file elsewhere.
func runK3sScript(t *testing.T, values string) (stdout, stderr string, code int) {
	t.Helper()
	valuesFile := filepath.Join(t.TempDir(), "my-values.yaml")
	must(t, os.WriteFile(valuesFile, []byte(values), 0o600))
	cmd := exec.Command("bash", "../../hack/k3s-helmchart.sh", valuesFile)
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

// TestK3sHelmChartCarriesTheChart: the script's HelmChart holds the chart and
// the values as given, and renders as the chart folder does.
// hack/k3s-helmchart's own tests cover .helmignore and the token's spellings.
func TestK3sHelmChartCarriesTheChart(t *testing.T) {
	values := "gitlab: {project: my-group/my-game}\ngitlabToken: {existingSecret: rotator-gitlab-token}\n"
	out, stderr, code := runK3sScript(t, values)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	// The manifest's shape is hack/k3s-helmchart's tests' business; here,
	// what it carries.
	var hc struct {
		Spec struct {
			ChartContent  string `json:"chartContent"`
			ValuesContent string `json:"valuesContent"`
		} `json:"spec"`
	}
	must(t, yaml.Unmarshal([]byte(out), &hc))
	if strings.TrimSpace(hc.Spec.ValuesContent) != strings.TrimSpace(values) {
		t.Errorf("valuesContent %q, want the values file %q", hc.Spec.ValuesContent, values)
	}
	tgz, err := base64.StdEncoding.DecodeString(hc.Spec.ChartContent)
	must(t, err)
	c, err := loader.LoadArchive(bytes.NewReader(tgz))
	must(t, err)
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
	out, stderr, code := runK3sScript(t, "gitlabToken:\n  value:\n    glpat-secret\n")
	if code != 2 || out != "" || !strings.Contains(stderr, "gitlabToken.existingSecret") || strings.Contains(stderr, "glpat-secret") {
		t.Errorf("exit %d, stdout %d bytes, stderr %q; want exit 2, nothing printed, a pointer to existingSecret and no token", code, len(out), stderr)
	}
}
