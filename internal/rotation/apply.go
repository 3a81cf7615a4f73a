package rotation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/rotator-dev/rotator/internal/gitlab"
	"github.com/rotator-dev/rotator/internal/kube"
)

// Stage names the step of a cycle; metrics and logs use these values.
type Stage string

const (
	StageObserve Stage = "observe"
	StageCreate  Stage = "create"
	StageVerify  Stage = "verify"
	StageWrite   Stage = "write"
	StagePatch   Stage = "patch"
	StageRevoke  Stage = "revoke"
)

// Stages lists every stage, for metrics that must exist from start-up.
var Stages = []Stage{StageObserve, StageCreate, StageVerify, StageWrite, StagePatch, StageRevoke}

// Verifier proves a credential can pull from the registry.
type Verifier interface {
	Verify(ctx context.Context, registryHost string, cred gitlab.Credential) error
}

// Refusal is implemented by verification errors that mean the registry
// refused the credential itself, as opposed to being unreachable.
type Refusal interface{ Refused() bool }

// StageError is a failure at one stage.
type StageError struct {
	Stage Stage
	Err   error
}

func (e StageError) Error() string { return string(e.Stage) + ": " + e.Err.Error() }
func (e StageError) Unwrap() error { return e.Err }

// Outcome is what Apply did.
type Outcome struct {
	Created *gitlab.DeployToken
	Written int
	Patched int
	Revoked int
	// RevokedIDs are the tokens deleted, including a new token that failed
	// verification.
	RevokedIDs []int64
	// RevokesHeld counts revocations skipped because a target did not get
	// the new token; the old token keeps those targets pulling.
	RevokesHeld int
	// FailedTargets marks targets ("namespace/secret") whose write or
	// ServiceAccount patch failed.
	FailedTargets map[string]bool
	Errors        []StageError
}

// Failed reports whether any step failed.
func (o Outcome) Failed() bool { return len(o.Errors) > 0 }

