// Package config loads the rotator's configuration from a YAML file, ROTATOR_*
// environment variables and flags (each later layer wins), fills defaults and
// validates everything up front, so that bad input ends in one error line
// naming the field before any network call or write happens.
package config

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/pflag"
)

// Config is the effective configuration. Load is the only way to get a valid
// one: it also reads the API token and the CA bundle.
type Config struct {
	GitLab          GitLab   `json:"gitlab"`
	Token           Token    `json:"token"`
	SecretName      string   `json:"secretName"`
	ServiceAccounts []string `json:"serviceAccounts"`
	Targets         []Target `json:"targets"`
	Log             Log      `json:"log"`
	Schedule        string   `json:"schedule"`
	Daemon          Daemon   `json:"daemon"`
	RunOnce         RunOnce  `json:"runOnce"`
	Verify          Verify   `json:"verify"`
	Kubeconfig      string   `json:"kubeconfig,omitempty"`

	// loaded is a pointer so that fmt's %v/%+v/%#v, which print unexported
	// fields without calling their methods, show an address and never the
	// API token.
	loaded *loaded
}

// Verify configures the proof that a new token can pull before any Secret
// holds it.
type Verify struct {
	Enabled bool `json:"enabled"`
	// Repository is the image path whose manifest is checked.
	Repository string `json:"repository,omitempty"`
	// Tag need not exist: a 404 with valid credentials proves access.
	Tag string `json:"tag"`
}

// Daemon configures `rotator daemon` (and the Lease run-once checks).
type Daemon struct {
	// Listen serves /metrics, /healthz and /readyz.
	Listen string `json:"listen"`
	// LeaderElection makes replicas share one Lease so exactly one acts.
	LeaderElection bool   `json:"leaderElection"`
	LeaseNamespace string `json:"leaseNamespace"`
	LeaseName      string `json:"leaseName"`
	// RetryMin and RetryMax bound the backoff after a failed cycle.
	RetryMin Duration `json:"retryMin"`
	RetryMax Duration `json:"retryMax"`
}

// RunOnce configures `rotator run-once`.
type RunOnce struct {
	// Pushgateway receives each run's metrics, since a run ends before
	// Prometheus could scrape it. Empty means push nothing.
	Pushgateway string `json:"pushgateway,omitempty"`
}

// GitLab says which GitLab and registry to talk to and how.
type GitLab struct {
	URL               string   `json:"url"`
	AllowInsecureHTTP bool     `json:"allowInsecureHTTP"`
	CAFile            string   `json:"caFile,omitempty"`
	TokenFile         string   `json:"tokenFile"`
	Project           string   `json:"project,omitempty"`
	Group             string   `json:"group,omitempty"`
	RegistryHost      string   `json:"registryHost"`
	Timeout           Duration `json:"timeout"`
}

// Token describes the deploy tokens the rotator creates and manages.
type Token struct {
	Prefix      string   `json:"prefix"`
	Scopes      []string `json:"scopes"`
	Lifetime    Duration `json:"lifetime"`
	RenewBefore Duration `json:"renewBefore"`
	// OrphanGrace spares managed tokens that no Secret holds while younger
	// than this; 0 (the default) revokes them at once.
	OrphanGrace Duration `json:"orphanGrace"`
}

// Target is one namespace (or a label selector over namespaces) that gets
// the pull Secret. Nil ServiceAccounts means the top-level default; an empty
// list means patch none.
type Target struct {
	Namespace         string   `json:"namespace,omitempty"`
	NamespaceSelector string   `json:"namespaceSelector,omitempty"`
	SecretName        string   `json:"secretName,omitempty"`
	ServiceAccounts   []string `json:"serviceAccounts,omitempty"`
}

// Log configures the process logger.
type Log struct {
	Format string `json:"format"`
	Level  string `json:"level"`
}

// Sources collects the layers Load merges.
//
// The config file is File if set, else the --config flag if changed, else
// ROTATOR_CONFIG; none of them means no file.
type Sources struct {
	File  string
	Env   func(string) (string, bool) // nil means os.LookupEnv
	Flags *pflag.FlagSet              // may be nil; only Changed flags count
}

// ValidationError is every error Load returns, so callers can map it to
// exit status 2. Field names the YAML path, env var, flag or file at fault.
type ValidationError struct {
	Field, Problem string
}

// Error is always a single line: callers print it as is.
func (e *ValidationError) Error() string {
	return oneLine("config: " + e.Field + ": " + e.Problem)
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\r\n", " ")
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
}

// loaded holds what Load read besides the YAML-visible fields.
type loaded struct {
	token   *redactedString
	caPool  *x509.CertPool
	origins map[string]string // field path -> "in FILE", "by ENV", "by --flag"
}

// redactedString keeps the API token out of every printing path.
type redactedString struct{ v string }

const redactedText = "[redacted]"

