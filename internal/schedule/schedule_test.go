package schedule

import (
	"testing"
	"time"
)

func TestRenewalTime(t *testing.T) {
	exp := time.Date(2027, 1, 2, 0, 0, 0, 0, time.UTC)
	lifetime := 30 * 24 * time.Hour
	if got, want := RenewalTime(exp, DefaultRenewBefore(lifetime)), exp.Add(-10*24*time.Hour); !got.Equal(want) {
		t.Fatalf("RenewalTime = %s, want %s", got, want)
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		30 * 24 * time.Hour: "30d",
		36 * time.Hour:      "1d12h",
		90 * time.Minute:    "1h30m0s",
		0:                   "0s",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%s) = %q, want %q", d, got, want)
		}
	}
}
