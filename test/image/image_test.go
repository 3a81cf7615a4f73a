// Package image checks what the Dockerfile builds, without a Docker engine:
// it runs the Dockerfile's own build command and inspects the result.
package image

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// buildLine extracts the `go build` the Dockerfile runs, so this test
// breaks when the two drift apart.
func buildLine(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.ReplaceAll(string(raw), "\\\n", " ")
	m := regexp.MustCompile(`RUN (CGO_ENABLED=0 go build [^\n]+)`).FindStringSubmatch(joined)
	if m == nil {
		t.Fatal("Dockerfile has no `RUN CGO_ENABLED=0 go build` line")
	}
	return strings.Join(strings.Fields(m[1]), " ")
}

func TestDockerfileBuildIsStaticAndRuns(t *testing.T) {
	line := buildLine(t)
	for _, want := range []string{"-trimpath", "internal/version.Version=${VERSION}", "./cmd/rotator"} {
		if !strings.Contains(line, want) {
			t.Fatalf("Dockerfile build lacks %q: %s", want, line)
		}
	}
	out := filepath.Join(t.TempDir(), "rotator")
	line = strings.ReplaceAll(line, "${VERSION}", "v0.0.0-test")
	line = strings.ReplaceAll(line, "/out/rotator", out)
	cmd := exec.Command("sh", "-c", line)
	cmd.Dir = "../.."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", line, err, b)
	}

	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Fatalf("binary is dynamically linked (%s); distroless/static has no libc", p.Type)
		}
	}
	// The image is read-only and runs as nonroot in an empty directory.
	run := exec.Command(out, "version")
	run.Dir = t.TempDir()
	run.Env = []string{"HOME=/nonexistent"}
	b, err := run.CombinedOutput()
	if err != nil || !strings.Contains(string(b), "rotator v0.0.0-test") {
		t.Fatalf("version: %v: %s", err, b)
	}
}
