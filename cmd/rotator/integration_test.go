package main

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rotator-dev/rotator/internal/gitlab"
	"github.com/rotator-dev/rotator/internal/gitlabemu"
	"github.com/rotator-dev/rotator/internal/kube"
	"github.com/rotator-dev/rotator/internal/rotation"
	"github.com/rotator-dev/rotator/internal/secret"
	"github.com/rotator-dev/rotator/internal/testenv"
)

func TestFirstRunThenNoOp(t *testing.T) {
	w := newWorld(t)
	out := w.mustRun("run-once")
	if !strings.Contains(out, "created token") {
		t.Fatalf("summary: %s", out)
	}
	tok := w.assertConverged()
	if len(tok.Scopes) != 1 || tok.Scopes[0] != "read_registry" {
		t.Fatalf("scopes = %v", tok.Scopes)
	}
	if want := w.now.Add(30 * 24 * time.Hour); tok.ExpiresAt == nil || !tok.ExpiresAt.Equal(want) {
		t.Fatalf("expires_at = %v, want %v", tok.ExpiresAt, want)
	}
	// 1 create in GitLab; 2 Secret creates and 4 ServiceAccount updates,
	// plus one Rotated and two ServiceAccountPatched Events per Secret.
	g, s, sa, ev := w.gitlabWrites(), w.k8sWritesTo("secrets"), w.k8sWritesTo("serviceaccounts"), w.k8sWritesTo("events")
	if g != 1 || s != 2 || sa != 4 || ev != 6 {
		t.Fatalf("first run writes: gitlab %d (want 1), secrets %d (2), serviceaccounts %d (4), events %d (6)", g, s, sa, ev)
	}
	w.assertEvents(w.namespaces[0], "Rotated", "ServiceAccountPatched")

	w.advance(time.Hour)
	g0, k0 := w.gitlabWrites(), w.k8sWrites()
	out = w.mustRun("run-once")
	if !strings.Contains(out, "nothing to do") {
		t.Fatalf("second run summary: %s", out)
	}
	if g, k := w.gitlabWrites()-g0, w.k8sWrites()-k0; g != 0 || k != 0 {
		t.Fatalf("no-op run wrote: gitlab %d, kubernetes %d", g, k)
	}
	if again := w.assertConverged(); again.ID != tok.ID {
		t.Fatalf("token changed on a no-op run: %d -> %d", tok.ID, again.ID)
	}
	w.assertNoLeaks()
}

func TestRotationOnExpiryKeepsSecretInPlace(t *testing.T) {
	w := newWorld(t)
	w.mustRun("run-once")
	first := w.assertConverged()
	uids := map[string]string{}
	for _, ns := range w.namespaces {
		uids[ns] = string(w.secret(ns).UID)
	}

	// 19 days in: one day before the renewal point (lifetime 30d, renew 10d before).
	w.advance(19 * 24 * time.Hour)
	w.mustRun("run-once")
	if tok := w.assertConverged(); tok.ID != first.ID {
		t.Fatalf("rotated before the renewal point")
	}

	w.advance(2 * 24 * time.Hour)
	out := w.mustRun("run-once")
	second := w.assertConverged()
	if second.ID == first.ID || !strings.Contains(out, "revoked 1 token") {
		t.Fatalf("no rotation past the renewal point: %s", out)
	}
	for _, ns := range w.namespaces {
		if got := string(w.secret(ns).UID); got != uids[ns] {
			t.Fatalf("secret %s/gitlab was recreated (uid %s -> %s)", ns, uids[ns], got)
		}
	}
	// The old row is destroyed, not merely flagged.
	for _, tok := range w.emu.DeployTokens(scope) {
		if tok.ID == first.ID {
			t.Fatalf("old token %d still listed", first.ID)
		}
	}
	w.assertNoLeaks()
}

