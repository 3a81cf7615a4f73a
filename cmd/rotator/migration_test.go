package main

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rotator-dev/rotator/internal/gitlab"
	"github.com/rotator-dev/rotator/internal/registry"
	"github.com/rotator-dev/rotator/internal/secret"
)

// TestMigrationFromTheManualHowto replays ../shared/seed/pull-secret-howto.txt
// (a read_registry deploy token, `kubectl create secret docker-registry
// gitlab`, both ServiceAccounts patched) and then installs the rotator, as
// docs/operations.md tells an operator to. Pulls must work throughout; the
// Secret is updated in place, the ServiceAccounts are left as they are, and
// the hand-made token is revoked only when its name makes it managed.
func TestMigrationFromTheManualHowto(t *testing.T) {
	for _, tc := range []struct {
		name, tokenName string
		wantRevoked     bool
	}{
		{"howto name k8s-pull is left alone", "k8s-pull", false},
		{"k8s-pull-manual is managed and revoked once replaced", "k8s-pull-manual", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			far := w.now.Add(365 * 24 * time.Hour)
			manual := w.emu.SeedDeployToken(scope, tc.tokenName, []string{"read_registry"}, &far)
			w.seen[manual.Token] = true

			handMade := map[string]*corev1.Secret{}
			serviceAccountVersions := map[string]string{}
			for _, ns := range w.namespaces {
				s, err := cluster.Clientset.CoreV1().Secrets(ns).Create(w.ctx(), &corev1.Secret{
					ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gitlab"},
					Type:       corev1.SecretTypeDockerConfigJson,
					Data:       map[string][]byte{corev1.DockerConfigJsonKey: w.dockerConfig(manual.Username, manual.Token)},
				}, metav1.CreateOptions{})
				must(t, err)
				handMade[ns] = s
				for _, name := range []string{"default", "agones-sdk"} {
					sa := w.serviceAccount(ns, name)
					sa.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "gitlab"}}
					sa, err = cluster.Clientset.CoreV1().ServiceAccounts(ns).Update(w.ctx(), sa, metav1.UpdateOptions{})
					must(t, err)
					serviceAccountVersions[ns+"/"+name] = sa.ResourceVersion
				}
			}

			// What an operator sees first: status and a dry run name the
			// hand-made Secrets as to be adopted, and write nothing.
			if code, _, _ := w.run("status"); code != 1 {
				t.Fatalf("status before migrating exited %d, want 1 (not everything in place)", code)
			}
			w.mustRun("run-once", "--dry-run")
			if n := w.k8sWrites(); n != 0 {
				t.Fatalf("status and --dry-run made %d Kubernetes writes", n)
			}

			pulls := w.watchPulls()
			w.mustRun("run-once")
			pulls.finish(t, "migration")
			tok := w.assertConverged()
			if tok.ID == manual.ID {
				t.Fatal("the rotator adopted the hand-made token instead of minting its own")
			}

			for ns, before := range handMade {
				if after := w.secret(ns); after.UID != before.UID {
					t.Fatalf("secret %s/gitlab was deleted and recreated; pods starting meanwhile would fail to pull", ns)
				}
				for _, name := range []string{"default", "agones-sdk"} {
					sa := w.serviceAccount(ns, name)
					if sa.ResourceVersion != serviceAccountVersions[ns+"/"+name] || len(sa.ImagePullSecrets) != 1 {
						t.Fatalf("serviceaccount %s/%s was rewritten: %v", ns, name, sa.ImagePullSecrets)
					}
				}
			}
			writes, err := cluster.Writes("rotator")
			must(t, err)
			for _, ev := range writes {
				if ev.Verb == "delete" && ev.ObjectRef.Resource == "secrets" {
					t.Fatalf("the rotator deleted secret %s/%s", ev.ObjectRef.Namespace, ev.ObjectRef.Name)
				}
			}

			var revoked bool
			for _, row := range w.emu.DeployTokens(scope) {
				if row.ID == manual.ID {
					revoked = row.Revoked
				}
			}
			// The API's DELETE removes the row; a revoked-by-the-rotator token is gone.
			gone := true
			for _, row := range w.emu.DeployTokens(scope) {
				gone = gone && row.ID != manual.ID
			}
			if got := revoked || gone; got != tc.wantRevoked {
				t.Fatalf("hand-made token %q revoked=%v, want %v", tc.tokenName, got, tc.wantRevoked)
			}
			// A token left alone still pulls, for whatever else uses it.
			v := &registry.Verifier{Repository: projectPath, Insecure: true, Timeout: 5 * time.Second, Attempts: 1}
			err = v.Verify(context.Background(), w.registryHost, gitlab.Credential{Username: manual.Username, Password: secret.New(manual.Token)})
			if pulls := err == nil; pulls == tc.wantRevoked {
				t.Fatalf("hand-made token still pulls: %v, want %v (err %v)", pulls, !tc.wantRevoked, err)
			}
		})
	}
}
