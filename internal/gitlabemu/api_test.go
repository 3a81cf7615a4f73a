package gitlabemu

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gitlab "gitlab.com/gitlab-org/api/client-go/v2"
)

// ops abstracts project vs group calls so one table covers both.
type ops struct {
	create func(c *gitlab.Client, name string, scopes []string, exp *time.Time) (*gitlab.DeployToken, *gitlab.Response, error)
	list   func(c *gitlab.Client) ([]*gitlab.DeployToken, *gitlab.Response, error)
	get    func(c *gitlab.Client, id int64) (*gitlab.DeployToken, *gitlab.Response, error)
	del    func(c *gitlab.Client, id int64) (*gitlab.Response, error)
}

func projectOps(pid any) ops {
	return ops{
		create: func(c *gitlab.Client, name string, scopes []string, exp *time.Time) (*gitlab.DeployToken, *gitlab.Response, error) {
			return c.DeployTokens.CreateProjectDeployToken(pid, &gitlab.CreateProjectDeployTokenOptions{Name: &name, Scopes: &scopes, ExpiresAt: exp})
		},
		list: func(c *gitlab.Client) ([]*gitlab.DeployToken, *gitlab.Response, error) {
			return c.DeployTokens.ListProjectDeployTokens(pid, nil)
		},
		get: func(c *gitlab.Client, id int64) (*gitlab.DeployToken, *gitlab.Response, error) {
			return c.DeployTokens.GetProjectDeployToken(pid, id)
		},
		del: func(c *gitlab.Client, id int64) (*gitlab.Response, error) {
			return c.DeployTokens.DeleteProjectDeployToken(pid, id)
		},
	}
}

func groupOps(gid any) ops {
	return ops{
		create: func(c *gitlab.Client, name string, scopes []string, exp *time.Time) (*gitlab.DeployToken, *gitlab.Response, error) {
			return c.DeployTokens.CreateGroupDeployToken(gid, &gitlab.CreateGroupDeployTokenOptions{Name: &name, Scopes: &scopes, ExpiresAt: exp})
		},
		list: func(c *gitlab.Client) ([]*gitlab.DeployToken, *gitlab.Response, error) {
			return c.DeployTokens.ListGroupDeployTokens(gid, nil)
		},
		get: func(c *gitlab.Client, id int64) (*gitlab.DeployToken, *gitlab.Response, error) {
			return c.DeployTokens.GetGroupDeployToken(gid, id)
		},
		del: func(c *gitlab.Client, id int64) (*gitlab.Response, error) {
			return c.DeployTokens.DeleteGroupDeployToken(gid, id)
		},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ops       ops
		scope     string
		pat       string
		wantPath  string
		wantEsc   bool
		otherPath string // a sibling scope that must not see the token
	}{
		{"project by id", projectOps(7), "project:7", patMaintainer, "/api/v4/projects/7/deploy_tokens", false, "/api/v4/projects/8/deploy_tokens"},
		{"project by full path", projectOps("games/fleet"), "project:7", patMaintainer, "/api/v4/projects/games%2Ffleet/deploy_tokens", true, ""},
		{"project by full path, other case", projectOps("Games/Fleet"), "project:7", patMaintainer, "/api/v4/projects/Games%2FFleet/deploy_tokens", true, ""},
		{"group by id", groupOps(3), "group:3", patOwner, "/api/v4/groups/3/deploy_tokens", false, "/api/v4/groups/4/deploy_tokens"},
		{"group by path", groupOps("games"), "group:3", patOwner, "/api/v4/groups/games/deploy_tokens", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			c := e.client(tc.pat)
			exp := time.Date(2026, 8, 1, 0, 0, 0, 0, time.UTC)

			created, resp, err := tc.ops.create(c, "rotator", []string{"write_registry", "read_registry"}, &exp)
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("create status = %d, want 201", resp.StatusCode)
			}
			if created.ID != 1 || created.Name != "rotator" || created.Username != "gitlab+deploy-token-1" {
				t.Errorf("created = %+v", created)
			}
			if !deployTokenRE.MatchString(created.Token) {
				t.Errorf("token %q does not look like gldt-<20>", created.Token)
			}
			if !slices.Equal(created.Scopes, []string{"read_registry", "write_registry"}) {
				t.Errorf("scopes = %v, want GitLab's fixed order", created.Scopes)
			}
			if created.ExpiresAt == nil || !created.ExpiresAt.Equal(exp) || created.Revoked || created.Expired {
				t.Errorf("created expiry/state = %v %v %v", created.ExpiresAt, created.Revoked, created.Expired)
			}
			if _, ok := e.emu.Authenticate(created.Username, created.Token); !ok {
				t.Error("Authenticate rejected a fresh token")
			}

			list, _, err := tc.ops.list(c)
			if err != nil {
				t.Fatalf("list: %v", err)
			}
			if len(list) != 1 || list[0].ID != created.ID || list[0].Token != "" {
				t.Fatalf("list = %+v, want the one token without its secret", list)
			}
			got, _, err := tc.ops.get(c, created.ID)
			if err != nil {
				t.Fatalf("get: %v", err)
			}
			if got.Token != "" || got.Name != "rotator" || !got.ExpiresAt.Equal(exp) {
				t.Errorf("get = %+v", got)
			}
			if tc.otherPath != "" {
				r := e.do("GET", tc.otherPath, patAdmin, "", "")
				if r.status != 200 || r.body != "[]" {
					t.Errorf("sibling scope sees %d %s", r.status, r.body)
				}
			}

			resp, err = tc.ops.del(c, created.ID)
			if err != nil {
				t.Fatalf("delete: %v", err)
			}
			if resp.StatusCode != http.StatusNoContent {
				t.Errorf("delete status = %d, want 204", resp.StatusCode)
			}
			if _, _, err := tc.ops.get(c, created.ID); !errors.Is(err, gitlab.ErrNotFound) {
				t.Errorf("get after delete: err = %v, want ErrNotFound", err)
			}
			if rows := e.emu.DeployTokens(tc.scope); len(rows) != 0 {
				t.Errorf("rows after delete = %+v, want none (row destroyed)", rows)
			}
			if _, ok := e.emu.Authenticate(created.Username, created.Token); ok {
				t.Error("deleted token still authenticates")
			}

			reqs := e.emu.Requests()
			if len(reqs) == 0 || reqs[0].Path != tc.wantPath {
				t.Fatalf("first request path = %q, want %q", reqs[0].Path, tc.wantPath)
			}
			if tc.wantEsc && !strings.Contains(reqs[0].Path, "%2F") {
				t.Errorf("path %q lost its escaping", reqs[0].Path)
			}
			if reqs[0].Scope != tc.scope {
				t.Errorf("recorded scope = %q, want %q", reqs[0].Scope, tc.scope)
			}
		})
	}
}