// GitLab's expired flag lags by up to a day; the rotator must go by
// expires_at and replace a token that stopped working an hour ago.
func TestExpiredTokenWhoseFlagStillSaysFalse(t *testing.T) {
	w := newWorld(t)
	exp := w.now.Add(-time.Hour)
	old := w.emu.SeedDeployToken(scope, "k8s-pull-old", []string{"read_registry"}, &exp)
	w.mustRun("run-once") // adopts nothing usable: creates a token
	w.assertConverged()

	// Point the Secrets at the seeded token as if an earlier cycle wrote it.
	for _, ns := range w.namespaces {
		s := w.secret(ns)
		s.Annotations["rotator.dev/token-id"] = itoa(old.ID)
		s.Data[corev1.DockerConfigJsonKey] = w.dockerConfig(old.Username, old.Token)
		_, err := cluster.Clientset.CoreV1().Secrets(ns).Update(w.ctx(), s, metav1.UpdateOptions{})
		must(t, err)
	}
	// The other, newer token is now an orphan; revoke it in the UI so the
	// seeded one is the only candidate.
	for _, tok := range w.managed(true) {
		w.emu.RevokeDeployTokenInUI(tok.ID)
	}
	expiredFlag := apiExpiredFlag(t, w, old.ID)
	if expiredFlag {
		t.Fatalf("precondition: GitLab's expired flag should still be false an hour after expiry")
	}
	w.mustRun("run-once")
	tok := w.assertConverged()
	if tok.ID == old.ID {
		t.Fatal("expired token kept")
	}
}

func TestTokenRevokedInGitLab(t *testing.T) {
	w := newWorld(t)
	w.mustRun("run-once")
	first := w.assertConverged()
	w.emu.RevokeDeployTokenInUI(first.ID)
	w.advance(time.Minute)
	out := w.mustRun("run-once")
	second := w.assertConverged()
	if second.ID == first.ID {
		t.Fatalf("revoked token kept: %s", out)
	}
	// The revoked leftover row is cleaned up too.
	for _, tok := range w.managed(false) {
		if tok.ID == first.ID {
			t.Fatalf("revoked token %d still listed", first.ID)
		}
	}
}

func TestSecretDeletedOrEditedIsRepairedWithoutGitLabWrites(t *testing.T) {
	w := newWorld(t)
	w.mustRun("run-once")
	tok := w.assertConverged()

	breakers := []struct {
		name  string
		apply func(ns string)
	}{
		{"deleted", func(ns string) {
			must(t, cluster.Clientset.CoreV1().Secrets(ns).Delete(w.ctx(), "gitlab", metav1.DeleteOptions{}))
		}},
		{"credential edited", func(ns string) {
			s := w.secret(ns)
			s.Data[corev1.DockerConfigJsonKey] = w.dockerConfig(tok.Username, "gldt-typo")
			_, err := cluster.Clientset.CoreV1().Secrets(ns).Update(w.ctx(), s, metav1.UpdateOptions{})
			must(t, err)
		}},
		{"credential edited and fingerprint removed", func(ns string) {
			s := w.secret(ns)
			s.Data[corev1.DockerConfigJsonKey] = w.dockerConfig(tok.Username, "gldt-typo")
			delete(s.Annotations, kube.AnnotationFingerprint)
			_, err := cluster.Clientset.CoreV1().Secrets(ns).Update(w.ctx(), s, metav1.UpdateOptions{})
			must(t, err)
		}},
		{"entry for the registry removed", func(ns string) {
			s := w.secret(ns)
			s.Data[corev1.DockerConfigJsonKey] = []byte(`{"auths":{"other.example":{"auth":"eDp5"}}}`)
			_, err := cluster.Clientset.CoreV1().Secrets(ns).Update(w.ctx(), s, metav1.UpdateOptions{})
			must(t, err)
		}},
		{"label removed", func(ns string) {
			s := w.secret(ns)
			delete(s.Labels, "app.kubernetes.io/managed-by")
			_, err := cluster.Clientset.CoreV1().Secrets(ns).Update(w.ctx(), s, metav1.UpdateOptions{})
			must(t, err)
		}},
	}
	for _, b := range breakers {
		// One copy stays intact, so the credential is copied, not re-minted.
		b.apply(w.namespaces[0])
		g0 := w.gitlabWrites()
		w.advance(time.Minute)
		w.mustRun("run-once")
		if again := w.assertConverged(); again.ID != tok.ID {
			t.Fatalf("%s: repair minted a new token %d", b.name, again.ID)
		}
		if g := w.gitlabWrites() - g0; g != 0 {
			t.Fatalf("%s: repair made %d GitLab writes", b.name, g)
		}
	}
	// With every copy broken the credential is lost: a new token is the
	// only repair, and the old one is revoked.
	for _, ns := range w.namespaces {
		must(t, cluster.Clientset.CoreV1().Secrets(ns).Delete(w.ctx(), "gitlab", metav1.DeleteOptions{}))
	}
	w.mustRun("run-once")
	if again := w.assertConverged(); again.ID == tok.ID {
		t.Fatal("kept a token no Secret holds")
	}
}

