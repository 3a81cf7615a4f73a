package rotation

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rotator-dev/rotator/internal/gitlab"
	"github.com/rotator-dev/rotator/internal/kube"
	"github.com/rotator-dev/rotator/internal/secret"
)

var (
	now    = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	policy = Policy{Prefix: "k8s-pull", Scopes: []string{"read_registry"}, Lifetime: 30 * 24 * time.Hour, RenewBefore: 10 * 24 * time.Hour, RegistryHost: "registry.example.com"}
)

func at(d time.Duration) *time.Time { t := now.Add(d); return &t }

func token(id int64, expires *time.Time) gitlab.DeployToken {
	return gitlab.DeployToken{ID: id, Name: "k8s-pull-" + string(rune('a'+id%26)), Username: userOf(id), ExpiresAt: expires, Scopes: []string{"read_registry"}}
}

func userOf(id int64) string { return "gitlab+deploy-token-" + string(rune('0'+id%10)) }

func holding(id int64) *kube.PullSecret {
	return &kube.PullSecret{Managed: true, TokenID: id, Type: "kubernetes.io/dockerconfigjson",
		Credential: gitlab.Credential{Username: userOf(id), Password: secret.New("pw-" + userOf(id))}}
}

func target(ns string, s *kube.PullSecret, sas ...ServiceAccountState) TargetState {
	if sas == nil {
		sas = []ServiceAccountState{{Name: "default", Exists: true, References: true}, {Name: "agones-sdk", Exists: true, References: true}}
	}
	return TargetState{Target: Target{Namespace: ns, SecretName: "gitlab"}, Secret: s, ServiceAccounts: sas}
}

func TestRotationDue(t *testing.T) {
	healthy := token(5, at(20*24*time.Hour))
	cases := []struct {
		name    string
		tokens  []gitlab.DeployToken
		secret  *kube.PullSecret
		policy  Policy
		force   bool
		due     bool
		because string
	}{
		{"healthy token is kept", []gitlab.DeployToken{healthy}, holding(5), policy, false, false, ""},
		{"force", []gitlab.DeployToken{healthy}, holding(5), policy, true, true, "forced"},
		{"secret missing", []gitlab.DeployToken{healthy}, nil, policy, false, true, "does not exist"},
		{"secret not ours", []gitlab.DeployToken{healthy}, func() *kube.PullSecret { s := holding(5); s.Managed = false; return s }(), policy, false, true, "not managed"},
		{"secret unparseable", []gitlab.DeployToken{healthy}, &kube.PullSecret{Managed: true, TokenID: 5, Problem: ".dockerconfigjson is not valid JSON"}, policy, false, true, "not valid JSON"},
		{"token gone from GitLab", nil, holding(5), policy, false, true, "no longer lists"},
		{"token revoked in GitLab", []gitlab.DeployToken{func() gitlab.DeployToken { t := healthy; t.Revoked = true; return t }()}, holding(5), policy, false, true, "revoked"},
		// GitLab's expired flag would still say false here; the rule uses expires_at.
		{"token expired an hour ago", []gitlab.DeployToken{token(5, at(-time.Hour))}, holding(5), policy, false, true, "expired at"},
		{"inside renewal window", []gitlab.DeployToken{token(5, at(10*24*time.Hour-time.Second))}, holding(5), policy, false, true, "renewal was due"},
		{"exactly at renewal time", []gitlab.DeployToken{token(5, at(10*24*time.Hour))}, holding(5), policy, false, true, "renewal was due"},
		{"one second before renewal", []gitlab.DeployToken{token(5, at(10*24*time.Hour+time.Second))}, holding(5), policy, false, false, ""},
		{"no expiry", []gitlab.DeployToken{token(5, nil)}, holding(5), policy, false, true, "no expiry"},
		{"scopes changed", []gitlab.DeployToken{healthy}, holding(5), Policy{Prefix: "k8s-pull", Scopes: []string{"read_registry", "read_repository"}, Lifetime: policy.Lifetime, RenewBefore: policy.RenewBefore}, false, true, "scopes"},
		{"username does not match token", []gitlab.DeployToken{healthy}, func() *kube.PullSecret { s := holding(5); s.Credential.Username = "someone"; return s }(), policy, false, true, "username"},
		// A changed registry host leaves the Secret without an entry for it.
		{"registry host changed", []gitlab.DeployToken{healthy}, &kube.PullSecret{Managed: true, TokenID: 5, Problem: ".dockerconfigjson has no entry for new.example.com"}, policy, false, true, "no entry for"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obs := Observed{Now: now, Tokens: tc.tokens, Targets: []TargetState{target("default", tc.secret)}}
			current, _ := CurrentToken(obs)
			due, reason := RotationDue(current, obs, tc.policy, tc.force)
			if due != tc.due {
				t.Fatalf("due = %v (%q), want %v", due, reason, tc.due)
			}
			if !strings.Contains(reason, tc.because) {
				t.Fatalf("reason %q does not mention %q", reason, tc.because)
			}
		})
	}
}

