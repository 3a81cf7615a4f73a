package gitlabemu

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

const registryScopeRead = "read_registry"

var libtrustKIDRE = regexp.MustCompile(`\A[A-Z2-7]{4}(:[A-Z2-7]{4}){11}\z`)

// jwtGet calls /jwt/auth with Basic auth (none when user and pass are both
// empty) and the given query.
func (e *env) jwtGet(method string, q url.Values, user, pass string) rawResp {
	e.t.Helper()
	req, err := http.NewRequest(method, e.ts.URL+"/jwt/auth?"+q.Encode(), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if user != "" || pass != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return rawResp{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func registryQuery(scopes ...string) url.Values {
	q := url.Values{"service": {"container_registry"}}
	for _, s := range scopes {
		q.Add("scope", s)
	}
	return q
}

type testJWK struct {
	Kty, Alg, Use, Kid, N, E string
}

// jwksKey decodes the emulator's JWKS into its single RSA public key.
func jwksKey(t *testing.T, raw []byte) (testJWK, *rsa.PublicKey) {
	t.Helper()
	var set struct {
		Keys []testJWK `json:"keys"`
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		t.Fatalf("JWKS %s: %v", raw, err)
	}
	if len(set.Keys) != 1 {
		t.Fatalf("JWKS has %d keys, want 1: %s", len(set.Keys), raw)
	}
	k := set.Keys[0]
	if k.Kty != "RSA" || k.Alg != "RS256" || k.Use != "sig" || !libtrustKIDRE.MatchString(k.Kid) {
		t.Fatalf("JWK = %+v", k)
	}
	if strings.ContainsAny(k.N+k.E, "=+/") {
		t.Fatalf("n/e must be unpadded base64url: %+v", k)
	}
	n, err := base64.RawURLEncoding.DecodeString(k.N)
	if err != nil {
		t.Fatal(err)
	}
	e, err := base64.RawURLEncoding.DecodeString(k.E)
	if err != nil {
		t.Fatal(err)
	}
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	if pub.N.BitLen() != 2048 || pub.E != 65537 {
		t.Fatalf("key: %d bits, e=%d", pub.N.BitLen(), pub.E)
	}
	return k, pub
}

type jwtHeader struct {
	Alg string `json:"alg"`
	Typ string `json:"typ"`
	Kid string `json:"kid"`
}

// decodeRegistryJWT checks the signature against the emulator's JWKS and
// returns header and claims.
func (e *env) decodeRegistryJWT(body string) (jwtHeader, registryClaims) {
	e.t.Helper()
	var out map[string]any
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		e.t.Fatalf("body %q: %v", body, err)
	}
	if len(out) != 1 {
		e.t.Fatalf("body has keys other than token: %s", body)
	}
	tok, _ := out["token"].(string)
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		e.t.Fatalf("token %q is not a compact JWS", tok)
	}
	dec := func(s string) []byte {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			e.t.Fatalf("segment %q: %v", s, err)
		}
		return b
	}
	var h jwtHeader
	if err := json.Unmarshal(dec(parts[0]), &h); err != nil {
		e.t.Fatal(err)
	}
	var c registryClaims
	if err := json.Unmarshal(dec(parts[1]), &c); err != nil {
		e.t.Fatal(err)
	}
	jwk, pub := jwksKey(e.t, e.emu.JWKS())
	if h != (jwtHeader{"RS256", "JWT", jwk.Kid}) {
		e.t.Fatalf("header = %+v, want RS256/JWT/%s", h, jwk.Kid)
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], dec(parts[2])); err != nil {
		e.t.Fatalf("signature does not verify with the JWKS key: %v", err)
	}
	return h, c
}

func (e *env) wantAccess(resp rawResp, want []registryAccess) registryClaims {
	e.t.Helper()
	if resp.status != http.StatusOK {
		e.t.Fatalf("status %d, body %s", resp.status, resp.body)
	}
	_, c := e.decodeRegistryJWT(resp.body)
	if c.Access == nil || !reflect.DeepEqual(c.Access, want) && !(len(c.Access) == 0 && len(want) == 0) {
		e.t.Fatalf("access = %+v, want %+v", c.Access, want)
	}
	return c
}

func wantRegistryError(t *testing.T, r rawResp, status int, code, msg string) {
	t.Helper()
	var body struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if err := json.Unmarshal([]byte(r.body), &body); err != nil || len(body.Errors) != 1 ||
		body.Errors[0].Code != code || body.Errors[0].Message != msg {
		t.Fatalf("body %s, want code %s message %q", r.body, code, msg)
	}
}