func TestServiceAccountKeepsOtherPullSecrets(t *testing.T) {
	w := newWorld(t)
	ns := w.namespaces[0]
	must(t, cluster.Clientset.CoreV1().ServiceAccounts(ns).Delete(w.ctx(), "default", metav1.DeleteOptions{}))
	w.createServiceAccount(ns, "default", "dockerhub", "quay")
	w.mustRun("run-once")
	w.assertConverged()
	var names []string
	for _, r := range w.serviceAccount(ns, "default").ImagePullSecrets {
		names = append(names, r.Name)
	}
	if strings.Join(names, ",") != "dockerhub,quay,gitlab" {
		t.Fatalf("imagePullSecrets = %v", names)
	}
	w.advance(time.Minute)
	w.mustRun("run-once")
	if got := len(w.serviceAccount(ns, "default").ImagePullSecrets); got != 3 {
		t.Fatalf("second run changed imagePullSecrets: %d entries", got)
	}
}

func TestMissingServiceAccountDoesNotStopOthers(t *testing.T) {
	w := newWorld(t)
	ns := w.namespaces[1]
	must(t, cluster.Clientset.CoreV1().ServiceAccounts(ns).Delete(w.ctx(), "agones-sdk", metav1.DeleteOptions{}))
	_, _, stderr := w.run("run-once")
	if !strings.Contains(stderr, "agones-sdk does not exist") {
		t.Fatalf("missing ServiceAccount not reported: %s", stderr)
	}
	if !listsSecret(w.serviceAccount(ns, "default"), "gitlab") || !listsSecret(w.serviceAccount(w.namespaces[0], "agones-sdk"), "gitlab") {
		t.Fatal("other ServiceAccounts were not patched")
	}
	// Agones gets installed later: the next cycle patches it.
	w.createServiceAccount(ns, "agones-sdk")
	w.mustRun("run-once")
	w.assertConverged()
}

func TestOrphanIsRevokedAndUnmanagedLeftAlone(t *testing.T) {
	w := newWorld(t)
	far := w.now.Add(60 * 24 * time.Hour)
	ci := w.emu.SeedDeployToken(scope, "gitlab-deploy-token", []string{"read_registry", "read_repository"}, nil)
	human := w.emu.SeedDeployToken(scope, "manual-pull", []string{"read_registry"}, &far)
	w.mustRun("run-once")
	tok := w.assertConverged()

	// A crash between create and write leaves an orphan.
	orphan := w.emu.SeedDeployToken(scope, "k8s-pull-20261203-091500", []string{"read_registry"}, &far)
	w.advance(time.Minute)
	w.mustRun("run-once")
	if again := w.assertConverged(); again.ID != tok.ID {
		t.Fatal("orphan sweep rotated the current token")
	}
	left := map[int64]bool{}
	for _, t := range w.emu.DeployTokens(scope) {
		left[t.ID] = true
	}
	if left[orphan.ID] || !left[ci.ID] || !left[human.ID] {
		t.Fatalf("after sweep: %v (orphan %d, ci %d, manual %d)", left, orphan.ID, ci.ID, human.ID)
	}
	for _, r := range w.emu.Requests() {
		if r.Method == "DELETE" && (strings.HasSuffix(r.Path, "/"+itoa(ci.ID)) || strings.HasSuffix(r.Path, "/"+itoa(human.ID))) {
			t.Fatalf("rotator touched an unmanaged token: %s %s", r.Method, r.Path)
		}
	}
}