func TestCreateResponseShape(t *testing.T) {
	e := newEnv(t)
	r := e.do("POST", "/api/v4/projects/7/deploy_tokens", patMaintainer, "application/json",
		`{"name":"n","scopes":["read_registry"],"expires_at":"2026-03-01T00:00:00Z"}`)
	if r.status != 201 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var keys []string
	dec := json.NewDecoder(strings.NewReader(r.body))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"id", "name", "username", "expires_at", "scopes", "revoked", "expired", "token"}
	if !slices.Equal(keys, want) {
		t.Errorf("keys = %v, want %v", keys, want)
	}
	if !strings.Contains(r.body, `"expires_at":"2026-03-01T00:00:00.000Z"`) {
		t.Errorf("expires_at not in GitLab format: %s", r.body)
	}
	// The past date is accepted, and the lagging flag already says expired.
	if !strings.Contains(r.body, `"expired":true`) {
		t.Errorf("past expires_at should give expired=true: %s", r.body)
	}

	for _, path := range []string{"/api/v4/projects/7/deploy_tokens", "/api/v4/projects/7/deploy_tokens/1"} {
		g := e.do("GET", path, patMaintainer, "", "")
		if g.status != 200 || strings.Contains(g.body, `"token"`) {
			t.Errorf("GET %s = %d %s, want 200 without token", path, g.status, g.body)
		}
		if ct := g.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("GET %s Content-Type = %q", path, ct)
		}
	}

	r = e.do("POST", "/api/v4/projects/7/deploy_tokens", patMaintainer, "application/json", `{"name":"n","scopes":["read_registry"]}`)
	if !strings.Contains(r.body, `"expires_at":null`) {
		t.Errorf("no expiry should be null: %s", r.body)
	}

	d := e.do("DELETE", "/api/v4/projects/7/deploy_tokens/1", patMaintainer, "", "")
	if d.status != 204 || d.body != "" {
		t.Errorf("DELETE = %d %q, want 204 and empty body", d.status, d.body)
	}
}

