// Package daemon runs rotation cycles on a cron schedule, repairs targets
// within seconds of a change, retries failures with backoff, and serves
// metrics and health. With leader election, exactly one replica acts.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/robfig/cron/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/rotator-dev/rotator/internal/gitlab"
	"github.com/rotator-dev/rotator/internal/metrics"
	"github.com/rotator-dev/rotator/internal/rotation"
)

// Options configure a Daemon.
type Options struct {
	Runner   *rotation.Runner
	Metrics  *metrics.Metrics
	Schedule cron.Schedule
	// MaxJitter spreads scheduled cycles of many clusters; each tick waits a
	// random extra up to this.
	MaxJitter time.Duration
	RetryMin  time.Duration
	RetryMax  time.Duration
	// Debounce coalesces bursts of changes into one cycle.
	Debounce time.Duration
	// CycleTimeout bounds one cycle; a cycle in flight at shutdown runs to
	// completion within it.
	CycleTimeout time.Duration
	Kube         kubernetes.Interface
	// APIToken, when set, is checked every APITokenInterval.
	APIToken         gitlab.APITokenInspector
	APITokenInterval time.Duration
	// Lease is nil when leader election is off.
	Lease  *LeaseOptions
	Listen string
	Log    *slog.Logger
}

// LeaseOptions configure leader election.
type LeaseOptions struct {
	Namespace, Name, Identity string
	LeaseDuration             time.Duration
	RenewDeadline             time.Duration
	RetryPeriod               time.Duration
}

// Daemon is a running `rotator daemon`.
type Daemon struct {
	o        Options
	triggers chan string
	watch    *watcher
	leading  atomic.Bool
	standby  atomic.Bool
	addr     atomic.Value // string, once listening
	cycles   atomic.Int64
	// lastCycle is when the leader last finished a cycle (Unix nanos).
	lastCycle atomic.Int64
}

// New checks options and fills defaults.
func New(o Options) (*Daemon, error) {
	if o.Runner == nil || o.Metrics == nil || o.Schedule == nil || o.Kube == nil || o.Log == nil {
		return nil, errors.New("daemon: runner, metrics, schedule, kube client and logger are required")
	}
	if o.RetryMin <= 0 {
		o.RetryMin = time.Minute
	}
	if o.RetryMax < o.RetryMin {
		o.RetryMax = o.RetryMin
	}
	if o.Debounce <= 0 {
		o.Debounce = 500 * time.Millisecond
	}
	if o.CycleTimeout <= 0 {
		o.CycleTimeout = 5 * time.Minute
	}
	if o.APITokenInterval <= 0 {
		o.APITokenInterval = time.Hour
	}
	d := &Daemon{o: o, triggers: make(chan string, 1)}
	d.watch = newWatcher(o.Kube, d.trigger)
	return d, nil
}

// trigger asks for a cycle soon; requests while one is pending coalesce.
func (d *Daemon) trigger(reason string) {
	select {
	case d.triggers <- reason:
	default:
	}
}

// Addr is the address the HTTP server listens on, once it does.
func (d *Daemon) Addr() string {
	if a, ok := d.addr.Load().(string); ok {
		return a
	}
	return ""
}

func (d *Daemon) setLeading(v bool) {
	d.leading.Store(v)
	d.o.Metrics.SetLeader(v)
}

// Leading reports whether this replica is the acting one.
func (d *Daemon) Leading() bool { return d.leading.Load() }

// Run serves HTTP and runs cycles until ctx ends. A cycle in flight then
// finishes before Run returns and the Lease is released.
func (d *Daemon) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", d.o.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", d.o.Listen, err)
	}
	d.addr.Store(ln.Addr().String())
	srv := &http.Server{Handler: d.mux(), ReadHeaderTimeout: 5 * time.Second}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.o.Log.Error("http server stopped", "error", err)
		}
	})
	defer func() {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
		wg.Wait()
	}()
	d.o.Log.Info("daemon started", "listen", d.Addr(), "leader_election", d.o.Lease != nil)

	if d.o.Lease == nil {
		d.setLeading(true)
		d.lead(ctx)
		d.o.Log.Info("stopped")
		return nil
	}
	return d.campaign(ctx)
}

