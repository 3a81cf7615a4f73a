package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gitlab "gitlab.com/gitlab-org/api/client-go/v2"
)

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		name         string
		args         []string
		wantErr      error
		wantProjects string
		wantGroups   string
		wantListen   string
	}{
		{"defaults", nil, nil, "7=games/fleet", "", "127.0.0.1:8929"},
		{"repeated", []string{"--project", "7=games/fleet", "--project=9=/games/sub/proj/", "--group", "3=games", "--group", "5=games/sub", "--listen", ":0"}, nil, "7=games/fleet,9=games/sub/proj", "3=games,5=games/sub", ":0"},
		{"bad project", []string{"--project", "games/fleet"}, errUsage, "", "", ""},
		{"bad id", []string{"--group", "0=games"}, errUsage, "", "", ""},
		{"stray argument", []string{"serve"}, errUsage, "", "", ""},
		{"help", []string{"--help"}, flag.ErrHelp, "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			cfg, err := parseFlags(tc.args, &out)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v (output %s)", err, tc.wantErr, out.String())
			}
			if err != nil {
				return
			}
			if cfg.projects.String() != tc.wantProjects || cfg.groups.String() != tc.wantGroups || cfg.listen != tc.wantListen {
				t.Errorf("cfg = projects %q groups %q listen %q", cfg.projects.String(), cfg.groups.String(), cfg.listen)
			}
		})
	}
	var out bytes.Buffer
	if _, err := parseFlags([]string{"-help"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatal(err)
	}
	for _, f := range []string{"-listen", "-project", "-group", "-api-token-file", "-now", "-ready-file", "/-/emulator/"} {
		if !strings.Contains(out.String(), f) {
			t.Errorf("--help does not explain %s:\n%s", f, out.String())
		}
	}
}

// syncBuffer is the log sink; the server goroutines write while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type running struct {
	addr   string
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns
	err    error         // run's result, valid after done
}

