package rotation

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rotator-dev/rotator/internal/gitlab"
	"github.com/rotator-dev/rotator/internal/kube"
)

// Observe reads everything Decide needs. It only reads.
func Observe(ctx context.Context, tokens gitlab.DeployTokens, cluster kube.Cluster, specs []TargetSpec, policy Policy, now time.Time) (Observed, error) {
	obs := Observed{Now: now}

	all, err := tokens.List(ctx)
	if err != nil {
		return obs, err
	}
	for _, t := range all {
		if IsManaged(t.Name, policy.Prefix) {
			obs.Tokens = append(obs.Tokens, t)
		} else {
			obs.UnmanagedTokens++
		}
	}

	targets, err := ResolveTargets(ctx, cluster, specs)
	if err != nil {
		return obs, err
	}
	for _, t := range targets {
		ts := TargetState{Target: t}
		ts.Secret, err = cluster.PullSecret(ctx, t.Namespace, t.SecretName, policy.RegistryHost)
		if err != nil {
			return obs, err
		}
		for _, name := range t.ServiceAccounts {
			sa, err := cluster.ServiceAccount(ctx, t.Namespace, name)
			if err != nil {
				return obs, err
			}
			state := ServiceAccountState{Name: name, Exists: sa != nil}
			state.References = sa != nil && sa.References(t.SecretName)
			ts.ServiceAccounts = append(ts.ServiceAccounts, state)
		}
		obs.Targets = append(obs.Targets, ts)
	}
	return obs, nil
}

// ResolveTargets expands selectors into namespaces. A namespace named
// explicitly keeps its own settings over a selector's.
func ResolveTargets(ctx context.Context, cluster kube.Cluster, specs []TargetSpec) ([]Target, error) {
	byNamespace := map[string]Target{}
	for _, s := range specs {
		if s.Namespace != "" {
			byNamespace[s.Namespace] = Target{Namespace: s.Namespace, SecretName: s.SecretName, ServiceAccounts: s.ServiceAccounts}
		}
	}
	for _, s := range specs {
		if s.NamespaceSelector == "" {
			continue
		}
		names, err := cluster.Namespaces(ctx, s.NamespaceSelector)
		if err != nil {
			return nil, fmt.Errorf("resolve targets: %w", err)
		}
		for _, ns := range names {
			if _, seen := byNamespace[ns]; !seen {
				byNamespace[ns] = Target{Namespace: ns, SecretName: s.SecretName, ServiceAccounts: s.ServiceAccounts}
			}
		}
	}
	targets := make([]Target, 0, len(byNamespace))
	for _, t := range byNamespace {
		targets = append(targets, t)
	}
	slices.SortFunc(targets, func(a, b Target) int { return strings.Compare(a.Namespace, b.Namespace) })
	return targets, nil
}
