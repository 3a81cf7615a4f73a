package registry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rotator-dev/rotator/internal/gitlab"
	"github.com/rotator-dev/rotator/internal/secret"
)

// Which answers prove access. The token exchange is covered end to end
// against a real registry in cmd/rotator; this pins the 404 rule.
func TestOnlyAManifest404ProvesAccess(t *testing.T) {
	anonymous := func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/manifests/") {
			http.NotFound(w, r)
		}
	}
	cases := []struct {
		name    string
		handler http.Handler
		ok      bool
	}{
		{"manifest found", challenge(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Docker-Content-Digest", "sha256:"+strings.Repeat("a", 64))
			w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
			w.Header().Set("Content-Length", "2")
		}), true},
		{"manifest unknown", challenge(anonymous), true},
		{"no registry at all: /v2/ is 404", http.NotFoundHandler(), false},
		// Anyone may read: a 404 for the manifest proves nothing about the token.
		{"anonymous registry", http.HandlerFunc(anonymous), false},
		{"refused", challenge(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/manifests/") {
				w.WriteHeader(http.StatusForbidden)
			}
		}), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			host := strings.Replace(strings.TrimPrefix(srv.URL, "http://"), "127.0.0.1", "localhost", 1)
			v := &Verifier{Repository: "games/fleet", Insecure: true, Attempts: 1}
			err := v.Verify(context.Background(), host, gitlab.Credential{Username: "u", Password: secret.New("gldt-secretsecretsecret")})
			if (err == nil) != tc.ok {
				t.Fatalf("Verify = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && strings.Contains(err.Error(), "gldt-secret") {
				t.Fatalf("error leaks the credential: %v", err)
			}
		})
	}
}

// challenge makes h a registry that demands basic auth, as GitLab's does
// (with Bearer; go-containerregistry handles both).
func challenge(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, _, ok := r.BasicAuth(); !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="registry"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		h(w, r)
	})
}
