// Command gitlab-emulator serves internal/gitlabemu over HTTP so that
// end-to-end tests and scripts can run the rotator against a GitLab fake
// from outside the test process. It is a test tool: its control API under
// /-/emulator/ is unauthenticated.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rotator-dev/rotator/internal/gitlabemu"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "gitlab-emulator:", err)
		os.Exit(1)
	}
}

// errUsage marks flag errors the flag package has already reported.
var errUsage = errors.New("usage")

// namespaceFlag collects repeatable ID=full/path flags.
type namespaceFlag struct {
	entries map[int64]string
}

func (f *namespaceFlag) String() string {
	if f == nil || len(f.entries) == 0 {
		return ""
	}
	ids := make([]int64, 0, len(f.entries))
	for id := range f.entries {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	var parts []string
	for _, id := range ids {
		parts = append(parts, fmt.Sprintf("%d=%s", id, f.entries[id]))
	}
	return strings.Join(parts, ",")
}

func (f *namespaceFlag) Set(v string) error {
	idStr, path, ok := strings.Cut(v, "=")
	id, err := strconv.ParseInt(idStr, 10, 64)
	path = strings.Trim(path, "/")
	if !ok || err != nil || id <= 0 || path == "" {
		return fmt.Errorf("want ID=full/path, e.g. 7=games/fleet, got %q", v)
	}
	if f.entries == nil {
		f.entries = map[int64]string{}
	}
	f.entries[id] = path
	return nil
}

type config struct {
	listen    string
	projects  namespaceFlag
	groups    namespaceFlag
	tokenFile string
	now       string
	readyFile string
}

func parseFlags(args []string, out io.Writer) (*config, error) {
	cfg := &config{}
	flags := flag.NewFlagSet("gitlab-emulator", flag.ContinueOnError)
	flags.SetOutput(out)
	flags.StringVar(&cfg.listen, "listen", "127.0.0.1:8929", "address to listen on (port 0 picks a free port; see --ready-file)")
	flags.Var(&cfg.projects, "project", "project as ID=full/path; repeatable (default 7=games/fleet when none is given)")
	flags.Var(&cfg.groups, "group", "group as ID=full/path; repeatable; group roles are inherited by projects below its path")
	flags.StringVar(&cfg.tokenFile, "api-token-file", "", "file holding the API token (PAT): read if it exists, otherwise a random glpat- token is generated and written there with mode 0600. "+
		"The token has scope api, Maintainer on every project, Owner on every group, and expires 300 days after the start clock. "+
		"Without this flag no API token exists until one is added through POST /-/emulator/access_tokens")
	flags.StringVar(&cfg.now, "now", "", "start the emulator clock at this RFC 3339 time instead of the current time (the clock does not tick; move it via /-/emulator/clock)")
	flags.StringVar(&cfg.readyFile, "ready-file", "", "once listening, write the listen address (host:port) to this file so scripts can wait for it; removed on shutdown")
	flags.Usage = func() {
		fmt.Fprintf(out, `Usage: gitlab-emulator [flags]

Serves a strict GitLab API emulator for tests: the deploy-token REST API and
GET /personal_access_tokens/self under /api/v4, the container registry's token
service at /jwt/auth (RS256 JWTs; public keys at /-/emulator/jwks), and an
unauthenticated control API under /-/emulator/ (clock, faults, request log,
seeding). Never expose it outside a test network. Each request is
logged to stderr as method, path and status; token values are never logged.

Flags:
`)
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, errUsage
	}
	if flags.NArg() > 0 {
		fmt.Fprintf(out, "unexpected arguments: %q\n", flags.Args())
		flags.Usage()
		return nil, errUsage
	}
	if len(cfg.projects.entries) == 0 {
		_ = cfg.projects.Set("7=games/fleet")
	}
	return cfg, nil
}

// run is main without the process: tests call it with their own context,
// arguments and log writer.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	logger := log.New(stderr, "", log.LstdFlags|log.LUTC)

	emu := gitlabemu.New()
	if cfg.now != "" {
		t, err := time.Parse(time.RFC3339Nano, cfg.now)
		if err != nil {
			return fmt.Errorf("--now: %w", err)
		}
		emu.SetNow(t)
	}
	roles := map[string]gitlabemu.Role{}
	for id, path := range cfg.projects.entries {
		emu.AddProject(id, path)
		roles[fmt.Sprintf("project:%d", id)] = gitlabemu.Maintainer
	}
	for id, path := range cfg.groups.entries {
		emu.AddGroup(id, path)
		roles[fmt.Sprintf("group:%d", id)] = gitlabemu.Owner
	}
	if cfg.tokenFile != "" {
		secret, created, err := loadOrCreateToken(cfg.tokenFile)
		if err != nil {
			return err
		}
		exp := emu.Now().Add(300 * 24 * time.Hour)
		emu.AddAccessToken(gitlabemu.AccessToken{Token: secret, Scopes: []string{"api"}, ExpiresAt: &exp, Roles: roles})
		verb := "read"
		if created {
			verb = "generated"
		}
		logger.Printf("API token %s: %s (expires %s)", verb, cfg.tokenFile, exp.Format(time.RFC3339))
	} else {
		logger.Printf("no --api-token-file: add API tokens with POST /-/emulator/access_tokens")
	}

	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           logRequests(logger, emu),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          logger,
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	addr := ln.Addr().String()
	logger.Printf("listening on http://%s (projects %s; groups %s; clock %s)", addr, cfg.projects.String(), cfg.groups.String(), emu.Now().Format(time.RFC3339))
	if cfg.readyFile != "" {
		if err := writeFileAtomic(cfg.readyFile, []byte(addr+"\n"), 0o644); err != nil {
			_ = srv.Close()
			return fmt.Errorf("--ready-file: %w", err)
		}
		defer os.Remove(cfg.readyFile)
	}

	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	logger.Printf("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		// A long fault delay can hold a request open; do not wait for it.
		_ = srv.Close()
	}
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

const tokenAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"

// loadOrCreateToken keeps the PAT stable across restarts when the file
// exists, and otherwise creates it exclusively so two emulators never race
// to write different tokens into the same file.
func loadOrCreateToken(path string) (secret string, created bool, err error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		secret = strings.TrimSpace(string(b))
		if secret == "" {
			return "", false, fmt.Errorf("--api-token-file %s is empty", path)
		}
		return secret, false, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", false, fmt.Errorf("--api-token-file: %w", err)
	}
	r := make([]byte, 20)
	if _, err := rand.Read(r); err != nil {
		return "", false, err
	}
	for i := range r {
		r[i] = tokenAlphabet[r[i]&63]
	}
	secret = "glpat-" + string(r)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", false, fmt.Errorf("--api-token-file: %w", err)
	}
	if _, err := f.WriteString(secret + "\n"); err != nil {
		f.Close()
		return "", false, fmt.Errorf("--api-token-file: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", false, fmt.Errorf("--api-token-file: %w", err)
	}
	return secret, true, nil
}

// writeFileAtomic renames into place so a script polling for the file never
// reads it half-written.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".ready-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// statusRecorder captures the status for the log line. Unwrap lets the
// emulator still hijack the connection for ResetConnection faults.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// logRequests logs method, escaped path and status only: query strings and
// headers can carry tokens and are never logged. Status 0 means the
// connection was dropped without an answer (a fault, or the client left).
func logRequests(logger *log.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			logger.Printf("%s %s %d %s", r.Method, r.URL.EscapedPath(), rec.status, time.Since(start).Round(time.Microsecond))
		}()
		next.ServeHTTP(rec, r)
	})
}