// Err joins the failures, nil when there were none.
func (o Outcome) Err() error {
	errs := make([]error, len(o.Errors))
	for i, e := range o.Errors {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// Applier carries out plans.
type Applier struct {
	GitLab  gitlab.DeployTokens
	Cluster kube.Cluster
	// Verifier may be nil; then a successful create is the only proof.
	Verifier Verifier
	Policy   Policy
	Log      *slog.Logger
	// Events may be nil; then no Kubernetes Events are recorded.
	Events kube.EventSink
	// Checkpoint, when set, is called at every step boundary with its name
	// (create, verify, write:K, writes, patches, revoke:K). Crash tests use
	// it to kill the process there; production leaves it nil.
	Checkpoint func(point string)
}

func (a *Applier) checkpoint(point string) {
	if a.Checkpoint != nil {
		a.Checkpoint(point)
	}
}

func (a *Applier) event(ctx context.Context, namespace, secret, eventType, reason, message string) {
	if a.Events != nil {
		a.Events.SecretEvent(ctx, namespace, secret, eventType, reason, message)
	}
}

// eventAllTargets records one Event on every Secret the plan touches.
func (a *Applier) eventAllTargets(ctx context.Context, plan Plan, eventType, reason, message string) {
	for _, t := range plan.Targets {
		a.event(ctx, t.Namespace, t.SecretName, eventType, reason, message)
	}
}

// Apply carries out plan. The order is what keeps pulls working: a new token
// is proven before any Secret holds it, every Secret holds it before any
// old token is revoked, and a failed write holds back every revocation.
func (a *Applier) Apply(ctx context.Context, plan Plan, obs Observed) Outcome {
	out := Outcome{FailedTargets: map[string]bool{}}
	fail := func(stage Stage, err error) { out.Errors = append(out.Errors, StageError{Stage: stage, Err: err}) }

	var (
		token gitlab.DeployToken
		cred  gitlab.Credential
		// rotatedAt stays the token's creation time when a repair copies it.
		rotatedAt = plan.Now
	)
	if plan.Rotation != nil {
		var err error
		token, cred, err = a.GitLab.Create(ctx, plan.Rotation.Request)
		if err != nil {
			a.Log.Error("create token failed", "action", "create", "name", plan.Rotation.Request.Name, "reason", plan.Rotation.Reason, "error", err)
			fail(StageCreate, err)
			a.eventAllTargets(ctx, plan, corev1.EventTypeWarning, kube.ReasonRotationFailed, "create deploy token failed; the old token stays in place: "+err.Error())
			return out
		}
		out.Created = &token
		a.Log.Info("created token", "action", "create", "token_id", token.ID, "name", token.Name, "expires_at", token.ExpiresAt, "reason", plan.Rotation.Reason)
		a.checkpoint("create")

		if a.Verifier != nil {
			if err := a.Verifier.Verify(ctx, a.Policy.RegistryHost, cred); err != nil {
				a.Log.Error("new token failed verification; revoking it and keeping the old one", "action", "verify", "token_id", token.ID, "error", err)
				fail(StageVerify, fmt.Errorf("verify token %d: %w", token.ID, err))
				fate := "is revoked"
				if derr := a.GitLab.Delete(ctx, token.ID); derr != nil {
					fail(StageRevoke, derr)
					fate = "could not be revoked (the next cycle sweeps it)"
				} else {
					out.RevokedIDs = append(out.RevokedIDs, token.ID)
				}
				a.eventAllTargets(ctx, plan, corev1.EventTypeWarning, kube.ReasonRotationFailed,
					fmt.Sprintf("new deploy token %d failed verification and %s; the old token stays in place: %v", token.ID, fate, err))
				return out
			}
			a.Log.Info("verified token against the registry", "action", "verify", "token_id", token.ID)
			a.checkpoint("verify")
		}
	} else if plan.Current != nil {
		token = *plan.Current
		if _, source := CurrentToken(obs); source != nil {
			cred = source.Credential
			if source.RotatedAt != nil {
				rotatedAt = *source.RotatedAt
			}
		}
	}

	writesFailed := 0
	for _, w := range plan.Writes {
		err := a.Cluster.WritePullSecret(ctx, w.Namespace, w.Name, kube.PullSecretContent{
			RegistryHost: a.Policy.RegistryHost,
			Credential:   cred,
			Token:        token,
			RotatedAt:    rotatedAt,
		})
		if err != nil {
			writesFailed++
			a.Log.Error("write secret failed", "action", "write", "namespace", w.Namespace, "secret", w.Name, "reason", w.Reason, "error", err)
			fail(StageWrite, err)
			out.FailedTargets[targetKey(w.Namespace, w.Name)] = true
			a.event(ctx, w.Namespace, w.Name, corev1.EventTypeWarning, kube.ReasonRotationFailed, "write failed; older tokens are kept until every target holds the new one: "+err.Error())
			continue
		}
		out.Written++
		a.Log.Info("wrote secret", "action", "write", "namespace", w.Namespace, "secret", w.Name, "token_id", token.ID, "reason", w.Reason)
		a.checkpoint(fmt.Sprintf("write:%d", out.Written))
		if plan.Rotation != nil {
			a.event(ctx, w.Namespace, w.Name, corev1.EventTypeNormal, kube.ReasonRotated,
				fmt.Sprintf("now holds deploy token %d (%s), expires %s: %s", token.ID, token.Name, formatExpiry(token.ExpiresAt), plan.Rotation.Reason))
		} else {
			a.event(ctx, w.Namespace, w.Name, corev1.EventTypeNormal, kube.ReasonSecretRepaired,
				fmt.Sprintf("restored deploy token %d (%s): %s", token.ID, token.Name, w.Reason))
		}
	}

	a.checkpoint("writes")
	for _, p := range plan.Patches {
		if err := a.Cluster.AddImagePullSecret(ctx, p.Namespace, p.Name, p.SecretName); err != nil {
			a.Log.Error("patch serviceaccount failed", "action", "patch", "namespace", p.Namespace, "serviceaccount", p.Name, "reason", p.Reason, "error", err)
			fail(StagePatch, err)
			out.FailedTargets[targetKey(p.Namespace, p.SecretName)] = true
			continue
		}
		out.Patched++
		a.Log.Info("patched serviceaccount", "action", "patch", "namespace", p.Namespace, "serviceaccount", p.Name, "secret", p.SecretName, "reason", p.Reason)
		a.event(ctx, p.Namespace, p.SecretName, corev1.EventTypeNormal, kube.ReasonServiceAccountPatched,
			fmt.Sprintf("serviceaccount %s now lists %s in imagePullSecrets", p.Name, p.SecretName))
	}
	for _, m := range plan.MissingServiceAccounts {
		a.event(ctx, m.Namespace, m.SecretName, corev1.EventTypeWarning, kube.ReasonServiceAccountMissing,
			fmt.Sprintf("serviceaccount %s does not exist; it will be patched once it does", m.Name))
	}

	a.checkpoint("patches")
	if writesFailed > 0 {
		out.RevokesHeld = len(plan.Revokes)
		if out.RevokesHeld > 0 {
			a.Log.Warn("keeping old tokens: not every target holds the new one", "action", "revoke", "revokes_held", out.RevokesHeld, "failed_writes", writesFailed)
		}
		return out
	}
	for _, r := range plan.Revokes {
		if err := a.GitLab.Delete(ctx, r.TokenID); err != nil {
			a.Log.Error("revoke token failed", "action", "revoke", "token_id", r.TokenID, "name", r.Name, "reason", r.Reason, "error", err)
			fail(StageRevoke, err)
			continue
		}
		out.Revoked++
		out.RevokedIDs = append(out.RevokedIDs, r.TokenID)
		a.checkpoint(fmt.Sprintf("revoke:%d", out.Revoked))
		a.Log.Info("revoked token", "action", "revoke", "token_id", r.TokenID, "name", r.Name, "reason", r.Reason)
		a.eventAllTargets(ctx, plan, corev1.EventTypeNormal, kube.ReasonTokenRevoked, fmt.Sprintf("deploy token %d (%s) revoked: %s", r.TokenID, r.Name, r.Reason))
	}
	return out
}

func formatExpiry(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}
