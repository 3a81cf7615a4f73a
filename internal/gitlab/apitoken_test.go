package gitlab

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rotator-dev/rotator/internal/gitlabemu"
)

func TestAPITokenExpiry(t *testing.T) {
	emu, c := setup(t)
	emu.SetNow(time.Date(2026, 10, 1, 8, 0, 0, 0, time.UTC))
	// Expires during 2027-09-30 UTC: the conservative moment is that midnight.
	exp := time.Date(2027, 9, 30, 15, 30, 0, 0, time.UTC)
	emu.AddAccessToken(gitlabemu.AccessToken{Token: pat, Scopes: []string{"api"}, ExpiresAt: &exp})
	got, ok, err := c.APITokenExpiry(context.Background())
	if err != nil || !ok {
		t.Fatalf("APITokenExpiry = %v, %v, %v", got, ok, err)
	}
	if want := time.Date(2027, 9, 30, 0, 0, 0, 0, time.UTC); !got.Equal(want) || got.Location() != time.UTC {
		t.Errorf("expiry = %v, want %v", got, want)
	}
	reqs := emu.Requests()
	if len(reqs) != 1 || reqs[0].Endpoint != gitlabemu.EndpointGetPersonalAccessTokenSelf {
		t.Errorf("requests %+v", reqs)
	}
}

func TestAPITokenExpiryReadAPIScope(t *testing.T) {
	emu, c := setup(t)
	emu.SetNow(time.Date(2026, 10, 1, 8, 0, 0, 0, time.UTC))
	exp := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	emu.AddAccessToken(gitlabemu.AccessToken{Token: pat, Scopes: []string{"read_api"}, ExpiresAt: &exp})
	got, ok, err := c.APITokenExpiry(context.Background())
	if err != nil || !ok || !got.Equal(exp) {
		t.Fatalf("APITokenExpiry = %v, %v, %v", got, ok, err)
	}
}

func TestAPITokenExpiryNever(t *testing.T) {
	_, c := setup(t) // setup's token has no expiry
	got, ok, err := c.APITokenExpiry(context.Background())
	if err != nil || ok || !got.IsZero() {
		t.Fatalf("APITokenExpiry = %v, %v, %v; want zero, false, nil", got, ok, err)
	}
}

func TestAPITokenExpiryOfExpiredToken(t *testing.T) {
	emu, c := setup(t)
	exp := emu.Now().Add(24 * time.Hour)
	emu.AddAccessToken(gitlabemu.AccessToken{Token: pat, Scopes: []string{"api"}, ExpiresAt: &exp})
	emu.Advance(25 * time.Hour)
	_, ok, err := c.APITokenExpiry(context.Background())
	if err == nil || ok || !IsStatus(err, 401) {
		t.Fatalf("ok = %v, err = %v; want a 401", ok, err)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "read own API token: ") || strings.Contains(msg, "\n") || strings.Contains(msg, pat) {
		t.Errorf("error %q", msg)
	}
	if !strings.Contains(msg, "expired") {
		t.Errorf("error %q does not say the token expired", msg)
	}
	// 401 is not retried.
	if n := len(emu.Requests()); n != 1 {
		t.Errorf("%d requests", n)
	}
}

func TestAPITokenExpiryRevokedToken(t *testing.T) {
	emu, c := setup(t)
	emu.AddAccessToken(gitlabemu.AccessToken{Token: pat, Scopes: []string{"api"}, Revoked: true})
	_, _, err := c.APITokenExpiry(context.Background())
	if !IsStatus(err, 401) || strings.Contains(err.Error(), pat) {
		t.Fatalf("err = %v; want a 401 without the token", err)
	}
}

func TestAPITokenExpiryRetriesServerErrors(t *testing.T) {
	emu, c := setup(t)
	emu.InjectFault(gitlabemu.Fault{Endpoint: gitlabemu.EndpointGetPersonalAccessTokenSelf, OnCall: 1, Status: 503, Header: map[string]string{"Retry-After": "0"}})
	if _, _, err := c.APITokenExpiry(context.Background()); err != nil {
		t.Fatalf("503 then 200: %v", err)
	}
}

func TestAPITokenExpiryHonoursContext(t *testing.T) {
	_, c := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, ok, err := c.APITokenExpiry(ctx); err == nil || ok {
		t.Fatalf("cancelled context: ok = %v, err = %v", ok, err)
	}
}

func TestStartOfExpiryDay(t *testing.T) {
	plus5 := time.FixedZone("+05", 5*3600)
	for _, tc := range []struct{ in, want time.Time }{
		{time.Date(2027, 9, 30, 0, 0, 0, 0, time.UTC), time.Date(2027, 9, 30, 0, 0, 0, 0, time.UTC)},
		{time.Date(2027, 9, 30, 23, 59, 0, 0, time.UTC), time.Date(2027, 9, 30, 0, 0, 0, 0, time.UTC)},
		// 01:00+05:00 is 20:00 UTC the day before: earlier than 30 Sep 00:00 UTC.
		{time.Date(2027, 9, 30, 1, 0, 0, 0, plus5), time.Date(2027, 9, 29, 20, 0, 0, 0, time.UTC)},
	} {
		if got := startOfExpiryDay(tc.in); !got.Equal(tc.want) || got.Location() != time.UTC {
			t.Errorf("startOfExpiryDay(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
