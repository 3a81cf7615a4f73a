// Package image checks what the Dockerfile builds, without a Docker engine:
// it lays out the build context as .dockerignore leaves it, runs the
// Dockerfile's own build command there and inspects the result.
package image

import (
	"bufio"
	"debug/elf"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

const repoRoot = "../.."

// buildLine extracts the `go build` the Dockerfile runs, so this test
// breaks when the two drift apart.
func buildLine(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.ReplaceAll(string(raw), "\\\n", " ")
	m := regexp.MustCompile(`RUN (CGO_ENABLED=0 [^\n]*go build [^\n]+)`).FindStringSubmatch(joined)
	if m == nil {
		t.Fatal("Dockerfile has no `RUN CGO_ENABLED=0 … go build` line")
	}
	return strings.Join(strings.Fields(m[1]), " ")
}

// TestDockerfileBuildIsStaticAndRuns builds for the two platforms K3s
// clusters run on, from the context Docker would send.
func TestDockerfileBuildIsStaticAndRuns(t *testing.T) {
	line := buildLine(t)
	for _, want := range []string{"-trimpath", "internal/version.Version=${VERSION}", "./cmd/rotator", "GOOS=${TARGETOS}", "GOARCH=${TARGETARCH}"} {
		if !strings.Contains(line, want) {
			t.Fatalf("Dockerfile build lacks %q: %s", want, line)
		}
	}
	context := buildContext(t)
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "rotator")
			cmdline := strings.NewReplacer("${VERSION}", "v0.0.0-test", "${TARGETOS}", "linux", "${TARGETARCH}", arch, "/out/rotator", out).Replace(line)
			cmd := exec.Command("sh", "-c", cmdline)
			cmd.Dir = context
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", cmdline, err, b)
			}
			f, err := elf.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.Machine != machines[arch] {
				t.Fatalf("built for %s, want %s", f.Machine, machines[arch])
			}
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
					t.Fatalf("binary is dynamically linked (%s); distroless/static has no libc", p.Type)
				}
			}
			if arch != runtime.GOARCH {
				return
			}
			// The image is read-only and runs as nonroot in an empty directory.
			run := exec.Command(out, "version")
			run.Dir = t.TempDir()
			run.Env = []string{"HOME=/nonexistent"}
			b, err := run.CombinedOutput()
			if err != nil || !strings.Contains(string(b), "rotator v0.0.0-test") {
				t.Fatalf("version: %v: %s", err, b)
			}
		})
	}
}

// TestGoImageSatisfiesGoMod: the golang image must be at least go.mod's go
// version, since the official images set GOTOOLCHAIN=local and an older one
// would refuse to build.
func TestGoImageSatisfiesGoMod(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^FROM (?:--platform=\S+ )?golang:(\d+\.\d+\.\d+)\b`).FindSubmatch(raw)
	if m == nil {
		t.Fatal("Dockerfile's build stage must use a golang:X.Y.Z image (a full version, not a moving X.Y tag)")
	}
	modRaw, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go (\S+)\s*$`).FindSubmatch(modRaw)
	if goLine == nil {
		t.Fatal("go.mod has no go directive")
	}
	if image, want := string(m[1]), string(goLine[1]); versionLess(image, want) {
		t.Fatalf("Dockerfile builds with golang:%s, go.mod needs go %s", image, want)
	}
}

// TestBuildContextLeavesOutTokens: overlays hold the GitLab token file
// (deploy/<cluster>/token); .dockerignore must keep it out of the context.
func TestBuildContextLeavesOutTokens(t *testing.T) {
	patterns := dockerignore(t)
	for _, path := range []string{"deploy/my-cluster/token", "token", "deploy/examples/overlay/config.yaml", ".git/config"} {
		if !ignored(patterns, path) {
			t.Errorf("%s would be sent to the Docker build", path)
		}
	}
	for _, path := range []string{"go.mod", "go.sum", "cmd/rotator/main.go", "internal/config/config.go"} {
		if ignored(patterns, path) {
			t.Errorf("%s is left out of the Docker build, which needs it", path)
		}
	}
}

// buildContext copies the repository's files, less what .dockerignore
// excludes, into a temporary folder.
func buildContext(t *testing.T) string {
	t.Helper()
	patterns := dockerignore(t)
	dst := t.TempDir()
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(repoRoot, path)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if ignored(patterns, rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func dockerignore(t *testing.T) []*regexp.Regexp {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []*regexp.Regexp
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "!") {
			t.Fatalf(".dockerignore: exceptions (%s) are not handled by this test", line)
		}
		out = append(out, patternRegexp(strings.Trim(filepath.ToSlash(filepath.Clean(line)), "/")))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// patternRegexp follows Docker's rules for the patterns used here: paths
// from the context root, * within one path element, ** across any number.
func patternRegexp(p string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(p); i++ {
		switch {
		case strings.HasPrefix(p[i:], "**/"):
			b.WriteString("(.*/)?")
			i += 2
		case strings.HasPrefix(p[i:], "**"):
			b.WriteString(".*")
			i++
		case p[i] == '*':
			b.WriteString("[^/]*")
		case p[i] == '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(p[i : i+1]))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// ignored reports whether path, or a folder above it, matches a pattern.
func ignored(patterns []*regexp.Regexp, path string) bool {
	for p := path; p != "." && p != "/" && p != ""; p = filepath.ToSlash(filepath.Dir(p)) {
		for _, re := range patterns {
			if re.MatchString(p) {
				return true
			}
		}
	}
	return false
}

// versionLess compares dotted numeric versions.
func versionLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) || i < len(bs); i++ {
		var x, y int
		if i < len(as) {
			x = atoi(as[i])
		}
		if i < len(bs) {
			y = atoi(bs[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	return n
}
