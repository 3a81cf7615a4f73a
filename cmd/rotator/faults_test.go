package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/rotator-dev/rotator/internal/gitlabemu"
	"github.com/rotator-dev/rotator/internal/testenv"
)

// Every GitLab and registry-auth call of a rotation, failing in every way:
// the failed run may fail, but no credential is lost, no duplicate token is
// created, a watcher pulling with every Secret never breaks, and the next
// run converges.
func TestGitLabFaultsDuringRotation(t *testing.T) {
	endpoints := []string{
		gitlabemu.EndpointListDeployTokens,
		gitlabemu.EndpointCreateDeployToken,
		gitlabemu.EndpointDeleteDeployToken,
		gitlabemu.EndpointJWTAuth,
	}
	faults := []struct {
		name  string
		fault gitlabemu.Fault
	}{
		{"500", gitlabemu.Fault{Status: 500}},
		{"503 after handling", gitlabemu.Fault{Status: 503, AfterHandling: true}},
		{"429 with headers", gitlabemu.Fault{Status: 429, Header: map[string]string{"Retry-After": "1"}}},
		{"connection reset", gitlabemu.Fault{ResetConnection: true}},
		{"connection reset after handling", gitlabemu.Fault{ResetConnection: true, AfterHandling: true}},
		{"timeout", gitlabemu.Fault{Delay: 12 * time.Second}},
	}
	tried, duplicates, broken := 0, 0, int64(0)
	for _, ep := range endpoints {
		for _, f := range faults {
			t.Run(ep+"/"+f.name, func(t *testing.T) {
				w := newWorld(t)
				w.mustRun("run-once")
				old := w.assertConverged()
				w.advance(25 * 24 * time.Hour)

				fault := f.fault
				fault.Endpoint, fault.OnCall, fault.Times = ep, 1, 1
				w.emu.InjectFault(fault)
				pw := w.watchPulls()
				code, _, stderr := w.run("run-once", "--gitlab-timeout", "4s")
				creates := w.tokensCreated()
				w.emu.ClearFaults()
				w.advance(time.Minute)
				w.mustRun("run-once")
				pw.finish(t, fmt.Sprintf("%s %s", ep, f.name))
				broken += pw.broken.Load()

				got := w.assertConverged()
				if got.ID == old.ID {
					t.Fatalf("still on the old token after recovery")
				}
				// One create per cycle at most: the first run, the faulted run
				// (a create answered with an error may have happened), and the
				// recovery.
				if n := w.tokensCreated(); n > 3 {
					duplicates += n - 3
					t.Fatalf("%d tokens created by three cycles (faulted run: exit %d, %d creates) %s", n, code, creates-1, stderr)
				}
				tried++
			})
		}
	}
	// A lost credential would show as a broken pull in the watcher.
	t.Logf("faults tried: %d; duplicate tokens: %d; moments without a working credential: %d", tried, duplicates, broken)
}

// The registry itself failing while a new token is verified: the rotation
// waits (or the new token is revoked) and every Secret keeps pulling.
func TestRegistryFaultsDuringVerify(t *testing.T) {
	cases := []struct {
		name  string
		fault testenv.RegistryFault
	}{
		{"ping 503", testenv.RegistryFault{Method: "GET", OnCall: 1, Status: 503}},
		{"manifest HEAD 500", testenv.RegistryFault{Method: "HEAD", OnCall: 1, Status: 500}},
		{"connection reset", testenv.RegistryFault{OnCall: 1, Reset: true}},
		{"every HEAD 502", testenv.RegistryFault{Method: "HEAD", OnCall: 1, Times: 1000, Status: 502}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.mustRun("run-once")
			old := w.assertConverged()
			w.advance(25 * 24 * time.Hour)
			// The watcher uses the same registry: its own requests would hit
			// the fault too, so it starts after the faulted run.
			f := tc.fault
			w.registry.InjectFault(&f)
			code, _, stderr := w.run("run-once")
			w.registry.InjectFault(nil)
			if code == 0 {
				// A transient fault was absorbed by the verifier's retries.
				if got := w.assertConverged(); got.ID == old.ID {
					t.Fatalf("exit 0 but no rotation: %s", stderr)
				}
			} else if got := w.assertConverged(); got.ID != old.ID {
				t.Fatalf("failed run left Secrets on %d, want the old %d", got.ID, old.ID)
			}
			pw := w.watchPulls()
			w.advance(time.Minute)
			w.mustRun("run-once")
			pw.finish(t, tc.name)
			if n := w.tokensCreated(); n > 3 {
				t.Fatalf("%d tokens created by three cycles", n)
			}
			t.Logf("%s: faulted run exit %d; recovered; %d tokens created", tc.name, code, w.tokensCreated())
		})
	}
}
