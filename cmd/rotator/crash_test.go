package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rotator-dev/rotator/internal/gitlab"
	"github.com/rotator-dev/rotator/internal/registry"
	"github.com/rotator-dev/rotator/internal/secret"
)

// pullWatcher checks, over and over, that every target Secret exists and
// its credential pulls from the real registry, the way a kubelet would use
// it at any moment.
type pullWatcher struct {
	checks  atomic.Int64
	broken  atomic.Int64
	mu      sync.Mutex
	reasons []string
	stop    context.CancelFunc
	done    chan struct{}
}

func (w *world) watchPulls() *pullWatcher {
	ctx, cancel := context.WithCancel(context.Background())
	pw := &pullWatcher{stop: cancel, done: make(chan struct{})}
	v := &registry.Verifier{Repository: projectPath, Insecure: true, Timeout: 5 * time.Second, Attempts: 1}
	go func() {
		defer close(pw.done)
		for ctx.Err() == nil {
			for _, ns := range w.namespaces {
				s, err := cluster.Clientset.CoreV1().Secrets(ns).Get(ctx, "gitlab", metav1.GetOptions{})
				if ctx.Err() != nil {
					return
				}
				pw.checks.Add(1)
				why := ""
				if err != nil {
					why = fmt.Sprintf("secret %s/gitlab unreadable: %v", ns, err)
				} else {
					user, pass := w.decodeAuthQuiet(s)
					if err := v.Verify(ctx, w.registryHost, gitlab.Credential{Username: user, Password: secret.New(pass)}); err != nil && ctx.Err() == nil {
						// A Secret rewritten between our read and the pull
						// was checked stale; only the current copy counts.
						again, gerr := cluster.Clientset.CoreV1().Secrets(ns).Get(ctx, "gitlab", metav1.GetOptions{})
						if gerr != nil || again.ResourceVersion == s.ResourceVersion {
							why = fmt.Sprintf("secret %s/gitlab (token %s) cannot pull: %v", ns, s.Annotations["rotator.dev/token-id"], err)
						}
					}
				}
				if why != "" {
					pw.broken.Add(1)
					pw.mu.Lock()
					pw.reasons = append(pw.reasons, why)
					pw.mu.Unlock()
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return pw
}

func (pw *pullWatcher) finish(t *testing.T, label string) {
	t.Helper()
	pw.stop()
	<-pw.done
	if pw.checks.Load() == 0 {
		t.Fatalf("%s: the pull watcher never ran", label)
	}
	if n := pw.broken.Load(); n > 0 {
		t.Fatalf("%s: %d of %d pull checks failed, first: %s", label, n, pw.checks.Load(), pw.reasons[0])
	}
}

// Kill the rotator at every step boundary of a rotation that also sweeps an
// orphan, restart it, and check invariants 1-4 of design.md. Throughout, a
// watcher pulls with every Secret's credential.
func TestCrashAtEveryStep(t *testing.T) {
	bin := sharedBinary(t)
	points := []string{"create", "verify", "write:1", "writes", "patches", "revoke:1"}
	for _, point := range points {
		t.Run(point, func(t *testing.T) {
			w := newWorld(t)
			w.mustRun("run-once")
			old := w.assertConverged()
			uids := map[string]string{}
			for _, ns := range w.namespaces {
				uids[ns] = string(w.secret(ns).UID)
			}
			// Two revocations follow the writes: the old token and an orphan.
			far := w.now.Add(40 * 24 * time.Hour)
			w.emu.SeedDeployToken(scope, "k8s-pull-20261203-093000", []string{"read_registry"}, &far)
			// An unpatched ServiceAccount gives the patch step something to do.
			sa := w.serviceAccount(w.namespaces[1], "agones-sdk")
			sa.ImagePullSecrets = nil
			_, err := cluster.Clientset.CoreV1().ServiceAccounts(w.namespaces[1]).Update(w.ctx(), sa, metav1.UpdateOptions{})
			must(t, err)
			w.advance(25 * 24 * time.Hour)

			pw := w.watchPulls()
			cmd := exec.Command(bin, "run-once", "--config", w.configPath)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "KUBECONFIG=" + cluster.KubeconfigPath,
				"ROTATOR_NOW=" + w.now.Format(time.RFC3339), "ROTATOR_TEST_CRASH_AT=" + point}
			out, err := cmd.CombinedOutput()
			w.mu.Lock()
			w.transcript.Write(out)
			w.mu.Unlock()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ProcessState.Sys() == nil || ee.ExitCode() != -1 {
				t.Fatalf("the run was not killed at %s: %v\n%s", point, err, out)
			}
			// Restart: the next successful cycle repairs everything.
			w.advance(time.Minute)
			w.mustRun("run-once")
			pw.finish(t, point)

			now := w.assertConverged() // invariant 3
			if now.ID == old.ID {
				t.Fatalf("still on the old token after recovery")
			}
			for _, ns := range w.namespaces { // invariant 1: never deleted
				if got := string(w.secret(ns).UID); got != uids[ns] {
					t.Fatalf("secret %s was recreated", ns)
				}
			}
			if n := w.tokensCreated(); n > 3 { // invariant 4
				t.Fatalf("%d tokens created by three cycles", n)
			}
			if left := w.managed(false); len(left) != 1 {
				t.Fatalf("managed tokens left: %v", ids(left))
			}
			t.Logf("crash at %s: %d pull checks, 0 failed; %d tokens created in all; converged on token %d",
				point, pw.checks.Load(), w.tokensCreated(), now.ID)
		})
	}
}
