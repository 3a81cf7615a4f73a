package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/rotator-dev/rotator/internal/config"
	"github.com/rotator-dev/rotator/internal/gitlab"
	"github.com/rotator-dev/rotator/internal/kube"
	"github.com/rotator-dev/rotator/internal/registry"
	"github.com/rotator-dev/rotator/internal/rotation"
	"github.com/rotator-dev/rotator/internal/secret"
	"github.com/rotator-dev/rotator/internal/version"
)

// Exit statuses; scripts and CronJobs depend on them.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

// exitError carries an exit status with its one-line message.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func usageErr(err error) error  { return &exitError{code: exitUsage, err: err} }
func failedErr(err error) error { return &exitError{code: exitFailed, err: err} }

// app is one invocation: its streams and environment.
type app struct {
	stdout, stderr io.Writer
	env            func(string) (string, bool)
}

func run(args []string, stdout, stderr io.Writer, env func(string) (string, bool)) int {
	a := &app{stdout: stdout, stderr: stderr, env: env}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	code := exitUsage // cobra's own errors are about arguments and flags
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	fmt.Fprintf(stderr, "rotator: %s\n", strings.Join(strings.Fields(err.Error()), " "))
	return code
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "rotator",
		Short: "Rotate a GitLab deploy token into Kubernetes image pull Secrets",
		Long: `rotator keeps image pulls from a private GitLab container registry working.

Each cycle lists the managed deploy tokens in GitLab, reads every target Secret
and ServiceAccount, decides what to do, and only then acts: it creates one new
read_registry deploy token when the current one is due, writes it into every
target Secret in place, makes every target ServiceAccount list the Secret, and
revokes superseded tokens only after every Secret holds the new one.

Configuration comes from a YAML file (--config), then ROTATOR_* environment
variables, then flags; each later source wins. The GitLab API token is read
from a file, never from a flag.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErr(err) })
	root.AddCommand(a.runOnceCommand(), a.daemonCommand(), a.statusCommand(), a.checkConfigCommand(), a.versionCommand())
	return root
}

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version and the Go toolchain that built it",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(a.stdout, "rotator %s (%s)\n", version.Version, version.GoVersion())
			return nil
		},
	}
}

func (a *app) checkConfigCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "check-config",
		Short: "Validate the configuration and print the effective config, without secrets",
		Long: `check-config loads the config file, environment and flags exactly as run-once
does, validates them, reads the GitLab API token file and the CA bundle, and
prints the effective configuration with the token redacted. It makes no
network calls. Exit status 0 when valid, 2 when not.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.loadConfig(cmd.Flags())
			if err != nil {
				return err
			}
			fmt.Fprint(a.stdout, cfg.Redacted())
			return nil
		},
	}
	config.RegisterFlags(cmd.Flags())
	return cmd
}

func (a *app) runOnceCommand() *cobra.Command {
	var opts rotation.Options
	cmd := &cobra.Command{
		Use:   "run-once",
		Short: "Run one rotation cycle, then exit",
		Long: `run-once runs one cycle: observe GitLab and the cluster, decide, and apply.

It prints the actions as JSON log lines on stderr and a one-line summary on
stdout. Exit status: 0 when the cycle succeeded (including when there was
nothing to do), 1 when it failed, 2 for bad configuration or usage.

With --pushgateway, the run's metrics (the daemon's, less rotator_leader) go
to that Prometheus Pushgateway under job rotator-run-once, so that alerts see
CronJob runs too. A failed push is logged and does not change the exit status.

The environment variable ROTATOR_NOW (RFC 3339) replaces the current time in
every decision; it exists for tests that move the GitLab emulator's clock.`,
		Example: `  rotator run-once --config /etc/rotator/config.yaml
  rotator run-once --config /etc/rotator/config.yaml --dry-run
  rotator run-once --config /etc/rotator/config.yaml --force`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, deps, err := a.prepare(cmd.Flags())
			if err != nil {
				return err
			}
			if opts.DryRun {
				rep := deps.runner.RunOnce(cmd.Context(), opts)
				if rep.Err != nil {
					// No plan was made; an empty one would read as "nothing to do".
					return failedErr(rep.Err)
				}
				fmt.Fprint(a.stdout, rep.Plan.Describe())
				return nil
			}
			var rep rotation.Report
			var coordinationErr error // the Lease or the hand-over failed
			if cfg.Daemon.LeaderElection {
				ran, err := a.runOnceCoordinated(cmd.Context(), cfg, deps, opts, log)
				if ran == nil {
					return err // a daemon ran it, and its own metrics report it
				}
				rep, coordinationErr = *ran, err
			} else {
				rep = deps.runner.RunOnce(cmd.Context(), opts)
			}
			if coordinationErr == nil {
				fmt.Fprintln(a.stdout, rep.Summary())
			}
			if cfg.RunOnce.Pushgateway != "" {
				pushMetrics(cmd.Context(), cfg, deps, rep, log)
			}
			switch {
			case coordinationErr != nil:
				return coordinationErr
			case rep.Err != nil:
				return failedErr(errors.New("cycle failed"))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&opts.Force, "force", false, "rotate now even if the current token is not due")
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "print the plan and write nothing to GitLab or Kubernetes")
	config.RegisterFlags(cmd.Flags())
	return cmd
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErr(fmt.Errorf("%s takes no arguments, got %q", cmd.CommandPath(), args[0]))
	}
	return nil
}

