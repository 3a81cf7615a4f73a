package gitlabemu

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// tokenJSON is GitLab's DeployToken entity; field order is the order GitLab
// serves the keys in.
type tokenJSON struct {
	ID        int64    `json:"id"`
	Name      string   `json:"name"`
	Username  string   `json:"username"`
	ExpiresAt *string  `json:"expires_at"`
	Scopes    []string `json:"scopes"`
	Revoked   bool     `json:"revoked"`
	Expired   bool     `json:"expired"`
}

// tokenWithSecretJSON is DeployTokenWithToken, served only by create.
type tokenWithSecretJSON struct {
	tokenJSON
	Token string `json:"token"`
}

// gitlabTimeFormat is how GitLab's API renders timestamps (milliseconds, Z).
const gitlabTimeFormat = "2006-01-02T15:04:05.000Z"

func formatGitLabTime(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := t.UTC().Format(gitlabTimeFormat)
	return &s
}

func entity(t *DeployToken, now time.Time) tokenJSON {
	sc := sortScopes(t.Scopes)
	return tokenJSON{
		ID:        t.ID,
		Name:      t.Name,
		Username:  t.Username,
		ExpiresAt: formatGitLabTime(t.ExpiresAt),
		Scopes:    sc,
		Revoked:   t.Revoked,
		Expired:   t.expiredFlagAt(now),
	}
}

const tokenAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"

// randomSecret returns prefix + 20 characters of [A-Za-z0-9_-]. The alphabet
// has 64 symbols, so masking a random byte is unbiased.
func randomSecret(prefix string) string {
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("gitlabemu: crypto/rand: %v", err))
	}
	for i := range b {
		b[i] = tokenAlphabet[b[i]&63]
	}
	return prefix + string(b)
}

// insertToken creates a row with the next global id. Caller holds s.mu.
func (s *Server) insertToken(scope, name, username string, scopes []string, expiresAt *time.Time) *DeployToken {
	s.nextTokenID++
	t := &DeployToken{
		ID:       s.nextTokenID,
		Name:     name,
		Username: username,
		Scopes:   sortScopes(scopes),
		Token:    randomSecret("gldt-"),
		Scope:    scope,
	}
	if t.Username == "" {
		t.Username = "gitlab+deploy-token-" + strconv.FormatInt(t.ID, 10)
	}
	if expiresAt != nil {
		// PostgreSQL keeps microseconds; keep the same precision.
		e := expiresAt.UTC().Truncate(time.Microsecond)
		t.ExpiresAt = &e
	}
	s.tokens = append(s.tokens, t)
	return t
}

