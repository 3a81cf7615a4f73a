package rotation

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkDecide measures the pure decision over a large fleet: 500 target
// namespaces and 1,000 managed tokens, every target in sync.
func BenchmarkDecide(b *testing.B) {
	for _, size := range []struct{ targets, tokens int }{{2, 1}, {50, 10}, {500, 1000}} {
		b.Run(fmt.Sprintf("targets=%d/tokens=%d", size.targets, size.tokens), func(b *testing.B) {
			obs := Observed{Now: now}
			for i := 0; i < size.tokens; i++ {
				obs.Tokens = append(obs.Tokens, token(int64(i+1), at(20*24*time.Hour)))
			}
			current := obs.Tokens[len(obs.Tokens)-1].ID
			for i := 0; i < size.targets; i++ {
				obs.Targets = append(obs.Targets, target(fmt.Sprintf("ns-%d", i), holding(current)))
			}
			var plan Plan
			b.ReportAllocs()
			for b.Loop() {
				plan = Decide(obs, policy, false)
			}
			if len(plan.Writes) != 0 || len(plan.Revokes) != size.tokens-1 {
				b.Fatalf("unexpected plan: %d writes, %d revokes", len(plan.Writes), len(plan.Revokes))
			}
		})
	}
}
