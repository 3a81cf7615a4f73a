package rotation

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rotator-dev/rotator/internal/gitlab"
	"github.com/rotator-dev/rotator/internal/kube"
	"github.com/rotator-dev/rotator/internal/schedule"
)

// IsManaged reports whether the rotator owns a token of this name: the
// prefix and a dash, as TokenName writes it. A hand-made token named just
// "k8s-pull" (the manual howto's example) is therefore left alone.
func IsManaged(name, prefix string) bool {
	return name != ReservedTokenName && strings.HasPrefix(name, prefix+"-")
}

// Decide computes the plan from observed state. It is pure: the same input
// always gives the same plan, and it performs no I/O.
func Decide(obs Observed, policy Policy, force bool) Plan {
	plan := Plan{Now: obs.Now, Synced: map[string]bool{}, Blocked: map[string]bool{}, Holding: map[string]bool{}}
	if len(obs.Targets) == 0 {
		// Without targets nothing holds a token; rotating or revoking now
		// would only churn tokens for a selector that may match again soon.
		plan.Warnings = append(plan.Warnings, "no target namespaces: nothing to do")
		return plan
	}

	current, source := CurrentToken(obs)
	rotate, reason := RotationDue(current, obs, policy, force)
	if rotate {
		expires := obs.Now.Add(policy.Lifetime).UTC().Truncate(time.Second)
		plan.Rotation = &Rotation{
			Reason: reason,
			Request: gitlab.CreateRequest{
				Name:      TokenName(policy.Prefix, obs.Now),
				Scopes:    slices.Clone(policy.Scopes),
				ExpiresAt: expires,
			},
		}
	} else {
		plan.Current = current
	}

	for _, ts := range obs.Targets {
		plan.Targets = append(plan.Targets, ts.Target)
		key := targetKey(ts.Namespace, ts.SecretName)
		synced := true
		holds := current != nil
		if holds {
			stale, _ := SecretStale(ts.Secret, *current, source)
			holds = !stale
		}
		if rotate {
			plan.Writes = append(plan.Writes, SecretWrite{Namespace: ts.Namespace, Name: ts.SecretName, Reason: "new token: " + reason})
			synced = false
		} else if stale, why := SecretStale(ts.Secret, *current, source); stale {
			plan.Writes = append(plan.Writes, SecretWrite{Namespace: ts.Namespace, Name: ts.SecretName, TokenID: current.ID, Reason: why})
			synced = false
		}
		for _, sa := range ts.ServiceAccounts {
			switch {
			case !sa.Exists:
				plan.Warnings = append(plan.Warnings, fmt.Sprintf("serviceaccount %s/%s does not exist; it will be patched once it does", ts.Namespace, sa.Name))
				synced = false
				plan.Blocked[key] = true
				plan.MissingServiceAccounts = append(plan.MissingServiceAccounts, ServiceAccountPatch{
					Namespace: ts.Namespace, Name: sa.Name, SecretName: ts.SecretName, Reason: "does not exist"})
			case !sa.References:
				plan.Patches = append(plan.Patches, ServiceAccountPatch{
					Namespace: ts.Namespace, Name: sa.Name, SecretName: ts.SecretName,
					Reason: fmt.Sprintf("imagePullSecrets does not list %s", ts.SecretName),
				})
				synced = false
			}
		}
		plan.Synced[key] = synced
		plan.Holding[key] = holds && !plan.Blocked[key] && allReference(ts.ServiceAccounts)
	}

	held := heldTokenIDs(obs)
	for _, tok := range obs.Tokens {
		if !rotate && tok.ID == current.ID {
			continue
		}
		if young, age := OrphanInGrace(tok, held[tok.ID], policy, obs.Now); young {
			plan.Warnings = append(plan.Warnings, fmt.Sprintf("token %d (%s) is held by no Secret but only %s old; revoking it once it is %s old",
				tok.ID, tok.Name, age.Round(time.Second), schedule.FormatDuration(policy.OrphanGrace)))
			continue
		}
		plan.Revokes = append(plan.Revokes, Revocation{TokenID: tok.ID, Name: tok.Name, Reason: RevokeReason(tok, plan.Current, held[tok.ID], obs.Now)})
	}
	return plan
}

// OrphanInGrace keeps an active token that no Secret holds for policy's
// grace period after its creation (read from the name TokenName gave it),
// in case another rotator created it and is about to write it. With the
// default grace of 0 orphans go at once, as invariant 3 asks; a token whose
// name carries no time is old.
func OrphanInGrace(tok gitlab.DeployToken, held bool, policy Policy, now time.Time) (bool, time.Duration) {
	if policy.OrphanGrace <= 0 || held || !tok.Active(now) {
		return false, 0
	}
	created, err := time.Parse("20060102-150405", strings.TrimPrefix(tok.Name, policy.Prefix+"-"))
	if err != nil {
		return false, 0
	}
	age := now.Sub(created)
	return age < policy.OrphanGrace, age
}

// TokenName names a new token after the prefix and its creation time, so a
// human reading GitLab's list can tell the generations apart.
func TokenName(prefix string, now time.Time) string {
	return prefix + "-" + now.UTC().Format("20060102-150405")
}

// CurrentToken finds the token the targets are meant to hold: the newest
// active managed token that some target Secret holds. Choosing the newest
// lets a cycle interrupted halfway through its writes finish them without
// minting another token. source is a Secret that holds it, from which the
// credential can be copied.
func CurrentToken(obs Observed) (current *gitlab.DeployToken, source *kube.PullSecret) {
	byID := make(map[int64]*gitlab.DeployToken, len(obs.Tokens))
	for i := range obs.Tokens {
		byID[obs.Tokens[i].ID] = &obs.Tokens[i]
	}
	for _, ts := range obs.Targets {
		s := ts.Secret
		if !holdsSomeToken(s) {
			continue
		}
		tok := byID[s.TokenID]
		if tok == nil || !tok.Active(obs.Now) || tok.Username != s.Credential.Username {
			continue
		}
		if current == nil || tok.ID > current.ID {
			current, source = tok, s
		}
	}
	return current, source
}

