package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rotator-dev/rotator/internal/gitlabemu"
)

// The first rotation already went through the real registry: ping, token
// exchange at the emulator's /jwt/auth, manifest HEAD.
func TestVerifyUsesTheRegistry(t *testing.T) {
	w := newWorld(t)
	w.mustRun("run-once")
	w.assertConverged()
	exchanges := 0
	for _, r := range w.emu.Requests() {
		if r.Endpoint == gitlabemu.EndpointJWTAuth && r.Status == 200 {
			exchanges++
		}
	}
	if exchanges == 0 {
		t.Fatal("no token exchange: the new token was not verified against the registry")
	}
}

// A new token that cannot pull is revoked at once; every Secret keeps the
// old, working one, and the cycle fails at stage verify.
func TestVerifyFailureKeepsTheOldToken(t *testing.T) {
	cases := []struct {
		name    string
		breakIt func(w *world)
	}{
		{"token service refuses", func(w *world) {
			w.emu.InjectFault(gitlabemu.Fault{Endpoint: gitlabemu.EndpointJWTAuth, Status: 403})
		}},
		// A token exchange alone is no proof: for a repository the token
		// cannot reach GitLab still answers 200, with no access in it.
		{"repository out of reach", func(w *world) {
			w.emu.AddProject(8, "games/other")
			cfg, err := os.ReadFile(w.configPath)
			must(w.t, err)
			must(w.t, os.WriteFile(w.configPath, append(cfg, []byte("verify:\n  repository: games/other\n")...), 0o600))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.mustRun("run-once")
			old := w.assertConverged()
			w.advance(25 * 24 * time.Hour)
			tc.breakIt(w)

			code, _, stderr := w.run("run-once")
			if code != 1 || !strings.Contains(stderr, "verify") {
				t.Fatalf("exit %d, stderr %s", code, stderr)
			}
			if got := w.assertConverged(); got.ID != old.ID {
				t.Fatalf("Secrets hold %d, want the old token %d", got.ID, old.ID)
			}
			if n := w.tokensCreated(); n != 2 {
				t.Fatalf("%d tokens created, want 2 (the failed one revoked)", n)
			}
			if len(w.managed(false)) != 1 {
				t.Fatalf("the unverified token was not revoked: %v", ids(w.managed(false)))
			}
			w.assertEvents(w.namespaces[0], "RotationFailed")
		})
	}
}