func TestManagedTokensPastFirstPage(t *testing.T) {
	w := newWorld(t)
	far := w.now.Add(200 * 24 * time.Hour)
	for i := 0; i < 230; i++ {
		w.emu.SeedDeployToken(scope, "unrelated-"+itoa(int64(i)), []string{"read_repository"}, &far)
	}
	w.mustRun("run-once")
	tok := w.assertConverged()
	// Orphans on page 3 must be found too.
	orphan := w.emu.SeedDeployToken(scope, "k8s-pull-late", []string{"read_registry"}, &far)
	w.advance(time.Minute)
	w.mustRun("run-once")
	if again := w.assertConverged(); again.ID != tok.ID {
		t.Fatal("rotated instead of sweeping")
	}
	pages := 0
	for _, r := range w.emu.Requests() {
		if r.Endpoint == "list_deploy_tokens" && strings.Contains(r.RawQuery, "page=3") {
			pages++
		}
	}
	if pages == 0 {
		t.Fatal("never read page 3")
	}
	for _, t2 := range w.emu.DeployTokens(scope) {
		if t2.ID == orphan.ID {
			t.Fatal("orphan on page 3 not revoked")
		}
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	w := newWorld(t)
	code, out, _ := w.run("run-once", "--dry-run")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"create  deploy token", "write   secret " + w.namespaces[0] + "/gitlab", "patch   serviceaccount"} {
		if !strings.Contains(out, want) {
			t.Fatalf("plan lacks %q:\n%s", want, out)
		}
	}
	if g, k := w.gitlabWrites(), w.k8sWrites(); g != 0 || k != 0 {
		t.Fatalf("dry run wrote: gitlab %d, kubernetes %d", g, k)
	}
	w.mustRun("run-once")
	tok := w.assertConverged()
	w.advance(25 * 24 * time.Hour)
	g0, k0 := w.gitlabWrites(), w.k8sWrites()
	_, out, _ = w.run("run-once", "--dry-run")
	if !strings.Contains(out, "revoke  deploy token "+itoa(tok.ID)) {
		t.Fatalf("plan lacks the revoke:\n%s", out)
	}
	if g, k := w.gitlabWrites()-g0, w.k8sWrites()-k0; g != 0 || k != 0 {
		t.Fatalf("dry run wrote: gitlab %d, kubernetes %d", g, k)
	}
	w.assertNoLeaks()
}

