package main

import (
	"bytes"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rotator-dev/rotator/internal/gitlabemu"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// sharedBinary builds the rotator once for every test that runs it.
func sharedBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "rotator-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = dir + "/rotator"
		cmd := exec.Command("go", "build", "-trimpath", "-o", binPath, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = err
			t.Logf("%s", out)
		}
	})
	if binErr != nil {
		t.Fatalf("build: %v", binErr)
	}
	return binPath
}

type daemonProcess struct {
	cmd *exec.Cmd
	out *bytes.Buffer
}

// startBinaryDaemon runs `rotator daemon` as a process; extra flags follow.
func (w *world) startBinaryDaemon(bin string, args ...string) *daemonProcess {
	w.t.Helper()
	cmd := exec.Command(bin, append([]string{"daemon", "--config", w.configPath, "--listen", "127.0.0.1:0", "--retry-min", "1s"}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "KUBECONFIG=" + cluster.KubeconfigPath, "ROTATOR_NOW=" + w.now.Format(time.RFC3339)}
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = lockedWriter{w: out, mu: &w.mu}, lockedWriter{w: out, mu: &w.mu}
	must(w.t, cmd.Start())
	p := &daemonProcess{cmd: cmd, out: out}
	w.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		w.mu.Lock()
		w.transcript.WriteString(out.String())
		w.mu.Unlock()
	})
	return p
}

// Send SIGTERM at random moments of a rotation. The daemon must exit 0, no
// Secret may hold a token it revoked, and the next run converges with one
// token and no duplicate creation.
func TestSIGTERMDuringRotation(t *testing.T) {
	bin := sharedBinary(t)
	for i := 0; i < 6; i++ {
		w := newWorld(t)
		base := 0
		if i%2 == 1 {
			// Odd rounds interrupt the replacement of a token that is due,
			// not the first creation.
			w.mustRun("run-once")
			w.advance(25 * 24 * time.Hour)
			base = 1
		}
		// Slow every GitLab call so the rotation spans the signal.
		w.emu.InjectFault(gitlabemu.Fault{Delay: 120 * time.Millisecond})
		p := w.startBinaryDaemon(bin)
		after := time.Duration(200+rand.IntN(1200)) * time.Millisecond
		time.Sleep(after)
		must(t, p.cmd.Process.Signal(syscall.SIGTERM))
		done := make(chan error, 1)
		go func() { done <- p.cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("SIGTERM after %s: daemon exited with %v\n%s", after, err, p.out)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("SIGTERM after %s: daemon did not stop", after)
		}
		w.emu.ClearFaults()

		// Invariant 1: no Secret holds a token GitLab no longer accepts.
		live := map[string]bool{}
		for _, tok := range w.managed(true) {
			live[itoa(tok.ID)] = true
		}
		for _, ns := range w.namespaces {
			s, err := cluster.Clientset.CoreV1().Secrets(ns).Get(w.ctx(), "gitlab", metav1.GetOptions{})
			if err == nil && !live[s.Annotations["rotator.dev/token-id"]] {
				t.Fatalf("SIGTERM after %s: secret %s holds revoked token %s", after, ns, s.Annotations["rotator.dev/token-id"])
			}
		}
		// Invariants 3 and 4: the next run ends with exactly one token held
		// everywhere; no cycle created more than one.
		w.mustRun("run-once")
		w.assertConverged()
		posts := w.tokensCreated()
		if posts > base+2 {
			t.Fatalf("SIGTERM after %s: %d tokens created by two cycles", after, posts)
		}
		t.Logf("SIGTERM after %s: clean exit, %d token(s) created, converged", after.Round(time.Millisecond), posts)
	}
}

// Two daemon processes: one leads. SIGKILL it (no Lease release); the
// standby takes over within the lease duration.
func TestStandbyTakesOverFromKilledLeader(t *testing.T) {
	bin := sharedBinary(t)
	w := newWorld(t)
	a := w.startBinaryDaemon(bin)
	w.eventually(20*time.Second, "first rotation", w.converged)
	b := w.startBinaryDaemon(bin)
	time.Sleep(3 * time.Second)
	holder := func() string {
		l, err := cluster.Clientset.CoordinationV1().Leases(w.namespaces[0]).Get(w.ctx(), "rotator", metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	first := holder()
	if first == "" {
		t.Fatal("no leader")
	}
	must(t, a.cmd.Process.Signal(syscall.SIGKILL))
	_, _ = a.cmd.Process.Wait()
	killed := time.Now()
	w.eventually(30*time.Second, "standby takes the lease", func() bool { h := holder(); return h != "" && h != first })
	t.Logf("standby took over %s after SIGKILL of the leader (lease duration 15 s)", time.Since(killed).Round(time.Millisecond))
	w.mu.Lock()
	standbyLog := b.out.String()
	w.mu.Unlock()
	if !strings.Contains(standbyLog, "became leader") {
		t.Fatalf("standby log does not show leadership:\n%s", standbyLog)
	}
	posts := w.tokensCreated()
	if posts != 1 {
		t.Fatalf("%d tokens created; the standby must not rotate a healthy token", posts)
	}
}
