package gitlabemu

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Role is a GitLab membership level. The values are GitLab's access levels so
// that they order the same way GitLab compares them.
type Role int

// Membership levels, as GitLab numbers them.
const (
	NoAccess   Role = 0
	Guest      Role = 10
	Reporter   Role = 20
	Developer  Role = 30
	Maintainer Role = 40
	Owner      Role = 50
)

func (r Role) String() string {
	switch r {
	case NoAccess:
		return "none"
	case Guest:
		return "guest"
	case Reporter:
		return "reporter"
	case Developer:
		return "developer"
	case Maintainer:
		return "maintainer"
	case Owner:
		return "owner"
	}
	return strconv.Itoa(int(r))
}

// ParseRole accepts a role name ("maintainer") or a GitLab access level ("40")
// so that control-API callers can use either spelling.
func ParseRole(s string) (Role, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "none", "":
		return NoAccess, nil
	case "guest":
		return Guest, nil
	case "reporter":
		return Reporter, nil
	case "developer":
		return Developer, nil
	case "maintainer":
		return Maintainer, nil
	case "owner":
		return Owner, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("unknown role %q", s)
	}
	return Role(n), nil
}

// AccessToken is an API token (personal, project or group access token) the
// client sends as Private-Token or as a Bearer token.
type AccessToken struct {
	Token     string          // the secret value
	Scopes    []string        // "api", "read_api", ...
	ExpiresAt *time.Time      // nil = never; expired when the clock is after it
	Revoked   bool            // revoked tokens get GitLab's "Token was revoked" 401
	Roles     map[string]Role // "project:<id>" or "group:<id>" -> role
	Admin     bool            // instance admin: Owner everywhere, may list all deploy tokens

	// Set by AddAccessToken and kept when a token is replaced, for
	// GET /personal_access_tokens/self.
	id        int64
	createdAt time.Time
}

// DeployToken is one deploy-token row as GitLab stores it, including the
// secret, which the REST API only ever reveals in the create response.
type DeployToken struct {
	ID        int64
	Name      string
	Username  string
	ExpiresAt *time.Time
	Scopes    []string
	Revoked   bool
	Token     string
	Scope     string // "project:<id>" or "group:<id>"
}

// Scope kinds, as used in scope strings like "project:7".
const (
	kindProject = "project"
	kindGroup   = "group"
)

// deployTokenScopes is GitLab's fixed scope order; responses list scopes in
// this order whatever order the request used.
var deployTokenScopes = []string{
	"read_repository",
	"read_registry",
	"write_registry",
	"read_package_registry",
	"write_package_registry",
	"read_virtual_registry",
	"write_virtual_registry",
}

func validDeployScope(s string) bool {
	for _, v := range deployTokenScopes {
		if v == s {
			return true
		}
	}
	return false
}

// sortScopes dedupes and orders scopes the way GitLab serialises them (one
// boolean column per scope). Unknown scopes keep their order at the end so
// seeded test data is never silently dropped.
func sortScopes(in []string) []string {
	out := make([]string, 0, len(in))
	seen := map[string]bool{}
	for _, v := range deployTokenScopes {
		for _, s := range in {
			if s == v && !seen[s] {
				out = append(out, s)
				seen[s] = true
			}
		}
	}
	for _, s := range in {
		if !seen[s] {
			out = append(out, s)
			seen[s] = true
		}
	}
	return out
}

// ParseScope splits "project:7" or "group:3" into its kind and id.
func ParseScope(scope string) (kind string, id int64, err error) {
	k, v, ok := strings.Cut(scope, ":")
	if !ok || (k != kindProject && k != kindGroup) {
		return "", 0, fmt.Errorf("scope %q: want project:<id> or group:<id>", scope)
	}
	id, err = strconv.ParseInt(v, 10, 64)
	if err != nil || id <= 0 {
		return "", 0, fmt.Errorf("scope %q: id must be a positive integer", scope)
	}
	return k, id, nil
}

