package main

import (
	"bytes"
	"strings"
	"testing"
)

// CLI behaviour that needs no cluster: usage errors exit 2 with one line.
func TestUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"run-once", "--no-such-flag"}, 2, "no-such-flag"},
		{[]string{"run-once", "extra"}, 2, "takes no arguments"},
		{[]string{"nonsense"}, 2, "unknown command"},
		{[]string{"check-config"}, 2, "tokenFile"},
		{[]string{"run-once", "--token-lifetime", "-3d"}, 2, "token-lifetime"},
		{[]string{"version"}, 0, ""},
	}
	for _, tc := range cases {
		var out, errOut bytes.Buffer
		code := run(tc.args, &out, &errOut, func(string) (string, bool) { return "", false })
		if code != tc.code {
			t.Errorf("%v: exit %d, want %d (stderr %q)", tc.args, code, tc.code, errOut.String())
			continue
		}
		if tc.code != 0 {
			msg := strings.TrimSpace(errOut.String())
			if strings.Contains(msg, "\n") || !strings.Contains(msg, tc.want) {
				t.Errorf("%v: stderr %q, want one line naming %q", tc.args, msg, tc.want)
			}
		}
	}
}

func TestRotatorNowMustBeRFC3339(t *testing.T) {
	w := newWorld(t)
	var out, errOut bytes.Buffer
	env := map[string]string{"ROTATOR_NOW": "tomorrow", "KUBECONFIG": cluster.KubeconfigPath}
	code := run([]string{"run-once", "--config", w.configPath}, &out, &errOut, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if code != 2 || !strings.Contains(errOut.String(), "ROTATOR_NOW") {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if len(w.emu.Requests()) != 0 {
		t.Fatal("GitLab was called")
	}
}