func TestIDsAreGlobal(t *testing.T) {
	e := newEnv(t)
	c := e.client(patAdmin)
	var ids []int64
	for _, o := range []ops{projectOps(7), groupOps(3), projectOps(8), groupOps(4)} {
		tok, _, err := o.create(c, "x", []string{"read_registry"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tok.ID)
	}
	if !slices.Equal(ids, []int64{1, 2, 3, 4}) {
		t.Errorf("ids = %v, want 1..4 across scopes", ids)
	}
	all, _, err := c.DeployTokens.ListAllDeployTokens()
	if err != nil || len(all) != 4 {
		t.Fatalf("ListAllDeployTokens = %d tokens, %v", len(all), err)
	}
}

func TestCreateValidation(t *testing.T) {
	long := strings.Repeat("a", 256)
	for _, tc := range []struct {
		name, ctype, body string
		wantStatus        int
		wantBody          string
	}{
		{"null body", "application/json", `null`, 400, `{"error":"name is missing, scopes is missing"}`},
		{"empty object", "application/json", `{}`, 400, `{"error":"name is missing, scopes is missing"}`},
		{"name missing", "application/json", `{"scopes":["read_registry"]}`, 400, `{"error":"name is missing"}`},
		{"scopes missing", "application/json", `{"name":"n"}`, 400, `{"error":"scopes is missing"}`},
		{"scope invalid", "application/json", `{"name":"n","scopes":["read_registry","bogus"]}`, 400, `{"error":"scopes does not have a valid value"}`},
		{"scope invalid in string", "application/json", `{"name":"n","scopes":"read_registry,api"}`, 400, `{"error":"scopes does not have a valid value"}`},
		{"scopes object", "application/json", `{"name":"n","scopes":{"a":1}}`, 400, `{"error":"scopes is invalid"}`},
		{"expires_at words", "application/json", `{"name":"n","scopes":["read_registry"],"expires_at":"tomorrow"}`, 400, `{"error":"expires_at is invalid"}`},
		{"expires_at impossible date", "application/json", `{"name":"n","scopes":["read_registry"],"expires_at":"2026-02-30"}`, 400, `{"error":"expires_at is invalid"}`},
		{"expires_at US format", "application/json", `{"name":"n","scopes":["read_registry"],"expires_at":"03/01/2026"}`, 400, `{"error":"expires_at is invalid"}`},
		{"all param errors joined", "application/json", `{"scopes":["bogus"],"expires_at":"x"}`, 400, `{"error":"name is missing, scopes does not have a valid value, expires_at is invalid"}`},
		{"scopes empty array", "application/json", `{"name":"n","scopes":[]}`, 400, `{"message":"Scopes can't be blank"}`},
		{"scopes empty string", "application/json", `{"name":"n","scopes":""}`, 400, `{"message":"Scopes can't be blank"}`},
		{"bad username", "application/json", `{"name":"n","scopes":["read_registry"],"username":"bad name!"}`, 400, `{"message":"Username can contain only letters, digits, '_', '-', '+', and '.'"}`},
		{"name too long", "application/json", `{"name":"` + long + `","scopes":["read_registry"]}`, 400, `{"message":"Name is too long (maximum is 255 characters)"}`},
		{"username too long", "application/json", `{"name":"n","scopes":["read_registry"],"username":"` + long + `"}`, 400, `{"message":"Username is too long (maximum is 255 characters)"}`},
		{"blank name", "application/json", `{"name":"","scopes":["read_registry"]}`, 400, `{"message":"Name can't be blank"}`},
		{"two model errors", "application/json", `{"name":"","scopes":[]}`, 400, `{"message":"Scopes can't be blank and Name can't be blank"}`},
		{"broken JSON", "application/json", `{"name":`, 400, `{"error":"message body does not match declared format"}`},
		{"unsupported content type", "text/xml", `<x/>`, 415, `{"error":"The provided content-type 'text/xml' is not supported."}`},
		{"form missing scopes", "application/x-www-form-urlencoded", `name=n`, 400, `{"error":"scopes is missing"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			r := e.do("POST", "/api/v4/projects/7/deploy_tokens", patMaintainer, tc.ctype, tc.body)
			if r.status != tc.wantStatus || r.body != tc.wantBody {
				t.Errorf("got %d %s\nwant %d %s", r.status, r.body, tc.wantStatus, tc.wantBody)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if rows := e.emu.DeployTokens(""); len(rows) != 0 {
				t.Errorf("a refused create left rows: %+v", rows)
			}
		})
	}
}

func TestCreateAccepts(t *testing.T) {
	for _, tc := range []struct {
		name, ctype, body string
		wantExp           string // RFC 3339, "" = never
		wantScopes        []string
		wantUser          string // "" = default username
	}{
		{"rfc3339 Z", "application/json", `{"name":"n","scopes":["read_registry"],"expires_at":"2026-03-01T00:00:00Z"}`, "2026-03-01T00:00:00Z", []string{"read_registry"}, ""},
		{"millis Z", "application/json", `{"name":"n","scopes":["read_registry"],"expires_at":"2026-03-01T00:00:00.000Z"}`, "2026-03-01T00:00:00Z", []string{"read_registry"}, ""},
		{"offset shifts to UTC", "application/json", `{"name":"n","scopes":["read_registry"],"expires_at":"2026-03-01T01:00:00+01:00"}`, "2026-03-01T00:00:00Z", []string{"read_registry"}, ""},
		{"date only is midnight UTC", "application/json", `{"name":"n","scopes":["read_registry"],"expires_at":"2026-03-01"}`, "2026-03-01T00:00:00Z", []string{"read_registry"}, ""},
		{"empty expires_at never expires", "application/json", `{"name":"n","scopes":["read_registry"],"expires_at":""}`, "", []string{"read_registry"}, ""},
		{"past date accepted", "application/json", `{"name":"n","scopes":["read_registry"],"expires_at":"2000-01-01"}`, "2000-01-01T00:00:00Z", []string{"read_registry"}, ""},
		{"comma string scopes", "application/json", `{"name":"n","scopes":"write_registry, read_registry"}`, "", []string{"read_registry", "write_registry"}, ""},
		{"duplicate scopes collapse", "application/json", `{"name":"n","scopes":["read_registry","read_registry"]}`, "", []string{"read_registry"}, ""},
		{"custom username", "application/json", `{"name":"n","scopes":["read_repository"],"username":"bot.deploy+1_x-y"}`, "", []string{"read_repository"}, "bot.deploy+1_x-y"},
		{"empty username is default", "application/json", `{"name":"n","scopes":["read_registry"],"username":""}`, "", []string{"read_registry"}, ""},
		{"form array", "application/x-www-form-urlencoded", `name=n&scopes[]=write_registry&scopes[]=read_registry&expires_at=2026-03-01`, "2026-03-01T00:00:00Z", []string{"read_registry", "write_registry"}, ""},
		{"form comma", "application/x-www-form-urlencoded", `name=n&scopes=read_registry,read_package_registry`, "", []string{"read_registry", "read_package_registry"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			r := e.do("POST", "/api/v4/projects/7/deploy_tokens", patMaintainer, tc.ctype, tc.body)
			if r.status != 201 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			var got struct {
				ID        int64    `json:"id"`
				Username  string   `json:"username"`
				ExpiresAt *string  `json:"expires_at"`
				Scopes    []string `json:"scopes"`
				Token     string   `json:"token"`
			}
			if err := json.Unmarshal([]byte(r.body), &got); err != nil {
				t.Fatal(err)
			}
			rows := e.emu.DeployTokens("project:7")
			if len(rows) != 1 || rows[0].Token != got.Token {
				t.Fatalf("rows = %+v", rows)
			}
			switch {
			case tc.wantExp == "" && rows[0].ExpiresAt != nil:
				t.Errorf("expires_at = %v, want never", rows[0].ExpiresAt)
			case tc.wantExp != "" && (rows[0].ExpiresAt == nil || !rows[0].ExpiresAt.Equal(mustTime(t, tc.wantExp))):
				t.Errorf("expires_at = %v, want %s", rows[0].ExpiresAt, tc.wantExp)
			}
			if !slices.Equal(got.Scopes, tc.wantScopes) {
				t.Errorf("scopes = %v, want %v", got.Scopes, tc.wantScopes)
			}
			wantUser := tc.wantUser
			if wantUser == "" {
				wantUser = fmt.Sprintf("gitlab+deploy-token-%d", got.ID)
			}
			if got.Username != wantUser {
				t.Errorf("username = %q, want %q", got.Username, wantUser)
			}
		})
	}
}

func TestClientNilOptionsSendsNull(t *testing.T) {
	e := newEnv(t)
	_, _, err := e.client(patMaintainer).DeployTokens.CreateProjectDeployToken(7, nil)
	if !gitlab.HasStatusCode(err, 400) {
		t.Fatalf("err = %v, want 400", err)
	}
	var er *gitlab.ErrorResponse
	if !errors.As(err, &er) || !strings.Contains(er.Message, "name is missing") {
		t.Errorf("message = %v", err)
	}
	reqs := e.emu.Requests()
	if len(reqs) != 1 || string(reqs[0].Body) != "null" {
		t.Errorf("recorded body = %q, want null", reqs[0].Body)
	}
}

func TestAuthAndRouting(t *testing.T) {
	const (
		projList  = "/api/v4/projects/7/deploy_tokens"
		groupList = "/api/v4/groups/3/deploy_tokens"
		okBody    = `{"name":"n","scopes":["read_registry"]}`
	)
	for _, tc := range []struct {
		name, method, path, pat, body string
		wantStatus                    int
		wantBody                      string // "" = don't compare
	}{
		{"bad PAT", "GET", projList, "glpat-nope", "", 401, `{"message":"401 Unauthorized"}`},
		{"bad PAT beats unknown project", "GET", "/api/v4/projects/999/deploy_tokens", "glpat-nope", "", 401, `{"message":"401 Unauthorized"}`},
		{"expired PAT", "GET", projList, patExpired, "", 401, `{"error":"invalid_token","error_description":"Token is expired. You can either do re-authorization or token refresh."}`},
		{"revoked PAT", "GET", projList, patRevoked, "", 401, `{"error":"invalid_token","error_description":"Token was revoked. You have to re-authorize from the user."}`},
		{"read_api POST", "POST", projList, patReadAPI, okBody, 403, `{"error":"insufficient_scope","error_description":"The request requires higher privileges than provided by the access token.","scope":"api"}`},
		{"read_api DELETE", "DELETE", projList + "/1", patReadAPI, "", 403, `{"error":"insufficient_scope","error_description":"The request requires higher privileges than provided by the access token.","scope":"api"}`},
		{"read_api GET", "GET", projList, patReadAPI, "", 200, `[]`},
		{"developer GET", "GET", projList, patDeveloper, "", 403, `{"message":"403 Forbidden"}`},
		{"developer POST", "POST", projList, patDeveloper, okBody, 403, `{"message":"403 Forbidden"}`},
		{"group maintainer may list group", "GET", groupList, patGroupMaint, "", 200, `[]`},
		{"group maintainer may not create group token", "POST", groupList, patGroupMaint, okBody, 403, `{"message":"403 Forbidden"}`},
		{"group maintainer may not delete group token", "DELETE", groupList + "/1", patGroupMaint, "", 403, `{"message":"403 Forbidden"}`},
		{"group owner creates group token", "POST", groupList, patOwner, okBody, 201, ""},
		{"group maintainer inherits project maintainer", "POST", projList, patGroupMaint, okBody, 201, ""},
		{"unknown project", "GET", "/api/v4/projects/999/deploy_tokens", patMaintainer, "", 404, `{"message":"404 Project Not Found"}`},
		{"unknown project path", "GET", "/api/v4/projects/games%2Fnope/deploy_tokens", patMaintainer, "", 404, `{"message":"404 Project Not Found"}`},
		{"project without membership", "GET", "/api/v4/projects/8/deploy_tokens", patMaintainer, "", 404, `{"message":"404 Project Not Found"}`},
		{"anonymous on project", "GET", projList, "", "", 404, `{"message":"404 Project Not Found"}`},
		{"anonymous create", "POST", projList, "", okBody, 404, `{"message":"404 Project Not Found"}`},
		{"unknown group", "GET", "/api/v4/groups/999/deploy_tokens", patOwner, "", 404, `{"message":"404 Group Not Found"}`},
		{"group without membership", "GET", "/api/v4/groups/4/deploy_tokens", patOwner, "", 404, `{"message":"404 Group Not Found"}`},
		{"instance list anonymous", "GET", "/api/v4/deploy_tokens", "", "", 401, `{"message":"401 Unauthorized"}`},
		{"instance list non-admin", "GET", "/api/v4/deploy_tokens", patOwner, "", 403, `{"message":"403 Forbidden"}`},
		{"instance list admin", "GET", "/api/v4/deploy_tokens", patAdmin, "", 200, `[]`},
		{"unknown token id", "GET", projList + "/42", patMaintainer, "", 404, `{"message":"404 Not found"}`},
		{"delete unknown token id", "DELETE", projList + "/42", patMaintainer, "", 404, `{"message":"404 Not found"}`},
		{"non-integer token id", "GET", projList + "/abc", patMaintainer, "", 400, `{"error":"token_id is invalid"}`},
		{"unknown route", "GET", "/api/v4/projects/7/deploy_keys", patMaintainer, "", 404, `{"error":"404 Not Found"}`},
		{"unescaped full path does not route", "GET", "/api/v4/projects/games/fleet/deploy_tokens", patMaintainer, "", 404, `{"error":"404 Not Found"}`},
		{"wrong method on collection", "PUT", projList, patMaintainer, "", 405, `{"error":"405 Not Allowed"}`},
		{"wrong method on member", "PATCH", projList + "/1", patMaintainer, "", 405, `{"error":"405 Not Allowed"}`},
		{"no update of instance list", "POST", "/api/v4/deploy_tokens", patAdmin, okBody, 405, `{"error":"405 Not Allowed"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			ct := ""
			if tc.body != "" {
				ct = "application/json"
			}
			r := e.do(tc.method, tc.path, tc.pat, ct, tc.body)
			if r.status != tc.wantStatus {
				t.Fatalf("status = %d (%s), want %d", r.status, r.body, tc.wantStatus)
			}
			if tc.wantBody != "" && r.body != tc.wantBody {
				t.Errorf("body = %s\nwant   %s", r.body, tc.wantBody)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if r.status >= 400 && r.status != 415 && len(e.emu.DeployTokens("")) != 0 {
				t.Error("a refused request changed state")
			}
		})
	}
}

func TestAuthWithClient(t *testing.T) {
	e := newEnv(t)
	if _, _, err := e.client("glpat-nope").DeployTokens.ListProjectDeployTokens(7, nil); !gitlab.HasStatusCode(err, 401) {
		t.Errorf("bad PAT: %v, want 401", err)
	}
	if _, _, err := e.client(patMaintainer).DeployTokens.ListProjectDeployTokens(999, nil); !errors.Is(err, gitlab.ErrNotFound) {
		t.Errorf("unknown project: %v, want ErrNotFound", err)
	}
	name, scopes := "n", []string{"read_registry"}
	_, _, err := e.client(patReadAPI).DeployTokens.CreateProjectDeployToken(7, &gitlab.CreateProjectDeployTokenOptions{Name: &name, Scopes: &scopes})
	if !gitlab.HasStatusCode(err, 403) {
		t.Errorf("read_api create: %v, want 403", err)
	}
	// Bearer is accepted as well as Private-Token.
	bearer, err := gitlab.NewOAuthClient(patMaintainer, gitlab.WithBaseURL(e.ts.URL), gitlab.WithoutRetries())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := bearer.DeployTokens.ListProjectDeployTokens(7, nil); err != nil {
		t.Errorf("Bearer auth: %v", err)
	}
}

func TestPagination(t *testing.T) {
	e := newEnv(t)
	for i := range 45 {
		e.emu.SeedDeployToken("project:7", fmt.Sprintf("t%02d", i), []string{"read_registry"}, nil)
	}
	c := e.client(patMaintainer)
	base := e.ts.URL + "/api/v4/projects/7/deploy_tokens"
	for _, tc := range []struct {
		page                       int64
		wantLen                    int
		wantNext, wantPrev         string
		wantFirstID                int64
		wantLink                   string
		wantNextPage, wantPrevPage int64
	}{
		{1, 20, "2", "", 1, `<` + base + `?page=2&per_page=20>; rel="next", <` + base + `?page=1&per_page=20>; rel="first", <` + base + `?page=3&per_page=20>; rel="last"`, 2, 0},
		{2, 20, "3", "1", 21, `<` + base + `?page=1&per_page=20>; rel="prev", <` + base + `?page=3&per_page=20>; rel="next", <` + base + `?page=1&per_page=20>; rel="first", <` + base + `?page=3&per_page=20>; rel="last"`, 3, 1},
		{3, 5, "", "2", 41, `<` + base + `?page=2&per_page=20>; rel="prev", <` + base + `?page=1&per_page=20>; rel="first", <` + base + `?page=3&per_page=20>; rel="last"`, 0, 2},
	} {
		t.Run(fmt.Sprint("page ", tc.page), func(t *testing.T) {
			got, resp, err := c.DeployTokens.ListProjectDeployTokens(7, &gitlab.ListProjectDeployTokensOptions{ListOptions: gitlab.ListOptions{Page: tc.page, PerPage: 20}})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.wantLen || got[0].ID != tc.wantFirstID {
				t.Errorf("page has %d items starting at %d", len(got), got[0].ID)
			}
			h := resp.Header
			for k, want := range map[string]string{
				"X-Page": fmt.Sprint(tc.page), "X-Per-Page": "20", "X-Total": "45", "X-Total-Pages": "3",
				"X-Next-Page": tc.wantNext, "X-Prev-Page": tc.wantPrev, "Link": tc.wantLink,
			} {
				if vals, ok := h[k]; !ok || vals[0] != want {
					t.Errorf("%s = %q (present %v), want %q", k, h.Get(k), ok, want)
				}
			}
			if resp.TotalItems != 45 || resp.TotalPages != 3 || resp.CurrentPage != tc.page || resp.NextPage != tc.wantNextPage || resp.PreviousPage != tc.wantPrevPage {
				t.Errorf("client saw %+v", resp)
			}
		})
	}

	t.Run("Scan follows Link", func(t *testing.T) {
		e.emu.ResetRequests()
		opt := &gitlab.ListProjectDeployTokensOptions{ListOptions: gitlab.ListOptions{PerPage: 20}}
		var ids []int64
		for tok, err := range gitlab.Scan2(func(p gitlab.PaginationOptionFunc) ([]*gitlab.DeployToken, *gitlab.Response, error) {
			return c.DeployTokens.ListProjectDeployTokens("games/fleet", opt, p)
		}) {
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, tok.ID)
		}
		if len(ids) != 45 || ids[0] != 1 || ids[44] != 45 || !slices.IsSorted(ids) {
			t.Errorf("scanned %d ids: %v", len(ids), ids)
		}
		reqs := e.emu.Requests()
		if len(reqs) != 3 {
			t.Fatalf("Scan made %d requests, want 3", len(reqs))
		}
		if reqs[2].RawQuery != "page=3&per_page=20" || reqs[2].Path != "/api/v4/projects/games%2Ffleet/deploy_tokens" {
			t.Errorf("third request = %s?%s", reqs[2].Path, reqs[2].RawQuery)
		}
	})

	t.Run("limits and errors", func(t *testing.T) {
		for _, tc := range []struct {
			query      string
			wantStatus int
			wantBody   string
			wantPer    string
			wantCount  int
		}{
			{"", 200, "", "20", 20},
			{"?per_page=150", 200, "", "100", 45},
			{"?per_page=0", 400, `{"error":"per_page has a value not allowed"}`, "", 0},
			{"?per_page=abc", 400, `{"error":"per_page is invalid"}`, "", 0},
			{"?page=x", 400, `{"error":"page is invalid"}`, "", 0},
			{"?active=maybe", 400, `{"error":"active is invalid"}`, "", 0},
			{"?page=9", 200, "[]", "20", 0},
		} {
			r := e.do("GET", "/api/v4/projects/7/deploy_tokens"+tc.query, patMaintainer, "", "")
			if r.status != tc.wantStatus || (tc.wantBody != "" && r.body != tc.wantBody) {
				t.Errorf("%s: %d %s", tc.query, r.status, r.body)
				continue
			}
			if r.status != 200 {
				continue
			}
			var items []json.RawMessage
			if err := json.Unmarshal([]byte(r.body), &items); err != nil || len(items) != tc.wantCount {
				t.Errorf("%s: %d items (%v), want %d", tc.query, len(items), err, tc.wantCount)
			}
			if got := r.header.Get("X-Per-Page"); got != tc.wantPer {
				t.Errorf("%s: X-Per-Page = %q, want %q", tc.query, got, tc.wantPer)
			}
		}
		r := e.do("GET", "/api/v4/projects/7/deploy_tokens?page=9", patMaintainer, "", "")
		if r.header.Get("X-Prev-Page") != "" || r.header.Get("X-Next-Page") != "" || strings.Contains(r.header.Get("Link"), `rel="prev"`) {
			t.Errorf("out-of-range page headers: %v", r.header)
		}
	})

	t.Run("active filter keeps other params in Link", func(t *testing.T) {
		e.emu.RevokeDeployTokenInUI(1)
		past := fixedNow.Add(-time.Minute)
		e.emu.SeedDeployToken("project:7", "stale", []string{"read_registry"}, &past)
		r := e.do("GET", "/api/v4/projects/7/deploy_tokens?active=true&per_page=40", patMaintainer, "", "")
		if r.status != 200 || r.header.Get("X-Total") != "44" {
			t.Fatalf("active list: %d total=%s", r.status, r.header.Get("X-Total"))
		}
		if strings.Contains(r.body, `"id":1,`) || strings.Contains(r.body, `"stale"`) {
			t.Error("active=true returned a revoked or expired token")
		}
		if !strings.Contains(r.header.Get("Link"), "?active=true&page=2&per_page=40>") {
			t.Errorf("Link lost active=true: %s", r.header.Get("Link"))
		}
		all := e.do("GET", "/api/v4/projects/7/deploy_tokens?per_page=100", patMaintainer, "", "")
		if all.header.Get("X-Total") != "46" {
			t.Errorf("unfiltered total = %s, want 46 (revoked rows stay listed)", all.header.Get("X-Total"))
		}
	})

	t.Run("empty list", func(t *testing.T) {
		r := e.do("GET", "/api/v4/groups/3/deploy_tokens", patOwner, "", "")
		if r.body != "[]" || r.header.Get("X-Total-Pages") != "1" || r.header.Get("X-Total") != "0" {
			t.Errorf("empty list: %s %v", r.body, r.header)
		}
	})

	t.Run("HEAD", func(t *testing.T) {
		r := e.do("HEAD", "/api/v4/projects/7/deploy_tokens", patMaintainer, "", "")
		if r.status != 200 || r.body != "" || r.header.Get("X-Total") == "" {
			t.Errorf("HEAD = %d %q %v", r.status, r.body, r.header)
		}
	})
}

func TestExpiredFlagLagsAuthentication(t *testing.T) {
	e := newEnv(t) // clock at 2026-05-10T12:00Z
	c := e.client(patMaintainer)
	hourAgo := fixedNow.Add(-time.Hour)
	yesterday := time.Date(2026, 5, 9, 23, 59, 59, 0, time.UTC)
	exact := fixedNow
	lagging := e.emu.SeedDeployToken("project:7", "lagging", []string{"read_registry"}, &hourAgo)
	old := e.emu.SeedDeployToken("project:7", "old", []string{"read_registry"}, &yesterday)
	edge := e.emu.SeedDeployToken("project:7", "edge", []string{"read_registry"}, &exact)

	got, _, err := c.DeployTokens.GetProjectDeployToken(7, lagging.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Expired {
		t.Error("expired=true an hour after expiry on the same day; GitLab compares with midnight")
	}
	if _, ok := e.emu.Authenticate(lagging.Username, lagging.Token); ok {
		t.Error("Authenticate accepted a token past its exact expires_at")
	}
	if got, _, _ := c.DeployTokens.GetProjectDeployToken(7, old.ID); got == nil || !got.Expired {
		t.Error("token that expired yesterday should say expired=true")
	}
	if _, ok := e.emu.Authenticate(edge.Username, edge.Token); !ok {
		t.Error("expires_at == now must still authenticate (>=)")
	}
	e.emu.Advance(time.Nanosecond)
	if _, ok := e.emu.Authenticate(edge.Username, edge.Token); ok {
		t.Error("one nanosecond past expires_at must not authenticate")
	}
	if _, ok := e.emu.Authenticate("gitlab+deploy-token-999", edge.Token); ok {
		t.Error("Authenticate ignored the username")
	}

	e.emu.SetNow(time.Date(2026, 5, 11, 0, 0, 0, 0, time.UTC))
	if got, _, _ := c.DeployTokens.GetProjectDeployToken(7, lagging.ID); got == nil || !got.Expired {
		t.Error("after midnight the flag should catch up")
	}

	never := e.emu.SeedDeployToken("project:7", "never", []string{"read_registry"}, nil)
	e.emu.Advance(100 * 365 * 24 * time.Hour)
	if _, ok := e.emu.Authenticate(never.Username, never.Token); !ok {
		t.Error("never-expiring token rejected")
	}
	e.emu.RevokeDeployTokenInUI(never.ID)
	if _, ok := e.emu.Authenticate(never.Username, never.Token); ok {
		t.Error("revoked token accepted")
	}
	rows := e.emu.DeployTokens("project:7")
	if len(rows) != 4 || !rows[3].Revoked {
		t.Errorf("revoke should keep the row: %+v", rows)
	}
}

func TestPATExpiresWithClock(t *testing.T) {
	e := newEnv(t)
	c := e.client(patMaintainer) // expires fixedNow+300d
	if _, _, err := c.DeployTokens.ListProjectDeployTokens(7, nil); err != nil {
		t.Fatal(err)
	}
	e.emu.Advance(300 * 24 * time.Hour)
	if _, _, err := c.DeployTokens.ListProjectDeployTokens(7, nil); err != nil {
		t.Errorf("PAT at exactly its expiry should still work: %v", err)
	}
	e.emu.Advance(time.Second)
	_, _, err := c.DeployTokens.ListProjectDeployTokens(7, nil)
	var er *gitlab.ErrorResponse
	if !errors.As(err, &er) || er.StatusCode != 401 || !strings.Contains(string(er.Body), "Token is expired") {
		t.Errorf("expired PAT: %v", err)
	}
}

func TestConcurrentCreates(t *testing.T) {
	e := newEnv(t)
	c := e.client(patOwner)
	var wg sync.WaitGroup
	ids := make(chan int64, 40)
	for i := range 40 {
		wg.Go(func() {
			o := projectOps(7)
			if i%2 == 1 {
				o = groupOps(3)
			}
			tok, _, err := o.create(c, "c", []string{"read_registry"}, nil)
			if err != nil {
				t.Error(err)
				return
			}
			ids <- tok.ID
		})
	}
	wg.Wait()
	close(ids)
	seen := map[int64]bool{}
	for id := range ids {
		if seen[id] {
			t.Errorf("duplicate id %d", id)
		}
		seen[id] = true
	}
	if len(seen) != 40 || len(e.emu.Requests()) != 40 || e.emu.WriteCount() != 40 {
		t.Errorf("ids=%d requests=%d writes=%d", len(seen), len(e.emu.Requests()), e.emu.WriteCount())
	}
}
