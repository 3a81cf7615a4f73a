package gitlabemu

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	gitlab "gitlab.com/gitlab-org/api/client-go/v2"
)

const selfPath = "/api/v4/personal_access_tokens/self"

func TestSelfTokenWithClient(t *testing.T) {
	e := newEnv(t)
	got, resp, err := e.client(patMaintainer).PersonalAccessTokens.GetSinglePersonalAccessToken()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	// newEnv adds patMaintainer first, with ExpiresAt = fixedNow + 300 days.
	if got.ID != 1 || got.Name != "rotator" || got.Revoked || !got.Active || got.UserID != 1 ||
		!slices.Equal(got.Scopes, []string{"api"}) || got.LastUsedAt != nil || got.Token != "" {
		t.Errorf("token = %+v", got)
	}
	if got.CreatedAt == nil || !got.CreatedAt.Equal(fixedNow) {
		t.Errorf("created_at = %v, want %v", got.CreatedAt, fixedNow)
	}
	want := time.Date(2027, 3, 6, 0, 0, 0, 0, time.UTC)
	if got.ExpiresAt == nil || !time.Time(*got.ExpiresAt).Equal(want) {
		t.Errorf("expires_at = %v, want %v", got.ExpiresAt, want)
	}

	// A token that never expires has a null expires_at.
	never, _, err := e.client(patOwner).PersonalAccessTokens.GetSinglePersonalAccessToken()
	if err != nil {
		t.Fatal(err)
	}
	if never.ExpiresAt != nil || never.ID == got.ID || !never.Active {
		t.Errorf("never-expiring token = %+v", never)
	}

	reqs := e.emu.Requests()
	if len(reqs) != 2 || reqs[0].Endpoint != EndpointGetPersonalAccessTokenSelf ||
		reqs[0].Path != selfPath || reqs[0].Status != 200 || reqs[0].Scope != "" {
		t.Errorf("recorded %+v", reqs)
	}
}

