// Command k3s-helmchart prints a K3s HelmChart (helm.cattle.io/v1) that
// installs the rotator's chart with a values file, the chart carried inline
// as spec.chartContent, so no chart repository is needed. hack/k3s-helmchart.sh
// runs it:
//
//	hack/k3s-helmchart.sh my-values.yaml > rotator-helmchart.yaml
//
// The chart is packaged as `helm package` does (.helmignore applies). A
// values file that sets gitlabToken.value is refused: valuesContent is stored
// in clear text in kube-system and in K3s's manifests folder.
package main

import (
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"sigs.k8s.io/yaml"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("k3s-helmchart", flag.ContinueOnError)
	fs.SetOutput(stderr)
	chartDir := fs.String("chart", "deploy/helm/rotator", "the chart's folder")
	namespace := fs.String("namespace", envOr("ROTATOR_NAMESPACE", "rotator-system"), "release namespace (env ROTATOR_NAMESPACE)")
	name := fs.String("name", "rotator", "the HelmChart's name, which is the release name")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: k3s-helmchart [flags] VALUES_FILE   (a Helm values file for the rotator's chart)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	out, err := helmChart(*chartDir, fs.Arg(0), *namespace, *name)
	if err != nil {
		fmt.Fprintln(stderr, "k3s-helmchart: "+err.Error())
		return 2
	}
	_, _ = io.WriteString(stdout, out)
	return 0
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// helmChart renders the HelmChart manifest.
func helmChart(chartDir, valuesFile, namespace, name string) (string, error) {
	values, err := os.ReadFile(valuesFile)
	if err != nil {
		return "", err
	}
	if err := refuseInlineToken(values); err != nil {
		return "", fmt.Errorf("%s: %w", valuesFile, err)
	}
	c, err := loader.LoadDir(chartDir)
	if err != nil {
		return "", fmt.Errorf("load chart %s: %w", chartDir, err)
	}
	tmp, err := os.MkdirTemp("", "k3s-helmchart")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	tgz, err := chartutil.Save(c, tmp)
	if err != nil {
		return "", fmt.Errorf("package chart: %w", err)
	}
	archive, err := os.ReadFile(filepath.Clean(tgz))
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: helm.cattle.io/v1
kind: HelmChart
metadata:
  name: %s
  namespace: kube-system
spec:
  targetNamespace: %s
  createNamespace: true
  chartContent: %s
  valuesContent: |-
`, name, namespace, base64.StdEncoding.EncodeToString(archive))
	for _, line := range strings.Split(strings.TrimRight(string(values), "\n"), "\n") {
		b.WriteString("    " + line + "\n")
	}
	return b.String(), nil
}

// refuseInlineToken parses the values as Helm does and refuses a
// non-empty gitlabToken.value, however it is spelled in YAML. The message
// never repeats the value.
func refuseInlineToken(values []byte) error {
	var v struct {
		GitLabToken *struct {
			Value any `json:"value"`
		} `json:"gitlabToken"`
	}
	if err := yaml.Unmarshal(values, &v); err != nil {
		return fmt.Errorf("not a YAML values file: %w", err)
	}
	if v.GitLabToken == nil || v.GitLabToken.Value == nil || v.GitLabToken.Value == "" {
		return nil
	}
	return errors.New("sets gitlabToken.value, which the HelmChart would store in clear text; create the Secret and set gitlabToken.existingSecret instead")
}
