package main

import (
	"bytes"
	"os"
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

	raw, err := os.ReadFile("../../deploy/base/rbac.yaml")
	must(t, err)
	for _, doc := range strings.Split(string(raw), "\n---") {
		var meta struct {
			Kind string `json:"kind"`
		}
		must(t, yaml.Unmarshal([]byte(doc), &meta))
		switch meta.Kind {
		case "Role":
			var r rbacv1.Role
			must(t, yaml.Unmarshal([]byte(doc), &r))
			r.Namespace = rename[r.Namespace]
			_, err := cluster.Clientset.RbacV1().Roles(r.Namespace).Create(w.ctx(), &r, metav1.CreateOptions{})
			must(t, err)
		case "RoleBinding":
			var b rbacv1.RoleBinding
			must(t, yaml.Unmarshal([]byte(doc), &b))
			b.Namespace = rename[b.Namespace]
			for i := range b.Subjects {
				b.Subjects[i].Namespace = rename[b.Subjects[i].Namespace]
			}
			_, err := cluster.Clientset.RbacV1().RoleBindings(b.Namespace).Create(w.ctx(), &b, metav1.CreateOptions{})
			must(t, err)
		}
	}
	w.createServiceAccount(home, "rotator")
	user := "system:serviceaccount:" + home + ":rotator"

	// A kubeconfig that impersonates the rotator's ServiceAccount.
	kc, err := clientcmd.LoadFromFile(cluster.KubeconfigPath)
	must(t, err)
	for _, ai := range kc.AuthInfos {
		ai.Impersonate = user
	}
	path := filepath.Join(t.TempDir(), "kubeconfig-as-rotator")
	must(t, clientcmd.WriteToFile(*kc, path))
	w.env["KUBECONFIG"] = path

	// Wait for the RBAC cache to see the new bindings.
	as := rest.CopyConfig(cluster.Config)
	as.Impersonate = rest.ImpersonationConfig{UserName: user}
	asRotator, err := kubernetes.NewForConfig(as)
	must(t, err)
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

	// And no more: other Secrets, and Secrets outside the targets, stay out
	// of reach.
	other := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns0, Name: "database"}, StringData: map[string]string{"password": "x"}}
	_, err = cluster.Clientset.CoreV1().Secrets(ns0).Create(w.ctx(), other, metav1.CreateOptions{})
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

func getErr(_ *corev1.Secret, err error) error           { return err }
func listErr(_ *corev1.SecretList, err error) error      { return err }
func nsListErr(_ *corev1.NamespaceList, err error) error { return err }