func TestCurrentTokenPrefersNewestHeld(t *testing.T) {
	// A crash after some writes leaves targets split between 5 and 6; 6 wins
	// and no new token is needed.
	obs := Observed{Now: now,
		Tokens:  []gitlab.DeployToken{token(5, at(20*24*time.Hour)), token(6, at(29*24*time.Hour))},
		Targets: []TargetState{target("a", holding(6)), target("b", holding(5))}}
	cur, src := CurrentToken(obs)
	if cur == nil || cur.ID != 6 || src.TokenID != 6 {
		t.Fatalf("current = %+v, want token 6", cur)
	}
	plan := Decide(obs, policy, false)
	if plan.Rotation != nil {
		t.Fatalf("unexpected rotation: %s", plan.Rotation.Reason)
	}
	if len(plan.Writes) != 1 || plan.Writes[0].Namespace != "b" || plan.Writes[0].TokenID != 6 {
		t.Fatalf("writes = %+v, want b <- 6", plan.Writes)
	}
	if len(plan.Revokes) != 1 || plan.Revokes[0].TokenID != 5 || !strings.Contains(plan.Revokes[0].Reason, "superseded by token 6") {
		t.Fatalf("revokes = %+v", plan.Revokes)
	}
}

func TestDecidePlans(t *testing.T) {
	healthy := token(5, at(20*24*time.Hour))
	unpatched := []ServiceAccountState{{Name: "default", Exists: true, References: false}, {Name: "agones-sdk", Exists: false}}
	type want struct {
		rotate   bool
		writes   []string
		patches  []string
		revokes  []int64
		warnings int
		synced   map[string]bool
		// revokeReasons, when set, must each appear in the matching reason.
		revokeReasons []string
	}
	cases := []struct {
		name  string
		obs   Observed
		force bool
		want  want
	}{
		{
			name: "no-op when everything is in place",
			obs:  Observed{Now: now, Tokens: []gitlab.DeployToken{healthy}, Targets: []TargetState{target("a", holding(5)), target("b", holding(5))}},
			want: want{synced: map[string]bool{"a/gitlab": true, "b/gitlab": true}},
		},
		{
			name: "first run creates, writes every target and patches",
			obs:  Observed{Now: now, Targets: []TargetState{target("a", nil, unpatched...), target("b", nil)}},
			want: want{rotate: true, writes: []string{"a", "b"}, patches: []string{"a/default"}, warnings: 1, synced: map[string]bool{"a/gitlab": false, "b/gitlab": false}},
		},
		{
			name: "rotation revokes the old token and orphans",
			obs: Observed{Now: now, Tokens: []gitlab.DeployToken{token(5, at(time.Hour)), token(7, at(25*24*time.Hour))},
				Targets: []TargetState{target("a", holding(5))}},
			want: want{rotate: true, writes: []string{"a"}, revokes: []int64{5, 7}, revokeReasons: []string{"superseded by the new token", "orphaned"}, synced: map[string]bool{"a/gitlab": false}},
		},
		{
			name: "deleted secret is restored from another copy without a new token",
			obs:  Observed{Now: now, Tokens: []gitlab.DeployToken{healthy}, Targets: []TargetState{target("a", holding(5)), target("b", nil)}},
			want: want{writes: []string{"b"}, synced: map[string]bool{"a/gitlab": true, "b/gitlab": false}},
		},
		{
			name: "edited credential is rewritten",
			obs: Observed{Now: now, Tokens: []gitlab.DeployToken{healthy}, Targets: []TargetState{target("a", holding(5)), target("b", func() *kube.PullSecret {
				s := holding(5)
				s.Credential.Password = secret.New("typo")
				return s
			}())}},
			want: want{writes: []string{"b"}, synced: map[string]bool{"a/gitlab": true, "b/gitlab": false}},
		},
		{
			name: "orphan is revoked without rotation",
			obs:  Observed{Now: now, Tokens: []gitlab.DeployToken{healthy, token(8, at(29*24*time.Hour))}, Targets: []TargetState{target("a", holding(5))}},
			want: want{revokes: []int64{8}, synced: map[string]bool{"a/gitlab": true}},
		},
		{
			name: "expired and UI-revoked leftovers are cleaned",
			obs: Observed{Now: now, Tokens: []gitlab.DeployToken{healthy, token(2, at(-48*time.Hour)), func() gitlab.DeployToken { t := token(3, nil); t.Revoked = true; return t }()},
				Targets: []TargetState{target("a", holding(5))}},
			want: want{revokes: []int64{2, 3}, synced: map[string]bool{"a/gitlab": true}},
		},
		{
			name:  "forced rotation",
			obs:   Observed{Now: now, Tokens: []gitlab.DeployToken{healthy}, Targets: []TargetState{target("a", holding(5))}},
			force: true,
			want:  want{rotate: true, writes: []string{"a"}, revokes: []int64{5}, synced: map[string]bool{"a/gitlab": false}},
		},
		{
			name: "no targets: nothing, not even revokes",
			obs:  Observed{Now: now, Tokens: []gitlab.DeployToken{healthy, token(8, nil)}},
			want: want{warnings: 1, synced: map[string]bool{}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			plan := Decide(tc.obs, policy, tc.force)
			if (plan.Rotation != nil) != tc.want.rotate {
				t.Fatalf("rotation = %+v, want %v", plan.Rotation, tc.want.rotate)
			}
			if plan.Rotation != nil {
				r := plan.Rotation.Request
				if !strings.HasPrefix(r.Name, "k8s-pull-") || !r.ExpiresAt.Equal(now.Add(policy.Lifetime)) || len(r.Scopes) != 1 {
					t.Fatalf("create request = %+v", r)
				}
			}
			var writes, patches []string
			for _, w := range plan.Writes {
				writes = append(writes, w.Namespace)
				if w.Reason == "" {
					t.Errorf("write %s has no reason", w.Namespace)
				}
			}
			for _, p := range plan.Patches {
				patches = append(patches, p.Namespace+"/"+p.Name)
			}
			var revokes []int64
			for _, r := range plan.Revokes {
				revokes = append(revokes, r.TokenID)
				if r.Reason == "" {
					t.Errorf("revoke %d has no reason", r.TokenID)
				}
			}
			if strings.Join(writes, ",") != strings.Join(tc.want.writes, ",") {
				t.Errorf("writes = %v, want %v", writes, tc.want.writes)
			}
			if strings.Join(patches, ",") != strings.Join(tc.want.patches, ",") {
				t.Errorf("patches = %v, want %v", patches, tc.want.patches)
			}
			if len(revokes) != len(tc.want.revokes) {
				t.Errorf("revokes = %v, want %v", revokes, tc.want.revokes)
			} else {
				for i := range revokes {
					if revokes[i] != tc.want.revokes[i] {
						t.Errorf("revokes = %v, want %v", revokes, tc.want.revokes)
					}
				}
			}
			for i, want := range tc.want.revokeReasons {
				if i >= len(plan.Revokes) || !strings.Contains(plan.Revokes[i].Reason, want) {
					t.Errorf("revoke %d reason: got %+v, want %q", i, plan.Revokes, want)
				}
			}
			if len(plan.Warnings) != tc.want.warnings {
				t.Errorf("warnings = %q, want %d", plan.Warnings, tc.want.warnings)
			}
			if len(plan.Synced) != len(tc.want.synced) {
				t.Errorf("synced = %v, want %v", plan.Synced, tc.want.synced)
			}
			for k, v := range tc.want.synced {
				if plan.Synced[k] != v {
					t.Errorf("synced[%s] = %v, want %v", k, plan.Synced[k], v)
				}
			}
			empty := !tc.want.rotate && len(tc.want.writes) == 0 && len(tc.want.patches) == 0 && len(tc.want.revokes) == 0
			if plan.Empty() != empty {
				t.Errorf("Empty() = %v, want %v", plan.Empty(), empty)
			}
		})
	}
}

