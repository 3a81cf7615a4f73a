package rotation

import (
	"context"
	"log/slog"
	"time"

	"github.com/rotator-dev/rotator/internal/gitlab"
	"github.com/rotator-dev/rotator/internal/kube"
)

// Runner runs whole cycles.
type Runner struct {
	GitLab   gitlab.DeployTokens
	Cluster  kube.Cluster
	Verifier Verifier
	Policy   Policy
	Targets  []TargetSpec
	// Now is the cycle's clock; tests and ROTATOR_NOW replace it.
	Now func() time.Time
	Log *slog.Logger
}

// Options change one cycle.
type Options struct {
	// Force rotates even when the current token is good.
	Force bool
	// DryRun observes and decides, and writes nothing.
	DryRun bool
}

// Report is what one cycle saw, planned and did.
type Report struct {
	Observed Observed
	Plan     Plan
	Outcome  Outcome
	Started  time.Time
	Duration time.Duration
	// Err is nil when the cycle succeeded; otherwise it joins StageErrors.
	Err error
}

// RunOnce runs one cycle: observe, decide, and unless DryRun, apply.
func (r *Runner) RunOnce(ctx context.Context, opts Options) Report {
	started := time.Now()
	rep := Report{Started: started}

	obs, err := Observe(ctx, r.GitLab, r.Cluster, r.Targets, r.Policy, r.Now().UTC())
	rep.Observed = obs
	if err != nil {
		rep.Outcome.Errors = []StageError{{Stage: StageObserve, Err: err}}
		rep.Err = rep.Outcome.Err()
		r.Log.Error("observe failed; nothing was written", "action", "observe", "error", err)
		rep.Duration = time.Since(started)
		return rep
	}
	rep.Plan = Decide(obs, r.Policy, opts.Force)
	for _, w := range rep.Plan.Warnings {
		r.Log.Warn(w, "action", "decide")
	}
	if rep.Plan.Empty() {
		r.Log.Info("nothing to do", "action", "decide", "managed_tokens", len(obs.Tokens), "targets", len(obs.Targets))
	}
	if opts.DryRun || rep.Plan.Empty() {
		rep.Duration = time.Since(started)
		return rep
	}
	applier := Applier{GitLab: r.GitLab, Cluster: r.Cluster, Verifier: r.Verifier, Policy: r.Policy, Log: r.Log}
	rep.Outcome = applier.Apply(ctx, rep.Plan, obs)
	rep.Err = rep.Outcome.Err()
	rep.Duration = time.Since(started)
	return rep
}
