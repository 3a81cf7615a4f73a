package main

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/rotator-dev/rotator/internal/config"
)

// The image's contract, read from the Dockerfile: which user it runs as and
// where the binary sits.
type imageSpec struct {
	entrypoint string
	uid, gid   uint32
}

func readImageSpec(t *testing.T) imageSpec {
	t.Helper()
	raw, err := os.ReadFile("../../Dockerfile")
	must(t, err)
	user := regexp.MustCompile(`(?m)^USER (\d+):(\d+)\s*$`).FindStringSubmatch(string(raw))
	entry := regexp.MustCompile(`(?m)^ENTRYPOINT \["([^"]+)"\]\s*$`).FindStringSubmatch(string(raw))
	if user == nil || entry == nil {
		t.Fatal("Dockerfile needs `USER uid:gid` and `ENTRYPOINT [\"/path\"]` for this test to read")
	}
	uid, _ := strconv.Atoi(user[1])
	gid, _ := strconv.Atoi(user[2])
	if uid == 0 {
		t.Fatal("the image runs as root")
	}
	return imageSpec{entrypoint: entry[1], uid: uint32(uid), gid: uint32(gid)}
}

// shippedPod is what one kustomize variant tells the kubelet to run.
type shippedPod struct {
	spec   corev1.PodSpec
	config string // config.yaml of the ConfigMap the pod mounts
	// tokenKey is the key of the token Secret the pod mounts.
	tokenKey string
}

func renderShippedPod(t *testing.T, dir string) shippedPod {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	must(t, err)
	var p shippedPod
	var cms map[string]string
	secrets := map[string][]string{}
	for _, r := range m.Resources() {
		js, err := r.MarshalJSON()
		must(t, err)
		switch r.GetKind() {
		case "Deployment":
			var d struct {
				Spec struct{ Template corev1.PodTemplateSpec }
			}
			must(t, yaml.Unmarshal(js, &d))
			p.spec = d.Spec.Template.Spec
		case "CronJob":
			var c struct {
				Spec struct {
					JobTemplate struct {
						Spec struct{ Template corev1.PodTemplateSpec }
					}
				}
			}
			must(t, yaml.Unmarshal(js, &c))
			p.spec = c.Spec.JobTemplate.Spec.Template.Spec
		case "ConfigMap":
			var cm corev1.ConfigMap
			must(t, yaml.Unmarshal(js, &cm))
			if cms == nil {
				cms = map[string]string{}
			}
			cms[cm.Name] = cm.Data["config.yaml"]
		case "Secret":
			var s corev1.Secret
			must(t, yaml.Unmarshal(js, &s))
			for k := range s.StringData {
				secrets[s.Name] = append(secrets[s.Name], k)
			}
			for k := range s.Data {
				secrets[s.Name] = append(secrets[s.Name], k)
			}
		}
	}
	if len(p.spec.Containers) != 1 {
		t.Fatalf("%s: want one container, got %d", dir, len(p.spec.Containers))
	}
	for _, v := range p.spec.Volumes {
		switch {
		case v.ConfigMap != nil:
			p.config = cms[v.ConfigMap.Name]
		case v.Secret != nil:
			if keys := secrets[v.Secret.SecretName]; len(keys) == 1 {
				p.tokenKey = keys[0]
			}
		}
	}
	if p.config == "" || p.tokenKey == "" {
		t.Fatalf("%s: the pod mounts no config.yaml or no one-key token Secret", dir)
	}
	return p
}

// podRoot lays out what the container sees: the image (the binary, CA
// bundle, passwd as distroless has them), the kubelet's files (/etc/hosts,
// the ServiceAccount token) and the pod's volumes at their mount paths.
// Every file and folder is root's and read-only, as the image is under
// readOnlyRootFilesystem to a nonroot user.
type podRoot struct {
	dir   string
	files map[string][]byte
}

func (r *podRoot) add(path string, content []byte) { r.files[path] = content }

func (r *podRoot) write(t *testing.T) {
	t.Helper()
	for path, content := range r.files {
		full := filepath.Join(r.dir, path)
		must(t, os.MkdirAll(filepath.Dir(full), 0o755))
		must(t, os.WriteFile(full, content, 0o444))
	}
	mode := func(p string) os.FileMode {
		if filepath.Clean(p) == filepath.Join(r.dir, "rotator") {
			return 0o555
		}
		return 0o444
	}
	must(t, filepath.Walk(r.dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if info.IsDir() {
			return os.Chmod(p, 0o555)
		}
		return os.Chmod(p, mode(p))
	}))
}

// podProcess is the container's process, started chrooted into the pod
// root as the image's user with the container's args and env.
type podProcess struct {
	cmd *exec.Cmd
	out bytes.Buffer
}

