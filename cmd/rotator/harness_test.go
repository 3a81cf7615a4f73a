package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rotator-dev/rotator/internal/gitlabemu"
	"github.com/rotator-dev/rotator/internal/kube"
	"github.com/rotator-dev/rotator/internal/testenv"
)

// cluster is one real kube-apiserver shared by the package's tests; each
// test works in namespaces of its own.
var cluster *testenv.Cluster

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rotator-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cluster, err = testenv.Start(filepath.Join(dir, "cluster"))
	if err != nil {
		if os.Getenv("CI") != "" || !errors.Is(err, testenv.ErrNoAssets) {
			fmt.Fprintln(os.Stderr, "integration tests need a kube-apiserver:", err)
			os.Exit(1)
		}
		fmt.Fprintln(os.Stderr, "skipping integration tests:", err)
	}
	code := m.Run()
	if cluster != nil {
		if err := cluster.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop cluster:", err)
		}
	}
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

const (
	projectID   = 7
	projectPath = "games/fleet"
	scope       = "project:7"
)

var nsCounter atomic.Int64

// world is one test's GitLab emulator, namespaces and config.
type world struct {
	t   *testing.T
	emu *gitlabemu.Server
	url string
	// registryHost is a real registry (distribution) that trusts the
	// emulator's token service.
	registryHost string
	registry     *testenv.Registry
	pat          string
	patFile      string
	configPath   string
	namespaces   []string
	now          time.Time
	env          map[string]string
	// transcript collects everything the rotator printed, for leak checks.
	transcript *bytes.Buffer
	// seen holds every credential value observed, including revoked ones.
	seen map[string]bool
	// mu guards transcript against daemon goroutines.
	mu sync.Mutex
}

func newWorld(t *testing.T) *world {
	t.Helper()
	if cluster == nil {
		t.Skip("no kube-apiserver (run hack/kube-binaries.sh)")
	}
	emu := gitlabemu.New()
	start := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	emu.SetNow(start)
	emu.AddProject(projectID, projectPath)
	pat := "glpat-" + strings.Repeat("x", 14) + fmt.Sprint(nsCounter.Add(1))
	expires := start.Add(300 * 24 * time.Hour)
	emu.AddAccessToken(gitlabemu.AccessToken{Token: pat, Scopes: []string{"api"}, ExpiresAt: &expires,
		Roles: map[string]gitlabemu.Role{scope: gitlabemu.Maintainer}})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	// "localhost", not 127.0.0.1: go-containerregistry refuses a token realm
	// on a loopback IP whose host differs from the registry's.
	url := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)

	dir := t.TempDir()
	reg, err := testenv.StartRegistry(filepath.Join(dir, "registry"), url+"/jwt/auth", emu.Issuer(), emu.JWKS())
	must(t, err)
	t.Cleanup(func() { _ = reg.Stop() })
	w := &world{t: t, emu: emu, url: url, registryHost: reg.Host, registry: reg, pat: pat, now: start, transcript: &bytes.Buffer{}, seen: map[string]bool{}}
	n := nsCounter.Add(1)
	w.namespaces = []string{fmt.Sprintf("it%d-default", n), fmt.Sprintf("it%d-game-servers", n)}
	for _, ns := range w.namespaces {
		w.createNamespace(ns)
		w.createServiceAccount(ns, "default")
		w.createServiceAccount(ns, "agones-sdk")
	}
	w.patFile = filepath.Join(dir, "gitlab-token")
	must(t, os.WriteFile(w.patFile, []byte(pat+"\n"), 0o600))
	w.configPath = filepath.Join(dir, "config.yaml")
	w.writeConfig(projectPath)
	w.env = map[string]string{"KUBECONFIG": cluster.KubeconfigPath}
	// Every world's output is searched for every credential it ever saw.
	t.Cleanup(w.assertNoLeaks)
	return w
}

func (w *world) writeConfig(project string) { w.writeConfigFor(project, w.registryHost) }