// start runs the binary's run() on a free port and waits for its ready file.
func start(t *testing.T, dir string, args ...string) *running {
	t.Helper()
	ready := filepath.Join(dir, "ready")
	args = append([]string{"--listen", "127.0.0.1:0", "--ready-file", ready}, args...)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{logs: &syncBuffer{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		r.err = run(ctx, args, r.logs)
		close(r.done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Error("run did not return after cancel")
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(ready)
		if err == nil {
			r.addr = strings.TrimSpace(string(b))
			return r
		}
		select {
		case <-r.done:
			t.Fatalf("run exited early: %v\n%s", r.err, r.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ready file never appeared\n%s", r.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRunGeneratesTokenAndServes(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "pat")
	r := start(t, dir, "--api-token-file", tokenFile, "--group", "3=games", "--now", "2026-01-02T03:04:05Z")

	b, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	pat := strings.TrimSpace(string(b))
	if !strings.HasPrefix(pat, "glpat-") || len(pat) != len("glpat-")+20 {
		t.Errorf("generated PAT %q", pat)
	}
	if st, _ := os.Stat(tokenFile); st.Mode().Perm() != 0o600 {
		t.Errorf("token file mode = %v, want 0600", st.Mode().Perm())
	}

	c, err := gitlab.NewClient(pat, gitlab.WithBaseURL("http://"+r.addr), gitlab.WithoutRetries())
	if err != nil {
		t.Fatal(err)
	}
	name, scopes := "rotator", []string{"read_registry"}
	created, _, err := c.DeployTokens.CreateProjectDeployToken("games/fleet", &gitlab.CreateProjectDeployTokenOptions{Name: &name, Scopes: &scopes})
	if err != nil {
		t.Fatalf("create on default project: %v", err)
	}
	if _, _, err := c.DeployTokens.CreateGroupDeployToken(3, &gitlab.CreateGroupDeployTokenOptions{Name: &name, Scopes: &scopes}); err != nil {
		t.Errorf("PAT should be Owner of --group: %v", err)
	}

	resp, err := http.Get("http://" + r.addr + "/-/emulator/clock")
	if err != nil {
		t.Fatal(err)
	}
	var clock struct{ Now string }
	_ = json.NewDecoder(resp.Body).Decode(&clock)
	resp.Body.Close()
	if clock.Now != "2026-01-02T03:04:05Z" {
		t.Errorf("clock = %q, want --now", clock.Now)
	}

	// The PAT expires 300 days after the start clock.
	post(t, r.addr, "/-/emulator/clock", `{"advance":"7201h"}`)
	if _, _, err := c.DeployTokens.ListProjectDeployTokens(7, nil); !gitlab.HasStatusCode(err, 401) {
		t.Errorf("PAT after 300 days: %v, want 401", err)
	}

	logs := r.logs.String()
	if !strings.Contains(logs, "POST /api/v4/projects/games%2Ffleet/deploy_tokens 201") {
		t.Errorf("request not logged:\n%s", logs)
	}
	if strings.Contains(logs, pat) || strings.Contains(logs, created.Token) {
		t.Errorf("a secret reached the log:\n%s", logs)
	}

	r.cancel()
	select {
	case <-r.done:
		if r.err != nil {
			t.Errorf("run returned %v on shutdown", r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no graceful shutdown")
	}
	if _, err := os.Stat(filepath.Join(dir, "ready")); !os.IsNotExist(err) {
		t.Errorf("ready file left behind: %v", err)
	}
}

func TestRunReusesTokenFile(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "pat")
	if err := os.WriteFile(tokenFile, []byte("glpat-preset-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := start(t, dir, "--api-token-file", tokenFile, "--project", "12=team/app")
	c, err := gitlab.NewClient("glpat-preset-token", gitlab.WithBaseURL("http://"+r.addr), gitlab.WithoutRetries())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.DeployTokens.ListProjectDeployTokens("team/app", nil); err != nil {
		t.Errorf("preset PAT on --project: %v", err)
	}
	// --project replaces the default project.
	if _, _, err := c.DeployTokens.ListProjectDeployTokens(7, nil); !errors.Is(err, gitlab.ErrNotFound) {
		t.Errorf("default project should be gone: %v", err)
	}
	if b, _ := os.ReadFile(tokenFile); string(b) != "glpat-preset-token\n" {
		t.Errorf("token file rewritten: %q", b)
	}
}

func TestRunResetFaultThroughLogger(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "pat")
	r := start(t, dir, "--api-token-file", tokenFile)
	b, _ := os.ReadFile(tokenFile)
	pat := strings.TrimSpace(string(b))
	post(t, r.addr, "/-/emulator/faults", `{"endpoint":"list_deploy_tokens","onCall":1,"resetConnection":true}`)
	c, _ := gitlab.NewClient(pat, gitlab.WithBaseURL("http://"+r.addr), gitlab.WithoutRetries())
	_, _, err := c.DeployTokens.ListProjectDeployTokens(7, nil)
	var er *gitlab.ErrorResponse
	if err == nil || errors.As(err, &er) {
		t.Errorf("err = %v, want a dropped connection", err)
	}
	if _, _, err := c.DeployTokens.ListProjectDeployTokens(7, nil); err != nil {
		t.Errorf("after the one-shot reset: %v", err)
	}
	// The server logs a hijacked request after the client has already seen
	// the connection drop, so wait for the line.
	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(r.logs.String(), "GET /api/v4/projects/7/deploy_tokens 0") {
		if time.Now().After(deadline) {
			t.Fatalf("reset not logged as status 0:\n%s", r.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRunErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"empty token file", []string{"--api-token-file", empty}, "is empty"},
		{"token dir missing", []string{"--api-token-file", filepath.Join(dir, "no", "pat")}, "api-token-file"},
		{"bad --now", []string{"--now", "tomorrow"}, "--now"},
		{"bad listen", []string{"--listen", "256.0.0.1:99999"}, "listen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := run(context.Background(), append([]string{"--listen", "127.0.0.1:0"}, tc.args...), io.Discard)
			if tc.name == "bad listen" {
				err = run(context.Background(), tc.args, io.Discard)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func post(t *testing.T, addr, path, body string) {
	t.Helper()
	resp, err := http.Post("http://"+addr+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("POST %s = %d", path, resp.StatusCode)
	}
}