func TestSelfTokenBody(t *testing.T) {
	e := newEnv(t)
	r := e.do("GET", selfPath, patOwner, "", "")
	want := `{"id":2,"name":"rotator","revoked":false,"created_at":"2026-05-10T12:00:00.000Z","scopes":["api"],"user_id":1,"last_used_at":null,"active":true,"expires_at":null}`
	if r.status != 200 || r.body != want {
		t.Errorf("%d %s\nwant %s", r.status, r.body, want)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	r = e.do("GET", selfPath, patMaintainer, "", "")
	want = `{"id":1,"name":"rotator","revoked":false,"created_at":"2026-05-10T12:00:00.000Z","scopes":["api"],"user_id":1,"last_used_at":null,"active":true,"expires_at":"2027-03-06"}`
	if r.status != 200 || r.body != want {
		t.Errorf("%d %s\nwant %s", r.status, r.body, want)
	}
	if r := e.do("HEAD", selfPath, patOwner, "", ""); r.status != 200 || r.body != "" {
		t.Errorf("HEAD: %d %q", r.status, r.body)
	}
}

func TestSelfTokenRefusals(t *testing.T) {
	unauthorized := `{"message":"401 Unauthorized"}`
	for _, tc := range []struct {
		name, method, pat string
		wantStatus        int
		wantBody          string
		wantAuthenticate  bool
	}{
		{"anonymous", "GET", "", 401, unauthorized, false},
		{"unknown token", "GET", "glpat-nope", 401, unauthorized, false},
		{"expired token", "GET", patExpired, 401, `{"error":"invalid_token","error_description":"` + expiredDescription + `"}`, true},
		{"revoked token", "GET", patRevoked, 401, `{"error":"invalid_token","error_description":"` + revokedDescription + `"}`, true},
		{"not emulated: self-revoke", "DELETE", patMaintainer, 405, `{"error":"405 Not Allowed"}`, false},
		{"wrong method", "POST", patMaintainer, 405, `{"error":"405 Not Allowed"}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			r := e.do(tc.method, selfPath, tc.pat, "", "")
			if r.status != tc.wantStatus || r.body != tc.wantBody {
				t.Errorf("%d %s\nwant %d %s", r.status, r.body, tc.wantStatus, tc.wantBody)
			}
			if got := r.header.Get("WWW-Authenticate") != ""; got != tc.wantAuthenticate {
				t.Errorf("WWW-Authenticate = %q", r.header.Get("WWW-Authenticate"))
			}
			if tc.wantStatus == 405 && r.header.Get("Allow") != "GET, HEAD" {
				t.Errorf("Allow = %q", r.header.Get("Allow"))
			}
			wantEndpoint := EndpointGetPersonalAccessTokenSelf
			if tc.method != "GET" {
				wantEndpoint = EndpointUnknown
			}
			if reqs := e.emu.Requests(); len(reqs) != 1 || reqs[0].Endpoint != wantEndpoint {
				t.Errorf("recorded %+v", reqs)
			}
		})
	}
}

func TestSelfTokenRefusalsWithClient(t *testing.T) {
	e := newEnv(t)
	for _, pat := range []string{"glpat-nope", patExpired, patRevoked} {
		if _, _, err := e.client(pat).PersonalAccessTokens.GetSinglePersonalAccessToken(); !gitlab.HasStatusCode(err, 401) {
			t.Errorf("%s: %v, want 401", pat, err)
		}
	}
}

func TestSelfTokenAnyScope(t *testing.T) {
	e := newEnv(t)
	e.emu.AddAccessToken(AccessToken{Token: "glpat-readuser-0000000", Scopes: []string{"read_user"}})
	for _, tc := range []struct {
		pat    string
		scopes []string
	}{
		{patReadAPI, []string{"read_api"}},
		{"glpat-readuser-0000000", []string{"read_user"}},
	} {
		got, _, err := e.client(tc.pat).PersonalAccessTokens.GetSinglePersonalAccessToken()
		if err != nil {
			t.Errorf("%s: %v", tc.pat, err)
			continue
		}
		if !slices.Equal(got.Scopes, tc.scopes) || !got.Active {
			t.Errorf("%s: %+v", tc.pat, got)
		}
	}
	// The same read_user token may not touch deploy tokens.
	if r := e.do("GET", "/api/v4/projects/7/deploy_tokens", "glpat-readuser-0000000", "", ""); r.status != 403 {
		t.Errorf("read_user on deploy tokens: %d %s", r.status, r.body)
	}
	// Bearer works as well as Private-Token.
	bearer, err := gitlab.NewOAuthClient(patMaintainer, gitlab.WithBaseURL(e.ts.URL), gitlab.WithoutRetries())
	if err != nil {
		t.Fatal(err)
	}
	if got, _, err := bearer.PersonalAccessTokens.GetSinglePersonalAccessToken(); err != nil || got.ID != 1 {
		t.Errorf("Bearer: %+v, %v", got, err)
	}
}

func TestSelfTokenIDAndCreatedAtAreStable(t *testing.T) {
	e := newEnv(t)
	c := e.client(patOwner)
	first, _, err := c.PersonalAccessTokens.GetSinglePersonalAccessToken()
	if err != nil {
		t.Fatal(err)
	}
	// Replacing the token (same secret, new expiry) keeps id and created_at,
	// even after the clock moved.
	e.emu.Advance(48 * time.Hour)
	exp := time.Date(2026, 9, 30, 0, 0, 0, 0, time.UTC)
	e.emu.AddAccessToken(AccessToken{Token: patOwner, Scopes: []string{"api"}, ExpiresAt: &exp})
	again, _, err := c.PersonalAccessTokens.GetSinglePersonalAccessToken()
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != first.ID || !again.CreatedAt.Equal(*first.CreatedAt) {
		t.Errorf("after replace: %+v, before %+v", again, first)
	}
	if again.ExpiresAt == nil || again.ExpiresAt.String() != "2026-09-30" {
		t.Errorf("expires_at = %v", again.ExpiresAt)
	}
	// A new token gets a new id and the current clock.
	e.emu.AddAccessToken(AccessToken{Token: "glpat-newcomer-0000000", Scopes: []string{"api"}})
	fresh, _, err := e.client("glpat-newcomer-0000000").PersonalAccessTokens.GetSinglePersonalAccessToken()
	if err != nil {
		t.Fatal(err)
	}
	if fresh.ID != 9 || !fresh.CreatedAt.Equal(fixedNow.Add(48*time.Hour)) {
		t.Errorf("new token: %+v", fresh)
	}
}

func TestSelfTokenExpiryDateAndBoundary(t *testing.T) {
	e := newEnv(t)
	// ExpiresAt is shown as its UTC date: 01:00 at +02:00 is still the
	// previous day in UTC.
	zone := time.FixedZone("CEST", 2*3600)
	exp := time.Date(2026, 6, 1, 1, 0, 0, 0, zone)
	e.emu.AddAccessToken(AccessToken{Token: "glpat-zoned-0000000000", Scopes: []string{"read_api"}, ExpiresAt: &exp})
	if r := e.do("GET", selfPath, "glpat-zoned-0000000000", "", ""); r.status != 200 || !strings.Contains(r.body, `"expires_at":"2026-05-31"`) {
		t.Errorf("%d %s", r.status, r.body)
	}

	// A midnight expiry works up to that instant and is refused after it.
	midnight := time.Date(2026, 5, 20, 0, 0, 0, 0, time.UTC)
	e.emu.AddAccessToken(AccessToken{Token: "glpat-midnight-0000000", Scopes: []string{"api"}, ExpiresAt: &midnight})
	e.emu.SetNow(midnight)
	if r := e.do("GET", selfPath, "glpat-midnight-0000000", "", ""); r.status != 200 || !strings.Contains(r.body, `"active":true,"expires_at":"2026-05-20"`) {
		t.Errorf("at expiry: %d %s", r.status, r.body)
	}
	e.emu.Advance(time.Second)
	if r := e.do("GET", selfPath, "glpat-midnight-0000000", "", ""); r.status != 401 || !strings.Contains(r.body, expiredDescription) {
		t.Errorf("after expiry: %d %s", r.status, r.body)
	}
}

func TestSelfTokenFaults(t *testing.T) {
	e := newEnv(t)
	id := e.emu.InjectFault(Fault{Endpoint: EndpointGetPersonalAccessTokenSelf, OnCall: 1, Status: 503})
	c := e.client(patMaintainer)
	if _, _, err := c.PersonalAccessTokens.GetSinglePersonalAccessToken(); !gitlab.HasStatusCode(err, 503) {
		t.Fatalf("faulted call: %v, want 503", err)
	}
	if _, _, err := c.PersonalAccessTokens.GetSinglePersonalAccessToken(); err != nil {
		t.Fatalf("after the fault: %v", err)
	}
	// Deploy-token calls do not count against it.
	if _, _, err := c.DeployTokens.ListProjectDeployTokens(7, nil); err != nil {
		t.Fatal(err)
	}
	for _, f := range e.emu.Faults() {
		if f.ID == id && (f.Seen != 2 || f.Fired != 1) {
			t.Errorf("fault counters %+v", f)
		}
	}
	// The control API knows the name too.
	var out struct{ ID int }
	if st := e.controlJSON("POST", "/-/emulator/faults", map[string]any{"endpoint": EndpointGetPersonalAccessTokenSelf, "status": 500}, &out); st != 201 || out.ID == 0 {
		t.Errorf("control API fault: %d %+v", st, out)
	}
}
