package config

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
)

type kind int

const (
	kString kind = iota
	kBool
	kDuration
	kList
)

// field ties a config path to its flag and env var, so the three layers
// cannot drift apart.
type field struct {
	path  string
	flag  string
	env   string
	kind  kind
	usage string
	ptr   func(*Config) any // *string, *bool, *Duration or *[]string
}

const (
	flagConfig    = "config"
	envConfig     = "ROTATOR_CONFIG"
	flagNamespace = "namespaces"
	envNamespace  = "ROTATOR_NAMESPACES"
	flagSelector  = "namespace-selector"
	envSelector   = "ROTATOR_NAMESPACE_SELECTOR"
)

var fields = []field{
	{"gitlab.url", "gitlab-url", "ROTATOR_GITLAB_URL", kString,
		"GitLab base URL, without /api/v4; https unless --gitlab-allow-insecure-http (default https://gitlab.com)",
		func(c *Config) any { return &c.GitLab.URL }},
	{"gitlab.allowInsecureHTTP", "gitlab-allow-insecure-http", "ROTATOR_GITLAB_ALLOW_INSECURE_HTTP", kBool,
		"allow an http:// GitLab URL, which sends the API token in clear text; for tests only (default false)",
		func(c *Config) any { return &c.GitLab.AllowInsecureHTTP }},
	{"gitlab.caFile", "gitlab-ca-file", "ROTATOR_GITLAB_CA_FILE", kString,
		"PEM bundle trusted for GitLab and the registry in addition to the system roots; must hold at least one certificate (default none)",
		func(c *Config) any { return &c.GitLab.CAFile }},
	{"gitlab.tokenFile", "gitlab-token-file", "ROTATOR_GITLAB_TOKEN_FILE", kString,
		"file holding the rotator's own GitLab API token on one line; required (the token itself is never taken from a flag)",
		func(c *Config) any { return &c.GitLab.TokenFile }},
	{"gitlab.project", "project", "ROTATOR_PROJECT", kString,
		"GitLab project whose deploy tokens are managed: numeric id or full path grp/sub/proj; exactly one of project and group",
		func(c *Config) any { return &c.GitLab.Project }},
	{"gitlab.group", "group", "ROTATOR_GROUP", kString,
		"GitLab group whose deploy tokens are managed: numeric id or full path grp/sub; exactly one of project and group",
		func(c *Config) any { return &c.GitLab.Group }},
	{"gitlab.registryHost", "registry-host", "ROTATOR_REGISTRY_HOST", kString,
		"registry host[:port] written into the pull Secrets, no scheme or path (default registry.gitlab.com when the GitLab host is gitlab.com, otherwise required)",
		func(c *Config) any { return &c.GitLab.RegistryHost }},
	{"gitlab.timeout", "gitlab-timeout", "ROTATOR_GITLAB_TIMEOUT", kDuration,
		"timeout of each GitLab and registry request, > 0 (default 30s)",
		func(c *Config) any { return &c.GitLab.Timeout }},
	{"token.prefix", "token-prefix", "ROTATOR_TOKEN_PREFIX", kString,
		"name prefix of managed deploy tokens; others are never touched; [A-Za-z0-9._-], at most 200 chars, not a prefix of gitlab-deploy-token (default k8s-pull)",
		func(c *Config) any { return &c.Token.Prefix }},
	{"token.scopes", "token-scopes", "ROTATOR_TOKEN_SCOPES", kList,
		"comma-separated deploy token scopes, no duplicates, including read_registry or write_registry; allowed: " + strings.Join(allowedScopes, ", ") + " (default read_registry)",
		func(c *Config) any { return &c.Token.Scopes }},
	{"token.lifetime", "token-lifetime", "ROTATOR_TOKEN_LIFETIME", kDuration,
		"lifetime of each new deploy token, e.g. 30d or 1d12h; > 0 and at most 365d (default 30d)",
		func(c *Config) any { return &c.Token.Lifetime }},
	{"token.renewBefore", "renew-before", "ROTATOR_RENEW_BEFORE", kDuration,
		"rotate when the current token expires within this; > 0 and shorter than the lifetime (default a third of the lifetime)",
		func(c *Config) any { return &c.Token.RenewBefore }},
	{"token.orphanGrace", "orphan-grace", "ROTATOR_ORPHAN_GRACE", kDuration,
		"keep a managed token that no Secret holds until it is this old, in case another rotator is about to write it; >= 0; raise it only when rotators run without leader election, since after a crash the orphan then lives this long (default 0)",
		func(c *Config) any { return &c.Token.OrphanGrace }},
	{"secretName", "secret-name", "ROTATOR_SECRET_NAME", kString,
		"pull Secret name in each target namespace, a DNS-1123 subdomain (default gitlab)",
		func(c *Config) any { return &c.SecretName }},
	{"serviceAccounts", "service-accounts", "ROTATOR_SERVICE_ACCOUNTS", kList,
		"comma-separated ServiceAccounts given the Secret in imagePullSecrets in each target namespace; an empty flag value means none (default default,agones-sdk)",
		func(c *Config) any { return &c.ServiceAccounts }},
	{"schedule", "schedule", "ROTATOR_SCHEDULE", kString,
		`cron schedule of daemon cycles: 5 fields, or @every/@hourly style (default "*/15 * * * *")`,
		func(c *Config) any { return &c.Schedule }},
	{"daemon.listen", "listen", "ROTATOR_LISTEN", kString,
		"daemon: address serving /metrics, /healthz and /readyz (default :8080)",
		func(c *Config) any { return &c.Daemon.Listen }},
	{"daemon.leaderElection", "leader-elect", "ROTATOR_LEADER_ELECT", kBool,
		"daemon: share a coordination.k8s.io Lease so that one replica acts; run-once hands its request to a live leader (default true)",
		func(c *Config) any { return &c.Daemon.LeaderElection }},
	{"daemon.leaseNamespace", "lease-namespace", "ROTATOR_LEASE_NAMESPACE", kString,
		"namespace of the Lease (default the pod's namespace, else rotator-system)",
		func(c *Config) any { return &c.Daemon.LeaseNamespace }},
	{"daemon.leaseName", "lease-name", "ROTATOR_LEASE_NAME", kString,
		"name of the Lease (default rotator)",
		func(c *Config) any { return &c.Daemon.LeaseName }},
	{"daemon.retryMin", "retry-min", "ROTATOR_RETRY_MIN", kDuration,
		"daemon: first retry after a failed cycle; doubles up to --retry-max (default 1m)",
		func(c *Config) any { return &c.Daemon.RetryMin }},
	{"daemon.retryMax", "retry-max", "ROTATOR_RETRY_MAX", kDuration,
		"daemon: longest wait between retries after failures (default 15m)",
		func(c *Config) any { return &c.Daemon.RetryMax }},
	{"runOnce.pushgateway", "pushgateway", "ROTATOR_PUSHGATEWAY", kString,
		"run-once: Prometheus Pushgateway base URL, e.g. http://prometheus-pushgateway.monitoring.svc:9091, that receives each run's metrics under job rotator-run-once (default none)",
		func(c *Config) any { return &c.RunOnce.Pushgateway }},
	{"verify.enabled", "verify", "ROTATOR_VERIFY", kBool,
		"prove each new token can pull (registry ping, token exchange, manifest HEAD) before any Secret holds it; turning it off weakens the guarantee that old tokens are revoked only after a working one is in place (default true)",
		func(c *Config) any { return &c.Verify.Enabled }},
	{"verify.repository", "verify-repository", "ROTATOR_VERIFY_REPOSITORY", kString,
		"image path whose manifest the check HEADs (default gitlab.project when it is a path)",
		func(c *Config) any { return &c.Verify.Repository }},
	{"verify.tag", "verify-tag", "ROTATOR_VERIFY_TAG", kString,
		"tag the check HEADs; it need not exist (default latest)",
		func(c *Config) any { return &c.Verify.Tag }},
	{"log.format", "log-format", "ROTATOR_LOG_FORMAT", kString,
		"log format: json or text (default json)",
		func(c *Config) any { return &c.Log.Format }},
	{"log.level", "log-level", "ROTATOR_LOG_LEVEL", kString,
		"log level: debug, info, warn or error (default info)",
		func(c *Config) any { return &c.Log.Level }},
	{"kubeconfig", "kubeconfig", "ROTATOR_KUBECONFIG", kString,
		"kubeconfig path; empty means in-cluster (default $KUBECONFIG, else in-cluster)",
		func(c *Config) any { return &c.Kubeconfig }},
}

