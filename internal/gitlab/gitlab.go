// Package gitlab is the rotator's view of GitLab: the deploy tokens of one
// project or group. It hides client-go behind DeployTokens so that the cycle
// can be tested against anything that lists, creates and deletes tokens.
package gitlab

import (
	"context"
	"time"

	"github.com/rotator-dev/rotator/internal/secret"
)

// DeployToken is a deploy token as GitLab lists it; the value is never part
// of it because GitLab shows it only once, at creation.
type DeployToken struct {
	ID        int64      `json:"id"`
	Name      string     `json:"name"`
	Username  string     `json:"username"`
	ExpiresAt *time.Time `json:"expiresAt"`
	Scopes    []string   `json:"scopes"`
	Revoked   bool       `json:"revoked"`
}

// Active reports whether GitLab would accept the token at now. GitLab's own
// `expired` flag lags by up to a day, so the rule follows expires_at exactly.
func (t DeployToken) Active(now time.Time) bool {
	if t.Revoked {
		return false
	}
	return t.ExpiresAt == nil || !now.After(*t.ExpiresAt)
}

// Credential is what a registry client needs to log in with a deploy token.
type Credential struct {
	Username string
	Password secret.Value
}

// CreateRequest asks for a new deploy token.
type CreateRequest struct {
	Name      string
	Username  string // empty lets GitLab choose gitlab+deploy-token-{id}
	Scopes    []string
	ExpiresAt time.Time
}

// DeployTokens is everything the cycle does with GitLab.
type DeployTokens interface {
	// List returns every deploy token of the project or group, all pages.
	List(ctx context.Context) ([]DeployToken, error)
	// Create mints one token. It is never retried on a server error, because
	// GitLab may have created the token before failing.
	Create(ctx context.Context, req CreateRequest) (DeployToken, Credential, error)
	// Delete revokes a token. A token that is already gone is not an error.
	Delete(ctx context.Context, id int64) error
	// Owner names the project or group, for messages.
	Owner() string
}
