package rotation

import (
	"fmt"
	"strings"
	"time"
)

// Describe renders the plan for humans, one action a line, each with its
// reason. Dry-run prints exactly this.
func (p Plan) Describe() string {
	var b strings.Builder
	if p.Empty() {
		b.WriteString("nothing to do\n")
	}
	if r := p.Rotation; r != nil {
		fmt.Fprintf(&b, "create  deploy token %q scopes=%s expires=%s  # %s\n",
			r.Request.Name, strings.Join(r.Request.Scopes, ","), r.Request.ExpiresAt.UTC().Format(time.RFC3339), r.Reason)
	}
	for _, w := range p.Writes {
		tok := "the new token"
		if w.TokenID != 0 {
			tok = fmt.Sprintf("token %d", w.TokenID)
		}
		fmt.Fprintf(&b, "write   secret %s/%s with %s  # %s\n", w.Namespace, w.Name, tok, w.Reason)
	}
	for _, pa := range p.Patches {
		fmt.Fprintf(&b, "patch   serviceaccount %s/%s to list %s  # %s\n", pa.Namespace, pa.Name, pa.SecretName, pa.Reason)
	}
	for _, r := range p.Revokes {
		fmt.Fprintf(&b, "revoke  deploy token %d %q  # %s\n", r.TokenID, r.Name, r.Reason)
	}
	for _, w := range p.Warnings {
		fmt.Fprintf(&b, "warning %s\n", w)
	}
	return b.String()
}

// Summary is the one line a run-once prints, for CronJob logs and humans.
func (r Report) Summary() string {
	if r.Err != nil {
		return fmt.Sprintf("cycle failed after %s: %v", r.Duration.Round(time.Millisecond), oneLine(r.Err.Error()))
	}
	if r.Plan.Empty() {
		return fmt.Sprintf("cycle succeeded in %s: nothing to do", r.Duration.Round(time.Millisecond))
	}
	var parts []string
	if c := r.Outcome.Created; c != nil {
		parts = append(parts, fmt.Sprintf("created token %d", c.ID))
	}
	parts = append(parts,
		fmt.Sprintf("wrote %d secret(s)", r.Outcome.Written),
		fmt.Sprintf("patched %d serviceaccount(s)", r.Outcome.Patched),
		fmt.Sprintf("revoked %d token(s)", r.Outcome.Revoked))
	return fmt.Sprintf("cycle succeeded in %s: %s", r.Duration.Round(time.Millisecond), strings.Join(parts, ", "))
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
