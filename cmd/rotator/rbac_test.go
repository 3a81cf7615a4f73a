package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/rotator-dev/rotator/internal/daemon"
)

// The shipped RBAC is enough, and no more: apply deploy/base/rbac.yaml to
// the real API server (RBAC authorization on), then run the rotator as its
// ServiceAccount.
func TestLeastPrivilegeRBAC(t *testing.T) {
	w := newWorld(t)
	home, ns0, ns1 := w.namespaces[0], w.namespaces[0], w.namespaces[1]
	rename := map[string]string{"default": ns0, "game-servers": ns1, "rotator-system": home, "": home}

	applyRBAC(t, w, "../../deploy/base/rbac.yaml", rename, nil)
	w.createServiceAccount(home, "rotator")
	asRotator := w.impersonate("system:serviceaccount:" + home + ":rotator")

	// Wait for the RBAC cache to see the new bindings.
	w.eventually(10*time.Second, "RBAC in effect", func() bool {
		_, err := asRotator.CoreV1().ServiceAccounts(ns0).Get(w.ctx(), "default", metav1.GetOptions{})
		return err == nil
	})

	w.mustRun("run-once")
	first := w.assertConverged()
	if code, out, stderr := w.run("status"); code != 0 {
		t.Fatalf("status as the rotator: exit %d\n%s\n%s", code, out, stderr)
	}
	w.advance(25 * 24 * time.Hour)
	w.mustRun("run-once")
	if got := w.assertConverged(); got.ID == first.ID {
		t.Fatal("no rotation as the rotator")
	}
	// The daemon's watches are narrowed to the named objects, which
	// resourceNames can authorise.
	r := w.startDaemonEvery("@every 1h", &daemon.LeaseOptions{Namespace: home, Name: "rotator", Identity: "rbac",
		LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: time.Second})
	w.eventually(10*time.Second, "daemon ready as the rotator", func() bool { return httpStatus(t, "http://"+r.d.Addr()+"/readyz") == 200 })
	must(t, cluster.Clientset.CoreV1().Secrets(ns1).Delete(w.ctx(), "gitlab", metav1.DeleteOptions{}))
	w.eventually(10*time.Second, "repair as the rotator", func() bool {
		_, err := cluster.Clientset.CoreV1().Secrets(ns1).Get(w.ctx(), "gitlab", metav1.GetOptions{})
		return err == nil
	})

	// run-once hands its run to the daemon through the request Lease.
	if out := w.mustRun("run-once", "--force"); !strings.Contains(out, "(run by daemon") {
		t.Fatalf("run-once --force next to a daemon, as the rotator: %s", out)
	}
	w.assertConverged()
	// Nothing the rotator did so far was refused, not even a watch or an
	// Event whose failure it only logs.
	assertNeverForbidden(t, "system:serviceaccount:"+home+":rotator")

	// And no more: other Secrets, and Secrets outside the targets, stay out
	// of reach.
	other := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns0, Name: "database"}, StringData: map[string]string{"password": "x"}}
	_, err := cluster.Clientset.CoreV1().Secrets(ns0).Create(w.ctx(), other, metav1.CreateOptions{})
	must(t, err)
	outside := "rbac-outside"
	w.createNamespace(outside)
	_, err = cluster.Clientset.CoreV1().Secrets(outside).Create(w.ctx(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: outside, Name: "gitlab"}}, metav1.CreateOptions{})
	must(t, err)
	checks := []struct {
		what string
		err  error
	}{
		{"get another Secret in a target namespace", getErr(asRotator.CoreV1().Secrets(ns0).Get(w.ctx(), "database", metav1.GetOptions{}))},
		{"list Secrets in a target namespace", listErr(asRotator.CoreV1().Secrets(ns0).List(w.ctx(), metav1.ListOptions{}))},
		{"get the pull Secret outside the targets", getErr(asRotator.CoreV1().Secrets(outside).Get(w.ctx(), "gitlab", metav1.GetOptions{}))},
		{"delete the pull Secret", asRotator.CoreV1().Secrets(ns0).Delete(w.ctx(), "gitlab", metav1.DeleteOptions{})},
		{"list namespaces", nsListErr(asRotator.CoreV1().Namespaces().List(w.ctx(), metav1.ListOptions{}))},
	}
	var buf bytes.Buffer
	for _, c := range checks {
		if !apierrors.IsForbidden(c.err) {
			t.Errorf("as the rotator, %s: %v, want Forbidden", c.what, c.err)
		}
		buf.WriteString(c.what + ": forbidden\n")
	}
	t.Logf("with deploy/base/rbac.yaml only: run-once, rotation, status, daemon and a repair succeed;\n%s", buf.String())
}