func (w *world) writeConfigFor(project, registryHost string) {
	cfg := fmt.Sprintf(`gitlab:
  url: %s
  allowInsecureHTTP: true
  tokenFile: %s
  project: %q
  registryHost: %s
  timeout: 10s
token:
  lifetime: 30d
daemon:
  leaseNamespace: %s
targets:
  - namespace: %s
  - namespace: %s
`, w.url, w.patFile, project, registryHost, w.namespaces[0], w.namespaces[0], w.namespaces[1])
	must(w.t, os.WriteFile(w.configPath, []byte(cfg), 0o600))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (w *world) ctx() context.Context { return context.Background() }

func (w *world) createNamespace(ns string) {
	_, err := cluster.Clientset.CoreV1().Namespaces().Create(w.ctx(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	must(w.t, err)
}

func (w *world) createServiceAccount(ns, name string, pullSecrets ...string) {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	for _, p := range pullSecrets {
		sa.ImagePullSecrets = append(sa.ImagePullSecrets, corev1.LocalObjectReference{Name: p})
	}
	_, err := cluster.Clientset.CoreV1().ServiceAccounts(ns).Create(w.ctx(), sa, metav1.CreateOptions{})
	must(w.t, err)
}

// run invokes the rotator in process, as `rotator <args>` with the world's
// config and clock.
func (w *world) run(args ...string) (code int, stdout, stderr string) {
	w.t.Helper()
	if len(args) > 0 && args[0] != "version" && !slices.Contains(args, "--config") {
		args = append(args, "--config", w.configPath)
	}
	env := map[string]string{"ROTATOR_NOW": w.now.Format(time.RFC3339)}
	for k, v := range w.env {
		env[k] = v
	}
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	w.transcript.WriteString(out.String())
	w.transcript.WriteString(errOut.String())
	return code, out.String(), errOut.String()
}

func (w *world) mustRun(args ...string) string {
	w.t.Helper()
	code, out, errOut := w.run(args...)
	if code != 0 {
		w.t.Fatalf("rotator %v exited %d\nstdout: %s\nstderr: %s", args, code, out, errOut)
	}
	return out
}

func (w *world) advance(d time.Duration) {
	w.now = w.now.Add(d)
	w.emu.SetNow(w.now)
}

// k8sWrites counts the rotator's write requests in this world's namespaces,
// read from the API server's audit log.
func (w *world) k8sWrites() int { return w.k8sWritesTo("") }

// k8sWritesTo counts only writes to one resource ("secrets", "events"…);
// "" counts all.
func (w *world) k8sWritesTo(resource string) int {
	w.t.Helper()
	evs, err := cluster.Writes("rotator")
	must(w.t, err)
	n := 0
	for _, ev := range evs {
		if resource != "" && ev.ObjectRef.Resource != resource {
			continue
		}
		for _, ns := range w.namespaces {
			if ev.ObjectRef.Namespace == ns {
				n++
			}
		}
	}
	return n
}

func (w *world) gitlabWrites() int { return w.emu.WriteCount() }

func (w *world) secret(ns string) *corev1.Secret {
	s, err := cluster.Clientset.CoreV1().Secrets(ns).Get(w.ctx(), "gitlab", metav1.GetOptions{})
	if err != nil {
		w.t.Fatalf("get secret %s/gitlab: %v", ns, err)
	}
	return s
}

func (w *world) serviceAccount(ns, name string) *corev1.ServiceAccount {
	sa, err := cluster.Clientset.CoreV1().ServiceAccounts(ns).Get(w.ctx(), name, metav1.GetOptions{})
	must(w.t, err)
	return sa
}

// managed lists the managed rows in GitLab, with their values.
func (w *world) managed(activeOnly bool) []gitlabemu.DeployToken {
	var out []gitlabemu.DeployToken
	for _, t := range w.emu.DeployTokens(scope) {
		if !strings.HasPrefix(t.Name, "k8s-pull-") {
			continue
		}
		if activeOnly && (t.Revoked || (t.ExpiresAt != nil && w.now.After(*t.ExpiresAt))) {
			continue
		}
		out = append(out, t)
	}
	return out
}

// decodeAuth returns the username and password the Secret holds for the
// registry, decoded from the auth field as kubelet does.
func (w *world) decodeAuth(s *corev1.Secret) (string, string) {
	w.t.Helper()
	if s.Type != corev1.SecretTypeDockerConfigJson {
		w.t.Fatalf("secret %s/%s has type %s", s.Namespace, s.Name, s.Type)
	}
	user, pass := w.decodeAuthQuiet(s)
	if user == "" || pass == "" {
		w.t.Fatalf("secret %s/%s has no usable entry for %s", s.Namespace, s.Name, w.registryHost)
	}
	return user, pass
}

// assertConverged checks the end state every successful cycle must reach:
// exactly one active managed token, held by every target Secret, listed by
// every target ServiceAccount. It returns that token.
func (w *world) assertConverged() gitlabemu.DeployToken {
	w.t.Helper()
	active := w.managed(true)
	if len(active) != 1 {
		w.t.Fatalf("want exactly one active managed token, have %d: %+v", len(active), ids(active))
	}
	tok := active[0]
	w.seen[tok.Token] = true
	for _, ns := range w.namespaces {
		s := w.secret(ns)
		user, pass := w.decodeAuth(s)
		if user != tok.Username || pass != tok.Token {
			w.t.Fatalf("secret %s/gitlab holds %s, not token %d (%s)", ns, user, tok.ID, tok.Username)
		}
		if s.Annotations[kube.AnnotationTokenID] != fmt.Sprint(tok.ID) || s.Labels[kube.LabelManagedBy] != kube.ManagedByValue {
			w.t.Fatalf("secret %s/gitlab metadata: labels %v annotations %v", ns, s.Labels, s.Annotations)
		}
		for _, name := range []string{"default", "agones-sdk"} {
			if !listsSecret(w.serviceAccount(ns, name), "gitlab") {
				w.t.Fatalf("serviceaccount %s/%s does not list gitlab", ns, name)
			}
		}
	}
	return tok
}

func listsSecret(sa *corev1.ServiceAccount, name string) bool {
	n := 0
	for _, r := range sa.ImagePullSecrets {
		if r.Name == name {
			n++
		}
	}
	return n == 1
}

func ids(ts []gitlabemu.DeployToken) []int64 {
	var out []int64
	for _, t := range ts {
		out = append(out, t.ID)
	}
	return out
}

// secretValues lists every credential the world has seen, for leak checks.
func (w *world) secretValues() []string {
	for _, t := range w.emu.DeployTokens("") {
		w.seen[t.Token] = true
		w.seen[base64.StdEncoding.EncodeToString([]byte(t.Username+":"+t.Token))] = true
	}
	vals := []string{w.pat}
	for v := range w.seen {
		vals = append(vals, v)
	}
	return vals
}

func (w *world) assertNoLeaks() {
	w.t.Helper()
	w.mu.Lock()
	text := w.transcript.String()
	w.mu.Unlock()
	for _, v := range w.secretValues() {
		if v != "" && strings.Contains(text, v) {
			w.t.Fatalf("a credential appeared in the rotator's output")
		}
	}
}

func itoa(i int64) string { return fmt.Sprint(i) }

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }

func (w *world) dockerConfig(user, pass string) []byte {
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	return []byte(`{"auths":{"` + w.registryHost + `":{"username":"` + user + `","password":"` + pass + `","auth":"` + auth + `"}}}`)
}

// apiExpiredFlag reads GitLab's own expired flag over the REST API.
func apiExpiredFlag(t *testing.T, w *world, id int64) bool {
	t.Helper()
	req, err := http.NewRequest("GET", w.url+"/api/v4/projects/7/deploy_tokens/"+itoa(id), nil)
	must(t, err)
	req.Header.Set("Private-Token", w.pat)
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	var body struct {
		Expired bool `json:"expired"`
	}
	must(t, json.NewDecoder(resp.Body).Decode(&body))
	return body.Expired
}

// assertEvents checks that the target Secret in ns has Events with each
// reason, and that no Event message holds a credential.
func (w *world) assertEvents(ns string, reasons ...string) {
	w.t.Helper()
	list, err := cluster.Clientset.CoreV1().Events(ns).List(w.ctx(), metav1.ListOptions{})
	must(w.t, err)
	have := map[string]bool{}
	for _, ev := range list.Items {
		if ev.InvolvedObject.Kind == "Secret" && ev.InvolvedObject.Name == "gitlab" {
			have[ev.Reason] = true
			w.transcript.WriteString(ev.Message + "\n")
		}
	}
	for _, r := range reasons {
		if !have[r] {
			w.t.Fatalf("no %s Event on %s/gitlab; have %v", r, ns, have)
		}
	}
}

// tokensCreated counts create requests GitLab received.
func (w *world) tokensCreated() int {
	n := 0
	for _, r := range w.emu.Requests() {
		if r.Endpoint == gitlabemu.EndpointCreateDeployToken {
			n++
		}
	}
	return n
}

// decodeAuthQuiet returns the username and password of the Secret's entry
// for the registry, decoded from the auth field as kubelet does, or empty
// strings; it never fails the test, so goroutines may use it.
func (w *world) decodeAuthQuiet(s *corev1.Secret) (string, string) {
	var cfg struct {
		Auths map[string]struct {
			Auth string `json:"auth"`
		} `json:"auths"`
	}
	if json.Unmarshal(s.Data[corev1.DockerConfigJsonKey], &cfg) != nil {
		return "", ""
	}
	raw, err := base64.StdEncoding.DecodeString(cfg.Auths[w.registryHost].Auth)
	if err != nil {
		return "", ""
	}
	user, pass, _ := strings.Cut(string(raw), ":")
	return user, pass
}
