package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration that also accepts a "d" (24h) unit, because
// token lifetimes are naturally written in days ("30d", "1d12h").
type Duration time.Duration

const day = 24 * time.Hour

// ParseDuration parses a Go duration optionally led by whole or fractional
// days. Negative values are refused: no setting here makes sense below zero.
func ParseDuration(s string) (Duration, error) {
	bad := func(why string) (Duration, error) {
		return 0, fmt.Errorf("invalid duration %q: %s", s, why)
	}
	if s == "" {
		return bad("empty (want e.g. 30d, 1d12h, 90m)")
	}
	if strings.HasPrefix(s, "-") {
		return bad("must not be negative")
	}
	rest := s
	var total time.Duration
	i := 0
	for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
		i++
	}
	if i > 0 && i < len(rest) && rest[i] == 'd' {
		num := rest[:i]
		if !strings.Contains(num, ".") {
			n, err := strconv.ParseInt(num, 10, 64)
			if err != nil || n > int64(math.MaxInt64/int64(day)) {
				return bad("too large")
			}
			total = time.Duration(n) * day
		} else {
			f, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return bad("want e.g. 30d, 1d12h, 90m")
			}
			if f*float64(day) >= math.MaxInt64 {
				return bad("too large")
			}
			total = time.Duration(f * float64(day))
		}
		rest = rest[i+1:]
	}
	if rest != "" {
		if strings.ContainsAny(rest, "+-") {
			return bad("want e.g. 30d, 1d12h, 90m")
		}
		d, err := time.ParseDuration(rest)
		if err != nil {
			return bad("want e.g. 30d, 1d12h, 90m")
		}
		if total+d < total {
			return bad("too large")
		}
		total += d
	}
	return Duration(total), nil
}

// String gives the shortest natural form: whole days as "30d", anything else
// as a Go duration without trailing zero units ("36h", "1h30m").
func (d Duration) String() string {
	td := time.Duration(d)
	if td != 0 && td%day == 0 {
		return strconv.FormatInt(int64(td/day), 10) + "d"
	}
	s := td.String() // e.g. "36h0m0s"
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// Std returns the value as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// MarshalText makes JSON and YAML output use the "30d" form.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText accepts the same forms as ParseDuration.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}