// Each GitLab error leaves both GitLab and Kubernetes exactly as they were.
func TestGitLabErrorsChangeNothing(t *testing.T) {
	cases := []struct {
		name  string
		setup func(w *world)
		want  string
	}{
		{"401 bad token", func(w *world) { must(w.t, writeFile(w.patFile, "glpat-not-a-real-token\n")) }, "401"},
		{"403 developer role", func(w *world) {
			w.emu.AddAccessToken(gitlabemu.AccessToken{Token: "glpat-developer-only-1", Scopes: []string{"api"}, Roles: map[string]gitlabemu.Role{scope: gitlabemu.Developer}})
			must(w.t, writeFile(w.patFile, "glpat-developer-only-1\n"))
		}, "403"},
		{"404 unknown project", func(w *world) { w.writeConfig("games/nope") }, "404"},
		{"500 on list", func(w *world) {
			w.emu.InjectFault(gitlabemu.Fault{Endpoint: gitlabemu.EndpointListDeployTokens, Status: 500})
		}, "500"},
		{"500 on create", func(w *world) {
			w.emu.InjectFault(gitlabemu.Fault{Endpoint: gitlabemu.EndpointCreateDeployToken, Status: 500})
		}, "500"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.mustRun("run-once")
			before := w.assertConverged()
			// Make rotation due so the failure happens on the way to a write.
			w.advance(25 * 24 * time.Hour)
			tc.setup(w)
			g0, k0, e0, l0 := w.gitlabWrites(), w.k8sWrites(), w.k8sWritesTo("events"), w.k8sWritesTo("leases")
			rows0 := len(w.emu.DeployTokens(""))
			code, _, stderr := w.run("run-once")
			if code != 1 {
				t.Fatalf("exit %d, want 1; stderr: %s", code, stderr)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Fatalf("stderr does not name %s: %s", tc.want, stderr)
			}
			// Only RotationFailed Events may be written, one per target, and
			// the Lease a run holds while it acts.
			events := w.k8sWritesTo("events") - e0
			if k := w.k8sWrites() - k0 - events - (w.k8sWritesTo("leases") - l0); k != 0 {
				t.Fatalf("kubernetes writes after GitLab error: %d", k)
			}
			if tc.name == "500 on create" {
				if events != len(w.namespaces) {
					t.Fatalf("RotationFailed events: %d", events)
				}
				w.assertEvents(w.namespaces[0], "RotationFailed")
			} else if events != 0 {
				t.Fatalf("events written although the cycle failed before deciding: %d", events)
			}
			// A refused or failed create counts as a request but changes nothing.
			if rows := len(w.emu.DeployTokens("")); rows != rows0 {
				t.Fatalf("GitLab rows changed: %d -> %d", rows0, rows)
			}
			if tc.name != "500 on create" {
				if g := w.gitlabWrites() - g0; g != 0 {
					t.Fatalf("GitLab writes: %d", g)
				}
			} else if g := w.gitlabWrites() - g0; g != 1 {
				t.Fatalf("create was retried: %d POSTs", g)
			}
			for _, ns := range w.namespaces {
				if u, p := w.decodeAuth(w.secret(ns)); u != before.Username || p != before.Token {
					t.Fatalf("secret %s changed", ns)
				}
			}
			w.assertNoLeaks()
		})
	}
}

func TestAdoptsHandMadeSecret(t *testing.T) {
	w := newWorld(t)
	far := w.now.Add(365 * 24 * time.Hour)
	// The howto's example name: the prefix alone is not a managed name.
	manual := w.emu.SeedDeployToken(scope, "k8s-pull", []string{"read_registry"}, &far)
	ns := w.namespaces[0]
	hand := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gitlab"}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"` + w.registryHost + `":{"auth":"aGFuZDptYWRl"},"docker.io":{"auth":"ZDpo"}}}`)}}
	created, err := cluster.Clientset.CoreV1().Secrets(ns).Create(w.ctx(), hand, metav1.CreateOptions{})
	must(t, err)
	w.mustRun("run-once")
	w.assertConverged()
	s := w.secret(ns)
	if s.UID != created.UID {
		t.Fatal("hand-made Secret was replaced instead of updated")
	}
	if !strings.Contains(string(s.Data[corev1.DockerConfigJsonKey]), `"docker.io"`) {
		t.Fatal("other registry entries were dropped")
	}
	kept := false
	for _, tok := range w.emu.DeployTokens(scope) {
		kept = kept || (tok.ID == manual.ID && !tok.Revoked)
	}
	if !kept {
		t.Fatal("the hand-made token was revoked; it is not managed")
	}
}

// After a registry host change no Secret keeps the revoked token under the
// old host's entry.
func TestRegistryHostChange(t *testing.T) {
	w := newWorld(t)
	w.mustRun("run-once")
	old := w.assertConverged()
	moved, err := testenv.StartRegistry(t.TempDir(), w.url+"/jwt/auth", w.emu.Issuer(), w.emu.JWKS())
	must(t, err)
	t.Cleanup(func() { _ = moved.Stop() })
	oldHost := w.registryHost
	w.writeConfigFor(projectPath, moved.Host)
	w.advance(time.Minute)
	w.mustRun("run-once")
	if tok := w.managed(true); len(tok) != 1 || tok[0].ID == old.ID {
		t.Fatalf("managed tokens after host change: %v", ids(tok))
	}
	for _, ns := range w.namespaces {
		data := string(w.secret(ns).Data[corev1.DockerConfigJsonKey])
		if strings.Contains(data, `"`+oldHost+`"`) || !strings.Contains(data, `"`+moved.Host+`"`) {
			t.Fatalf("secret %s auths after host change: old entry kept or new one missing", ns)
		}
	}
}

