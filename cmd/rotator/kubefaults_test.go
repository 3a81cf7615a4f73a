package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// kubeFault fails the Nth request matching a method and path fragment.
type kubeFault struct {
	method, path string
	onCall       int
	status       int  // HTTP status to answer with
	reset        bool // fail the round trip as a dropped connection
}

// faultProxy sits between the rotator and the API server.
type faultProxy struct {
	next  http.RoundTripper
	mu    sync.Mutex
	fault *kubeFault
	seen  int
	fired int
}

func (p *faultProxy) RoundTrip(r *http.Request) (*http.Response, error) {
	p.mu.Lock()
	f := p.fault
	fire := false
	if f != nil && r.Method == f.method && strings.Contains(r.URL.Path, f.path) {
		p.seen++
		fire = p.seen == f.onCall
		if fire {
			p.fired++
		}
	}
	p.mu.Unlock()
	if !fire {
		return p.next.RoundTrip(r)
	}
	if f.reset {
		return nil, errors.New("connection reset by fault proxy")
	}
	body := fmt.Sprintf(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"injected %d","reason":"%s","code":%d}`,
		f.status, http.StatusText(f.status), f.status)
	return &http.Response{StatusCode: f.status, Status: fmt.Sprintf("%d %s", f.status, http.StatusText(f.status)),
		Header: http.Header{"Content-Type": []string{"application/json"}}, Body: io.NopCloser(strings.NewReader(body)),
		Request: r, ProtoMajor: 1, ProtoMinor: 1}, nil
}

// Kubernetes failing in the middle of a rotation: conflicts are retried,
// a failed target holds the old token back, and nothing ever leaves a
// Secret without a working credential.
func TestKubernetesFaultsDuringRotation(t *testing.T) {
	proxy := &faultProxy{}
	wrapKubeTransport = func(next http.RoundTripper) http.RoundTripper { proxy.next = next; return proxy }
	t.Cleanup(func() { wrapKubeTransport = nil })

	cases := []struct {
		name        string
		fault       kubeFault
		wantFailure bool
	}{
		{"conflict on a secret update is retried", kubeFault{method: "PUT", path: "/secrets/gitlab", onCall: 1, status: 409}, false},
		{"conflict on a serviceaccount update is retried", kubeFault{method: "PUT", path: "/serviceaccounts/", onCall: 1, status: 409}, false},
		{"500 on the second secret write", kubeFault{method: "PUT", path: "/secrets/gitlab", onCall: 2, status: 500}, true},
		{"403 on the first secret write", kubeFault{method: "PUT", path: "/secrets/gitlab", onCall: 1, status: 403}, true},
		{"quota exceeded on a secret write", kubeFault{method: "PUT", path: "/secrets/gitlab", onCall: 1, status: 422}, true},
		{"connection reset on a secret read", kubeFault{method: "GET", path: "/secrets/gitlab", onCall: 1, reset: true}, true},
		{"500 on a serviceaccount update", kubeFault{method: "PUT", path: "/serviceaccounts/", onCall: 1, status: 500}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.mustRun("run-once")
			old := w.assertConverged()
			sa := w.serviceAccount(w.namespaces[1], "default")
			sa.ImagePullSecrets = nil
			_, err := cluster.Clientset.CoreV1().ServiceAccounts(w.namespaces[1]).Update(w.ctx(), sa, metav1.UpdateOptions{})
			must(t, err)
			w.advance(25 * 24 * time.Hour)

			proxy.mu.Lock()
			f := tc.fault
			proxy.fault, proxy.seen, proxy.fired = &f, 0, 0
			proxy.mu.Unlock()
			pw := w.watchPulls()
			code, _, stderr := w.run("run-once")
			proxy.mu.Lock()
			fired := proxy.fired
			proxy.fault = nil
			proxy.mu.Unlock()
			if fired != 1 {
				t.Fatalf("the fault fired %d times", fired)
			}
			if (code != 0) != tc.wantFailure {
				t.Fatalf("exit %d (want failure %v): %s", code, tc.wantFailure, stderr)
			}
			if tc.wantFailure {
				// Whatever failed, the old token is not revoked while any
				// Secret still holds it.
				for _, ns := range w.namespaces {
					if s := w.secret(ns); s.Annotations["rotator.dev/token-id"] == itoa(old.ID) {
						alive := false
						for _, tok := range w.managed(true) {
							alive = alive || tok.ID == old.ID
						}
						if !alive {
							t.Fatalf("secret %s holds revoked token %d", ns, old.ID)
						}
					}
				}
			}
			w.advance(time.Minute)
			w.mustRun("run-once")
			pw.finish(t, tc.name)
			if got := w.assertConverged(); got.ID == old.ID {
				t.Fatal("never rotated")
			}
			if n := w.tokensCreated(); n > 3 {
				t.Fatalf("%d tokens created by three cycles", n)
			}
		})
	}
}