func holdsSomeToken(s *kube.PullSecret) bool {
	return s != nil && s.Managed && s.Problem == "" && s.TokenID > 0
}

func findToken(tokens []gitlab.DeployToken, id int64) *gitlab.DeployToken {
	for i := range tokens {
		if tokens[i].ID == id {
			return &tokens[i]
		}
	}
	return nil
}

// RotationDue decides whether a new token is needed, and why. The rules
// mirror design.md: no usable token, inside the renewal window, no expiry,
// scopes changed, or forced.
func RotationDue(current *gitlab.DeployToken, obs Observed, policy Policy, force bool) (bool, string) {
	if force {
		return true, "forced"
	}
	if current == nil {
		return true, "no target Secret holds an active managed token (" + whyNoCurrent(obs) + ")"
	}
	if obs.CurrentRefused != "" {
		return true, fmt.Sprintf("the registry refuses token %d: %s", current.ID, obs.CurrentRefused)
	}
	if current.ExpiresAt == nil {
		return true, fmt.Sprintf("token %d has no expiry; replacing it with one that expires after %s", current.ID, schedule.FormatDuration(policy.Lifetime))
	}
	renewAt := schedule.RenewalTime(*current.ExpiresAt, policy.RenewBefore)
	if !obs.Now.Before(renewAt) {
		return true, fmt.Sprintf("token %d expires at %s; renewal was due at %s", current.ID, current.ExpiresAt.UTC().Format(time.RFC3339), renewAt.UTC().Format(time.RFC3339))
	}
	if !sameScopes(current.Scopes, policy.Scopes) {
		return true, fmt.Sprintf("token %d has scopes [%s], config asks for [%s]", current.ID, strings.Join(current.Scopes, ","), strings.Join(policy.Scopes, ","))
	}
	return false, ""
}

// whyNoCurrent explains, for the first target, why its Secret is unusable;
// operators reading the log want the concrete cause, not a category.
func whyNoCurrent(obs Observed) string {
	ts := obs.Targets[0]
	where := "secret " + targetKey(ts.Namespace, ts.SecretName)
	s := ts.Secret
	switch {
	case s == nil:
		return where + " does not exist"
	case !s.Managed:
		return where + " is not managed by the rotator yet"
	case s.Problem != "":
		return where + ": " + s.Problem
	case s.TokenID == 0:
		return where + " does not name its token"
	}
	tok := findToken(obs.Tokens, s.TokenID)
	switch {
	case tok == nil:
		return fmt.Sprintf("%s holds token %d, which GitLab no longer lists", where, s.TokenID)
	case tok.Revoked:
		return fmt.Sprintf("%s holds token %d, which is revoked", where, s.TokenID)
	case !tok.Active(obs.Now):
		return fmt.Sprintf("%s holds token %d, which expired at %s", where, s.TokenID, tok.ExpiresAt.UTC().Format(time.RFC3339))
	case tok.Username != s.Credential.Username:
		return fmt.Sprintf("%s holds a username that is not token %d's", where, s.TokenID)
	}
	return where + " holds no usable token"
}

func sameScopes(a, b []string) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(slices.Compact(x), slices.Compact(y))
}

// SecretStale decides whether a target Secret must be rewritten to hold
// current, whose credential is copied from source.
func SecretStale(s *kube.PullSecret, current gitlab.DeployToken, source *kube.PullSecret) (bool, string) {
	switch {
	case s == nil:
		return true, "secret does not exist"
	case s.Problem != "":
		return true, "secret is unusable: " + s.Problem
	case !s.Managed:
		return true, "secret is not managed by the rotator yet; adopting it"
	case s.TokenID != current.ID:
		if s.TokenID == 0 {
			return true, fmt.Sprintf("secret does not name its token; current is %d", current.ID)
		}
		return true, fmt.Sprintf("secret holds token %d, current is %d", s.TokenID, current.ID)
	case s.Credential.Username != source.Credential.Username || !s.Credential.Password.Equal(source.Credential.Password):
		return true, fmt.Sprintf("secret's credential differs from token %d's", current.ID)
	}
	return false, ""
}

// RevokeReason says why a managed token other than the current one goes;
// current is nil when the plan creates the token that replaces it, and held
// says whether some target Secret still names tok.
func RevokeReason(tok gitlab.DeployToken, current *gitlab.DeployToken, held bool, now time.Time) string {
	switch {
	case tok.Revoked:
		return "revoked in GitLab; removing the leftover"
	case !tok.Active(now):
		return "expired at " + tok.ExpiresAt.UTC().Format(time.RFC3339)
	case held:
		if current == nil {
			return "superseded by the new token"
		}
		return fmt.Sprintf("superseded by token %d", current.ID)
	}
	return "orphaned: no target Secret holds it"
}

func heldTokenIDs(obs Observed) map[int64]bool {
	held := make(map[int64]bool, len(obs.Targets))
	for _, ts := range obs.Targets {
		if ts.Secret != nil && ts.Secret.TokenID != 0 {
			held[ts.Secret.TokenID] = true
		}
	}
	return held
}

func allReference(sas []ServiceAccountState) bool {
	for _, sa := range sas {
		if !sa.References {
			return false
		}
	}
	return true
}
