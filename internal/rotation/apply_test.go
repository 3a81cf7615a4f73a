package rotation

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rotator-dev/rotator/internal/gitlab"
	"github.com/rotator-dev/rotator/internal/kube"
	"github.com/rotator-dev/rotator/internal/secret"
)

// recorder is an in-memory GitLab and cluster that logs every write in order.
type recorder struct {
	calls      []string
	failWrite  map[string]bool
	failCreate error
}

func (r *recorder) Owner() string                                      { return "project 1" }
func (r *recorder) List(context.Context) ([]gitlab.DeployToken, error) { return nil, nil }
func (r *recorder) Create(_ context.Context, req gitlab.CreateRequest) (gitlab.DeployToken, gitlab.Credential, error) {
	r.calls = append(r.calls, "create")
	if r.failCreate != nil {
		return gitlab.DeployToken{}, gitlab.Credential{}, r.failCreate
	}
	e := req.ExpiresAt
	return gitlab.DeployToken{ID: 9, Name: req.Name, Username: "u9", ExpiresAt: &e}, gitlab.Credential{Username: "u9", Password: secret.New("p9")}, nil
}
func (r *recorder) Delete(_ context.Context, id int64) error {
	r.calls = append(r.calls, "revoke:"+strconv.FormatInt(id, 10))
	return nil
}
func (r *recorder) Namespaces(context.Context, string) ([]string, error) { return nil, nil }
func (r *recorder) PullSecret(context.Context, string, string, string) (*kube.PullSecret, error) {
	return nil, nil
}
func (r *recorder) WritePullSecret(_ context.Context, ns, _ string, c kube.PullSecretContent) error {
	r.calls = append(r.calls, "write:"+ns+":"+c.Credential.Username)
	if r.failWrite[ns] {
		return errors.New("forbidden")
	}
	return nil
}
func (r *recorder) ServiceAccount(context.Context, string, string) (*kube.ServiceAccount, error) {
	return nil, nil
}
func (r *recorder) AddImagePullSecret(_ context.Context, ns, sa, _ string) error {
	r.calls = append(r.calls, "patch:"+ns+"/"+sa)
	return nil
}

type failingVerifier struct{}

func (failingVerifier) Verify(context.Context, string, gitlab.Credential) error {
	return errors.New("registry said 401")
}

func TestApplyOrder(t *testing.T) {
	obs := Observed{Now: now, Tokens: []gitlab.DeployToken{token(5, at(time.Hour))},
		Targets: []TargetState{target("a", holding(5)), target("b", holding(5), ServiceAccountState{Name: "default", Exists: true})}}
	plan := Decide(obs, policy, false)

	cases := []struct {
		name     string
		rec      *recorder
		verifier Verifier
		calls    string
		stages   string
	}{
		{"create, write all, patch, then revoke", &recorder{}, nil,
			"create write:a:u9 write:b:u9 patch:b/default revoke:5", ""},
		{"a failed write holds every revoke back", &recorder{failWrite: map[string]bool{"a": true}}, nil,
			"create write:a:u9 write:b:u9 patch:b/default", "write"},
		{"a failed create touches nothing else", &recorder{failCreate: errors.New("GitLab answered 500")}, nil,
			"create", "create"},
		{"a failed verify revokes the new token and keeps the old", &recorder{}, failingVerifier{},
			"create revoke:9", "verify"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := Applier{GitLab: tc.rec, Cluster: tc.rec, Verifier: tc.verifier, Policy: policy, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
			out := a.Apply(context.Background(), plan, obs)
			if got := strings.Join(tc.rec.calls, " "); got != tc.calls {
				t.Fatalf("calls = %q\nwant    %q", got, tc.calls)
			}
			var stages []string
			for _, e := range out.Errors {
				stages = append(stages, string(e.Stage))
			}
			if got := strings.Join(stages, ","); got != tc.stages {
				t.Fatalf("failed stages = %q, want %q", got, tc.stages)
			}
		})
	}
}

func TestApplyCopiesCurrentCredentialWithoutRotation(t *testing.T) {
	obs := Observed{Now: now, Tokens: []gitlab.DeployToken{token(5, at(20*24*time.Hour))},
		Targets: []TargetState{target("a", holding(5)), target("b", nil)}}
	rec := &recorder{}
	a := Applier{GitLab: rec, Cluster: rec, Policy: policy, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	a.Apply(context.Background(), Decide(obs, policy, false), obs)
	if got := strings.Join(rec.calls, " "); got != "write:b:"+userOf(5) {
		t.Fatalf("calls = %q", got)
	}
}

// A due rotation whose create fails leaves every target with the current,
// still valid token: they stay in sync. A target whose write failed is not.
func TestTargetsSyncedAfterFailures(t *testing.T) {
	obs := Observed{Now: now, Tokens: []gitlab.DeployToken{token(5, at(time.Hour))},
		Targets: []TargetState{target("a", holding(5)), target("b", holding(5))}}
	plan := Decide(obs, policy, false)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cases := []struct {
		name string
		rec  *recorder
		want map[string]bool
	}{
		{"create failed", &recorder{failCreate: errors.New("500")}, map[string]bool{"a/gitlab": true, "b/gitlab": true}},
		{"one write failed", &recorder{failWrite: map[string]bool{"b": true}}, map[string]bool{"a/gitlab": true, "b/gitlab": false}},
		{"all applied", &recorder{}, map[string]bool{"a/gitlab": true, "b/gitlab": true}},
	}
	for _, tc := range cases {
		a := Applier{GitLab: tc.rec, Cluster: tc.rec, Policy: policy, Log: log}
		rep := Report{Observed: obs, Plan: plan, Outcome: a.Apply(context.Background(), plan, obs), Applied: true}
		got := rep.TargetsSynced()
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("%s: synced[%s] = %v, want %v", tc.name, k, got[k], v)
			}
		}
	}
}
