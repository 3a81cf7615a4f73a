package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/spf13/cobra"

	"github.com/rotator-dev/rotator/internal/config"
	"github.com/rotator-dev/rotator/internal/daemon"
	"github.com/rotator-dev/rotator/internal/metrics"
	"github.com/rotator-dev/rotator/internal/rotation"
	"github.com/rotator-dev/rotator/internal/version"
)

func (a *app) daemonCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Run cycles on a schedule, repair changes at once, serve metrics and health",
		Long: `daemon runs a cycle at start, then on the cron schedule (--schedule, default
every 15 minutes, plus a little jitter). It watches the target Secrets and
ServiceAccounts, and matching namespaces, and runs a cycle within seconds of a
change, so a deleted Secret or a ServiceAccount created later (agones-sdk when
Agones is installed) is repaired without waiting. A failed cycle is retried
after --retry-min, doubling up to --retry-max, until one succeeds.

With leader election (on by default) replicas share the Lease
--lease-namespace/--lease-name and exactly one acts; the others stand by.

HTTP on --listen: /metrics (Prometheus), /healthz (the process is alive),
/readyz (informers synced and a cycle has run, or a healthy standby).

SIGTERM stops the daemon after the cycle in flight finishes; the Lease is
released so a standby takes over at once.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, deps, err := a.prepare(cmd.Flags())
			if err != nil {
				return err
			}
			// Each cycle re-checks the current token against the registry.
			deps.runner.VerifyCurrent = cfg.Verify.Enabled
			sched, err := cron.ParseStandard(cfg.Schedule)
			if err != nil {
				return usageErr(fmt.Errorf("config: schedule: %w", err))
			}
			opts := daemon.Options{
				Runner:    deps.runner,
				Metrics:   metrics.New(version.Version, version.GoVersion(), cfg.Token.RenewBefore.Std()),
				Schedule:  sched,
				MaxJitter: maxJitter(sched),
				RetryMin:  cfg.Daemon.RetryMin.Std(),
				RetryMax:  cfg.Daemon.RetryMax.Std(),
				Kube:      deps.kube,
				APIToken:  deps.gitlab,
				Listen:    cfg.Daemon.Listen,
				Log:       log,
			}
			if cfg.Daemon.LeaderElection {
				opts.Lease = leaseOptions(cfg)
			}
			d, err := daemon.New(opts)
			if err != nil {
				return usageErr(err)
			}
			if err := d.Run(cmd.Context()); err != nil {
				return failedErr(err)
			}
			return nil
		},
	}
	config.RegisterFlags(cmd.Flags())
	return cmd
}

// leaseOptions uses client-go's usual timings: a dead leader is replaced
// after about the lease duration plus a retry period (15-20 s).
func leaseOptions(cfg *config.Config) *daemon.LeaseOptions {
	return &daemon.LeaseOptions{
		Namespace:     cfg.Daemon.LeaseNamespace,
		Name:          cfg.Daemon.LeaseName,
		Identity:      identity(),
		LeaseDuration: 15 * time.Second,
		RenewDeadline: 10 * time.Second,
		RetryPeriod:   2 * time.Second,
	}
}

// identity is unique per process: two replicas on one host stay apart.
func identity() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return host + "_" + hex.EncodeToString(b)
}

// maxJitter is a tenth of the schedule's interval, at most 30 s.
func maxJitter(s cron.Schedule) time.Duration {
	next := s.Next(time.Now())
	return min(s.Next(next).Sub(next)/10, 30*time.Second)
}

// runOnceCoordinated never races a daemon: with a live leader it hands the
// request over and reports the leader's result as its own (and returns no
// report: the daemon's metrics have it); otherwise it holds the Lease for
// the length of its cycle and returns that cycle's report, or a failed one
// with the error when the Lease could not be had.
func (a *app) runOnceCoordinated(ctx context.Context, cfg *config.Config, deps *deps, opts rotation.Options, log *slog.Logger) (*rotation.Report, error) {
	// Look first, without the Lease: a run with nothing to do must write
	// nothing at all, not even Lease bookkeeping.
	look := deps.runner.RunOnce(ctx, rotation.Options{DryRun: true, Force: opts.Force})
	if look.Err != nil || look.Plan.Empty() {
		return &look, nil
	}
	lo := leaseOptions(cfg)
	// A run that cannot coordinate has failed as surely as a cycle that
	// could not observe, and its metrics must say so.
	failed := func(err error) (*rotation.Report, error) {
		return &rotation.Report{Started: look.Started, Duration: time.Since(look.Started), Err: err}, failedErr(err)
	}
	holder, live, err := daemon.LiveLeader(ctx, deps.kube, lo.Namespace, lo.Name, time.Now())
	if err != nil {
		return failed(err)
	}
	if live {
		log.Info("a daemon holds the lease; handing this run to it", "leader", holder, "force", opts.Force)
		wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()
		res, err := daemon.Request(wctx, deps.kube, lo.Namespace, lo.Name, opts.Force)
		switch {
		case errors.Is(err, daemon.ErrNoLeader):
			log.Warn("the daemon went away before running this request; running it here", "leader", holder)
		case err != nil:
			return nil, failedErr(err)
		default:
			fmt.Fprintf(a.stdout, "%s (run by daemon %s)\n", res.Summary, holder)
			if res.ExitCode != 0 {
				return nil, failedErr(errors.New("cycle failed"))
			}
			return nil, nil
		}
	}
	var rep rotation.Report
	err = daemon.HoldingLease(ctx, deps.kube, *lo, 30*time.Second, func(ctx context.Context) {
		rep = deps.runner.RunOnce(ctx, opts)
	})
	if err != nil {
		return failed(err)
	}
	return &rep, nil
}
