package main

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net/http"

	"github.com/rotator-dev/rotator/internal/config"
	"github.com/rotator-dev/rotator/internal/metrics"
	"github.com/rotator-dev/rotator/internal/rotation"
	"github.com/rotator-dev/rotator/internal/version"
)

// pushMetrics hands one run's metrics to the Pushgateway. Its failure is
// logged, not returned: the cycle's result is the exit status, and a run
// that stops pushing shows as RotatorAbsent.
func pushMetrics(ctx context.Context, cfg *config.Config, deps *deps, rep rotation.Report, log *slog.Logger) {
	m := metrics.New(version.Version, version.GoVersion(), cfg.Token.RenewBefore.Std())
	m.ObserveCycle(rep)
	tctx, cancel := context.WithTimeout(ctx, cfg.GitLab.Timeout.Std())
	defer cancel()
	switch exp, ok, err := deps.gitlab.APITokenExpiry(tctx); {
	case err != nil:
		log.Warn("could not read the GitLab API token's expiry", "error", err)
	case ok:
		m.SetAPITokenExpiry(exp)
	}
	pctx, cancel := context.WithTimeout(ctx, cfg.GitLab.Timeout.Std())
	defer cancel()
	// A private CA that signs GitLab's certificate usually signs the
	// Pushgateway's too.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if pool := cfg.CAPool(); pool != nil {
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	client := &http.Client{Timeout: cfg.GitLab.Timeout.Std(), Transport: transport}
	instance := cfg.Daemon.LeaseNamespace + "/" + cfg.Daemon.LeaseName
	if err := m.Push(pctx, client, cfg.RunOnce.Pushgateway, instance, rep.Err == nil); err != nil {
		log.Error("could not push metrics", "error", err)
		return
	}
	log.Info("pushed metrics", "action", "push-metrics", "pushgateway", cfg.RunOnce.Pushgateway, "job", metrics.PushJob, "instance", instance)
}