// campaign competes for the Lease until ctx ends. The elector gets its own
// context, cancelled only after the leader loop has finished its cycle, so
// the Lease is never released while this replica is still writing.
func (d *Daemon) campaign(ctx context.Context) error {
	lo := d.o.Lease
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: lo.Namespace, Name: lo.Name},
		Client:     d.o.Kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: lo.Identity},
	}
	for ctx.Err() == nil {
		electorCtx, cancelElector := context.WithCancel(context.Background())
		loopDone := make(chan struct{})
		var started atomic.Bool
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   lo.LeaseDuration,
			RenewDeadline:   lo.RenewDeadline,
			RetryPeriod:     lo.RetryPeriod,
			ReleaseOnCancel: true,
			Name:            lo.Name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(leCtx context.Context) {
					started.Store(true)
					defer close(loopDone)
					d.standby.Store(false)
					d.setLeading(true)
					d.o.Log.Info("became leader", "lease", lo.Namespace+"/"+lo.Name, "identity", lo.Identity)
					loopCtx, cancel := context.WithCancel(ctx)
					defer cancel()
					go func() {
						select {
						case <-leCtx.Done():
							cancel()
						case <-loopCtx.Done():
						}
					}()
					d.lead(loopCtx)
					d.setLeading(false)
				},
				OnStoppedLeading: func() { d.setLeading(false) },
				OnNewLeader: func(identity string) {
					if identity != lo.Identity {
						d.o.Log.Info("standing by", "leader", identity)
					}
				},
			},
		})
		if err != nil {
			cancelElector()
			return fmt.Errorf("leader election: %w", err)
		}
		d.standby.Store(true)
		go func() {
			<-ctx.Done()
			if started.Load() {
				<-loopDone
			}
			cancelElector()
		}()
		le.Run(electorCtx)
		cancelElector()
		d.standby.Store(false)
		if ctx.Err() == nil {
			d.o.Log.Warn("lost the Lease; campaigning again")
		}
	}
	d.o.Log.Info("stopped")
	return nil
}

// lead runs cycles: at once, on the schedule, after changes, and after
// failures with backoff.
func (d *Daemon) lead(ctx context.Context) {
	defer d.watch.stop()
	d.watch.watchNamespaces(ctx, selectors(d.o.Runner.Targets))
	if lo := d.o.Lease; lo != nil {
		d.watch.watchRequests(ctx, lo.Namespace, RequestLeaseName(lo.Name))
	}
	retry := time.Duration(0)
	lastAPICheck := time.Time{}
	reason := "start"
	for {
		rep := d.cycle(ctx, reason)
		if !rep.ObserveFailed() {
			// Keep watching the old set when the targets could not be read.
			d.watch.sync(ctx, targetsOf(rep.Observed))
		}
		if d.o.APIToken != nil && time.Since(lastAPICheck) >= d.o.APITokenInterval {
			d.checkAPIToken(ctx)
			lastAPICheck = time.Now()
		}

		var wait time.Duration
		if rep.Err != nil {
			retry = nextRetry(retry, d.o.RetryMin, d.o.RetryMax)
			wait = retry
			d.o.Log.Warn("cycle failed; retrying with backoff", "retry_in", wait.String())
		} else {
			retry = 0
			now := time.Now()
			wait = d.o.Schedule.Next(now).Sub(now) + jitter(d.o.MaxJitter)
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			d.o.Log.Info("shutting down: no cycle in flight")
			return
		case <-timer.C:
			reason = "schedule"
			if rep.Err != nil {
				reason = "retry after failure"
			}
		case reason = <-d.triggers:
			timer.Stop()
			// Let a burst of changes (a Secret and its ServiceAccounts) settle.
			select {
			case <-time.After(d.o.Debounce):
			case <-ctx.Done():
				return
			}
			drain(d.triggers)
		}
	}
}

