package main

import (
	"encoding/json"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rotator-dev/rotator/internal/rotation"
)

func TestStatus(t *testing.T) {
	w := newWorld(t)
	// Nothing rotated yet: out of place.
	if code, out, _ := w.run("status"); code != 1 || !strings.Contains(out, "pending: create") {
		t.Fatalf("before the first run: exit %d\n%s", code, out)
	}
	w.mustRun("run-once")
	tok := w.assertConverged()

	g0, k0 := w.gitlabWrites(), w.k8sWrites()
	code, out, stderr := w.run("status", "-o", "json")
	if code != 0 {
		t.Fatalf("all in place: exit %d\n%s\n%s", code, out, stderr)
	}
	var st rotation.Status
	must(t, json.Unmarshal([]byte(out), &st))
	if !st.InPlace || st.Current == nil || st.Current.ID != tok.ID || len(st.Targets) != 2 || len(st.ManagedTokens) != 1 {
		t.Fatalf("status: %+v", st)
	}
	for _, target := range st.Targets {
		if !target.SecretPresent || target.TokenID != tok.ID || !target.Synced || target.ExpiresAt == nil || target.RenewalAt == nil {
			t.Fatalf("target %+v", target)
		}
		for _, sa := range target.ServiceAccounts {
			if !sa.Exists || !sa.Patched {
				t.Fatalf("serviceaccount %+v", sa)
			}
		}
	}
	if g, k := w.gitlabWrites()-g0, w.k8sWrites()-k0; g != 0 || k != 0 {
		t.Fatalf("status wrote: gitlab %d, kubernetes %d", g, k)
	}

	// An unpatched ServiceAccount: non-zero, and the table says which.
	ns := w.namespaces[1]
	sa := w.serviceAccount(ns, "agones-sdk")
	sa.ImagePullSecrets = nil
	_, err := cluster.Clientset.CoreV1().ServiceAccounts(ns).Update(w.ctx(), sa, metav1.UpdateOptions{})
	must(t, err)
	code, out, _ = w.run("status")
	if code != 1 || !strings.Contains(out, "agones-sdk=unpatched") || !strings.Contains(out, "pending: patch") {
		t.Fatalf("unpatched ServiceAccount: exit %d\n%s", code, out)
	}
	code, out, _ = w.run("status", "-o", "json")
	must(t, json.Unmarshal([]byte(out), &st))
	if code != 1 || st.InPlace {
		t.Fatalf("json: exit %d, inPlace %v", code, st.InPlace)
	}
	if code, _, _ := w.run("status", "-o", "yaml"); code != 2 {
		t.Fatalf("-o yaml: exit %d, want 2", code)
	}
}