// TestLeastPrivilegeRBACWithoutWatchList runs TestLeastPrivilegeRBAC again
// with client-go's informers listing before they watch, as they do against
// API servers without streaming lists (older K3s): the shipped RBAC must
// grant list too. The feature gate is read once per process, hence a child.
func TestLeastPrivilegeRBACWithoutWatchList(t *testing.T) {
	if cluster == nil {
		t.Skip("no kube-apiserver (run hack/kube-binaries.sh)")
	}
	if os.Getenv("KUBE_FEATURE_WatchListClient") == "false" {
		t.Skip("this is the child")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestLeastPrivilegeRBAC$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "KUBE_FEATURE_WatchListClient=false")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestLeastPrivilegeRBAC") {
		t.Fatalf("TestLeastPrivilegeRBAC with KUBE_FEATURE_WatchListClient=false: %v\n%s", err, out)
	}
}

// assertNeverForbidden fails the test if the API server answered any
// request of the rotator, made as user, with 403.
func assertNeverForbidden(t *testing.T, user string) {
	t.Helper()
	reqs, err := cluster.Requests("rotator")
	must(t, err)
	n := 0
	for _, r := range reqs {
		if r.User.Username != user && r.ImpersonatedUser.Username != user {
			continue
		}
		n++
		if r.ResponseStatus.Code == 403 {
			t.Errorf("as %s: %s %s %s/%s was forbidden", user, r.Verb, r.ObjectRef.Resource, r.ObjectRef.Namespace, r.ObjectRef.Name)
		}
	}
	if n == 0 {
		t.Fatalf("the audit log has no request of the rotator as %s", user)
	}
}

// applyRBAC creates the Roles, RoleBindings, ClusterRoles and
// ClusterRoleBindings of a manifest file on the real API server, moving
// namespaces through rename (subjects too). Cluster-scoped names get the
// world's first namespace as a suffix, so tests sharing the API server do not
// collide; they are deleted when the test ends. keep, if not nil, picks which
// objects to create.
func applyRBAC(t *testing.T, w *world, path string, rename map[string]string, keep func(kind, name string) bool) {
	t.Helper()
	raw, err := os.ReadFile(path)
	must(t, err)
	suffix := "-" + w.namespaces[0]
	subjects := func(ss []rbacv1.Subject) {
		for i := range ss {
			ss[i].Namespace = rename[ss[i].Namespace]
		}
	}
	rbac := cluster.Clientset.RbacV1()
	n := 0
	for _, doc := range strings.Split(string(raw), "\n---") {
		var meta struct {
			Kind     string            `json:"kind"`
			Metadata metav1.ObjectMeta `json:"metadata"`
		}
		must(t, yaml.Unmarshal([]byte(doc), &meta))
		if meta.Kind == "" || (keep != nil && !keep(meta.Kind, meta.Metadata.Name)) {
			continue
		}
		n++
		switch meta.Kind {
		case "Role":
			var r rbacv1.Role
			must(t, yaml.Unmarshal([]byte(doc), &r))
			r.Namespace = rename[r.Namespace]
			_, err = rbac.Roles(r.Namespace).Create(w.ctx(), &r, metav1.CreateOptions{})
		case "RoleBinding":
			var b rbacv1.RoleBinding
			must(t, yaml.Unmarshal([]byte(doc), &b))
			b.Namespace = rename[b.Namespace]
			subjects(b.Subjects)
			_, err = rbac.RoleBindings(b.Namespace).Create(w.ctx(), &b, metav1.CreateOptions{})
		case "ClusterRole":
			var r rbacv1.ClusterRole
			must(t, yaml.Unmarshal([]byte(doc), &r))
			r.Name += suffix
			_, err = rbac.ClusterRoles().Create(w.ctx(), &r, metav1.CreateOptions{})
			t.Cleanup(func() { _ = rbac.ClusterRoles().Delete(context.Background(), r.Name, metav1.DeleteOptions{}) })
		case "ClusterRoleBinding":
			var b rbacv1.ClusterRoleBinding
			must(t, yaml.Unmarshal([]byte(doc), &b))
			b.Name += suffix
			b.RoleRef.Name += suffix
			subjects(b.Subjects)
			_, err = rbac.ClusterRoleBindings().Create(w.ctx(), &b, metav1.CreateOptions{})
			t.Cleanup(func() { _ = rbac.ClusterRoleBindings().Delete(context.Background(), b.Name, metav1.DeleteOptions{}) })
		default:
			t.Fatalf("%s: unexpected kind %s", path, meta.Kind)
		}
		must(t, err)
	}
	if n == 0 {
		t.Fatalf("%s: nothing applied", path)
	}
}

// impersonate points the world's KUBECONFIG at a kubeconfig that
// impersonates user, so the rotator runs as that user, and returns a client
// acting as the same user.
func (w *world) impersonate(user string) *kubernetes.Clientset {
	w.t.Helper()
	kc, err := clientcmd.LoadFromFile(cluster.KubeconfigPath)
	must(w.t, err)
	for _, ai := range kc.AuthInfos {
		ai.Impersonate = user
	}
	path := filepath.Join(w.t.TempDir(), "kubeconfig-as-rotator")
	must(w.t, clientcmd.WriteToFile(*kc, path))
	w.env["KUBECONFIG"] = path

	as := rest.CopyConfig(cluster.Config)
	as.Impersonate = rest.ImpersonationConfig{UserName: user}
	cs, err := kubernetes.NewForConfig(as)
	must(w.t, err)
	return cs
}