func (w *world) startPod(root string, img imageSpec, c corev1.Container, env []string) *podProcess {
	w.t.Helper()
	p := &podProcess{}
	p.cmd = &exec.Cmd{Path: img.entrypoint, Args: append([]string{img.entrypoint}, c.Args...), Env: env, Dir: "/"}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{
		Chroot:     root,
		Credential: &syscall.Credential{Uid: img.uid, Gid: img.gid, Groups: []uint32{}},
	}
	must(w.t, p.cmd.Start())
	return p
}

func (p *podProcess) wait(timeout time.Duration) (int, error) {
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), nil
		}
		return 0, err
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-done
		return -1, fmt.Errorf("still running after %s", timeout)
	}
}

// TestShippedPodsRun runs the binary as the kubelet would run the shipped
// CronJob and Deployment: chrooted into a read-only root laid out like the
// distroless image, as the Dockerfile's user, with the manifests' args,
// env, config and token mounts, and in-cluster credentials from a
// ServiceAccount token bound by deploy/base/rbac.yaml. Only the GitLab URL,
// project, registry and target namespaces of the config are the test's.
func TestShippedPodsRun(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("this test chroots and switches user, which needs root")
		}
		t.Skip("needs root to chroot and switch user")
	}
	w := newWorld(t)
	home, ns0, ns1 := w.namespaces[0], w.namespaces[0], w.namespaces[1]
	applyRBAC(t, w, "../../deploy/base/rbac.yaml", map[string]string{"default": ns0, "game-servers": ns1, "rotator-system": home, "": home}, nil)
	w.createServiceAccount(home, "rotator")
	img := readImageSpec(t)
	bin := sharedBinary(t)

	tr, err := cluster.Clientset.CoreV1().ServiceAccounts(home).CreateToken(w.ctx(), "rotator",
		&authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	must(t, err)
	saToken := tr.Status.Token
	w.seen[saToken] = true
	apiHost, apiPort, err := net.SplitHostPort(strings.TrimPrefix(cluster.Config.Host, "https://"))
	must(t, err)

	// Not subtests: the world and its checks belong to the parent test.
	run := func(variant string, check func(p *podProcess, pod shippedPod, listen string)) {
		pod := renderShippedPod(t, "../../deploy/"+variant)
		c := pod.spec.Containers[0]
		if pod.spec.ServiceAccountName != "rotator" {
			t.Fatalf("serviceAccountName %q", pod.spec.ServiceAccountName)
		}
		if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Fatal("the container's root filesystem is not read-only, so this test proves less than it says")
		}

		cfg := map[string]any{}
		must(t, yaml.Unmarshal([]byte(pod.config), &cfg))
		gl := cfg["gitlab"].(map[string]any)
		tokenFile, _ := gl["tokenFile"].(string)
		i := slices.Index(c.Args, "--config")
		if i < 0 || i+1 >= len(c.Args) {
			t.Fatalf("args %v name no --config", c.Args)
		}
		configPath := c.Args[i+1]

		root := &podRoot{dir: filepath.Join(t.TempDir(), "root"), files: map[string][]byte{}}
		binary, err := os.ReadFile(bin)
		must(t, err)
		root.add(img.entrypoint, binary)
		if ca, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt"); err == nil {
			root.add("/etc/ssl/certs/ca-certificates.crt", ca)
		}
		root.add("/etc/passwd", fmt.Appendf(nil, "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", img.uid, img.gid))
		root.add("/etc/hosts", []byte("127.0.0.1\tlocalhost\n::1\tlocalhost\n"))
		sa := "/var/run/secrets/kubernetes.io/serviceaccount/"
		root.add(sa+"token", []byte(saToken))
		root.add(sa+"ca.crt", cluster.Config.CAData)
		root.add(sa+"namespace", []byte(home))

		// The token file the config names must be the token Secret's key
		// under its mount, and the config file the ConfigMap's.
		mounted := map[string]string{}
		for _, m := range c.VolumeMounts {
			mounted[m.Name] = m.MountPath
		}
		for _, v := range pod.spec.Volumes {
			switch {
			case v.Secret != nil:
				if want := filepath.Join(mounted[v.Name], pod.tokenKey); tokenFile != want {
					t.Fatalf("config gitlab.tokenFile %q, but the token Secret's key is mounted at %s", tokenFile, want)
				}
				root.add(tokenFile, []byte(w.pat+"\n"))
			case v.ConfigMap != nil:
				if want := filepath.Join(mounted[v.Name], "config.yaml"); configPath != want {
					t.Fatalf("args read --config %s, but the ConfigMap is mounted at %s", configPath, want)
				}
			}
		}

		// The port the probes and Service use is the daemon's default
		// listen port; the test listens on a free one instead.
		shipped := filepath.Join(t.TempDir(), "config.yaml")
		must(t, os.WriteFile(shipped, []byte(pod.config), 0o600))
		defaults, err := config.Load(config.Sources{File: shipped, Env: func(k string) (string, bool) {
			if k == "ROTATOR_GITLAB_TOKEN_FILE" {
				return w.patFile, true
			}
			return "", false
		}})
		must(t, err)
		listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		if variant == "daemon" {
			_, defaultPort, _ := net.SplitHostPort(defaults.Daemon.Listen)
			for _, port := range c.Ports {
				if port.Name == "metrics" && strconv.Itoa(int(port.ContainerPort)) != defaultPort {
					t.Fatalf("containerPort metrics %d, but the daemon listens on %s", port.ContainerPort, defaults.Daemon.Listen)
				}
			}
		}

		gl["url"], gl["allowInsecureHTTP"], gl["project"], gl["registryHost"] = w.url, true, projectPath, w.registryHost
		cfg["targets"] = []any{map[string]any{"namespace": ns0}, map[string]any{"namespace": ns1}}
		cfg["daemon"] = map[string]any{"listen": listen}
		rendered, err := yaml.Marshal(cfg)
		must(t, err)
		root.add(configPath, rendered)
		root.write(t)

		env := []string{
			"KUBERNETES_SERVICE_HOST=" + apiHost, "KUBERNETES_SERVICE_PORT=" + apiPort,
			"HOME=/home/nonroot", "ROTATOR_NOW=" + w.now.Format(time.RFC3339),
		}
		for _, e := range c.Env {
			switch {
			case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
				env = append(env, e.Name+"="+home)
			case e.ValueFrom == nil:
				env = append(env, e.Name+"="+e.Value)
			default:
				t.Fatalf("env %s: this test does not know how to fill %+v", e.Name, e.ValueFrom)
			}
		}
		p := w.startPod(root.dir, img, c, env)
		check(p, pod, listen)
		w.mu.Lock()
		w.transcript.Write(p.out.Bytes())
		w.mu.Unlock()
		for _, bad := range []string{"read-only file system", "permission denied", "kubeconfig"} {
			if strings.Contains(strings.ToLower(p.out.String()), bad) {
				t.Errorf("the %s pod's output mentions %q:\n%s", variant, bad, p.out.String())
			}
		}
	}

	// The CronJob's run-once makes the first token.
	run("cronjob", func(p *podProcess, _ shippedPod, _ string) {
		code, err := p.wait(2 * time.Minute)
		if err != nil || code != 0 {
			t.Fatalf("run-once pod: exit %d, %v\n%s", code, err, p.out.String())
		}
		t.Logf("cronjob pod: %s", lastLine(p.out.String()))
	})
	first := w.assertConverged()

	// The Deployment's daemon, past the renewal point, rotates, answers its
	// probes, and stops cleanly on SIGTERM.
	w.advance(21 * 24 * time.Hour)
	run("daemon", func(p *podProcess, pod shippedPod, listen string) {
		c := pod.spec.Containers[0]
		probe := func(pr *corev1.Probe) string { return "http://" + listen + pr.HTTPGet.Path }
		ready := func() bool {
			resp, err := http.Get(probe(c.ReadinessProbe))
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		}
		deadline := time.Now().Add(30 * time.Second)
		rotated := func() bool { return w.converged() && w.managed(true)[0].ID != first.ID }
		for !ready() || !rotated() {
			if p.cmd.ProcessState != nil || time.Now().After(deadline) {
				_ = p.cmd.Process.Kill()
				_, _ = p.wait(5 * time.Second)
				t.Fatalf("daemon pod not ready with a new token in 30s:\n%s", p.out.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
		must(t, err)
		if uid := fmt.Sprintf("Uid:\t%d\t", img.uid); !strings.Contains(string(status), uid) {
			t.Errorf("the daemon pod does not run as the image's user %d:\n%s", img.uid, lineWith(string(status), "Uid:"))
		}
		if code := httpStatus(t, probe(c.LivenessProbe)); code != http.StatusOK {
			t.Errorf("liveness probe %s: %d", c.LivenessProbe.HTTPGet.Path, code)
		}
		must(t, p.cmd.Process.Signal(syscall.SIGTERM))
		if code, err := p.wait(30 * time.Second); err != nil || code != 0 {
			t.Fatalf("daemon pod after SIGTERM: exit %d, %v\n%s", code, err, p.out.String())
		}
	})
	if second := w.assertConverged(); second.ID == first.ID {
		t.Fatal("the daemon pod did not rotate past the renewal point")
	}

	// Both pods reached the API server with the in-cluster credentials only.
	reqs, err := cluster.Requests("rotator")
	must(t, err)
	want, n := "system:serviceaccount:"+home+":rotator", 0
	for _, r := range reqs {
		if r.ObjectRef.Namespace != ns0 && r.ObjectRef.Namespace != ns1 {
			continue
		}
		if n++; r.User.Username != want {
			t.Errorf("%s %s/%s as %q, want %s", r.Verb, r.ObjectRef.Resource, r.ObjectRef.Name, r.User.Username, want)
		}
	}
	if n == 0 {
		t.Fatal("the audit log has no request of the pods")
	}
	t.Logf("%d requests to the target namespaces, all as %s", n, want)
	assertNeverForbidden(t, want)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
