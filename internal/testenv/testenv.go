// Package testenv starts a real kube-apiserver and etcd (through envtest)
// for integration tests and the demo, with an audit log so that tests can
// count the write requests a run made instead of inferring them.
package testenv

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// AssetsVersion names the cache folder hack/kube-binaries.sh fills.
const AssetsVersion = "kube-v1.37.2-etcd-v3.7.3"

// ErrNoAssets means the kube-apiserver and etcd binaries are not built.
var ErrNoAssets = errors.New("kube-apiserver and etcd not found: run hack/kube-binaries.sh and set KUBEBUILDER_ASSETS to the folder it prints")

// AssetsDir finds the binaries: KUBEBUILDER_ASSETS, else the script's cache.
func AssetsDir() (string, error) {
	dirs := []string{os.Getenv("KUBEBUILDER_ASSETS")}
	cache := os.Getenv("ROTATOR_CACHE")
	if cache == "" {
		if base, err := os.UserCacheDir(); err == nil {
			cache = filepath.Join(base, "rotator")
		}
	}
	if cache != "" {
		dirs = append(dirs, filepath.Join(cache, AssetsVersion))
	}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		if isExec(filepath.Join(d, "kube-apiserver")) && isExec(filepath.Join(d, "etcd")) {
			return d, nil
		}
	}
	return "", ErrNoAssets
}

func isExec(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// Cluster is a running API server.
type Cluster struct {
	Config         *rest.Config
	Clientset      kubernetes.Interface
	KubeconfigPath string
	auditPath      string
	env            *envtest.Environment
}

const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
`

// Start runs etcd and kube-apiserver with their data in dir, and writes an
// admin kubeconfig there.
func Start(dir string) (*Cluster, error) {
	assets, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	policyPath := filepath.Join(dir, "audit-policy.yaml")
	if err := os.WriteFile(policyPath, []byte(auditPolicy), 0o600); err != nil {
		return nil, err
	}
	c := &Cluster{auditPath: filepath.Join(dir, "audit.log"), KubeconfigPath: filepath.Join(dir, "kubeconfig")}
	c.env = &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		ControlPlaneStartTimeout: 60 * time.Second,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	api := c.env.ControlPlane.GetAPIServer()
	// kube-apiserver 1.37 refuses to start on loopback without these.
	api.Configure().
		Set("advertise-address", "127.0.0.1").
		Set("endpoint-reconciler-type", "none").
		Set("audit-policy-file", policyPath).
		Set("audit-log-path", c.auditPath).
		Set("audit-log-mode", "blocking")
	cfg, err := c.env.Start()
	if err != nil {
		return nil, fmt.Errorf("start kube-apiserver and etcd from %s: %w", assets, err)
	}
	c.Config = cfg
	if c.Clientset, err = kubernetes.NewForConfig(cfg); err != nil {
		_ = c.Stop()
		return nil, err
	}
	user, err := c.env.ControlPlane.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		_ = c.Stop()
		return nil, fmt.Errorf("add admin user: %w", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		_ = c.Stop()
		return nil, err
	}
	if err := os.WriteFile(c.KubeconfigPath, kc, 0o600); err != nil {
		_ = c.Stop()
		return nil, err
	}
	return c, nil
}

// Stop stops the API server, then etcd.
func (c *Cluster) Stop() error { return c.env.Stop() }

// AuditEvent is the part of an audit record tests look at.
type AuditEvent struct {
	Verb      string `json:"verb"`
	UserAgent string `json:"userAgent"`
	Stage     string `json:"stage"`
	User      struct {
		Username string `json:"username"`
	} `json:"user"`
	// ImpersonatedUser is who the request acted as, when impersonating.
	ImpersonatedUser struct {
		Username string `json:"username"`
	} `json:"impersonatedUser"`
	ObjectRef struct {
		Resource  string `json:"resource"`
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"objectRef"`
	ResponseStatus struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
}

var writeVerbs = map[string]bool{"create": true, "update": true, "patch": true, "delete": true, "deletecollection": true}

// Writes returns the completed write requests made with user agent agent
// (exactly, or followed by "/version"), in the order the server saw them.
func (c *Cluster) Writes(agent string) ([]AuditEvent, error) {
	return ReadWrites(c.auditPath, agent)
}

// Requests returns every completed request, read or write, made with user
// agent agent.
func (c *Cluster) Requests(agent string) ([]AuditEvent, error) {
	return readAudit(c.auditPath, agent, func(AuditEvent) bool { return true })
}

// ReadWrites reads an audit log written by Start.
func ReadWrites(auditPath, agent string) ([]AuditEvent, error) {
	return readAudit(auditPath, agent, func(ev AuditEvent) bool { return writeVerbs[ev.Verb] })
}

func readAudit(auditPath, agent string, keep func(AuditEvent) bool) ([]AuditEvent, error) {
	f, err := os.Open(auditPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []AuditEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var ev AuditEvent
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue
		}
		if ev.Stage == "ResponseComplete" && keep(ev) && (ev.UserAgent == agent || strings.HasPrefix(ev.UserAgent, agent+"/")) {
			out = append(out, ev)
		}
	}
	return out, sc.Err()
}

// AuditPath is where the API server writes its audit log.
func (c *Cluster) AuditPath() string { return c.auditPath }