// RegisterFlags registers every config flag on fs. Flags have no pflag
// default so that Load can tell "not given" from "given"; the real default,
// env var and rule are in the help text.
func RegisterFlags(fs *pflag.FlagSet) {
	fs.String(flagConfig, "", "YAML config file; env vars and flags override its values (env "+envConfig+")")
	for _, f := range fields {
		usage := f.usage + " (env " + f.env + ")"
		if strings.Contains(f.usage, "(default ") && strings.HasSuffix(f.usage, ")") {
			usage = strings.TrimSuffix(f.usage, ")") + "; env " + f.env + ")"
		}
		switch f.kind {
		case kString:
			fs.String(f.flag, "", usage)
		case kBool:
			fs.Bool(f.flag, false, usage)
		case kDuration:
			fs.Var(new(durationFlag), f.flag, usage)
		case kList:
			fs.StringSlice(f.flag, nil, usage)
		}
	}
	fs.StringSlice(flagNamespace, nil, "comma-separated target namespaces; with --namespace-selector, replaces all targets from the file and env (env "+envNamespace+")")
	fs.String(flagSelector, "", "label selector choosing target namespaces, e.g. team=games; with --namespaces, replaces all targets from the file and env (env "+envSelector+")")
}

// durationFlag checks the value at parse time but keeps the text, so that an
// unset flag shows no misleading "(default 0s)" in help.
type durationFlag struct{ s string }