func scopeKey(kind string, id int64) string { return kind + ":" + strconv.FormatInt(id, 10) }

func (t *DeployToken) clone() DeployToken {
	c := *t
	c.Scopes = append([]string(nil), t.Scopes...)
	if t.ExpiresAt != nil {
		e := *t.ExpiresAt
		c.ExpiresAt = &e
	}
	return c
}

func (t AccessToken) clone() AccessToken {
	c := t
	c.Scopes = append([]string(nil), t.Scopes...)
	if t.ExpiresAt != nil {
		e := *t.ExpiresAt
		c.ExpiresAt = &e
	}
	c.Roles = make(map[string]Role, len(t.Roles))
	for k, v := range t.Roles {
		c.Roles[k] = v
	}
	return c
}

// usableAt is GitLab's authentication rule for deploy tokens: not revoked and
// expires_at >= NOW() on the exact timestamp (never-expiring rows pass).
func (t *DeployToken) usableAt(now time.Time) bool {
	return !t.Revoked && (t.ExpiresAt == nil || !t.ExpiresAt.Before(now))
}

// expiredFlagAt reproduces the API's "expired" flag, expires_at < Date.today:
// it compares with midnight, so it lags real expiry by up to a day. Server
// local time is taken to be UTC.
func (t *DeployToken) expiredFlagAt(now time.Time) bool {
	if t.ExpiresAt == nil {
		return false
	}
	y, m, d := now.UTC().Date()
	midnight := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	return t.ExpiresAt.Before(midnight)
}

// AddProject registers a private project. Re-adding an id replaces its path.
func (s *Server) AddProject(id int64, fullPath string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.projects[id] = strings.Trim(fullPath, "/")
}

// AddGroup registers a private group; its path is the prefix through which
// group roles are inherited by projects and subgroups.
func (s *Server) AddGroup(id int64, fullPath string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.groups[id] = strings.Trim(fullPath, "/")
}

// AddAccessToken registers (or replaces, keyed by Token) an API token. A new
// token gets the next id and the current clock as its creation time; a
// replaced one keeps both, as editing a token in GitLab would.
func (s *Server) AddAccessToken(t AccessToken) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := t.clone()
	if old, ok := s.pats[t.Token]; ok {
		c.id, c.createdAt = old.id, old.createdAt
	} else {
		s.nextPATID++
		c.id, c.createdAt = s.nextPATID, s.now
	}
	s.pats[t.Token] = c
}

// lookupNamespace resolves a route's :id (already unescaped) to a numeric id.
// GitLab treats an all-digit :id as an id and anything else as a full path,
// compared case-insensitively. Caller holds s.mu.
func (s *Server) lookupNamespace(kind, ref string) (int64, bool) {
	table := s.projects
	if kind == kindGroup {
		table = s.groups
	}
	if n, err := strconv.ParseInt(ref, 10, 64); err == nil {
		_, ok := table[n]
		return n, ok
	}
	for id, p := range table {
		if strings.EqualFold(p, ref) {
			return id, true
		}
	}
	return 0, false
}

// effectiveRole is the caller's role on a project or group: the direct role
// or the best role on any ancestor group, as GitLab's inherited membership
// works. Caller holds s.mu.
func (s *Server) effectiveRole(pat *AccessToken, kind string, id int64) Role {
	if pat == nil {
		return NoAccess
	}
	if pat.Admin {
		return Owner
	}
	best := pat.Roles[scopeKey(kind, id)]
	var path string
	if kind == kindProject {
		path = s.projects[id]
	} else {
		path = s.groups[id]
	}
	lp := strings.ToLower(path)
	for gid, gpath := range s.groups {
		if strings.HasPrefix(lp, strings.ToLower(gpath)+"/") {
			if r := pat.Roles[scopeKey(kindGroup, gid)]; r > best {
				best = r
			}
		}
	}
	return best
}
