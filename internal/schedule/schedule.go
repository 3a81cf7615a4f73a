// Package schedule holds the timing rules: when a token is renewed, and how
// durations read in config and messages.
package schedule

import (
	"strconv"
	"strings"
	"time"
)

// RenewalTime is when a token that expires at expiresAt must be replaced.
func RenewalTime(expiresAt time.Time, renewBefore time.Duration) time.Time {
	return expiresAt.Add(-renewBefore)
}

// DefaultRenewBefore renews in the last third of a token's lifetime, as
// cert-manager does for certificates: late enough to use most of it, early
// enough to survive days of failed cycles.
func DefaultRenewBefore(lifetime time.Duration) time.Duration { return lifetime / 3 }

// FormatDuration prints whole days as "30d" and the rest as Go does.
func FormatDuration(d time.Duration) string {
	const day = 24 * time.Hour
	if d != 0 && d%day == 0 {
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	if d > day {
		days := d / day
		return strconv.FormatInt(int64(days), 10) + "d" + strings.TrimSuffix(strings.TrimSuffix((d-days*day).String(), "0s"), "0m")
	}
	return d.String()
}
