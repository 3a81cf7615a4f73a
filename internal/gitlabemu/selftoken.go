package gitlabemu

import (
	"net/http"
	"time"
)

// selfTokenName is what /personal_access_tokens/self reports as the token's
// name; the emulator does not model token names.
const selfTokenName = "rotator"

// selfTokenUserID is the user every emulated API token belongs to.
const selfTokenUserID = 1

// gitlabDateFormat is how GitLab renders date columns such as a personal
// access token's expires_at.
const gitlabDateFormat = "2006-01-02"

// personalAccessTokenJSON is GitLab's PersonalAccessToken entity, in the
// order GitLab serialises it. Project and group access tokens answer
// /personal_access_tokens/self with the same shape.
type personalAccessTokenJSON struct {
	ID         int64    `json:"id"`
	Name       string   `json:"name"`
	Revoked    bool     `json:"revoked"`
	CreatedAt  string   `json:"created_at"`
	Scopes     []string `json:"scopes"`
	UserID     int64    `json:"user_id"`
	LastUsedAt *string  `json:"last_used_at"`
	Active     bool     `json:"active"`
	ExpiresAt  *string  `json:"expires_at"`
}

// expiredAt is the emulator's expiry rule for API tokens: expired once the
// clock is past ExpiresAt. The same rule authenticates requests.
func (t *AccessToken) expiredAt(now time.Time) bool {
	return t.ExpiresAt != nil && now.After(*t.ExpiresAt)
}

// selfEntity renders an API token as /personal_access_tokens/self does.
// GitLab stores expires_at as a date and the token stops working at 00:00
// UTC of that date; ExpiresAt is an instant here, so the date shown is its
// UTC date, which never names a later day than the token really works.
func (t *AccessToken) selfEntity(now time.Time) personalAccessTokenJSON {
	out := personalAccessTokenJSON{
		ID:        t.id,
		Name:      selfTokenName,
		Revoked:   t.Revoked,
		CreatedAt: t.createdAt.UTC().Format(gitlabTimeFormat),
		Scopes:    append([]string{}, t.Scopes...),
		UserID:    selfTokenUserID,
		Active:    !t.Revoked && !t.expiredAt(now),
	}
	if t.ExpiresAt != nil {
		d := t.ExpiresAt.UTC().Format(gitlabDateFormat)
		out.ExpiresAt = &d
	}
	return out
}

// getPersonalAccessTokenSelf answers GET /personal_access_tokens/self: the
// calling token itself. Any scope may call it (GitLab 15.5+), but unknown,
// expired and revoked tokens get the usual 401s, and so do anonymous callers.
func (s *Server) getPersonalAccessTokenSelf(r *http.Request) *response {
	s.mu.Lock()
	defer s.mu.Unlock()
	pat, deny := s.authenticateAnyScope(r)
	if deny != nil {
		return deny
	}
	if pat == nil {
		return messageResponse(http.StatusUnauthorized, "401 Unauthorized")
	}
	return jsonResponse(http.StatusOK, pat.selfEntity(s.now))
}