func (d *durationFlag) String() string { return d.s }
func (d *durationFlag) Type() string   { return "duration" }
func (d *durationFlag) Set(s string) error {
	if _, err := ParseDuration(s); err != nil {
		return err
	}
	d.s = s
	return nil
}

// layerValue is one raw value from env or flags.
type layerValue struct {
	text string
	list []string
	name string // env var or "--flag", for messages
}

func (c *Config) applyEnv(env func(string) (string, bool)) error {
	get := func(name string, _ kind) (layerValue, bool) {
		v, ok := env(name)
		if !ok {
			return layerValue{}, false
		}
		return layerValue{text: v, list: splitList(v), name: name}, true
	}
	return c.applyLayer(get, func(f field) string { return f.env }, envNamespace, envSelector)
}

func (c *Config) applyFlags(fs *pflag.FlagSet) error {
	if fs == nil {
		return nil
	}
	get := func(name string, k kind) (layerValue, bool) {
		f := fs.Lookup(name)
		if f == nil || !f.Changed {
			return layerValue{}, false
		}
		v := layerValue{text: f.Value.String(), name: "--" + name}
		if k == kList {
			if sv, ok := f.Value.(pflag.SliceValue); ok {
				v.list = cleanList(sv.GetSlice())
			} else {
				v.list = splitList(strings.Trim(v.text, "[]"))
			}
		}
		return v, true
	}
	return c.applyLayer(get, func(f field) string { return f.flag }, flagNamespace, flagSelector)
}

// applyLayer sets every value the layer has. Namespaces and selector are
// special: given at a layer, they replace all lower-layer targets, because
// merging target lists across layers would be impossible to predict.
func (c *Config) applyLayer(get func(string, kind) (layerValue, bool), name func(field) string, nsName, selName string) error {
	for _, f := range fields {
		v, ok := get(name(f), f.kind)
		if !ok {
			continue
		}
		if err := c.set(f, v); err != nil {
			return err
		}
	}
	ns, nsOK := get(nsName, kList)
	sel, selOK := get(selName, kString)
	if !nsOK && !selOK {
		return nil
	}
	clearOrigins(c.loaded, "targets")
	c.Targets = nil
	if nsOK {
		for _, n := range ns.list {
			c.setOrigin(fmt.Sprintf("targets[%d]", len(c.Targets)), "by "+ns.name)
			c.Targets = append(c.Targets, Target{Namespace: n})
		}
	}
	if selOK && sel.text != "" {
		c.setOrigin(fmt.Sprintf("targets[%d]", len(c.Targets)), "by "+sel.name)
		c.Targets = append(c.Targets, Target{NamespaceSelector: sel.text})
	}
	var by []string
	for _, n := range []string{ns.name, sel.name} {
		if n != "" {
			by = append(by, n)
		}
	}
	c.setOrigin("targets", "by "+strings.Join(by, " and "))
	return nil
}

func (c *Config) set(f field, v layerValue) error {
	switch p := f.ptr(c).(type) {
	case *string:
		*p = v.text
	case *bool:
		b, err := strconv.ParseBool(v.text)
		if err != nil {
			return &ValidationError{Field: v.name, Problem: fmt.Sprintf("invalid boolean %q", v.text)}
		}
		*p = b
	case *Duration:
		d, err := ParseDuration(v.text)
		if err != nil {
			return &ValidationError{Field: v.name, Problem: err.Error()}
		}
		*p = d
	case *[]string:
		*p = append([]string{}, v.list...)
	}
	clearOrigins(c.loaded, f.path)
	c.setOrigin(f.path, "by "+v.name)
	return nil
}

// splitList parses a comma list, trimming blanks and dropping empty items.
func splitList(s string) []string { return cleanList(strings.Split(s, ",")) }

func cleanList(in []string) []string {
	out := []string{}
	for _, s := range in {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
