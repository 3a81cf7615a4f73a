package main

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func (w *world) runBinary(bin string, args ...string) (int, string, string) {
	w.t.Helper()
	cmd := exec.Command(bin, append(args, "--config", w.configPath)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "KUBECONFIG=" + cluster.KubeconfigPath, "ROTATOR_NOW=" + w.now.Format(time.RFC3339)}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		w.t.Fatal(err)
	}
	w.transcript.WriteString(out.String() + errOut.String())
	return code, out.String(), errOut.String()
}

func TestBuiltBinaryRotates(t *testing.T) {
	w := newWorld(t)
	bin := sharedBinary(t)

	code, out, stderr := w.runBinary(bin, "run-once")
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, stderr)
	}
	first := w.assertConverged()
	if !strings.Contains(stderr, "ROTATOR_NOW is set") {
		t.Fatalf("no warning about the test clock: %s", stderr)
	}

	g0, k0 := w.gitlabWrites(), w.k8sWrites()
	if code, out, _ := w.runBinary(bin, "run-once"); code != 0 || !strings.Contains(out, "nothing to do") {
		t.Fatalf("second run: exit %d %s", code, out)
	}
	if g, k := w.gitlabWrites()-g0, w.k8sWrites()-k0; g != 0 || k != 0 {
		t.Fatalf("no-op run wrote: gitlab %d, kubernetes %d", g, k)
	}

	w.advance(21 * 24 * time.Hour)
	if code, out, stderr := w.runBinary(bin, "run-once"); code != 0 {
		t.Fatalf("rotation run: exit %d %s %s", code, out, stderr)
	}
	if second := w.assertConverged(); second.ID == first.ID {
		t.Fatal("binary did not rotate past the renewal point")
	}

	// Bad input: exit 2, one line naming the field, no API call at all.
	must(t, os.WriteFile(w.configPath, []byte("token:\n  renewBefor: 3d\n"), 0o600))
	requests := len(w.emu.Requests())
	code, out, stderr = w.runBinary(bin, "run-once")
	if code != 2 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, "renewBefor") {
		t.Fatalf("bad config: exit %d, stderr %q", code, stderr)
	}
	if len(w.emu.Requests()) != requests {
		t.Fatal("bad config still called GitLab")
	}
	w.assertNoLeaks()
}
