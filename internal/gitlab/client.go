package gitlab

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	retryablehttp "github.com/hashicorp/go-retryablehttp"
	gl "gitlab.com/gitlab-org/api/client-go/v2"

	"github.com/rotator-dev/rotator/internal/secret"
)

// Options configure a Client.
type Options struct {
	BaseURL   string
	Token     secret.Value
	CAPool    *x509.CertPool // trusted roots; nil for the system roots
	Project   string         // numeric id or full path; exactly one of Project and Group
	Group     string
	Timeout   time.Duration // per request
	UserAgent string
	// MaxRetries bounds retries of idempotent calls and of 429s.
	MaxRetries int
	// MaxRetryWait caps how long one Retry-After or RateLimit-Reset may make a
	// call wait.
	MaxRetryWait time.Duration
}

// Client implements DeployTokens with gitlab.com/gitlab-org/api/client-go.
type Client struct {
	api     *gl.Client
	project string
	group   string
	timeout time.Duration
}

var _ DeployTokens = (*Client)(nil)

// NewClient builds a client. It makes no network call.
func NewClient(o Options) (*Client, error) {
	if (o.Project == "") == (o.Group == "") {
		return nil, errors.New("gitlab: exactly one of project and group is required")
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = 4
	}
	if o.MaxRetryWait <= 0 {
		o.MaxRetryWait = 30 * time.Second
	}
	httpClient := &http.Client{Transport: Transport(o.CAPool), Timeout: o.Timeout}

	ua := o.UserAgent
	if ua == "" {
		ua = "rotator"
	}
	api, err := gl.NewClient(o.Token.Reveal(),
		gl.WithBaseURL(o.BaseURL),
		gl.WithHTTPClient(httpClient),
		gl.WithUserAgent(ua),
		gl.WithOnlyIdempotentRetries(),
		gl.WithCustomRetryMax(o.MaxRetries),
		gl.WithCustomBackoff(retryBackoff(o.MaxRetryWait)),
	)
	if err != nil {
		return nil, fmt.Errorf("gitlab: client for %s: %w", o.BaseURL, err)
	}
	return &Client{api: api, project: o.Project, group: o.Group, timeout: o.Timeout}, nil
}

// Transport trusts roots (the system roots when nil); GitLab and its
// registry share the CA bundle.
func Transport(roots *x509.CertPool) *http.Transport {
	if roots == nil {
		if sys, err := x509.SystemCertPool(); err == nil {
			roots = sys
		}
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	return t
}

// Owner names the project or group the tokens belong to.
func (c *Client) Owner() string {
	if c.project != "" {
		return "project " + c.project
	}
	return "group " + c.group
}

// List returns every deploy token of the project or group, following pages.
func (c *Client) List(ctx context.Context) ([]DeployToken, error) {
	page := func(p gl.PaginationOptionFunc) ([]*gl.DeployToken, *gl.Response, error) {
		ctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		opts := []gl.RequestOptionFunc{gl.WithContext(ctx)}
		if p != nil {
			opts = append(opts, p)
		}
		if c.project != "" {
			return c.api.DeployTokens.ListProjectDeployTokens(c.project,
				&gl.ListProjectDeployTokensOptions{ListOptions: gl.ListOptions{PerPage: 100}}, opts...)
		}
		return c.api.DeployTokens.ListGroupDeployTokens(c.group,
			&gl.ListGroupDeployTokensOptions{ListOptions: gl.ListOptions{PerPage: 100}}, opts...)
	}
	raw, err := gl.ScanAndCollect(page)
	if err != nil {
		return nil, fmt.Errorf("list deploy tokens of %s: %w", c.Owner(), describe(err))
	}
	tokens := make([]DeployToken, 0, len(raw))
	for _, t := range raw {
		if t == nil {
			return nil, fmt.Errorf("list deploy tokens of %s: answer holds a null token", c.Owner())
		}
		tokens = append(tokens, fromAPI(t))
	}
	return tokens, nil
}

// Create mints one token. Only a 429 is retried: GitLab rejects a throttled
// request before acting on it, while after a 5xx the token may exist.
func (c *Client) Create(ctx context.Context, req CreateRequest) (DeployToken, Credential, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	expires := req.ExpiresAt.UTC()
	scopes := append([]string(nil), req.Scopes...)
	opts := []gl.RequestOptionFunc{gl.WithContext(ctx), gl.WithRequestRetry(retryOnlyThrottled)}

	var (
		t   *gl.DeployToken
		err error
	)
	if c.project != "" {
		o := &gl.CreateProjectDeployTokenOptions{Name: &req.Name, ExpiresAt: &expires, Scopes: &scopes}
		if req.Username != "" {
			o.Username = &req.Username
		}
		t, _, err = c.api.DeployTokens.CreateProjectDeployToken(c.project, o, opts...)
	} else {
		o := &gl.CreateGroupDeployTokenOptions{Name: &req.Name, ExpiresAt: &expires, Scopes: &scopes}
		if req.Username != "" {
			o.Username = &req.Username
		}
		t, _, err = c.api.DeployTokens.CreateGroupDeployToken(c.group, o, opts...)
	}
	if err != nil {
		return DeployToken{}, Credential{}, fmt.Errorf("create deploy token %q in %s: %w", req.Name, c.Owner(), describe(err))
	}
	if t == nil || t.ID == 0 || t.Token == "" || t.Username == "" {
		return DeployToken{}, Credential{}, fmt.Errorf("create deploy token %q in %s: answer lacks id, username or token", req.Name, c.Owner())
	}
	return fromAPI(t), Credential{Username: t.Username, Password: secret.New(t.Token)}, nil
}

// Delete revokes a token; 404 means it is already gone.
func (c *Client) Delete(ctx context.Context, id int64) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var err error
	if c.project != "" {
		_, err = c.api.DeployTokens.DeleteProjectDeployToken(c.project, id, gl.WithContext(ctx))
	} else {
		_, err = c.api.DeployTokens.DeleteGroupDeployToken(c.group, id, gl.WithContext(ctx))
	}
	if err != nil && !errors.Is(err, gl.ErrNotFound) {
		return fmt.Errorf("delete deploy token %d in %s: %w", id, c.Owner(), describe(err))
	}
	return nil
}

