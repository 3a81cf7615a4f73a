package gitlab

import (
	"context"
	"errors"
	"fmt"
	"time"

	gl "gitlab.com/gitlab-org/api/client-go/v2"
)

// APITokenInspector is what the daemon needs to watch its own token.
type APITokenInspector interface {
	APITokenExpiry(ctx context.Context) (time.Time, bool, error)
}

var _ APITokenInspector = (*Client)(nil)

// APITokenExpiry returns when the rotator's own API token expires; ok is false when it never expires.
//
// It reads GET /personal_access_tokens/self (GitLab 15.5+, any scope), which
// personal, project and group access tokens all answer. GitLab stores
// expires_at as a date and stops accepting the token at the start of that
// day, so the moment returned is 00:00 UTC of expires_at: the conservative
// instant, never later than the token really works. An expired or revoked
// token cannot describe itself: GitLab answers 401 (see IsStatus).
func (c *Client) APITokenExpiry(ctx context.Context) (expires time.Time, ok bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	t, _, err := c.api.PersonalAccessTokens.GetSinglePersonalAccessToken(gl.WithContext(ctx))
	if err != nil {
		return time.Time{}, false, fmt.Errorf("read own API token: %w", describe(err))
	}
	if t == nil {
		return time.Time{}, false, errors.New("read own API token: GitLab answered with an empty body")
	}
	if t.ExpiresAt == nil || time.Time(*t.ExpiresAt).IsZero() {
		return time.Time{}, false, nil
	}
	return startOfExpiryDay(time.Time(*t.ExpiresAt)), true, nil
}

// startOfExpiryDay turns expires_at into 00:00 UTC of its date. client-go
// parses the usual "2027-09-30" as that midnight already; should GitLab ever
// send a full timestamp, its written date is used, or the instant itself if
// that is earlier.
func startOfExpiryDay(e time.Time) time.Time {
	y, m, d := e.Date()
	midnight := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	if e.Before(midnight) {
		return e.UTC()
	}
	return midnight
}
