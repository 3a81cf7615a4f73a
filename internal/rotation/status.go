package rotation

import (
	"strings"
	"time"

	"github.com/rotator-dev/rotator/internal/schedule"
)

// Status is what `rotator status` reports. It holds ids, names and times,
// never credentials.
type Status struct {
	Now           time.Time      `json:"now"`
	InPlace       bool           `json:"inPlace"`
	Current       *TokenStatus   `json:"currentToken"`
	Targets       []TargetStatus `json:"targets"`
	ManagedTokens []TokenStatus  `json:"managedTokens"`
	Pending       []string       `json:"pending"`
	Warnings      []string       `json:"warnings"`
}

// TokenStatus describes one managed token.
type TokenStatus struct {
	ID        int64      `json:"id"`
	Name      string     `json:"name"`
	ExpiresAt *time.Time `json:"expiresAt"`
	RenewalAt *time.Time `json:"renewalAt,omitempty"`
	Active    bool       `json:"active"`
	Current   bool       `json:"current"`
}

// TargetStatus describes one target.
type TargetStatus struct {
	Namespace       string                 `json:"namespace"`
	Secret          string                 `json:"secret"`
	SecretPresent   bool                   `json:"secretPresent"`
	TokenID         int64                  `json:"tokenId,omitempty"`
	ExpiresAt       *time.Time             `json:"expiresAt,omitempty"`
	RenewalAt       *time.Time             `json:"renewalAt,omitempty"`
	Problem         string                 `json:"problem,omitempty"`
	Synced          bool                   `json:"synced"`
	ServiceAccounts []ServiceAccountStatus `json:"serviceAccounts"`
}

// ServiceAccountStatus says whether one ServiceAccount lists the Secret.
type ServiceAccountStatus struct {
	Name    string `json:"name"`
	Exists  bool   `json:"exists"`
	Patched bool   `json:"patched"`
}

// BuildStatus summarises observed state and the plan a cycle would carry
// out; everything is in place exactly when that plan is empty and no
// ServiceAccount is missing.
func BuildStatus(obs Observed, plan Plan, policy Policy) Status {
	st := Status{Now: obs.Now, Warnings: append([]string{}, plan.Warnings...), Pending: []string{}, Targets: []TargetStatus{}, ManagedTokens: []TokenStatus{}}
	current, _ := CurrentToken(obs)
	renewal := func(exp *time.Time) *time.Time {
		if exp == nil {
			return nil
		}
		r := schedule.RenewalTime(*exp, policy.RenewBefore)
		return &r
	}
	for _, t := range obs.Tokens {
		ts := TokenStatus{ID: t.ID, Name: t.Name, ExpiresAt: t.ExpiresAt, RenewalAt: renewal(t.ExpiresAt),
			Active: t.Active(obs.Now), Current: current != nil && t.ID == current.ID}
		st.ManagedTokens = append(st.ManagedTokens, ts)
		if ts.Current {
			c := ts
			st.Current = &c
		}
	}
	for _, ts := range obs.Targets {
		out := TargetStatus{Namespace: ts.Namespace, Secret: ts.SecretName, Synced: plan.Synced[targetKey(ts.Namespace, ts.SecretName)]}
		if s := ts.Secret; s != nil {
			out.SecretPresent = true
			out.TokenID = s.TokenID
			out.ExpiresAt = s.ExpiresAt
			out.RenewalAt = renewal(s.ExpiresAt)
			out.Problem = s.Problem
			if !s.Managed && s.Problem == "" {
				out.Problem = "not managed by the rotator yet"
			}
		}
		for _, sa := range ts.ServiceAccounts {
			out.ServiceAccounts = append(out.ServiceAccounts, ServiceAccountStatus{Name: sa.Name, Exists: sa.Exists, Patched: sa.References})
		}
		st.Targets = append(st.Targets, out)
	}
	if !plan.Empty() {
		for _, line := range strings.Split(strings.TrimSpace(plan.Describe()), "\n") {
			if !strings.HasPrefix(line, "warning ") {
				st.Pending = append(st.Pending, line)
			}
		}
	}
	st.InPlace = plan.Empty() && len(plan.MissingServiceAccounts) == 0 && len(obs.Targets) > 0
	return st
}
