package gitlab

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rotator-dev/rotator/internal/gitlabemu"
	"github.com/rotator-dev/rotator/internal/secret"
)

const pat = "glpat-client-test-000001"

func setup(t *testing.T) (*gitlabemu.Server, *Client) {
	t.Helper()
	emu := gitlabemu.New()
	emu.AddProject(7, "games/fleet")
	emu.AddAccessToken(gitlabemu.AccessToken{Token: pat, Scopes: []string{"api"}, Roles: map[string]gitlabemu.Role{"project:7": gitlabemu.Maintainer}})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	c, err := NewClient(Options{BaseURL: srv.URL, Token: secret.New(pat), Project: "games/fleet", Timeout: 2 * time.Second, MaxRetryWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return emu, c
}

func TestCreateListDelete(t *testing.T) {
	emu, c := setup(t)
	exp := emu.Now().Add(30 * 24 * time.Hour).Truncate(time.Second)
	tok, cred, err := c.Create(context.Background(), CreateRequest{Name: "k8s-pull-x", Scopes: []string{"read_registry"}, ExpiresAt: exp})
	if err != nil {
		t.Fatal(err)
	}
	if tok.ID == 0 || cred.Username != tok.Username || !strings.HasPrefix(cred.Password.Reveal(), "gldt-") || !tok.ExpiresAt.Equal(exp) {
		t.Fatalf("created %+v", tok)
	}
	list, err := c.List(context.Background())
	if err != nil || len(list) != 1 || list[0].ID != tok.ID {
		t.Fatalf("list = %+v, %v", list, err)
	}
	if err := c.Delete(context.Background(), tok.ID); err != nil {
		t.Fatal(err)
	}
	// Deleting again is not an error: the goal state holds.
	if err := c.Delete(context.Background(), tok.ID); err != nil {
		t.Fatalf("second delete: %v", err)
	}
}

func TestCreateIsNeverRetriedOnServerError(t *testing.T) {
	for _, status := range []int{500, 502, 503} {
		emu, c := setup(t)
		emu.InjectFault(gitlabemu.Fault{Endpoint: gitlabemu.EndpointCreateDeployToken, Status: status, AfterHandling: true})
		_, _, err := c.Create(context.Background(), CreateRequest{Name: "k8s-pull-x", Scopes: []string{"read_registry"}, ExpiresAt: emu.Now().Add(time.Hour)})
		if !IsStatus(err, status) {
			t.Fatalf("%d: err = %v", status, err)
		}
		posts := 0
		for _, r := range emu.Requests() {
			if r.Method == "POST" {
				posts++
			}
		}
		if posts != 1 {
			t.Fatalf("%d: %d POSTs; a retried create can mint duplicates", status, posts)
		}
	}
}

func TestCreateRetriesThrottling(t *testing.T) {
	emu, c := setup(t)
	emu.InjectFault(gitlabemu.Fault{Endpoint: gitlabemu.EndpointCreateDeployToken, OnCall: 1, Status: 429, Header: map[string]string{"Retry-After": "0"}})
	if _, _, err := c.Create(context.Background(), CreateRequest{Name: "k8s-pull-x", Scopes: []string{"read_registry"}, ExpiresAt: emu.Now().Add(time.Hour)}); err != nil {
		t.Fatalf("429 then 201: %v", err)
	}
	if n := len(emu.DeployTokens("project:7")); n != 1 {
		t.Fatalf("%d tokens", n)
	}
}

func TestListRetriesServerErrorsAndCapsWaits(t *testing.T) {
	emu, c := setup(t)
	emu.InjectFault(gitlabemu.Fault{Endpoint: gitlabemu.EndpointListDeployTokens, OnCall: 1, Times: 2, Status: 503})
	// A Retry-After of an hour is capped by MaxRetryWait (1s here).
	emu.InjectFault(gitlabemu.Fault{Endpoint: gitlabemu.EndpointListDeployTokens, OnCall: 3, Status: 429, Header: map[string]string{"Retry-After": "3600"}})
	start := time.Now()
	if _, err := c.List(context.Background()); err != nil {
		t.Fatalf("list after transient errors: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("list took %s; Retry-After not capped", d)
	}
}

func TestErrorsAreOneLineWithoutCredentials(t *testing.T) {
	emu, c := setup(t)
	emu.InjectFault(gitlabemu.Fault{Endpoint: gitlabemu.EndpointListDeployTokens, Status: 403})
	_, err := c.List(context.Background())
	if err == nil || !IsStatus(err, 403) {
		t.Fatalf("err = %v", err)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") || strings.Contains(msg, pat) || !strings.Contains(msg, "project games/fleet") {
		t.Fatalf("error %q", msg)
	}
}

func TestActiveFollowsExpiresAtNotTheFlag(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	past, future := now.Add(-time.Second), now.Add(time.Second)
	cases := []struct {
		tok  DeployToken
		want bool
	}{
		{DeployToken{ExpiresAt: &future}, true},
		{DeployToken{ExpiresAt: &now}, true}, // GitLab accepts expires_at >= NOW()
		{DeployToken{ExpiresAt: &past}, false},
		{DeployToken{}, true},
		{DeployToken{Revoked: true}, false},
	}
	for i, tc := range cases {
		if got := tc.tok.Active(now); got != tc.want {
			t.Errorf("case %d: Active = %v, want %v", i, got, tc.want)
		}
	}
}