func getErr(_ *corev1.Secret, err error) error           { return err }
func listErr(_ *corev1.SecretList, err error) error      { return err }
func nsListErr(_ *corev1.NamespaceList, err error) error { return err }

// deploy/components/namespace-selector is enough for a namespaceSelector
// target, and rotator-namespaces is needed: with only the component's
// ClusterRoles and the Lease Role, run-once and the daemon work as the
// rotator's ServiceAccount, including in a namespace that gains the label
// later; without rotator-namespaces, run-once is forbidden and writes
// nothing.
func TestNamespaceSelectorClusterRBAC(t *testing.T) {
	w := newWorld(t)
	home, ns0 := w.namespaces[0], w.namespaces[0]
	rename := map[string]string{"rotator-system": home, "": home}
	const label = "rotator.dev/rbac-selector"
	for _, ns := range w.namespaces {
		w.labelNamespace(ns, label, home)
	}
	must(t, writeFile(w.configPath, fmt.Sprintf(`gitlab:
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
  - namespaceSelector: %s=%s
`, w.url, w.patFile, projectPath, w.registryHost, home, label, home)))

	component := "../../deploy/components/namespace-selector/rbac.yaml"
	named := func(name string) func(string, string) bool {
		return func(_, n string) bool { return n == name }
	}
	applyRBAC(t, w, "../../deploy/base/rbac.yaml", rename, named("rotator-lease"))
	applyRBAC(t, w, component, rename, named("rotator-targets"))
	w.createServiceAccount(home, "rotator")
	asRotator := w.impersonate("system:serviceaccount:" + home + ":rotator")
	w.eventually(10*time.Second, "rotator-targets in effect", func() bool {
		_, err := asRotator.CoreV1().ServiceAccounts(ns0).Get(w.ctx(), "default", metav1.GetOptions{})
		return err == nil
	})

	// Without rotator-namespaces the selector cannot be resolved.
	code, _, stderr := w.run("run-once")
	if code == 0 || !strings.Contains(stderr, `namespaces is forbidden`) || w.tokensCreated() != 0 {
		t.Fatalf("run-once without rotator-namespaces: exit %d, %d tokens created, want a failure listing namespaces\n%s", code, w.tokensCreated(), stderr)
	}
	t.Logf("without rotator-namespaces, run-once exits %d: %s", code, lineWith(stderr, "namespaces is forbidden"))

	applyRBAC(t, w, component, rename, named("rotator-namespaces"))
	w.eventually(10*time.Second, "rotator-namespaces in effect", func() bool {
		return nsListErr(asRotator.CoreV1().Namespaces().List(w.ctx(), metav1.ListOptions{})) == nil
	})
	w.mustRun("run-once")
	w.assertConverged()

	// The daemon's namespace informer needs watch as well as list. (Without
	// watch it still finds new namespaces, late, by relisting after each
	// refused watch, so the daemon below cannot tell; check the verb.)
	nw, err := asRotator.CoreV1().Namespaces().Watch(w.ctx(), metav1.ListOptions{LabelSelector: label + "=" + home})
	if err != nil {
		t.Fatalf("as the rotator, watch namespaces: %v", err)
	}
	nw.Stop()

	// The daemon watches namespaces: one that gains the label is written
	// without waiting for the hourly schedule.
	r := w.startDaemonEvery("@every 1h", &daemon.LeaseOptions{Namespace: home, Name: "rotator", Identity: "rbac-selector",
		LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: time.Second})
	w.eventually(10*time.Second, "daemon ready as the rotator", func() bool { return httpStatus(t, "http://"+r.d.Addr()+"/readyz") == 200 })
	late := home + "-late"
	w.createNamespace(late)
	w.createServiceAccount(late, "default")
	w.createServiceAccount(late, "agones-sdk")
	w.namespaces = append(w.namespaces, late)
	w.labelNamespace(late, label, home)
	w.eventually(15*time.Second, "daemon writes the newly labelled namespace", w.converged)
	w.assertConverged()

	// Wider, but still by name: another Secret stays out of reach.
	other := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: late, Name: "database"}}
	_, err = cluster.Clientset.CoreV1().Secrets(late).Create(w.ctx(), other, metav1.CreateOptions{})
	must(t, err)
	if err := getErr(asRotator.CoreV1().Secrets(late).Get(w.ctx(), "database", metav1.GetOptions{})); !apierrors.IsForbidden(err) {
		t.Errorf("as the rotator, get another Secret: %v, want Forbidden", err)
	}
}

func (w *world) labelNamespace(ns, key, value string) {
	w.t.Helper()
	n, err := cluster.Clientset.CoreV1().Namespaces().Get(w.ctx(), ns, metav1.GetOptions{})
	must(w.t, err)
	if n.Labels == nil {
		n.Labels = map[string]string{}
	}
	n.Labels[key] = value
	_, err = cluster.Clientset.CoreV1().Namespaces().Update(w.ctx(), n, metav1.UpdateOptions{})
	must(w.t, err)
}

func lineWith(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}
