package gitlabemu

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"
	"time"

	gitlab "gitlab.com/gitlab-org/api/client-go/v2"
)

// Test fixture: games/fleet (7) in group games (3), other/app (8) in group
// other (4), and one API token per permission case.
const (
	patMaintainer = "glpat-maintainer-000000"
	patOwner      = "glpat-groupowner-00000"
	patGroupMaint = "glpat-groupmaint-00000"
	patDeveloper  = "glpat-developer-000000"
	patReadAPI    = "glpat-readapi-00000000"
	patExpired    = "glpat-expired-00000000"
	patRevoked    = "glpat-revoked-00000000"
	patAdmin      = "glpat-admin-0000000000"
)

var fixedNow = time.Date(2026, 5, 10, 12, 0, 0, 0, time.UTC)

var deployTokenRE = regexp.MustCompile(`\Agldt-[A-Za-z0-9_-]{20}\z`)

type env struct {
	t   *testing.T
	emu *Server
	ts  *httptest.Server
}

func newEnv(t *testing.T) *env {
	t.Helper()
	emu := New()
	emu.SetNow(fixedNow)
	emu.AddProject(7, "games/fleet")
	emu.AddProject(8, "other/app")
	emu.AddGroup(3, "games")
	emu.AddGroup(4, "other")
	past := fixedNow.Add(-time.Hour)
	future := fixedNow.Add(300 * 24 * time.Hour)
	api := []string{"api"}
	for _, pat := range []AccessToken{
		{Token: patMaintainer, Scopes: api, ExpiresAt: &future, Roles: map[string]Role{"project:7": Maintainer}},
		{Token: patOwner, Scopes: api, Roles: map[string]Role{"group:3": Owner}},
		{Token: patGroupMaint, Scopes: api, Roles: map[string]Role{"group:3": Maintainer}},
		{Token: patDeveloper, Scopes: api, Roles: map[string]Role{"project:7": Developer}},
		{Token: patReadAPI, Scopes: []string{"read_api"}, Roles: map[string]Role{"project:7": Maintainer}},
		{Token: patExpired, Scopes: api, ExpiresAt: &past, Roles: map[string]Role{"project:7": Maintainer}},
		{Token: patRevoked, Scopes: api, Revoked: true, Roles: map[string]Role{"project:7": Maintainer}},
		{Token: patAdmin, Scopes: api, Admin: true},
	} {
		emu.AddAccessToken(pat)
	}
	ts := httptest.NewServer(emu)
	t.Cleanup(ts.Close)
	return &env{t: t, emu: emu, ts: ts}
}

func (e *env) client(pat string, opts ...gitlab.ClientOptionFunc) *gitlab.Client {
	e.t.Helper()
	opts = append([]gitlab.ClientOptionFunc{gitlab.WithBaseURL(e.ts.URL), gitlab.WithoutRetries()}, opts...)
	c, err := gitlab.NewClient(pat, opts...)
	if err != nil {
		e.t.Fatalf("NewClient: %v", err)
	}
	return c
}

type rawResp struct {
	status int
	header http.Header
	body   string
}

// do sends a raw request, for what the client hides (404 bodies, headers,
// malformed input).
func (e *env) do(method, path, pat, contentType, body string) rawResp {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = bytes.NewBufferString(body)
	}
	req, err := http.NewRequest(method, e.ts.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if pat != "" {
		req.Header.Set("Private-Token", pat)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return rawResp{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func (e *env) controlJSON(method, path string, in any, out any) int {
	e.t.Helper()
	var body string
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			e.t.Fatal(err)
		}
		body = string(b)
	}
	r := e.do(method, path, "", "application/json", body)
	if out != nil && r.status < 300 && r.body != "" {
		if err := json.Unmarshal([]byte(r.body), out); err != nil {
			e.t.Fatalf("%s %s: decode %q: %v", method, path, r.body, err)
		}
	}
	return r.status
}

func ptr[T any](v T) *T { return &v }

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