// seed inserts a token for tests, refusing scopes that do not exist so that
// a typo in a test fails loudly instead of creating an orphan row.
func (s *Server) seed(scope, name, username string, scopes []string, expiresAt *time.Time) (DeployToken, error) {
	kind, id, err := ParseScope(scope)
	if err != nil {
		return DeployToken{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	table := s.projects
	if kind == kindGroup {
		table = s.groups
	}
	if _, ok := table[id]; !ok {
		return DeployToken{}, fmt.Errorf("%s: %w", scope, errNotFound)
	}
	return s.insertToken(scopeKey(kind, id), name, username, scopes, expiresAt).clone(), nil
}

// SeedDeployToken creates a deploy token directly, as if made in the UI, and
// returns it with its secret. It panics if scope is malformed or names an
// unknown project or group, because that is always a bug in the test.
func (s *Server) SeedDeployToken(scope string, name string, scopes []string, expiresAt *time.Time) DeployToken {
	t, err := s.seed(scope, name, "", scopes, expiresAt)
	if err != nil {
		panic("gitlabemu: SeedDeployToken: " + err.Error())
	}
	return t
}

// DeployTokens returns every row of a scope ("project:7", "group:3"; "" for
// all), revoked ones included and secrets included, ordered by id.
func (s *Server) DeployTokens(scope string) []DeployToken {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []DeployToken
	for _, t := range s.tokens {
		if scope == "" || t.Scope == scope {
			out = append(out, t.clone())
		}
	}
	return out
}

// RevokeDeployTokenInUI marks a token revoked but keeps the row, like the
// UI's Revoke button (the API's DELETE destroys the row instead).
func (s *Server) RevokeDeployTokenInUI(id int64) {
	s.revoke(id)
}

func (s *Server) revoke(id int64) (DeployToken, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.tokens {
		if t.ID == id {
			t.Revoked = true
			return t.clone(), true
		}
	}
	return DeployToken{}, false
}

// Authenticate applies GitLab's deploy-token login rule: the username must be
// the token's username, and the token must be unrevoked with
// expires_at >= now on the exact timestamp. It ignores the lagging "expired"
// flag on purpose; that difference is what the rotator must not trust.
func (s *Server) Authenticate(username, token string) (DeployToken, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.tokens {
		if t.Token == token && t.Username == username && token != "" {
			if !t.usableAt(s.now) {
				return DeployToken{}, false
			}
			return t.clone(), true
		}
	}
	return DeployToken{}, false
}

var tokenIDRE = regexp.MustCompile(`\A[+-]?[0-9]+\z`)

// findToken resolves :token_id within the route's namespace: tokens of other
// projects or groups are "404 Not found", exactly like unknown ids. Caller
// holds s.mu.
func (s *Server) findToken(rt route) (int, *response) {
	if !tokenIDRE.MatchString(rt.tokenID) {
		return -1, errorResponse(http.StatusBadRequest, "token_id is invalid")
	}
	id, err := strconv.ParseInt(rt.tokenID, 10, 64)
	if err == nil {
		scope := scopeKey(rt.kind, rt.nsID)
		for i, t := range s.tokens {
			if t.ID == id && t.Scope == scope {
				return i, nil
			}
		}
	}
	return -1, messageResponse(http.StatusNotFound, "404 Not found")
}

func (s *Server) listDeployTokens(r *http.Request, rt route) *response {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, deny := s.authorize(r, &rt, requiredRole(rt.kind, r.Method)); deny != nil {
		return deny
	}
	pg, bad := parsePaging(r.URL.Query())
	if bad != nil {
		return bad
	}
	scope := scopeKey(rt.kind, rt.nsID)
	var rows []*DeployToken
	for _, t := range s.tokens {
		if t.Scope == scope && (!pg.active || t.usableAt(s.now)) {
			rows = append(rows, t)
		}
	}
	return s.pagedTokens(r, rows, pg)
}

func (s *Server) listAllDeployTokens(r *http.Request) *response {
	s.mu.Lock()
	defer s.mu.Unlock()
	pat, deny := s.authenticate(r)
	if deny != nil {
		return deny
	}
	if pat == nil {
		return messageResponse(http.StatusUnauthorized, "401 Unauthorized")
	}
	if !pat.Admin {
		return messageResponse(http.StatusForbidden, "403 Forbidden")
	}
	pg, bad := parsePaging(r.URL.Query())
	if bad != nil {
		return bad
	}
	var rows []*DeployToken
	for _, t := range s.tokens {
		if !pg.active || t.usableAt(s.now) {
			rows = append(rows, t)
		}
	}
	return s.pagedTokens(r, rows, pg)
}

// pagedTokens renders one page with GitLab's offset-pagination headers.
// Caller holds s.mu.
func (s *Server) pagedTokens(r *http.Request, rows []*DeployToken, pg paging) *response {
	total := len(rows)
	totalPages := (total + pg.perPage - 1) / pg.perPage
	if totalPages < 1 {
		totalPages = 1 // GitLab reports one (empty) page, and links to it as last
	}
	start := (pg.page - 1) * pg.perPage
	end := start + pg.perPage
	if start > total {
		start = total
	}
	if end > total {
		end = total
	}
	out := make([]tokenJSON, 0, end-start)
	for _, t := range rows[start:end] {
		out = append(out, entity(t, s.now))
	}
	resp := jsonResponse(http.StatusOK, out)

	next, prev := "", ""
	if pg.page < totalPages {
		next = strconv.Itoa(pg.page + 1)
	}
	// Kaminari has no previous page for the first page or past the end.
	if pg.page > 1 && pg.page <= totalPages {
		prev = strconv.Itoa(pg.page - 1)
	}
	h := resp.header
	h.Set("X-Page", strconv.Itoa(pg.page))
	h.Set("X-Per-Page", strconv.Itoa(pg.perPage))
	h.Set("X-Next-Page", next)
	h.Set("X-Prev-Page", prev)
	h.Set("X-Total", strconv.Itoa(total))
	h.Set("X-Total-Pages", strconv.Itoa(totalPages))

	var links []string
	link := func(page, rel string) {
		links = append(links, "<"+pageURL(r, page, pg.perPage)+`>; rel="`+rel+`"`)
	}
	if prev != "" {
		link(prev, "prev")
	}
	if next != "" {
		link(next, "next")
	}
	link("1", "first")
	link(strconv.Itoa(totalPages), "last")
	h.Set("Link", strings.Join(links, ", "))
	return resp
}

// pageURL builds an absolute link from the request's own host and path, with
// the caller's other query parameters kept, as GitLab's header builder does.
// client-go's Scan reuses this URL's query string for the next request.
func pageURL(r *http.Request, page string, perPage int) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
		scheme = p
	}
	q := url.Values{}
	for k, v := range r.URL.Query() {
		q[k] = v
	}
	q.Set("page", page)
	q.Set("per_page", strconv.Itoa(perPage))
	return scheme + "://" + r.Host + r.URL.EscapedPath() + "?" + q.Encode()
}

// authorizedToken runs the checks get and delete share; callers hold s.mu.
func (s *Server) authorizedToken(r *http.Request, rt route) (int, *response) {
	if _, deny := s.authorize(r, &rt, requiredRole(rt.kind, r.Method)); deny != nil {
		return 0, deny
	}
	return s.findToken(rt)
}

func (s *Server) getDeployToken(r *http.Request, rt route) *response {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, miss := s.authorizedToken(r, rt)
	if miss != nil {
		return miss
	}
	return jsonResponse(http.StatusOK, entity(s.tokens[i], s.now))
}

func (s *Server) createDeployToken(r *http.Request, rt route, body []byte) *response {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, deny := s.authorize(r, &rt, requiredRole(rt.kind, r.Method)); deny != nil {
		return deny
	}
	p, err := parseParams(r, body)
	if err != nil {
		var unsupported errUnsupportedType
		if errors.As(err, &unsupported) {
			return errorResponse(http.StatusUnsupportedMediaType, err.Error())
		}
		return errorResponse(http.StatusBadRequest, err.Error())
	}
	in, bad := validateCreate(p)
	if bad != nil {
		return bad
	}
	t := s.insertToken(scopeKey(rt.kind, rt.nsID), in.name, in.username, in.scopes, in.expiresAt)
	return jsonResponse(http.StatusCreated, tokenWithSecretJSON{entity(t, s.now), t.Token})
}

func (s *Server) deleteDeployToken(r *http.Request, rt route) *response {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, miss := s.authorizedToken(r, rt)
	if miss != nil {
		return miss
	}
	s.tokens = append(s.tokens[:i], s.tokens[i+1:]...)
	return newResponse(http.StatusNoContent)
}