func (*redactedString) String() string               { return redactedText }
func (*redactedString) GoString() string             { return redactedText }
func (*redactedString) Format(f fmt.State, _ rune)   { _, _ = f.Write([]byte(redactedText)) }
func (*redactedString) LogValue() slog.Value         { return slog.StringValue(redactedText) }
func (*redactedString) MarshalText() ([]byte, error) { return []byte(redactedText), nil }

func (c *Config) isSet(path string) bool        { _, ok := c.loaded.origins[path]; return ok }
func (c *Config) setOrigin(path, origin string) { c.loaded.origins[path] = origin }

// invalid builds the error for a bad value, saying which layer set it so
// that an override in env or flags is not blamed on the file.
func (c *Config) invalid(path, problem string) error {
	return &ValidationError{Field: path, Problem: problem + originSuffix(c.loaded, path)}
}

func (c *Config) invalidf(path, format string, a ...any) error {
	return c.invalid(path, fmt.Sprintf(format, a...))
}

// APIToken returns the rotator's own GitLab API token, read from
// gitlab.tokenFile at Load. It is the only way to get the text.
func (c *Config) APIToken() string {
	if c == nil || c.loaded == nil || c.loaded.token == nil {
		return ""
	}
	return c.loaded.token.v
}

// CAPool returns the system roots plus gitlab.caFile, or nil when no CAFile
// is configured (use the system roots).
func (c *Config) CAPool() *x509.CertPool {
	if c == nil || c.loaded == nil {
		return nil
	}
	return c.loaded.caPool
}

// EffectiveTargets returns copies of the targets with SecretName and
// ServiceAccounts defaults filled in, so callers need no fallback logic.
func (c *Config) EffectiveTargets() []Target {
	out := make([]Target, 0, len(c.Targets))
	for _, t := range c.Targets {
		if t.SecretName == "" {
			t.SecretName = c.SecretName
		}
		if t.ServiceAccounts == nil {
			t.ServiceAccounts = c.ServiceAccounts
		}
		t.ServiceAccounts = append([]string{}, t.ServiceAccounts...)
		out = append(out, t)
	}
	return out
}

// Load merges file < env < flags, fills defaults, validates, then reads the
// token file and CA bundle. It makes no network call and writes nothing.
// Every error is a *ValidationError whose text is one line.
func Load(src Sources) (*Config, error) {
	lookup := src.Env
	if lookup == nil {
		lookup = os.LookupEnv
	}
	// An empty env var counts as unset: manifests often template "" in.
	env := func(name string) (string, bool) {
		v, ok := lookup(name)
		return v, ok && v != ""
	}
	c := &Config{loaded: &loaded{origins: map[string]string{}}}
	err := c.load(src, env)
	if err != nil {
		// Defence in depth: whatever went wrong, never echo the token.
		if tok := c.APIToken(); tok != "" {
			var ve *ValidationError
			if errors.As(err, &ve) {
				ve.Field = strings.ReplaceAll(ve.Field, tok, redactedText)
				ve.Problem = strings.ReplaceAll(ve.Problem, tok, redactedText)
			}
		}
		return nil, err
	}
	return c, nil
}

func (c *Config) load(src Sources, env func(string) (string, bool)) error {
	if path, origin := configPath(src, env); path != "" {
		if err := c.loadFile(path, origin); err != nil {
			return err
		}
	}
	if err := c.applyEnv(env); err != nil {
		return err
	}
	if err := c.applyFlags(src.Flags); err != nil {
		return err
	}
	if !c.isSet("kubeconfig") {
		if v, ok := env("KUBECONFIG"); ok {
			c.Kubeconfig = v
			c.setOrigin("kubeconfig", "by KUBECONFIG")
		}
	}
	c.applyDefaults()
	if err := c.validate(); err != nil {
		return err
	}
	if err := c.readToken(); err != nil {
		return err
	}
	return c.readCA()
}

func configPath(src Sources, env func(string) (string, bool)) (path, origin string) {
	if src.File != "" {
		return src.File, ""
	}
	if src.Flags != nil {
		if f := src.Flags.Lookup(flagConfig); f != nil && f.Changed {
			return f.Value.String(), "by --" + flagConfig
		}
	}
	if v, ok := env(envConfig); ok {
		return v, "by " + envConfig
	}
	return "", ""
}

func lookupOrigin(l *loaded, path string) (string, bool) {
	if l == nil {
		return "", false
	}
	for {
		if o, ok := l.origins[path]; ok {
			return o, true
		}
		i := strings.LastIndexAny(path, ".[")
		if i <= 0 {
			return "", false
		}
		path = path[:i]
	}
}

func originSuffix(l *loaded, path string) string {
	if o, ok := lookupOrigin(l, path); ok {
		return " (set " + o + ")"
	}
	return ""
}

func clearOrigins(l *loaded, prefix string) {
	for k := range l.origins {
		if k == prefix || strings.HasPrefix(k, prefix+".") || strings.HasPrefix(k, prefix+"[") {
			delete(l.origins, k)
		}
	}
}
