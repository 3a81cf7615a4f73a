package gitlabemu

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	gitlab "gitlab.com/gitlab-org/api/client-go/v2"
)

func TestClockControl(t *testing.T) {
	e := newEnv(t)
	var got struct{ Now string }
	if st := e.controlJSON("GET", "/-/emulator/clock", nil, &got); st != 200 || got.Now != "2026-05-10T12:00:00Z" {
		t.Fatalf("GET clock = %d %q", st, got.Now)
	}
	if st := e.controlJSON("POST", "/-/emulator/clock", map[string]string{"advance": "36h"}, &got); st != 200 || got.Now != "2026-05-12T00:00:00Z" {
		t.Errorf("advance = %d %q", st, got.Now)
	}
	if !e.emu.Now().Equal(time.Date(2026, 5, 12, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("Now() = %v after advance", e.emu.Now())
	}
	if st := e.controlJSON("POST", "/-/emulator/clock", map[string]string{"now": "2027-01-01T10:00:00+02:00"}, &got); st != 200 || got.Now != "2027-01-01T08:00:00Z" {
		t.Errorf("set = %d %q", st, got.Now)
	}
	if st := e.controlJSON("POST", "/-/emulator/clock", map[string]string{"advance": "-1h"}, &got); st != 200 || got.Now != "2027-01-01T07:00:00Z" {
		t.Errorf("negative advance = %d %q", st, got.Now)
	}
	for _, bad := range []any{
		map[string]string{},
		map[string]string{"advance": "a day"},
		map[string]string{"now": "yesterday"},
		map[string]string{"nwo": "2027-01-01T00:00:00Z"},
	} {
		if st := e.controlJSON("POST", "/-/emulator/clock", bad, nil); st != 400 {
			t.Errorf("POST clock %v = %d, want 400", bad, st)
		}
	}
	if !e.emu.Now().Equal(time.Date(2027, 1, 1, 7, 0, 0, 0, time.UTC)) {
		t.Errorf("a refused clock change moved the clock: %v", e.emu.Now())
	}
	if st := e.controlJSON("PUT", "/-/emulator/clock", nil, nil); st != 405 {
		t.Errorf("PUT clock = %d, want 405", st)
	}
	// The API sees the moved clock: a token that expires tomorrow is unusable
	// the day after.
	exp := e.emu.Now().Add(24 * time.Hour)
	tok := e.emu.SeedDeployToken("project:7", "n", []string{"read_registry"}, &exp)
	e.controlJSON("POST", "/-/emulator/clock", map[string]string{"advance": "48h"}, nil)
	if _, ok := e.emu.Authenticate(tok.Username, tok.Token); ok {
		t.Error("clock control did not drive expiry")
	}
}

func TestNewClockStartsNow(t *testing.T) {
	before := time.Now().UTC().Truncate(time.Second)
	now := New().Now()
	if now.Before(before) || now.After(time.Now()) || now.Nanosecond() != 0 || now.Location() != time.UTC {
		t.Errorf("New().Now() = %v, want current UTC time truncated to seconds", now)
	}
}

func TestRequestRecording(t *testing.T) {
	e := newEnv(t)
	c := e.client(patMaintainer)
	name, scopes := "rec", []string{"read_registry"}
	created, _, err := c.DeployTokens.CreateProjectDeployToken("games/fleet", &gitlab.CreateProjectDeployTokenOptions{Name: &name, Scopes: &scopes})
	if err != nil {
		t.Fatal(err)
	}
	e.emu.Advance(time.Hour)
	if _, _, err := c.DeployTokens.ListProjectDeployTokens(7, &gitlab.ListProjectDeployTokensOptions{ListOptions: gitlab.ListOptions{PerPage: 5}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeployTokens.DeleteProjectDeployToken(7, created.ID); err != nil {
		t.Fatal(err)
	}
	// A refused write still counts: the rotator tried.
	e.do("POST", "/api/v4/projects/7/deploy_tokens", "glpat-nope", "application/json", `{}`)
	// Control traffic is not recorded.
	e.controlJSON("GET", "/-/emulator/clock", nil, nil)

	reqs := e.emu.Requests()
	want := []struct {
		method, path, query, endpoint string
		status                        int
	}{
		{"POST", "/api/v4/projects/games%2Ffleet/deploy_tokens", "", EndpointCreateDeployToken, 201},
		{"GET", "/api/v4/projects/7/deploy_tokens", "per_page=5", EndpointListDeployTokens, 200},
		{"DELETE", "/api/v4/projects/7/deploy_tokens/1", "", EndpointDeleteDeployToken, 204},
		{"POST", "/api/v4/projects/7/deploy_tokens", "", EndpointCreateDeployToken, 401},
	}
	if len(reqs) != len(want) {
		t.Fatalf("recorded %d requests, want %d: %+v", len(reqs), len(want), reqs)
	}
	for i, w := range want {
		r := reqs[i]
		if r.Method != w.method || r.Path != w.path || r.RawQuery != w.query || r.Endpoint != w.endpoint || r.Status != w.status {
			t.Errorf("request %d = %s %s?%s %s %d, want %+v", i, r.Method, r.Path, r.RawQuery, r.Endpoint, r.Status, w)
		}
	}
	if !reqs[0].Time.Equal(fixedNow) || !reqs[1].Time.Equal(fixedNow.Add(time.Hour)) {
		t.Errorf("times = %v, %v; want the emulator clock", reqs[0].Time, reqs[1].Time)
	}
	if !strings.Contains(string(reqs[0].Body), `"name":"rec"`) {
		t.Errorf("body not recorded: %q", reqs[0].Body)
	}
	if n := e.emu.WriteCount(); n != 3 {
		t.Errorf("WriteCount = %d, want 3 (POST, DELETE, refused POST)", n)
	}

	var sum struct {
		Total      int
		Writes     int
		ByEndpoint map[string]int
		ByStatus   map[string]int
	}
	if st := e.controlJSON("GET", "/-/emulator/requests/summary", nil, &sum); st != 200 {
		t.Fatalf("summary status %d", st)
	}
	if sum.Total != 4 || sum.Writes != 3 || sum.ByEndpoint[EndpointCreateDeployToken] != 2 || sum.ByStatus["401"] != 1 {
		t.Errorf("summary = %+v", sum)
	}

	var list []struct {
		Method, Path, Endpoint, Body string
		Status                       int
	}
	if st := e.controlJSON("GET", "/-/emulator/requests", nil, &list); st != 200 || len(list) != 4 || list[0].Path != reqs[0].Path || list[0].Body != string(reqs[0].Body) {
		t.Errorf("GET requests = %d %+v", st, list)
	}

	if st := e.controlJSON("DELETE", "/-/emulator/requests", nil, nil); st != 204 {
		t.Errorf("DELETE requests = %d", st)
	}
	if len(e.emu.Requests()) != 0 || e.emu.WriteCount() != 0 {
		t.Error("reset did not clear the log")
	}
	e.do("GET", "/api/v4/nothing", patMaintainer, "", "")
	if r := e.emu.Requests(); len(r) != 1 || r[0].Endpoint != EndpointUnknown || r[0].Status != 404 {
		t.Errorf("unknown route recorded as %+v", r)
	}
	e.emu.ResetRequests()
	if len(e.emu.Requests()) != 0 {
		t.Error("ResetRequests did not clear the log")
	}
}

func TestFaultControl(t *testing.T) {
	e := newEnv(t)
	var created struct{ ID int }
	st := e.controlJSON("POST", "/-/emulator/faults", map[string]any{
		"endpoint": "create_deploy_token", "onCall": 2, "status": 500, "delay": "10ms", "header": map[string]string{"X-Test": "1"},
	}, &created)
	if st != 201 || created.ID == 0 {
		t.Fatalf("POST faults = %d %+v", st, created)
	}
	body := `{"name":"n","scopes":["read_registry"]}`
	if r := e.do("POST", "/api/v4/projects/7/deploy_tokens", patMaintainer, "application/json", body); r.status != 201 {
		t.Errorf("first create = %d", r.status)
	}
	start := time.Now()
	r := e.do("POST", "/api/v4/projects/7/deploy_tokens", patMaintainer, "application/json", body)
	if r.status != 500 || r.header.Get("X-Test") != "1" || time.Since(start) < 10*time.Millisecond {
		t.Errorf("second create = %d %v", r.status, r.header)
	}
	var faults []struct {
		ID          int
		Delay       string
		Seen, Fired int
	}
	if st := e.controlJSON("GET", "/-/emulator/faults", nil, &faults); st != 200 || len(faults) != 1 || faults[0].Delay != "10ms" || faults[0].Seen != 2 || faults[0].Fired != 1 {
		t.Errorf("GET faults = %d %+v", st, faults)
	}

	for _, bad := range []map[string]any{
		{"endpoint": "create", "status": 500},
		{"status": 500, "delay": "soon"},
		{"status": 500, "onCall": -1},
		{"status": 500, "bogus": true},
		{"endpoint": "get_deploy_token"},
	} {
		if st := e.controlJSON("POST", "/-/emulator/faults", bad, nil); st != 400 {
			t.Errorf("POST faults %v = %d, want 400", bad, st)
		}
	}

	var reset struct{ ID int }
	e.controlJSON("POST", "/-/emulator/faults", map[string]any{"resetConnection": true}, &reset)
	if st := e.controlJSON("DELETE", "/-/emulator/faults/"+strconv.Itoa(reset.ID), nil, nil); st != 204 {
		t.Errorf("DELETE one fault = %d", st)
	}
	if st := e.controlJSON("DELETE", "/-/emulator/faults/"+strconv.Itoa(reset.ID), nil, nil); st != 404 {
		t.Errorf("DELETE missing fault = %d, want 404", st)
	}
	e.controlJSON("POST", "/-/emulator/faults", map[string]any{"status": 503}, nil)
	if r := e.do("GET", "/api/v4/projects/7/deploy_tokens", patMaintainer, "", ""); r.status != 503 {
		t.Errorf("forever fault = %d", r.status)
	}
	// Faults never touch the control API.
	if st := e.controlJSON("GET", "/-/emulator/healthz", nil, nil); st != 200 {
		t.Errorf("healthz under fault = %d", st)
	}
	if st := e.controlJSON("DELETE", "/-/emulator/faults", nil, nil); st != 204 {
		t.Errorf("DELETE faults = %d", st)
	}
	if r := e.do("GET", "/api/v4/projects/7/deploy_tokens", patMaintainer, "", ""); r.status != 200 {
		t.Errorf("after clearing = %d", r.status)
	}
}

func TestDeployTokenControl(t *testing.T) {
	e := newEnv(t)
	var seeded struct {
		ID              int64
		Token, Username string
		Scope           string
		ExpiresAt       *string `json:"expires_at"`
		Usable, Expired bool
		Revoked         bool
		Scopes          []string
		Name            string
	}
	st := e.controlJSON("POST", "/-/emulator/deploy_tokens", map[string]any{
		"scope": "project:7", "name": "seeded", "scopes": []string{"write_registry", "read_registry"}, "expires_at": "2026-06-01T00:00:00Z",
	}, &seeded)
	if st != 201 || seeded.ID != 1 || !deployTokenRE.MatchString(seeded.Token) || seeded.Scope != "project:7" || !seeded.Usable ||
		seeded.ExpiresAt == nil || *seeded.ExpiresAt != "2026-06-01T00:00:00.000Z" || len(seeded.Scopes) != 2 || seeded.Scopes[0] != "read_registry" {
		t.Fatalf("seed = %d %+v", st, seeded)
	}
	for _, bad := range []map[string]any{
		{"scope": "project:99", "name": "x", "scopes": []string{"read_registry"}},
		{"scope": "proj:7", "name": "x", "scopes": []string{"read_registry"}},
		{"scope": "project:7", "name": "x", "scopes": []string{"api"}},
		{"scope": "project:7", "scopes": []string{"read_registry"}},
	} {
		if st := e.controlJSON("POST", "/-/emulator/deploy_tokens", bad, nil); st != 400 && st != 404 {
			t.Errorf("seed %v = %d, want 400/404", bad, st)
		}
	}

	var hidden []map[string]any
	e.controlJSON("GET", "/-/emulator/deploy_tokens?scope=project:7", nil, &hidden)
	if len(hidden) != 1 || hidden[0]["token"] != nil {
		t.Errorf("list without reveal = %+v", hidden)
	}
	var shown []map[string]any
	e.controlJSON("GET", "/-/emulator/deploy_tokens?scope=project:7&reveal=true", nil, &shown)
	if len(shown) != 1 || shown[0]["token"] != seeded.Token {
		t.Errorf("list with reveal = %+v", shown)
	}
	var none []map[string]any
	if st := e.controlJSON("GET", "/-/emulator/deploy_tokens?scope=group:3", nil, &none); st != 200 || len(none) != 0 {
		t.Errorf("other scope = %d %+v", st, none)
	}

	var revoked map[string]any
	if st := e.controlJSON("POST", "/-/emulator/deploy_tokens/1/revoke", nil, &revoked); st != 200 || revoked["revoked"] != true || revoked["usable"] != false {
		t.Errorf("revoke = %d %+v", st, revoked)
	}
	if st := e.controlJSON("POST", "/-/emulator/deploy_tokens/77/revoke", nil, nil); st != 404 {
		t.Errorf("revoke unknown = %d, want 404", st)
	}
	if _, ok := e.emu.Authenticate(seeded.Username, seeded.Token); ok {
		t.Error("revoked via control API but still authenticates")
	}
	// The revoked row is still served by the REST API, flagged.
	got, _, err := e.client(patMaintainer).DeployTokens.GetProjectDeployToken(7, 1)
	if err != nil || !got.Revoked {
		t.Errorf("GET revoked = %+v %v", got, err)
	}
}

func TestWorldControl(t *testing.T) {
	e := newEnv(t)
	if st := e.controlJSON("POST", "/-/emulator/groups", map[string]any{"id": 20, "path": "ops"}, nil); st != 201 {
		t.Fatalf("add group = %d", st)
	}
	if st := e.controlJSON("POST", "/-/emulator/projects", map[string]any{"id": 21, "path": "ops/mirror"}, nil); st != 201 {
		t.Fatalf("add project = %d", st)
	}
	if st := e.controlJSON("POST", "/-/emulator/access_tokens", map[string]any{
		"token": "glpat-ops", "scopes": []string{"api"}, "roles": map[string]any{"group:20": "owner"},
	}, nil); st != 201 {
		t.Fatalf("add token = %d", st)
	}
	if st := e.controlJSON("POST", "/-/emulator/access_tokens", map[string]any{
		"token": "glpat-ops-dev", "scopes": []string{"api"}, "roles": map[string]any{"project:21": 30},
	}, nil); st != 201 {
		t.Fatalf("add token with numeric role = %d", st)
	}
	if st := e.controlJSON("POST", "/-/emulator/access_tokens", map[string]any{"token": "x", "roles": map[string]any{"project:21": "boss"}}, nil); st != 400 {
		t.Errorf("bad role = %d, want 400", st)
	}
	name, scopes := "n", []string{"read_registry"}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, err := e.client("glpat-ops").DeployTokens.CreateProjectDeployToken("ops/mirror", &gitlab.CreateProjectDeployTokenOptions{Name: &name, Scopes: &scopes}, gitlab.WithContext(ctx)); err != nil {
		t.Errorf("group owner creating in inherited project: %v", err)
	}
	if _, _, err := e.client("glpat-ops-dev").DeployTokens.ListProjectDeployTokens(21, nil); !gitlab.HasStatusCode(err, 403) {
		t.Errorf("developer (access level 30) list = %v, want 403", err)
	}
	if _, _, err := e.client("glpat-ops").DeployTokens.ListProjectDeployTokens(7, nil); !errors.Is(err, gitlab.ErrNotFound) {
		t.Errorf("ops token on games/fleet = %v, want 404", err)
	}
	if st := e.controlJSON("GET", "/-/emulator/nope", nil, nil); st != 404 {
		t.Errorf("unknown control route = %d", st)
	}
}

func TestParseDurationDays(t *testing.T) {
	for in, want := range map[string]time.Duration{"21d": 21 * 24 * time.Hour, "1d12h": 36 * time.Hour, "90m": 90 * time.Minute} {
		if got, err := parseDuration(in); err != nil || got != want {
			t.Errorf("parseDuration(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	if _, err := parseDuration("xd"); err == nil {
		t.Error("parseDuration(\"xd\") accepted")
	}
}
