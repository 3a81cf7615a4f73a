package metrics

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rotator-dev/rotator/internal/gitlab"
	"github.com/rotator-dev/rotator/internal/rotation"
)

func TestSeriesExistFromStart(t *testing.T) {
	m := New("v1", "go1.26", 10*24*time.Hour)
	want := `
# HELP rotator_errors_total Failures by stage: observe, create, verify, write, patch, revoke.
# TYPE rotator_errors_total counter
rotator_errors_total{stage="create"} 0
rotator_errors_total{stage="observe"} 0
rotator_errors_total{stage="patch"} 0
rotator_errors_total{stage="revoke"} 0
rotator_errors_total{stage="verify"} 0
rotator_errors_total{stage="write"} 0
# HELP rotator_cycles_total Cycles run, by result (success or failure).
# TYPE rotator_cycles_total counter
rotator_cycles_total{result="failure"} 0
rotator_cycles_total{result="success"} 0
# HELP rotator_build_info Always 1; labels name the build.
# TYPE rotator_build_info gauge
rotator_build_info{goversion="go1.26",version="v1"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "rotator_errors_total", "rotator_cycles_total", "rotator_build_info"); err != nil {
		t.Fatal(err)
	}
}

func TestLearnedGaugesAbsentUntilKnown(t *testing.T) {
	m := New("v1", "go1.26", time.Hour)
	n, err := testutil.GatherAndCount(m.Registry(), "rotator_token_expiry_timestamp_seconds", "rotator_token_renewal_timestamp_seconds",
		"rotator_gitlab_api_token_expiry_timestamp_seconds", "rotator_last_success_timestamp_seconds", "rotator_managed_tokens")
	if err != nil || n != 0 {
		t.Fatalf("%d expiry series before anything is known (%v)", n, err)
	}
}

func TestObserveCycle(t *testing.T) {
	m := New("v1", "go1.26", 10*24*time.Hour)
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	exp := now.Add(30 * 24 * time.Hour)
	created := gitlab.DeployToken{ID: 9, ExpiresAt: &exp}
	old := gitlab.DeployToken{ID: 5, ExpiresAt: &now}

	success := rotation.Report{
		Started: now, Duration: 2 * time.Second, Applied: true,
		Observed: rotation.Observed{Now: now, Tokens: []gitlab.DeployToken{old}},
		Plan:     rotation.Plan{Rotation: &rotation.Rotation{}, Synced: map[string]bool{"default/gitlab": false}, Blocked: map[string]bool{}},
		Outcome:  rotation.Outcome{Created: &created, Written: 1, RevokedIDs: []int64{5}, FailedTargets: map[string]bool{}},
	}
	m.ObserveCycle(success)
	failed := rotation.Report{Started: now, Duration: time.Second,
		Outcome: rotation.Outcome{Errors: []rotation.StageError{{Stage: rotation.StageObserve, Err: errors.New("x")}}}}
	failed.Err = failed.Outcome.Err()
	m.ObserveCycle(failed)

	checks := map[string]float64{
		"rotator_cycles_total_success":            testutil.ToFloat64(m.cycles.WithLabelValues("success")),
		"rotator_cycles_total_failure":            testutil.ToFloat64(m.cycles.WithLabelValues("failure")),
		"rotator_rotations_total_success":         testutil.ToFloat64(m.rotations.WithLabelValues("success")),
		"rotator_errors_total_observe":            testutil.ToFloat64(m.errors.WithLabelValues("observe")),
		"rotator_last_success_timestamp_seconds":  testutil.ToFloat64(m.lastSuccess.WithLabelValues()),
		"rotator_token_expiry_timestamp_seconds":  testutil.ToFloat64(m.tokenExpiry.WithLabelValues()),
		"rotator_token_renewal_timestamp_seconds": testutil.ToFloat64(m.tokenRenewal.WithLabelValues()),
		"rotator_managed_tokens":                  testutil.ToFloat64(m.managedTokens.WithLabelValues()),
		"rotator_target_synced_default_gitlab":    testutil.ToFloat64(m.targetSynced.WithLabelValues("default", "gitlab")),
	}
	want := map[string]float64{
		"rotator_cycles_total_success":            1,
		"rotator_cycles_total_failure":            1,
		"rotator_rotations_total_success":         1,
		"rotator_errors_total_observe":            1,
		"rotator_last_success_timestamp_seconds":  float64(now.Add(2 * time.Second).Unix()),
		"rotator_token_expiry_timestamp_seconds":  float64(exp.Unix()),
		"rotator_token_renewal_timestamp_seconds": float64(exp.Add(-10 * 24 * time.Hour).Unix()),
		"rotator_managed_tokens":                  1,
		"rotator_target_synced_default_gitlab":    1,
	}
	for k, v := range want {
		if checks[k] != v {
			t.Errorf("%s = %v, want %v", k, checks[k], v)
		}
	}
}

// GitLab down: what earlier cycles learned stands.
func TestObserveFailureKeepsLastKnownGauges(t *testing.T) {
	m := New("v1", "go1.26", time.Hour)
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	exp := now.Add(24 * time.Hour)
	tok := gitlab.DeployToken{ID: 5, ExpiresAt: &exp}
	ok := rotation.Report{Started: now, Observed: rotation.Observed{Now: now, Tokens: []gitlab.DeployToken{tok}},
		Plan: rotation.Plan{Current: &tok, Synced: map[string]bool{"ns/gitlab": true}}}
	m.ObserveCycle(ok)
	down := rotation.Report{Started: now, Observed: rotation.Observed{Now: now},
		Outcome: rotation.Outcome{Errors: []rotation.StageError{{Stage: rotation.StageObserve, Err: errors.New("500")}}}}
	down.Err = down.Outcome.Err()
	m.ObserveCycle(down)
	if v := testutil.ToFloat64(m.managedTokens.WithLabelValues()); v != 1 {
		t.Errorf("managed tokens = %v after a failed observe, want the last known 1", v)
	}
	if v := testutil.ToFloat64(m.targetSynced.WithLabelValues("ns", "gitlab")); v != 1 {
		t.Errorf("target_synced = %v after a failed observe, want the last known 1", v)
	}
}