func TestIsManaged(t *testing.T) {
	for name, want := range map[string]bool{
		"k8s-pull-20261203-120000": true,
		"k8s-pull":                 false,
		"k8s-puller-1":             false,
		"ci-token":                 false,
		"gitlab-deploy-token":      false,
	} {
		if got := IsManaged(name, "k8s-pull"); got != want {
			t.Errorf("IsManaged(%q) = %v, want %v", name, got, want)
		}
	}
	if IsManaged("gitlab-deploy-token", "gitlab-deploy") {
		t.Error("the reserved name must never be managed, whatever the prefix")
	}
}

func TestRegistryRefusalIsDue(t *testing.T) {
	obs := Observed{Now: now, Tokens: []gitlab.DeployToken{token(5, at(20*24*time.Hour))}, Targets: []TargetState{target("a", holding(5))},
		CurrentRefused: "registry answered 401 Unauthorized"}
	cur, _ := CurrentToken(obs)
	due, reason := RotationDue(cur, obs, policy, false)
	if !due || !strings.Contains(reason, "refuses token 5") {
		t.Fatalf("due = %v, %q", due, reason)
	}
}

func TestOrphanGrace(t *testing.T) {
	graced := policy
	graced.OrphanGrace = 10 * time.Minute
	young := gitlab.DeployToken{ID: 8, Name: TokenName("k8s-pull", now.Add(-5*time.Minute)), ExpiresAt: at(29 * 24 * time.Hour)}
	old := gitlab.DeployToken{ID: 9, Name: TokenName("k8s-pull", now.Add(-15*time.Minute)), ExpiresAt: at(29 * 24 * time.Hour)}
	untimed := gitlab.DeployToken{ID: 10, Name: "k8s-pull-manual", ExpiresAt: at(29 * 24 * time.Hour)}
	obs := Observed{Now: now, Tokens: []gitlab.DeployToken{token(5, at(20*24*time.Hour)), young, old, untimed},
		Targets: []TargetState{target("a", holding(5))}}
	cases := []struct {
		policy  Policy
		revokes []int64
	}{
		{policy, []int64{8, 9, 10}}, // default: no grace
		{graced, []int64{9, 10}},    // the 5-minute-old orphan waits
	}
	for _, tc := range cases {
		plan := Decide(obs, tc.policy, false)
		var got []int64
		for _, r := range plan.Revokes {
			got = append(got, r.TokenID)
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.revokes) {
			t.Errorf("grace %s: revokes %v, want %v", tc.policy.OrphanGrace, got, tc.revokes)
		}
	}
}