// A crash halfway through the writes leaves the targets split between the
// new and the old token. The next cycle finishes the job with the new one:
// no further token, the old one revoked.
func TestResumesAfterCrashBetweenWrites(t *testing.T) {
	w := newWorld(t)
	w.mustRun("run-once")
	old := w.assertConverged()

	far := w.now.Add(30 * 24 * time.Hour)
	fresh := w.emu.SeedDeployToken(scope, "k8s-pull-20261203-100000", []string{"read_registry"}, &far)
	must(t, kube.NewClient(cluster.Clientset).WritePullSecret(w.ctx(), w.namespaces[0], "gitlab", kube.PullSecretContent{
		RegistryHost: w.registryHost,
		Credential:   gitlab.Credential{Username: fresh.Username, Password: secret.New(fresh.Token)},
		Token:        gitlab.DeployToken{ID: fresh.ID, Name: fresh.Name, ExpiresAt: fresh.ExpiresAt},
		RotatedAt:    w.now,
	}))

	w.advance(time.Minute)
	g0 := w.gitlabWrites()
	w.mustRun("run-once")
	got := w.assertConverged()
	if got.ID != fresh.ID {
		t.Fatalf("converged on %d, want the newer held token %d (old %d)", got.ID, fresh.ID, old.ID)
	}
	if g := w.gitlabWrites() - g0; g != 1 {
		t.Fatalf("GitLab writes %d, want exactly the one revoke", g)
	}
}

// A target that cannot take the new token keeps the old one alive.
func TestFailedTargetHoldsRevocationBack(t *testing.T) {
	w := newWorld(t)
	w.mustRun("run-once")
	old := w.assertConverged()
	// Type is immutable: an Opaque Secret cannot be converted in place.
	ns := w.namespaces[1]
	must(t, cluster.Clientset.CoreV1().Secrets(ns).Delete(w.ctx(), "gitlab", metav1.DeleteOptions{}))
	_, err := cluster.Clientset.CoreV1().Secrets(ns).Create(w.ctx(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gitlab"}, Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{"x": []byte("y")}}, metav1.CreateOptions{})
	must(t, err)

	w.advance(25 * 24 * time.Hour)
	code, _, stderr := w.run("run-once")
	if code != 1 || !strings.Contains(stderr, "cannot be changed in place") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	// The healthy target got the new token; the old one was not revoked.
	user, _ := w.decodeAuth(w.secret(w.namespaces[0]))
	if user == old.Username {
		t.Fatal("healthy target did not get the new token")
	}
	stillThere := false
	for _, tok := range w.managed(true) {
		stillThere = stillThere || tok.ID == old.ID
	}
	if !stillThere {
		t.Fatal("old token revoked while a target lacks the new one")
	}
	if got := string(w.secret(ns).Type); got != string(corev1.SecretTypeOpaque) {
		t.Fatalf("secret type changed to %s", got)
	}
}

// With a grace period a fresh orphan survives until it is old enough.
func TestOrphanGracePeriod(t *testing.T) {
	w := newWorld(t)
	w.mustRun("run-once")
	tok := w.assertConverged()
	far := w.now.Add(30 * 24 * time.Hour)
	orphan := w.emu.SeedDeployToken(scope, rotation.TokenName("k8s-pull", w.now), []string{"read_registry"}, &far)

	w.advance(5 * time.Minute)
	_, _, stderr := w.run("run-once", "--orphan-grace", "10m")
	if !strings.Contains(stderr, "only 5m0s old") {
		t.Fatalf("no grace warning: %s", stderr)
	}
	if len(w.managed(true)) != 2 {
		t.Fatal("the young orphan was revoked inside its grace period")
	}
	w.advance(6 * time.Minute)
	w.mustRun("run-once", "--orphan-grace", "10m")
	if got := w.assertConverged(); got.ID != tok.ID {
		t.Fatalf("converged on %d, want %d (orphan %d)", got.ID, tok.ID, orphan.ID)
	}
}