func wantDenied(t *testing.T, r rawResp) {
	t.Helper()
	wantRegistryError(t, r, http.StatusUnauthorized, "UNAUTHORIZED", jwtAccessDeniedMessage)
	if got := r.header.Get("WWW-Authenticate"); got != `Basic realm="GitLab"` {
		t.Fatalf("WWW-Authenticate = %q", got)
	}
}

func pull(name string) registryAccess {
	return registryAccess{Type: "repository", Name: name, Actions: []string{"pull"}}
}

func TestJWTAuthProjectTokenSuccess(t *testing.T) {
	e := newEnv(t)
	exp := fixedNow.Add(time.Hour)
	dt := e.emu.SeedDeployToken("project:7", "registry", []string{registryScopeRead}, &exp)
	q := registryQuery("repository:games/fleet:pull")
	q.Set("account", dt.Username)
	q.Set("client_id", "docker")
	q.Set("offline_token", "true")

	before := time.Now()
	resp := e.jwtGet(http.MethodGet, q, dt.Username, dt.Token)
	after := time.Now()
	c := e.wantAccess(resp, []registryAccess{pull("games/fleet")})

	if c.Issuer != "gitlab-issuer" || c.Issuer != e.emu.Issuer() || c.Subject != dt.Username || c.Audience != "container_registry" {
		t.Fatalf("claims = %+v", c)
	}
	// Real wall clock, not the emulator clock.
	if c.IssuedAt < before.Unix() || c.IssuedAt > after.Unix() {
		t.Fatalf("iat %d not within real time [%d, %d]", c.IssuedAt, before.Unix(), after.Unix())
	}
	if c.NotBefore != c.IssuedAt-5 || c.Expires != c.IssuedAt+300 {
		t.Fatalf("iat %d nbf %d exp %d: want nbf = iat-5, exp = iat+300", c.IssuedAt, c.NotBefore, c.Expires)
	}
	if !regexp.MustCompile(`\A[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\z`).MatchString(c.JTI) {
		t.Fatalf("jti = %q", c.JTI)
	}
	_, c2 := e.decodeRegistryJWT(e.jwtGet(http.MethodGet, q, dt.Username, dt.Token).body)
	if c2.JTI == c.JTI {
		t.Fatal("jti repeats")
	}

	reqs := e.emu.Requests()
	if len(reqs) != 2 || reqs[0].Endpoint != EndpointJWTAuth || reqs[0].Status != 200 ||
		reqs[0].Path != "/jwt/auth" || reqs[0].Method != "GET" || reqs[0].RawQuery != q.Encode() {
		t.Fatalf("requests = %+v", reqs)
	}
	if e.emu.WriteCount() != 0 {
		t.Fatalf("WriteCount = %d", e.emu.WriteCount())
	}

	// The control route serves the same key set.
	cr := e.do("GET", "/-/emulator/jwks", "", "", "")
	if cr.status != 200 || cr.body != string(e.emu.JWKS()) || cr.header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /-/emulator/jwks: %d %s", cr.status, cr.body)
	}
	if len(e.emu.Requests()) != 2 {
		t.Fatal("control request was recorded")
	}
}

func TestJWTAuthRepositoryPaths(t *testing.T) {
	e := newEnv(t)
	e.emu.AddProject(9, "Games/Fleet-Tools") // mixed case: registry names are lowercase
	dt := e.emu.SeedDeployToken("project:7", "registry", []string{registryScopeRead}, nil)
	rw := e.emu.SeedDeployToken("project:7", "rw", []string{registryScopeRead, "write_registry"}, nil)
	wo := e.emu.SeedDeployToken("project:7", "wo", []string{"write_registry"}, nil)
	tools := e.emu.SeedDeployToken("project:9", "tools", []string{registryScopeRead}, nil)

	cases := []struct {
		name   string
		tok    DeployToken
		scopes []string
		want   []registryAccess
	}{
		{"sub-path", dt, []string{"repository:games/fleet/sub/image:pull"}, []registryAccess{pull("games/fleet/sub/image")}},
		{"unrelated project", dt, []string{"repository:other/app:pull"}, nil},
		{"prefix without slash", dt, []string{"repository:games/fleetx:pull"}, nil},
		{"unknown project", dt, []string{"repository:nope/nope:pull"}, nil},
		{"group path is no project", dt, []string{"repository:games:pull"}, nil},
		{"no scope at all (docker login)", dt, nil, nil},
		{"catalog is admin only", dt, []string{"registry:catalog:*"}, nil},
		{"push needs write_registry", dt, []string{"repository:games/fleet:pull,push"}, []registryAccess{pull("games/fleet")}},
		{"push only: omitted", dt, []string{"repository:games/fleet:push"}, nil},
		{"delete and * never", rw, []string{"repository:games/fleet:delete,*"}, nil},
		{"write_registry pushes", rw, []string{"repository:games/fleet:pull,push"},
			[]registryAccess{{Type: "repository", Name: "games/fleet", Actions: []string{"pull", "push"}}}},
		{"write_registry alone cannot pull", wo, []string{"repository:games/fleet:pull,push"},
			[]registryAccess{{Type: "repository", Name: "games/fleet", Actions: []string{"push"}}}},
		{"several scope params", dt, []string{"repository:games/fleet:pull", "repository:other/app:pull", "repository:games/fleet/cache:pull"},
			[]registryAccess{pull("games/fleet"), pull("games/fleet/cache")}},
		{"space-separated scopes", dt, []string{"repository:games/fleet:pull repository:games/fleet/x:pull"},
			[]registryAccess{pull("games/fleet"), pull("games/fleet/x")}},
		{"longest project wins", dt, []string{"repository:games/fleet-tools/img:pull"}, nil},
		{"lowercased path", tools, []string{"repository:games/fleet-tools/img:pull"}, []registryAccess{pull("games/fleet-tools/img")}},
		{"original case is no registry path", tools, []string{"repository:Games/Fleet-Tools:pull"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			e.wantAccess(e.jwtGet(http.MethodGet, registryQuery(tc.scopes...), tc.tok.Username, tc.tok.Token), tc.want)
		})
	}
}