// cycle runs one cycle to completion, even if ctx ends meanwhile: stopping
// halfway would be safe, but finishing leaves nothing for the next replica.
// A pending manual request from run-once rides on this cycle and gets its
// result.
func (d *Daemon) cycle(ctx context.Context, reason string) rotation.Report {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.o.CycleTimeout)
	defer cancel()
	var opts rotation.Options
	var requestID string
	if lo := d.o.Lease; lo != nil {
		if id, force, ok := pendingRequest(cctx, d.o.Kube, lo.Namespace, lo.Name); ok {
			requestID, opts.Force, reason = id, force, "manual request "+id
		}
	}
	d.o.Log.Info("cycle starting", "trigger", reason, "force", opts.Force)
	rep := d.o.Runner.RunOnce(cctx, opts)
	d.o.Metrics.ObserveCycle(rep)
	d.cycles.Add(1)
	d.lastCycle.Store(time.Now().UnixNano())
	d.o.Log.Info(rep.Summary(), "action", "cycle", "trigger", reason, "result", result(rep))
	if requestID != "" {
		res := Result{Summary: rep.Summary()}
		if rep.Err != nil {
			res.ExitCode = 1
		}
		if err := answer(cctx, d.o.Kube, d.o.Lease.Namespace, d.o.Lease.Name, requestID, res); err != nil {
			d.o.Log.Error("could not answer a manual request", "request", requestID, "error", err)
		}
	}
	return rep
}

// stallAfter is how long a leader may go without finishing a cycle: two
// schedule intervals plus the longest retry wait and a cycle's timeout.
func (d *Daemon) stallAfter() time.Duration {
	next := d.o.Schedule.Next(time.Now())
	interval := d.o.Schedule.Next(next).Sub(next)
	return 2*interval + d.o.RetryMax + d.o.CycleTimeout + d.o.MaxJitter
}

// Cycles counts cycles this daemon ran, for tests.
func (d *Daemon) Cycles() int64 { return d.cycles.Load() }

func (d *Daemon) checkAPIToken(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	exp, ok, err := d.o.APIToken.APITokenExpiry(cctx)
	switch {
	case err != nil:
		d.o.Log.Warn("could not read the GitLab API token's expiry", "error", err)
	case ok:
		d.o.Metrics.SetAPITokenExpiry(exp)
	}
}

func result(rep rotation.Report) string {
	if rep.Err != nil {
		return "failure"
	}
	return "success"
}

// nextRetry doubles the previous wait, from min up to max.
func nextRetry(prev, lo, hi time.Duration) time.Duration {
	if prev <= 0 {
		return lo
	}
	return min(prev*2, hi)
}

func jitter(maxJitter time.Duration) time.Duration {
	if maxJitter <= 0 {
		return 0
	}
	return rand.N(maxJitter)
}

func drain(ch chan string) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

func selectors(specs []rotation.TargetSpec) []string {
	var out []string
	for _, s := range specs {
		if s.NamespaceSelector != "" {
			out = append(out, s.NamespaceSelector)
		}
	}
	return out
}

func (d *Daemon) mux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", d.o.Metrics.Handler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		// A leader whose loop has stopped cycling is wedged; a restart is
		// the cure. Failing cycles still count as cycling: they show in
		// metrics, and a restart would not fix GitLab.
		if last := d.lastCycle.Load(); d.leading.Load() && last > 0 {
			if since := time.Since(time.Unix(0, last)); since > d.stallAfter() {
				http.Error(w, fmt.Sprintf("no cycle for %s", since.Round(time.Second)), http.StatusInternalServerError)
				return
			}
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		switch {
		case d.leading.Load() && d.watch.synced() && d.cycles.Load() > 0:
			_, _ = w.Write([]byte("ok: leader, informers synced\n"))
		case d.standby.Load() && !d.leading.Load():
			_, _ = w.Write([]byte("ok: standby\n"))
		default:
			http.Error(w, "not ready: informers not synced or no cycle run yet", http.StatusServiceUnavailable)
		}
	})
	return mux
}

func targetsOf(obs rotation.Observed) []rotation.Target {
	out := make([]rotation.Target, 0, len(obs.Targets))
	for _, t := range obs.Targets {
		out = append(out, t.Target)
	}
	return out
}