func fromAPI(t *gl.DeployToken) DeployToken {
	out := DeployToken{ID: t.ID, Name: t.Name, Username: t.Username, Revoked: t.Revoked, Scopes: append([]string(nil), t.Scopes...)}
	if t.ExpiresAt != nil {
		e := t.ExpiresAt.UTC()
		out.ExpiresAt = &e
	}
	return out
}

// APIError is an answer GitLab gave with a non-2xx status.
type APIError struct {
	StatusCode int
	Message    string
}

func (e *APIError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("GitLab answered %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	}
	return fmt.Sprintf("GitLab answered %d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Message)
}

// describe turns client-go errors into one line that says what GitLab
// answered, without the request URL's noise.
func describe(err error) error {
	var er *gl.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		// client-go prefixes plain-text bodies (a 429's "Retry later") with this.
		msg := strings.TrimSpace(strings.TrimPrefix(er.Message, "failed to parse unknown error format: "))
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		return &APIError{StatusCode: er.Response.StatusCode, Message: msg}
	}
	if errors.Is(err, gl.ErrNotFound) {
		return &APIError{StatusCode: http.StatusNotFound, Message: "not found (unknown project, group or token, or no access)"}
	}
	return err
}

// IsStatus reports whether err carries GitLab's answer with that status.
func IsStatus(err error, status int) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.StatusCode == status
}

func retryOnlyThrottled(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	return err == nil && resp != nil && resp.StatusCode == http.StatusTooManyRequests, nil
}

// retryBackoff honours Retry-After and RateLimit-Reset, which client-go's own
// backoff partly ignores, and caps the wait so a bad header cannot park the
// cycle for hours.
func retryBackoff(maxWait time.Duration) retryablehttp.Backoff {
	return func(_, _ time.Duration, attempt int, resp *http.Response) time.Duration {
		wait := time.Duration(float64(250*time.Millisecond) * math.Pow(2, float64(attempt)))
		if resp != nil {
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
				wait = time.Duration(s) * time.Second
			} else if reset, err := strconv.ParseInt(resp.Header.Get("RateLimit-Reset"), 10, 64); err == nil && reset > 0 {
				wait = time.Until(time.Unix(reset, 0))
			}
		}
		return min(max(wait, 100*time.Millisecond), maxWait)
	}
}