func TestJWTAuthEmptyAccessIsArray(t *testing.T) {
	e := newEnv(t)
	dt := e.emu.SeedDeployToken("project:7", "registry", []string{registryScopeRead}, nil)
	r := e.jwtGet(http.MethodGet, registryQuery("repository:other/app:pull"), dt.Username, dt.Token)
	var out struct{ Token string }
	if err := json.Unmarshal([]byte(r.body), &out); err != nil {
		t.Fatal(err)
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(out.Token, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(payload), `"access":[]`) {
		t.Fatalf("payload %s: want \"access\":[]", payload)
	}
}

func TestJWTAuthRefusals(t *testing.T) {
	e := newEnv(t)
	exp := fixedNow.Add(time.Hour)
	dt := e.emu.SeedDeployToken("project:7", "registry", []string{registryScopeRead}, &exp)
	revoked := e.emu.SeedDeployToken("project:7", "revoked", []string{registryScopeRead}, nil)
	e.emu.RevokeDeployTokenInUI(revoked.ID)
	repoOnly := e.emu.SeedDeployToken("project:7", "repo", []string{"read_repository"}, nil)
	q := registryQuery("repository:games/fleet:pull")

	t.Run("revoked", func(t *testing.T) {
		wantDenied(t, e.jwtGet(http.MethodGet, q, revoked.Username, revoked.Token))
	})
	t.Run("wrong username", func(t *testing.T) {
		wantDenied(t, e.jwtGet(http.MethodGet, q, repoOnly.Username, dt.Token))
		wantDenied(t, e.jwtGet(http.MethodGet, q, "gitlab+deploy-token-999", dt.Token))
	})
	t.Run("wrong secret", func(t *testing.T) {
		wantDenied(t, e.jwtGet(http.MethodGet, q, dt.Username, repoOnly.Token))
		wantDenied(t, e.jwtGet(http.MethodGet, q, dt.Username, ""))
	})
	t.Run("no credentials", func(t *testing.T) {
		wantDenied(t, e.jwtGet(http.MethodGet, q, "", ""))
	})
	t.Run("no registry scope", func(t *testing.T) {
		wantRegistryError(t, e.jwtGet(http.MethodGet, q, repoOnly.Username, repoOnly.Token), http.StatusForbidden, "DENIED", "access forbidden")
	})
	t.Run("unknown service", func(t *testing.T) {
		for _, svc := range []string{"dependency_proxy_x", "", "Container_Registry"} {
			q := registryQuery("repository:games/fleet:pull")
			q.Set("service", svc)
			if r := e.jwtGet(http.MethodGet, q, dt.Username, dt.Token); r.status != 404 || r.body != "" {
				t.Fatalf("service %q: %d %q", svc, r.status, r.body)
			}
		}
		// Authentication runs before the service lookup, as in GitLab.
		q := registryQuery()
		q.Set("service", "nope")
		wantDenied(t, e.jwtGet(http.MethodGet, q, dt.Username, "gldt-wrong"))
	})
	t.Run("other methods have no route", func(t *testing.T) {
		r := e.jwtGet(http.MethodPost, q, dt.Username, dt.Token)
		if r.status != 404 {
			t.Fatalf("POST: %d %s", r.status, r.body)
		}
		if reqs := e.emu.Requests(); reqs[len(reqs)-1].Endpoint != EndpointUnknown {
			t.Fatalf("POST recorded as %q", reqs[len(reqs)-1].Endpoint)
		}
	})
	t.Run("expiry on the exact timestamp, emulator clock", func(t *testing.T) {
		e.emu.SetNow(exp)
		e.wantAccess(e.jwtGet(http.MethodGet, q, dt.Username, dt.Token), []registryAccess{pull("games/fleet")})
		e.emu.SetNow(exp.Add(time.Microsecond))
		wantDenied(t, e.jwtGet(http.MethodGet, q, dt.Username, dt.Token))
		e.emu.Advance(30 * 24 * time.Hour)
		wantDenied(t, e.jwtGet(http.MethodGet, q, dt.Username, dt.Token))
	})
}

func TestJWTAuthGroupToken(t *testing.T) {
	e := newEnv(t)
	e.emu.AddGroup(5, "studio")
	e.emu.AddGroup(6, "studio/sub")
	e.emu.AddProject(9, "studio/sub/game")
	e.emu.AddProject(10, "studio/tool")
	e.emu.AddProject(11, "studiox/app")
	gt := e.emu.SeedDeployToken("group:5", "registry", []string{registryScopeRead}, nil)
	sub := e.emu.SeedDeployToken("group:6", "registry", []string{registryScopeRead}, nil)

	r := e.jwtGet(http.MethodGet, registryQuery(
		"repository:studio/sub/game:pull",
		"repository:studio/sub/game/worker:pull",
		"repository:studio/tool:pull",
		"repository:studio/unknown:pull", // no such project
		"repository:studiox/app:pull",
		"repository:games/fleet:pull",
	), gt.Username, gt.Token)
	c := e.wantAccess(r, []registryAccess{pull("studio/sub/game"), pull("studio/sub/game/worker"), pull("studio/tool")})
	if c.Subject != gt.Username {
		t.Fatalf("sub = %q", c.Subject)
	}

	r = e.jwtGet(http.MethodGet, registryQuery("repository:studio/sub/game:pull", "repository:studio/tool:pull"), sub.Username, sub.Token)
	e.wantAccess(r, []registryAccess{pull("studio/sub/game")})
}

func TestJWTAuthFault(t *testing.T) {
	e := newEnv(t)
	dt := e.emu.SeedDeployToken("project:7", "registry", []string{registryScopeRead}, nil)
	id := e.emu.InjectFault(Fault{Endpoint: EndpointJWTAuth, OnCall: 1, Status: 503})
	q := registryQuery("repository:games/fleet:pull")

	if r := e.jwtGet(http.MethodGet, q, dt.Username, dt.Token); r.status != 503 || r.body != `{"message":"503 Service Unavailable"}` {
		t.Fatalf("1st call: %d %s", r.status, r.body)
	}
	e.wantAccess(e.jwtGet(http.MethodGet, q, dt.Username, dt.Token), []registryAccess{pull("games/fleet")})

	reqs := e.emu.Requests()
	if len(reqs) != 2 || reqs[0].Fault != id || reqs[0].Status != 503 || reqs[1].Fault != 0 || reqs[1].Status != 200 {
		t.Fatalf("requests = %+v", reqs)
	}
	if f := e.emu.Faults(); len(f) != 1 || f[0].Seen != 2 || f[0].Fired != 1 {
		t.Fatalf("faults = %+v", f)
	}

	// A fault on the deploy-token API leaves /jwt/auth alone, and jwt_auth
	// is accepted over the control API too.
	e.emu.ClearFaults()
	e.emu.InjectFault(Fault{Endpoint: EndpointListDeployTokens, Status: 500})
	e.wantAccess(e.jwtGet(http.MethodGet, q, dt.Username, dt.Token), []registryAccess{pull("games/fleet")})
	var out struct{ ID int }
	if st := e.controlJSON("POST", "/-/emulator/faults", map[string]any{"endpoint": EndpointJWTAuth, "status": 500}, &out); st != 201 || out.ID == 0 {
		t.Fatalf("control fault: %d", st)
	}
	if r := e.jwtGet(http.MethodGet, q, dt.Username, dt.Token); r.status != 500 {
		t.Fatalf("after control fault: %d", r.status)
	}
}

func TestJWKSStable(t *testing.T) {
	emu := New()
	a, b := emu.JWKS(), emu.JWKS()
	if string(a) != string(b) {
		t.Fatal("JWKS changes between calls")
	}
	a[0] = 'X'
	if string(emu.JWKS()) != string(b) {
		t.Fatal("JWKS returns shared memory")
	}
	k, pub := jwksKey(t, b)
	kid, err := libtrustKeyID(pub)
	if err != nil || kid != k.Kid {
		t.Fatalf("kid %q, libtrust fingerprint %q (%v)", k.Kid, kid, err)
	}
}
