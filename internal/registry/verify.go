// Package registry proves that a credential can pull from the container
// registry, the way containerd does: ping /v2/, follow the Bearer challenge
// to the token realm with basic auth, then HEAD a manifest.
package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/rotator-dev/rotator/internal/gitlab"
)

// Verifier checks credentials against one repository of the registry.
type Verifier struct {
	// Repository is the image path to check, e.g. "games/fleet".
	Repository string
	// Tag is the manifest to HEAD; a 404 for it still proves access,
	// because the registry authorises before it looks the manifest up.
	Tag string
	// Transport carries the CA bundle; nil for the default.
	Transport http.RoundTripper
	// Insecure allows plain HTTP to the registry (tests only).
	Insecure bool
	// Timeout bounds one attempt.
	Timeout time.Duration
	// Attempts and Wait: a token can take a moment to work after creation.
	Attempts int
	Wait     time.Duration
}

// Verify returns nil when cred can pull from host/Repository.
func (v *Verifier) Verify(ctx context.Context, host string, cred gitlab.Credential) error {
	opts := []name.Option{name.StrictValidation}
	if v.Insecure {
		opts = append(opts, name.Insecure)
	}
	tag := v.Tag
	if tag == "" {
		tag = "latest"
	}
	ref, err := name.NewTag(host+"/"+v.Repository+":"+tag, opts...)
	if err != nil {
		return fmt.Errorf("registry reference %s/%s:%s: %w", host, v.Repository, tag, err)
	}
	attempts := max(v.Attempts, 1)
	var last error
	for i := 0; i < attempts; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("verify pull from %s: %w (last: %v)", ref.Context(), ctx.Err(), last)
			case <-time.After(v.Wait):
			}
		}
		if last = v.head(ctx, ref, cred); last == nil {
			return nil
		}
		if !retriable(last) {
			break
		}
	}
	return fmt.Errorf("verify pull from %s: %w", ref.Context(), last)
}

func (v *Verifier) head(ctx context.Context, ref name.Tag, cred gitlab.Credential) error {
	timeout := v.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	rt := v.Transport
	if rt == nil {
		rt = remote.DefaultTransport
	}
	if err := v.requiresCredentials(ctx, ref, rt); err != nil {
		return err
	}
	auth := authn.FromConfig(authn.AuthConfig{Username: cred.Username, Password: cred.Password.Reveal()})
	_, err := remote.Head(ref, remote.WithContext(ctx), remote.WithAuth(auth), remote.WithTransport(rt))
	var te *transport.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &te) && te.StatusCode == http.StatusNotFound && isManifestRequest(te.Request):
		return nil // authorised; the tag just does not exist
	case errors.As(err, &te):
		return &PullError{StatusCode: te.StatusCode}
	}
	return scrub(err, cred)
}

// ErrAnonymous means the registry lets anyone in, so a pull proves nothing
// about the credential.
var ErrAnonymous = errors.New("the registry does not ask for credentials at /v2/, so it cannot prove this token works; point gitlab.registryHost at the GitLab registry")

var errNoRegistry = errors.New("404: no registry API there")

// requiresCredentials pings /v2/ without credentials: a registry that
// answers anything but a 401 challenge would accept any token.
func (v *Verifier) requiresCredentials(ctx context.Context, ref name.Tag, rt http.RoundTripper) error {
	url := ref.Context().Registry.Scheme() + "://" + ref.Context().RegistryStr() + "/v2/"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("ping %s: %w", url, err)
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") != "":
		return nil
	case resp.StatusCode >= 500:
		return &PullError{StatusCode: resp.StatusCode}
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("ping %s: %w", url, errNoRegistry)
	}
	return ErrAnonymous
}

// isManifestRequest: only a 404 for the manifest itself proves access; a
// 404 from the /v2/ ping or the token realm means a wrong host or path.
func isManifestRequest(r *http.Request) bool {
	return r != nil && r.Method == http.MethodHead && strings.Contains(r.URL.Path, "/manifests/")
}

// PullError is the registry refusing the credential.
type PullError struct{ StatusCode int }

func (e *PullError) Error() string {
	return fmt.Sprintf("registry answered %d %s", e.StatusCode, http.StatusText(e.StatusCode))
}

// Refused is true when the registry or its token service turned the
// credential down, rather than being unreachable or failing.
func (e *PullError) Refused() bool {
	return e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden
}

// retriable: a freshly created token may not work for a moment, and the
// registry or network may hiccup; a 403 is final.
func retriable(err error) bool {
	if errors.Is(err, ErrAnonymous) || errors.Is(err, errNoRegistry) {
		return false // a wrong registryHost does not heal in seconds
	}
	var pe *PullError
	if errors.As(err, &pe) {
		return pe.StatusCode == http.StatusUnauthorized || pe.StatusCode >= 500 || pe.StatusCode == http.StatusTooManyRequests
	}
	return true
}

// scrub makes sure a transport error never carries the credential.
func scrub(err error, cred gitlab.Credential) error {
	msg := err.Error()
	if p := cred.Password.Reveal(); p != "" && strings.Contains(msg, p) {
		return errors.New("registry request failed (details withheld: they held the credential)")
	}
	return err
}
