package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/robfig/cron/v3"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rotator-dev/rotator/internal/config"
	"github.com/rotator-dev/rotator/internal/daemon"
	"github.com/rotator-dev/rotator/internal/gitlabemu"
	"github.com/rotator-dev/rotator/internal/metrics"
)

// runningDaemon is a daemon started in process against the world.
type runningDaemon struct {
	d      *daemon.Daemon
	cancel context.CancelFunc
	done   chan struct{}
}

func (r *runningDaemon) stop() {
	r.cancel()
	<-r.done
}

// startDaemon runs `rotator daemon` in process with the world's config and
// the emulator's clock, ticking every second.
func (w *world) startDaemon(lease *daemon.LeaseOptions) *runningDaemon {
	return w.startDaemonEvery("@every 1s", lease)
}

func (w *world) startDaemonEvery(schedule string, lease *daemon.LeaseOptions) *runningDaemon {
	w.t.Helper()
	cfg, err := config.Load(config.Sources{File: w.configPath, Env: func(k string) (string, bool) { v, ok := w.env[k]; return v, ok }})
	must(w.t, err)
	log := slog.New(slog.NewJSONHandler(lockedWriter{w: w.transcript, mu: &w.mu}, nil))
	deps, err := newDeps(cfg, log, w.emu.Now)
	must(w.t, err)
	deps.runner.VerifyCurrent = true
	sched, err := cron.ParseStandard(schedule)
	must(w.t, err)
	d, err := daemon.New(daemon.Options{
		Runner: deps.runner, Metrics: metrics.New("test", "go", cfg.Token.RenewBefore.Std()),
		Schedule: sched, RetryMin: 300 * time.Millisecond, RetryMax: time.Second, Debounce: 100 * time.Millisecond,
		Kube: deps.kube, APIToken: deps.gitlab, Lease: lease, Listen: "127.0.0.1:0", Log: log,
	})
	must(w.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningDaemon{d: d, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		if err := d.Run(ctx); err != nil {
			w.t.Errorf("daemon: %v", err)
		}
	}()
	w.t.Cleanup(r.stop)
	w.eventually(5*time.Second, "daemon listening", func() bool { return d.Addr() != "" })
	return r
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// eventually polls cond until it holds or the timeout passes, and returns
// how long it took.
func (w *world) eventually(timeout time.Duration, what string, cond func() bool) time.Duration {
	w.t.Helper()
	start := time.Now()
	for time.Since(start) < timeout {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	w.t.Fatalf("timed out after %s waiting for %s", timeout, what)
	return 0
}

func (w *world) converged() bool {
	active := w.managed(true)
	if len(active) != 1 {
		return false
	}
	for _, ns := range w.namespaces {
		s, err := cluster.Clientset.CoreV1().Secrets(ns).Get(w.ctx(), "gitlab", metav1.GetOptions{})
		if err != nil || s.Annotations["rotator.dev/token-id"] != itoa(active[0].ID) {
			return false
		}
		for _, name := range []string{"default", "agones-sdk"} {
			sa, err := cluster.Clientset.CoreV1().ServiceAccounts(ns).Get(w.ctx(), name, metav1.GetOptions{})
			if err != nil || !listsSecret(sa, "gitlab") {
				return false
			}
		}
	}
	return true
}

// scrape reads one sample from the daemon's /metrics over HTTP; labels is
// the exact label set as printed, e.g. `result="success"`.
func scrape(t *testing.T, d *daemon.Daemon, name, labels string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + d.Addr() + "/metrics")
	must(t, err)
	defer resp.Body.Close()
	want := name
	if labels != "" {
		want += "{" + labels + "}"
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if key, val, ok := strings.Cut(line, " "); ok && key == want {
			v, err := strconv.ParseFloat(val, 64)
			must(t, err)
			return v
		}
	}
	t.Fatalf("metric %s not exported", want)
	return 0
}

func httpStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	must(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

func TestDaemonRotatesOnlyWhenDue(t *testing.T) {
	w := newWorld(t)
	r := w.startDaemon(nil)
	w.eventually(10*time.Second, "first rotation", w.converged)
	first := w.assertConverged()
	w.eventually(5*time.Second, "readyz", func() bool { return httpStatus(t, "http://"+r.d.Addr()+"/readyz") == 200 })
	if code := httpStatus(t, "http://"+r.d.Addr()+"/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}

	// Several ticks with nothing due: no writes anywhere.
	g0, k0, c0 := w.gitlabWrites(), w.k8sWrites(), r.d.Cycles()
	time.Sleep(3500 * time.Millisecond)
	ticks := r.d.Cycles() - c0
	if ticks < 2 {
		t.Fatalf("only %d cycles in 3.5 s on a 1 s schedule", ticks)
	}
	if g, k := w.gitlabWrites()-g0, w.k8sWrites()-k0; g != 0 || k != 0 {
		t.Fatalf("%d idle ticks wrote: gitlab %d, kubernetes %d", ticks, g, k)
	}
	t.Logf("idle ticks: %d, writes: 0", ticks)

	// Cross the renewal point (day 20 of 30).
	w.advance(21 * 24 * time.Hour)
	took := w.eventually(10*time.Second, "rotation after the renewal point", func() bool {
		a := w.managed(true)
		return len(a) == 1 && a[0].ID != first.ID && w.converged()
	})
	t.Logf("rotated %s after the clock crossed the renewal point", took.Round(time.Millisecond))
	creates := w.tokensCreated()
	if creates != 2 {
		t.Fatalf("%d tokens created, want 2", creates)
	}
	if v := scrape(t, r.d, "rotator_rotations_total", `result="success"`); v != 2 {
		t.Fatalf("rotator_rotations_total{success} = %v", v)
	}
}

func TestDaemonRepairsWithinSeconds(t *testing.T) {
	w := newWorld(t)
	ns := w.namespaces[1]
	must(t, cluster.Clientset.CoreV1().ServiceAccounts(ns).Delete(w.ctx(), "agones-sdk", metav1.DeleteOptions{}))
	// An hourly schedule: every repair below must come from the watch.
	r := w.startDaemonEvery("@every 1h", nil)
	w.eventually(10*time.Second, "first cycle", func() bool { return len(w.managed(true)) == 1 && r.d.Cycles() > 0 })

	start := time.Now()
	w.createServiceAccount(ns, "agones-sdk")
	w.eventually(5*time.Second, "late ServiceAccount patched", func() bool {
		return listsSecret(w.serviceAccount(ns, "agones-sdk"), "gitlab")
	})
	t.Logf("ServiceAccount created later: patched after %s", time.Since(start).Round(time.Millisecond))

	tok := w.assertConverged()
	start = time.Now()
	must(t, cluster.Clientset.CoreV1().Secrets(w.namespaces[0]).Delete(w.ctx(), "gitlab", metav1.DeleteOptions{}))
	w.eventually(5*time.Second, "deleted Secret restored", func() bool {
		_, err := cluster.Clientset.CoreV1().Secrets(w.namespaces[0]).Get(w.ctx(), "gitlab", metav1.GetOptions{})
		return err == nil
	})
	t.Logf("deleted Secret: restored after %s", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	sa := w.serviceAccount(w.namespaces[0], "default")
	sa.ImagePullSecrets = nil
	_, err := cluster.Clientset.CoreV1().ServiceAccounts(w.namespaces[0]).Update(w.ctx(), sa, metav1.UpdateOptions{})
	must(t, err)
	w.eventually(5*time.Second, "pull secret re-added", func() bool { return listsSecret(w.serviceAccount(w.namespaces[0], "default"), "gitlab") })
	t.Logf("pull secret removed from a ServiceAccount: restored after %s", time.Since(start).Round(time.Millisecond))

	if again := w.assertConverged(); again.ID != tok.ID {
		t.Fatal("a repair minted a new token")
	}
	if creates := w.emu.WriteCount(); creates != 1 {
		t.Fatalf("GitLab writes %d, want only the first create", creates)
	}
}

func TestDaemonMetricsAfterSuccessFailureAndRotation(t *testing.T) {
	w := newWorld(t)
	r := w.startDaemon(nil)
	w.eventually(10*time.Second, "first rotation", w.converged)
	w.eventually(5*time.Second, "success counted", func() bool { return scrape(t, r.d, "rotator_cycles_total", `result="success"`) >= 1 })

	tok := w.assertConverged()
	checks := []struct {
		name, labels string
		want         float64
	}{
		{"rotator_managed_tokens", "", 1},
		{"rotator_token_expiry_timestamp_seconds", "", float64(tok.ExpiresAt.Unix())},
		{"rotator_token_renewal_timestamp_seconds", "", float64(tok.ExpiresAt.Add(-10 * 24 * time.Hour).Unix())},
		{"rotator_target_synced", fmt.Sprintf(`namespace=%q,secret="gitlab"`, w.namespaces[0]), 1},
		{"rotator_target_synced", fmt.Sprintf(`namespace=%q,secret="gitlab"`, w.namespaces[1]), 1},
		{"rotator_errors_total", `stage="verify"`, 0},
		{"rotator_build_info", `goversion="go",version="test"`, 1},
		// The PAT expires 300 days after the start; GitLab reports the date.
		{"rotator_gitlab_api_token_expiry_timestamp_seconds", "", float64(w.now.Add(300 * 24 * time.Hour).Truncate(24 * time.Hour).Unix())},
	}
	for _, c := range checks {
		if got := scrape(t, r.d, c.name, c.labels); got != c.want {
			t.Errorf("%s{%s} = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if v := scrape(t, r.d, "rotator_last_success_timestamp_seconds", ""); v < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("last success %v is stale", v)
	}

	// Failure: GitLab answers 500 to every list.
	fault := w.emu.InjectFault(gitlabemu.Fault{Endpoint: gitlabemu.EndpointListDeployTokens, Status: 500})
	w.eventually(10*time.Second, "failure counted", func() bool {
		return scrape(t, r.d, "rotator_cycles_total", `result="failure"`) >= 1 && scrape(t, r.d, "rotator_errors_total", `stage="observe"`) >= 1
	})
	w.emu.RemoveFault(fault)

	// Rotation: recorded by name, labels and value.
	w.advance(25 * 24 * time.Hour)
	w.eventually(10*time.Second, "rotation counted", func() bool {
		return scrape(t, r.d, "rotator_rotations_total", `result="success"`) == 2
	})
	w.eventually(5*time.Second, "converged", w.converged)
}

func TestTwoDaemonsOneLeader(t *testing.T) {
	w := newWorld(t)
	lease := func(id string) *daemon.LeaseOptions {
		return &daemon.LeaseOptions{Namespace: w.namespaces[0], Name: "rotator", Identity: id,
			LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 500 * time.Millisecond}
	}
	a := w.startDaemon(lease("a"))
	w.eventually(10*time.Second, "a leads", a.d.Leading)
	b := w.startDaemon(lease("b"))
	w.eventually(10*time.Second, "first rotation", w.converged)
	time.Sleep(2 * time.Second)
	if b.d.Leading() || b.d.Cycles() != 0 {
		t.Fatalf("standby acted: leading=%v cycles=%d", b.d.Leading(), b.d.Cycles())
	}
	if httpStatus(t, "http://"+b.d.Addr()+"/readyz") != 200 {
		t.Fatal("standby not ready")
	}
	if la, lb := scrape(t, a.d, "rotator_leader", ""), scrape(t, b.d, "rotator_leader", ""); la != 1 || lb != 0 {
		t.Fatalf("rotator_leader: leader %v, standby %v", la, lb)
	}

	a.stop()
	took := w.eventually(10*time.Second, "b takes over", b.d.Leading)
	t.Logf("standby took over %s after the leader stopped", took.Round(time.Millisecond))
	first := w.assertConverged()
	w.advance(25 * 24 * time.Hour)
	w.eventually(10*time.Second, "b rotates", func() bool {
		all := w.managed(false)
		return len(all) == 1 && all[0].ID != first.ID && w.converged()
	})
	creates := w.tokensCreated()
	if creates != 2 {
		t.Fatalf("%d tokens created over two rotations, want 2 (no double rotation)", creates)
	}
}

// A manual run while a daemon leads is handed to the daemon, and its result
// comes back as the run's own.
func TestRunOnceHandsOffToLiveDaemon(t *testing.T) {
	w := newWorld(t)
	r := w.startDaemonEvery("@every 1h", &daemon.LeaseOptions{Namespace: w.namespaces[0], Name: "rotator", Identity: "daemon-a",
		LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: time.Second})
	w.eventually(10*time.Second, "first rotation", w.converged)
	first := w.assertConverged()
	cycles := r.d.Cycles()

	code, out, stderr := w.run("run-once", "--force")
	if code != 0 || !strings.Contains(out, "run by daemon daemon-a") || !strings.Contains(out, "created token") {
		t.Fatalf("handoff: exit %d\nstdout %s\nstderr %s", code, out, stderr)
	}
	if r.d.Cycles() <= cycles {
		t.Fatal("the daemon ran no cycle for the request")
	}
	second := w.assertConverged()
	if second.ID == first.ID {
		t.Fatal("forced request did not rotate")
	}
	posts := w.tokensCreated()
	if posts != 2 {
		t.Fatalf("%d tokens created; the manual run must not act beside the daemon", posts)
	}

	// Nothing to do: answered without the daemon and without any write.
	k0 := w.k8sWrites()
	if code, out, _ := w.run("run-once"); code != 0 || !strings.Contains(out, "nothing to do") {
		t.Fatalf("no-op run: exit %d %s", code, out)
	}
	if k := w.k8sWrites() - k0; k != 0 {
		t.Fatalf("no-op run beside a daemon wrote %d times", k)
	}
}

// Without a daemon, run-once holds the Lease while it acts and releases it.
func TestRunOnceReleasesTheLease(t *testing.T) {
	w := newWorld(t)
	w.mustRun("run-once")
	w.assertConverged()
	l, err := cluster.Clientset.CoordinationV1().Leases(w.namespaces[0]).Get(w.ctx(), "rotator", metav1.GetOptions{})
	must(t, err)
	if h := l.Spec.HolderIdentity; h != nil && *h != "" {
		t.Fatalf("lease still held by %s", *h)
	}
	if l.Spec.LeaseTransitions == nil && l.Spec.AcquireTime == nil {
		t.Fatal("the lease was never taken")
	}
}

// A leader that died without releasing the Lease: run-once hands the run
// over, sees nobody answer once the Lease lapses, withdraws its request and
// runs the cycle itself. A daemon started later does not replay it.
func TestRunOnceFallsBackWhenTheLeaderIsDead(t *testing.T) {
	w := newWorld(t)
	w.mustRun("run-once")
	first := w.assertConverged()
	ghost, renew, seconds := "ghost", metav1.NewMicroTime(time.Now()), int32(1)
	_, err := cluster.Clientset.CoordinationV1().Leases(w.namespaces[0]).Update(w.ctx(), &coordinationv1.Lease{
		ObjectMeta: w.lease("rotator").ObjectMeta,
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &ghost, RenewTime: &renew, AcquireTime: &renew, LeaseDurationSeconds: &seconds},
	}, metav1.UpdateOptions{})
	must(t, err)

	start := time.Now()
	code, out, stderr := w.run("run-once", "--force")
	if code != 0 || strings.Contains(out, "run by daemon") || !strings.Contains(out, "created token") {
		t.Fatalf("fallback: exit %d\nstdout %s\nstderr %s", code, out, stderr)
	}
	t.Logf("run-once ran the cycle itself %s after handing it to a dead leader", time.Since(start).Round(time.Millisecond))
	second := w.assertConverged()
	if second.ID == first.ID {
		t.Fatal("no rotation")
	}
	if req := w.lease("rotator-request"); req.Annotations["rotator.dev/request-id"] != "" {
		t.Fatalf("request not withdrawn: %v", req.Annotations)
	}

	// A daemon starting now runs an ordinary cycle: nothing to do.
	r := w.startDaemonEvery("@every 1h", &daemon.LeaseOptions{Namespace: w.namespaces[0], Name: "rotator", Identity: "late",
		LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: time.Second})
	w.eventually(20*time.Second, "late daemon cycles", func() bool { return r.d.Cycles() > 0 })
	if third := w.assertConverged(); third.ID != second.ID {
		t.Fatal("the late daemon replayed the withdrawn forced request")
	}
}

func (w *world) lease(name string) *coordinationv1.Lease {
	w.t.Helper()
	l, err := cluster.Clientset.CoordinationV1().Leases(w.namespaces[0]).Get(w.ctx(), name, metav1.GetOptions{})
	must(w.t, err)
	return l
}

// A token the registry starts refusing while GitLab still lists it as
// active is replaced by the next cycle.
func TestDaemonReplacesATokenTheRegistryRefuses(t *testing.T) {
	w := newWorld(t)
	w.startDaemon(nil)
	w.eventually(10*time.Second, "first rotation", w.converged)
	first := w.assertConverged()
	// The next five token exchanges fail: one cycle's re-check of the
	// current token (five attempts), then the service recovers.
	w.emu.InjectFault(gitlabemu.Fault{Endpoint: gitlabemu.EndpointJWTAuth, OnCall: 1, Times: 5, Status: 401})
	start := time.Now()
	w.eventually(30*time.Second, "refused token replaced", func() bool {
		a := w.managed(true)
		return len(a) == 1 && a[0].ID != first.ID && w.converged()
	})
	t.Logf("token refused by the registry: replaced %s later (the check retries for 8 s first)", time.Since(start).Round(time.Millisecond))
}
