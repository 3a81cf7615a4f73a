package deploy

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/api/resmap"

	"github.com/rotator-dev/rotator/internal/config"
)

// TestExampleOverlay follows docs/operations.md: copy deploy/examples/overlay,
// add a token file, build. The generated ConfigMap and Secret must replace
// the base's placeholders under the names the Deployment mounts, and the
// config must be one the rotator accepts.
func TestExampleOverlay(t *testing.T) {
	root := t.TempDir()
	copyTree(t, "../../deploy", filepath.Join(root, "deploy"))
	overlay := filepath.Join(root, "deploy", "examples", "overlay")
	const token = "glpat-example-token-value"
	if err := os.WriteFile(filepath.Join(overlay, "token"), []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := render(t, overlay)

	secret := exampleObject(t, m, "Secret", "rotator-gitlab-token")
	if got := secret["data"].(map[string]any)["token"]; got != "Z2xwYXQtZXhhbXBsZS10b2tlbi12YWx1ZQo=" {
		t.Fatalf("rotator-gitlab-token holds %v, not the token file", got)
	}
	if _, placeholder := secret["stringData"]; placeholder {
		t.Fatal("the base's placeholder token survived the overlay")
	}
	cm := exampleObject(t, m, "ConfigMap", "rotator-config")
	cfgText := cm["data"].(map[string]any)["config.yaml"].(string)
	want, err := os.ReadFile(filepath.Join(overlay, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if cfgText != string(want) {
		t.Fatalf("rotator-config holds\n%s\nnot the overlay's config.yaml", cfgText)
	}
	volumes := field(t, m, "Deployment", "spec", "template", "spec", "volumes").([]any)
	mounted := map[string]bool{}
	for _, v := range volumes {
		vol := v.(map[string]any)
		if s, ok := vol["secret"].(map[string]any); ok {
			mounted[s["secretName"].(string)] = true
		}
		if c, ok := vol["configMap"].(map[string]any); ok {
			mounted[c["name"].(string)] = true
		}
	}
	if !mounted["rotator-gitlab-token"] || !mounted["rotator-config"] {
		t.Fatalf("the Deployment mounts %v, not the overlay's ConfigMap and Secret", mounted)
	}

	// The config as the pod would load it, with the token where it is mounted.
	dir := t.TempDir()
	cfgPath, tokenPath := filepath.Join(dir, "config.yaml"), filepath.Join(dir, "token")
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokenPath, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"ROTATOR_GITLAB_TOKEN_FILE": tokenPath}
	if _, err := config.Load(config.Sources{File: cfgPath, Env: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}); err != nil {
		t.Fatalf("the example config does not load: %v", err)
	}
	if !strings.Contains(cfgText, "tokenFile: /var/run/secrets/rotator/gitlab/token") {
		t.Fatal("the example config's tokenFile is not where the Deployment mounts the token")
	}
}

func exampleObject(t *testing.T, m resmap.ResMap, kind, name string) map[string]any {
	t.Helper()
	for _, r := range m.Resources() {
		if r.GetKind() == kind && r.GetName() == name {
			obj, err := r.Map()
			if err != nil {
				t.Fatal(err)
			}
			return obj
		}
	}
	t.Fatalf("no %s %s rendered", kind, name)
	return nil
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}