func (a *app) loadConfig(flags *pflag.FlagSet) (*config.Config, error) {
	cfg, err := config.Load(config.Sources{Env: a.env, Flags: flags})
	if err != nil {
		return nil, usageErr(err)
	}
	return cfg, nil
}

// prepare does what every command that talks to GitLab and the cluster
// does first: load and validate the config, set up logging and the clock,
// and build the clients, all without a network call.
func (a *app) prepare(flags *pflag.FlagSet) (*config.Config, *slog.Logger, *deps, error) {
	cfg, err := a.loadConfig(flags)
	if err != nil {
		return nil, nil, nil, err
	}
	log := newLogger(a.stderr, cfg.Log)
	now, err := a.clock(log)
	if err != nil {
		return nil, nil, nil, err
	}
	deps, err := newDeps(cfg, log, now)
	if err != nil {
		return nil, nil, nil, err
	}
	if point, ok := a.env("ROTATOR_TEST_CRASH_AT"); ok && point != "" {
		deps.runner.Checkpoint = crashAt(point, log)
	}
	return cfg, log, deps, nil
}

// crashAt arms the crash tests' hook: SIGKILL this process at the named
// step boundary, as a node failure would, with no cleanup of any kind.
func crashAt(point string, log *slog.Logger) func(string) {
	log.Warn("ROTATOR_TEST_CRASH_AT is set: this process kills itself at a step boundary; for crash tests only", "point", point)
	return func(reached string) {
		if reached == point {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
	}
}

// clock honours ROTATOR_NOW, the test clock of design.md.
func (a *app) clock(log *slog.Logger) (func() time.Time, error) {
	v, ok := a.env("ROTATOR_NOW")
	if !ok || v == "" {
		return time.Now, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return nil, usageErr(fmt.Errorf("ROTATOR_NOW: %q is not an RFC 3339 time", v))
	}
	log.Warn("ROTATOR_NOW is set: every decision uses this time instead of the clock; never set it in production", "now", t.UTC().Format(time.RFC3339))
	return func() time.Time { return t }, nil
}

func newLogger(w io.Writer, c config.Log) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

var klogOnce sync.Once

// wrapKubeTransport lets in-process tests put a fault proxy between the
// rotator and the API server; it is nil in every real run.
var wrapKubeTransport func(http.RoundTripper) http.RoundTripper

// deps are the clients a command works with.
type deps struct {
	runner *rotation.Runner
	gitlab *gitlab.Client
	kube   kubernetes.Interface
}

// newDeps builds the GitLab and Kubernetes clients. It makes no network
// call, so a bad config fails here before anything is written.
func newDeps(cfg *config.Config, log *slog.Logger, now func() time.Time) (*deps, error) {
	// client-go logs through klog; keep one structured stream. klog's logger
	// is process-global, so only the first command's logger is installed.
	klogOnce.Do(func() { klog.SetSlogLogger(log) })
	gl, err := gitlab.NewClient(gitlab.Options{
		BaseURL:   cfg.GitLab.URL,
		Token:     secret.New(cfg.APIToken()),
		CAPool:    cfg.CAPool(),
		Project:   cfg.GitLab.Project,
		Group:     cfg.GitLab.Group,
		Timeout:   cfg.GitLab.Timeout.Std(),
		UserAgent: "rotator/" + version.Version,
	})
	if err != nil {
		return nil, usageErr(err)
	}
	restCfg, err := kube.RESTConfig(cfg.Kubeconfig, cfg.GitLab.Timeout.Std())
	if err != nil {
		return nil, usageErr(err)
	}
	if wrapKubeTransport != nil {
		restCfg.Wrap(wrapKubeTransport)
	}
	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return nil, usageErr(fmt.Errorf("kubernetes client: %w", err))
	}
	var targets []rotation.TargetSpec
	for _, t := range cfg.EffectiveTargets() {
		targets = append(targets, rotation.TargetSpec{
			Namespace: t.Namespace, NamespaceSelector: t.NamespaceSelector,
			SecretName: t.SecretName, ServiceAccounts: t.ServiceAccounts,
		})
	}
	cluster := kube.NewClient(cs)
	cluster.OnEventError(func(err error) { log.Warn("could not record an Event", "error", err) })
	var verifier rotation.Verifier
	if cfg.Verify.Enabled {
		verifier = &registry.Verifier{
			Repository: cfg.Verify.Repository,
			Tag:        cfg.Verify.Tag,
			Transport:  gitlab.Transport(cfg.CAPool()),
			Insecure:   cfg.GitLab.AllowInsecureHTTP,
			Timeout:    cfg.GitLab.Timeout.Std(),
			Attempts:   5,
			Wait:       2 * time.Second,
		}
	} else {
		log.Warn("verify is off: new tokens reach the Secrets without proof that they can pull")
	}
	return &deps{
		gitlab: gl,
		kube:   cs,
		runner: &rotation.Runner{
			GitLab:   gl,
			Cluster:  cluster,
			Events:   cluster,
			Verifier: verifier,
			Policy: rotation.Policy{
				Prefix:       cfg.Token.Prefix,
				Scopes:       cfg.Token.Scopes,
				Lifetime:     cfg.Token.Lifetime.Std(),
				RenewBefore:  cfg.Token.RenewBefore.Std(),
				RegistryHost: cfg.GitLab.RegistryHost,
				OrphanGrace:  cfg.Token.OrphanGrace.Std(),
			},
			Targets: targets,
			Now:     now,
			Log:     log,
		},
	}, nil
}
