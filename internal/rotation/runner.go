package rotation

import (
	"context"
	"errors"
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
	// Events may be nil.
	Events kube.EventSink
	// VerifyCurrent re-checks the current token against the registry each
	// cycle, so that a token revoked or broken outside the rotator is
	// replaced even while GitLab still lists it as active.
	VerifyCurrent bool
	// Checkpoint is handed to the Applier; see Applier.Checkpoint.
	Checkpoint func(point string)
	Policy     Policy
	Targets    []TargetSpec
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
	// Applied is true when Apply ran (not a dry run, observe succeeded and
	// the plan was not empty).
	Applied bool
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
	if r.VerifyCurrent && r.Verifier != nil && !opts.Force {
		obs.CurrentRefused = r.checkCurrent(ctx, obs)
		rep.Observed = obs
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
	applier := Applier{GitLab: r.GitLab, Cluster: r.Cluster, Verifier: r.Verifier, Policy: r.Policy, Log: r.Log, Events: r.Events, Checkpoint: r.Checkpoint}
	rep.Outcome = applier.Apply(ctx, rep.Plan, obs)
	rep.Applied = true
	rep.Err = rep.Outcome.Err()
	rep.Duration = time.Since(started)
	return rep
}

// Current is the token the targets hold after the cycle, nil when none.
func (r Report) Current() *gitlab.DeployToken {
	if c := r.Outcome.Created; c != nil && r.Outcome.Written > 0 {
		return c
	}
	if r.Plan.Current != nil {
		return r.Plan.Current
	}
	cur, _ := CurrentToken(r.Observed)
	return cur
}

// ActiveManagedTokens counts managed tokens GitLab accepts after the cycle:
// 1 when healthy.
func (r Report) ActiveManagedTokens() int {
	active := map[int64]bool{}
	for _, t := range r.Observed.Tokens {
		if t.Active(r.Observed.Now) {
			active[t.ID] = true
		}
	}
	if c := r.Outcome.Created; c != nil {
		active[c.ID] = true
	}
	for _, id := range r.Outcome.RevokedIDs {
		delete(active, id)
	}
	return len(active)
}

// ObserveFailed reports whether the cycle could not read GitLab or the
// cluster; then it knows nothing new about either.
func (r Report) ObserveFailed() bool { return r.failedAt(StageObserve) }

func (r Report) failedAt(stages ...Stage) bool {
	for _, e := range r.Outcome.Errors {
		for _, s := range stages {
			if e.Stage == s {
				return true
			}
		}
	}
	return false
}

// TargetsSynced says, per target ("namespace/secret"), whether it holds the
// current token and all its ServiceAccounts list it after the cycle. When a
// rotation stopped before any write, targets keep the token they held, and
// those that held the current one are still in sync.
func (r Report) TargetsSynced() map[string]bool {
	stoppedBeforeWrites := r.failedAt(StageCreate, StageVerify)
	out := make(map[string]bool, len(r.Plan.Synced))
	for key, synced := range r.Plan.Synced {
		switch {
		case synced:
			out[key] = true
		case stoppedBeforeWrites || !r.Applied:
			out[key] = r.Plan.Holding[key]
		default:
			out[key] = !r.Outcome.FailedTargets[key] && !r.Plan.Blocked[key]
		}
	}
	return out
}

// Status observes and decides like a cycle, writes nothing, and summarises.
func (r *Runner) Status(ctx context.Context) (Status, error) {
	obs, err := Observe(ctx, r.GitLab, r.Cluster, r.Targets, r.Policy, r.Now().UTC())
	if err != nil {
		return Status{}, err
	}
	return BuildStatus(obs, Decide(obs, r.Policy, false), r.Policy), nil
}

// checkCurrent verifies the current token's credential. Only a refusal
// counts; an unreachable registry must not trigger rotations.
func (r *Runner) checkCurrent(ctx context.Context, obs Observed) string {
	cur, src := CurrentToken(obs)
	if cur == nil {
		return ""
	}
	err := r.Verifier.Verify(ctx, r.Policy.RegistryHost, src.Credential)
	var refusal Refusal
	switch {
	case err == nil:
		return ""
	case errors.As(err, &refusal) && refusal.Refused():
		r.Log.Warn("the registry refuses the current token", "action", "verify", "token_id", cur.ID, "error", err)
		return err.Error()
	default:
		r.Log.Warn("could not re-check the current token against the registry", "action", "verify", "token_id", cur.ID, "error", err)
		return ""
	}
}
