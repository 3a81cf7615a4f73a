package daemon

import (
	"testing"
	"time"

	"github.com/robfig/cron/v3"
)

func TestNextRetryDoublesToTheCap(t *testing.T) {
	var got []time.Duration
	d := time.Duration(0)
	for i := 0; i < 6; i++ {
		d = nextRetry(d, time.Minute, 10*time.Minute)
		got = append(got, d)
	}
	want := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 10 * time.Minute, 10 * time.Minute}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("retries = %v, want %v", got, want)
		}
	}
}

func TestJitterStaysBelowMax(t *testing.T) {
	for i := 0; i < 1000; i++ {
		if j := jitter(30 * time.Second); j < 0 || j >= 30*time.Second {
			t.Fatalf("jitter %s out of range", j)
		}
	}
	if jitter(0) != 0 {
		t.Fatal("zero max must give zero jitter")
	}
}

func TestStallAfter(t *testing.T) {
	sched, err := cron.ParseStandard("*/15 * * * *")
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{o: Options{Schedule: sched, RetryMax: 15 * time.Minute, CycleTimeout: 5 * time.Minute, MaxJitter: 30 * time.Second}}
	if got, want := d.stallAfter(), 50*time.Minute+30*time.Second; got != want {
		t.Fatalf("stallAfter = %s, want %s", got, want)
	}
}
