package config

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
)

const (
	defaultURL          = "https://gitlab.com"
	gitlabComHost       = "gitlab.com"
	defaultRegistryHost = "registry.gitlab.com"
	defaultTimeout      = Duration(30 * time.Second)
	defaultPrefix       = "k8s-pull"
	defaultLifetime     = Duration(30 * day)
	maxLifetime         = Duration(365 * day) // GitLab's own cap on token lifetimes
	defaultSecretName   = "gitlab"
	defaultSchedule     = "*/15 * * * *"
	defaultListen       = ":8080"
	defaultLeaseName    = "rotator"
	defaultLeaseNS      = "rotator-system"
	defaultRetryMin     = Duration(time.Minute)
	defaultRetryMax     = Duration(15 * time.Minute)
	reservedTokenName   = "gitlab-deploy-token"
	maxPrefixLen        = 200
	maxTokenFileSize    = 64 << 10
)

var (
	defaultScopes          = []string{"read_registry"}
	defaultServiceAccounts = []string{"default", "agones-sdk"}
	allowedScopes          = []string{
		"read_repository", "read_registry", "write_registry",
		"read_package_registry", "write_package_registry",
		"read_virtual_registry", "write_virtual_registry",
	}
	prefixRE      = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
	pathSegmentRE = regexp.MustCompile(`^[A-Za-z0-9_.][A-Za-z0-9_.-]*$`)
	numericIDRE   = regexp.MustCompile(`^[1-9][0-9]*$`)
	repoSegmentRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	tagRE         = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
)

// Short forms of the Kubernetes naming rules; apimachinery's own messages
// quote regexes and make the error line hard to read.
const (
	labelRule     = "use at most 63 lowercase letters, digits or '-', starting and ending with a letter or digit"
	subdomainRule = "use at most 253 lowercase letters, digits, '-' or '.', starting and ending with a letter or digit"
)

// applyDefaults fills what no layer set. It runs after all layers so that,
// for example, renewBefore follows a lifetime given by flag.
func (c *Config) applyDefaults() {
	g := &c.GitLab
	if g.URL == "" {
		g.URL = defaultURL
	}
	if g.RegistryHost == "" {
		if u, err := url.Parse(g.URL); err == nil && strings.EqualFold(u.Hostname(), gitlabComHost) {
			g.RegistryHost = defaultRegistryHost
		}
	}
	if !c.isSet("gitlab.timeout") {
		g.Timeout = defaultTimeout
	}
	t := &c.Token
	if t.Prefix == "" {
		t.Prefix = defaultPrefix
	}
	if t.Scopes == nil {
		t.Scopes = slices.Clone(defaultScopes)
	}
	if !c.isSet("token.lifetime") {
		t.Lifetime = defaultLifetime
	}
	if !c.isSet("token.renewBefore") {
		t.RenewBefore = t.Lifetime / 3
	}
	if c.SecretName == "" {
		c.SecretName = defaultSecretName
	}
	if c.ServiceAccounts == nil {
		c.ServiceAccounts = slices.Clone(defaultServiceAccounts)
	}
	if c.Schedule == "" {
		c.Schedule = defaultSchedule
	}
	if !c.isSet("verify.enabled") {
		c.Verify.Enabled = true
	}
	if c.Verify.Repository == "" && g.Project != "" && !numericIDRE.MatchString(g.Project) {
		c.Verify.Repository = strings.ToLower(g.Project)
	}
	if c.Verify.Tag == "" {
		c.Verify.Tag = "latest"
	}
	d := &c.Daemon
	if d.Listen == "" {
		d.Listen = defaultListen
	}
	if !c.isSet("daemon.leaderElection") {
		d.LeaderElection = true
	}
	if d.LeaseName == "" {
		d.LeaseName = defaultLeaseName
	}
	if d.LeaseNamespace == "" {
		// In a pod the downward API usually provides the namespace.
		if ns, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil && len(ns) > 0 {
			d.LeaseNamespace = strings.TrimSpace(string(ns))
		} else {
			d.LeaseNamespace = defaultLeaseNS
		}
	}
	if !c.isSet("daemon.retryMin") {
		d.RetryMin = defaultRetryMin
	}
	if !c.isSet("daemon.retryMax") {
		d.RetryMax = defaultRetryMax
	}
	c.Log.Format = strings.ToLower(c.Log.Format)
	if c.Log.Format == "" {
		c.Log.Format = "json"
	}
	c.Log.Level = strings.ToLower(c.Log.Level)
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
}

// validate checks every field without touching the network or disk (files
// are read afterwards) and returns the first problem.
func (c *Config) validate() error {
	checks := []func() error{
		c.validateURL,
		c.validateTokenFile,
		c.validateProjectGroup,
		c.validateRegistryHost,
		c.validateTimeout,
		c.validatePrefix,
		c.validateScopes,
		c.validateLifetimes,
		c.validateSecretAndSAs,
		c.validateTargets,
		c.validateSchedule,
		c.validateDaemon,
		c.validatePushgateway,
		c.validateVerify,
		c.validateLog,
	}
	for _, check := range checks {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

// parseBaseURL checks what every base URL in the config needs: an absolute
// http(s) URL with a host, and no credentials, query or fragment. example
// shows the expected shape in messages.
func (c *Config) parseBaseURL(f, raw, example, noUser string) (*url.URL, error) {
	// Messages quote the value, but never what precedes an "@": without a
	// scheme, "user:password@host" does not parse as having a user.
	if strings.Contains(raw, "@") {
		return nil, c.invalid(f, "must not contain a user or password (an @); "+noUser)
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the URL, which may hold credentials.
		if ue, ok := err.(*url.Error); ok {
			err = ue.Err
		}
		return nil, c.invalidf(f, "not a valid URL: %v", err)
	}
	if u.User != nil {
		return nil, c.invalid(f, "must not contain a user or password; "+noUser)
	}
	if scheme := strings.ToLower(u.Scheme); scheme != "https" && scheme != "http" || u.Opaque != "" {
		return nil, c.invalidf(f, "must be an absolute http(s) URL such as %s, got %q", example, raw)
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, c.invalidf(f, "has no host, got %q", raw)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, c.invalidf(f, "port %q is not 1-65535", p)
		}
	}
	if u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return nil, c.invalidf(f, "must not have a query or fragment, got %q", raw)
	}
	u.Path, u.RawPath = strings.TrimRight(u.Path, "/"), ""
	return u, nil
}

func (c *Config) validateURL() error {
	const f = "gitlab.url"
	raw := c.GitLab.URL
	u, err := c.parseBaseURL(f, raw, "https://gitlab.example.com", "the API token is read from gitlab.tokenFile")
	if err != nil {
		return err
	}
	if strings.ToLower(u.Scheme) == "http" && !c.GitLab.AllowInsecureHTTP {
		return c.invalid(f, "http:// would send the API token in clear text; use https, or set gitlab.allowInsecureHTTP for tests")
	}
	if strings.HasSuffix(u.Path, "/api/v4") {
		return c.invalidf(f, "must be the GitLab base URL without /api/v4, got %q", raw)
	}
	c.GitLab.URL = u.String()
	return nil
}

func (c *Config) validatePushgateway() error {
	const f = "runOnce.pushgateway"
	raw := c.RunOnce.Pushgateway
	if raw == "" {
		return nil
	}
	u, err := c.parseBaseURL(f, raw, "http://prometheus-pushgateway.monitoring.svc:9091", "it would show in logs and status")
	if err != nil {
		return err
	}
	if strings.Contains(u.Path, "/metrics") {
		return c.invalidf(f, "must be the Pushgateway's base URL; the rotator adds /metrics/job/%s itself, got %q", "rotator-run-once", raw)
	}
	c.RunOnce.Pushgateway = u.String()
	return nil
}

func (c *Config) validateTokenFile() error {
	if c.GitLab.TokenFile == "" {
		return c.invalid("gitlab.tokenFile", "required: a file holding the rotator's GitLab API token (set gitlab.tokenFile, ROTATOR_GITLAB_TOKEN_FILE or --gitlab-token-file)")
	}
	if looksLikeToken(c.GitLab.TokenFile) {
		// Don't echo it: it is probably the token itself.
		return c.invalid("gitlab.tokenFile", "must be the path of a file holding the token, not the token itself")
	}
	return nil
}

// looksLikeToken spots GitLab token prefixes, so a token pasted where a path
// belongs is refused without being repeated in the error.
func looksLikeToken(s string) bool {
	for _, p := range []string{"glpat-", "gldt-", "gloas-", "glrt-", "glcbt-", "glptt-", "glft-", "glimt-", "glagent-", "glsoat-", "glffct-"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func (c *Config) validateProjectGroup() error {
	p, g := c.GitLab.Project, c.GitLab.Group
	switch {
	case p != "" && g != "":
		where := func(f string) string {
			if o, ok := lookupOrigin(c.loaded, f); ok {
				return " " + o
			}
			return ""
		}
		return &ValidationError{Field: "gitlab.project", Problem: fmt.Sprintf(
			"exactly one of gitlab.project and gitlab.group may be set, both are (project%s, group%s)",
			where("gitlab.project"), where("gitlab.group"))}
	case p == "" && g == "":
		return c.invalid("gitlab.project", "exactly one of gitlab.project and gitlab.group is required (a numeric id or a full path such as grp/proj)")
	case p != "":
		return c.validateGitLabPath("gitlab.project", p, 2)
	default:
		return c.validateGitLabPath("gitlab.group", g, 1)
	}
}

func (c *Config) validateGitLabPath(f, v string, minSegments int) error {
	if numericIDRE.MatchString(v) {
		if _, err := strconv.ParseInt(v, 10, 64); err != nil {
			return c.invalidf(f, "id %s is out of range", v)
		}
		return nil
	}
	if strings.Contains(v, "://") {
		return c.invalidf(f, "must be a numeric id or a path such as grp/proj, not a URL: %q", v)
	}
	segs := strings.Split(v, "/")
	for _, s := range segs {
		if !pathSegmentRE.MatchString(s) {
			return c.invalidf(f, "must be a numeric id or a full path such as grp/sub/proj made of letters, digits, '_', '-' and '.', got %q", v)
		}
	}
	if len(segs) < minSegments {
		return c.invalidf(f, "a project path must include its group, such as grp/%s, got %q", v, v)
	}
	return nil
}

func (c *Config) validateRegistryHost() error {
	const f = "gitlab.registryHost"
	h := c.GitLab.RegistryHost
	if h == "" {
		return c.invalidf(f, "required because gitlab.url (%s) is not gitlab.com: the registry host[:port] the pull Secrets are for", c.GitLab.URL)
	}
	if strings.Contains(h, "://") {
		return c.invalidf(f, "must be host[:port] without a scheme, got %q", h)
	}
	if strings.ContainsAny(h, "/?#@ ") {
		return c.invalidf(f, "must be host[:port] without a path, got %q", h)
	}
	host := h
	if strings.Contains(h, ":") {
		hh, port, err := net.SplitHostPort(h)
		if err != nil {
			return c.invalidf(f, "must be host[:port], got %q", h)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return c.invalidf(f, "port must be 1-65535, got %q", h)
		}
		host = hh
	}
	if net.ParseIP(host) != nil {
		return nil
	}
	if errs := validation.IsDNS1123Subdomain(host); len(errs) > 0 {
		return c.invalidf(f, "%q is not a valid lowercase host name", h)
	}
	return nil
}

func (c *Config) validateTimeout() error {
	if c.GitLab.Timeout <= 0 {
		return c.invalid("gitlab.timeout", "must be greater than 0")
	}
	return nil
}

func (c *Config) validatePrefix() error {
	const f = "token.prefix"
	p := c.Token.Prefix
	switch {
	case len(p) > maxPrefixLen:
		return c.invalidf(f, "must be at most %d characters, got %d", maxPrefixLen, len(p))
	case !prefixRE.MatchString(p):
		return c.invalidf(f, "must contain only letters, digits, '.', '_' and '-', got %q", p)
	case strings.HasPrefix(reservedTokenName, p):
		return c.invalidf(f, "%q would match GitLab's reserved token %q and make the rotator manage it", p, reservedTokenName)
	}
	return nil
}

func (c *Config) validateScopes() error {
	const f = "token.scopes"
	s := c.Token.Scopes
	if len(s) == 0 {
		return c.invalid(f, "must not be empty")
	}
	seen := map[string]bool{}
	for _, v := range s {
		if !slices.Contains(allowedScopes, v) {
			return c.invalidf(f, "unknown scope %q (allowed: %s)", v, strings.Join(allowedScopes, ", "))
		}
		if seen[v] {
			return c.invalidf(f, "duplicate scope %q", v)
		}
		seen[v] = true
	}
	if !seen["read_registry"] && !seen["write_registry"] {
		return c.invalid(f, "must include read_registry (or write_registry): the token is used to pull images")
	}
	return nil
}

func (c *Config) validateLifetimes() error {
	t := c.Token
	switch {
	case t.Lifetime <= 0:
		return c.invalid("token.lifetime", "must be greater than 0")
	case t.Lifetime > maxLifetime:
		return c.invalidf("token.lifetime", "must be at most %s, got %s", maxLifetime, t.Lifetime)
	case t.RenewBefore <= 0:
		return c.invalid("token.renewBefore", "must be greater than 0")
	case t.RenewBefore >= t.Lifetime:
		return c.invalidf("token.renewBefore", "must be shorter than token.lifetime (%s), got %s", t.Lifetime, t.RenewBefore)
	}
	return nil
}

func (c *Config) validateSecretAndSAs() error {
	if err := c.checkSubdomain("secretName", c.SecretName); err != nil {
		return err
	}
	return c.checkNameList("serviceAccounts", c.ServiceAccounts)
}

func (c *Config) checkSubdomain(f, v string) error {
	if errs := validation.IsDNS1123Subdomain(v); len(errs) > 0 {
		return c.invalidf(f, "%q is not a valid name: %s", v, subdomainRule)
	}
	return nil
}

func (c *Config) checkNameList(f string, names []string) error {
	seen := map[string]bool{}
	for i, n := range names {
		sub := fmt.Sprintf("%s[%d]", f, i)
		if err := c.checkSubdomain(sub, n); err != nil {
			return err
		}
		if seen[n] {
			return c.invalidf(sub, "duplicate name %q", n)
		}
		seen[n] = true
	}
	return nil
}

func (c *Config) validateTargets() error {
	if len(c.Targets) == 0 {
		return c.invalid("targets", "at least one namespace or namespaceSelector is required")
	}
	type key struct{ ns, sel, secret string }
	seen := map[key]int{}
	for i, t := range c.Targets {
		p := fmt.Sprintf("targets[%d]", i)
		switch {
		case t.Namespace != "" && t.NamespaceSelector != "":
			return c.invalid(p, "set exactly one of namespace and namespaceSelector, not both")
		case t.Namespace == "" && t.NamespaceSelector == "":
			return c.invalid(p, "set exactly one of namespace and namespaceSelector")
		case t.Namespace != "":
			if errs := validation.IsDNS1123Label(t.Namespace); len(errs) > 0 {
				return c.invalidf(p+".namespace", "%q is not a valid namespace name: %s", t.Namespace, labelRule)
			}
		default:
			if _, err := labels.Parse(t.NamespaceSelector); err != nil {
				return c.invalidf(p+".namespaceSelector", "invalid label selector %q: %v", t.NamespaceSelector, err)
			}
		}
		if t.SecretName != "" {
			if err := c.checkSubdomain(p+".secretName", t.SecretName); err != nil {
				return err
			}
		}
		if err := c.checkNameList(p+".serviceAccounts", t.ServiceAccounts); err != nil {
			return err
		}
		secret := t.SecretName
		if secret == "" {
			secret = c.SecretName
		}
		k := key{t.Namespace, t.NamespaceSelector, secret}
		if j, dup := seen[k]; dup {
			what := "namespace " + strconv.Quote(t.Namespace)
			if t.Namespace == "" {
				what = "namespaceSelector " + strconv.Quote(t.NamespaceSelector)
			}
			return c.invalidf(p, "duplicate target: %s with Secret %q is already targets[%d]", what, secret, j)
		}
		seen[k] = i
	}
	return nil
}

func (c *Config) validateSchedule() error {
	if _, err := cron.ParseStandard(c.Schedule); err != nil {
		return c.invalidf("schedule", "invalid cron schedule %q: %v", c.Schedule, err)
	}
	return nil
}

func (c *Config) validateVerify() error {
	v := c.Verify
	if !v.Enabled {
		return nil
	}
	if v.Repository == "" {
		return c.invalidf("verify.repository", "required when gitlab.project is a numeric id or a group is managed (the image path to check, e.g. grp/proj)")
	}
	for _, seg := range strings.Split(v.Repository, "/") {
		if !repoSegmentRE.MatchString(seg) {
			return c.invalidf("verify.repository", "%q is not an image path: lowercase segments of letters, digits, '.', '_' or '-', separated by '/'", v.Repository)
		}
	}
	if !tagRE.MatchString(v.Tag) {
		return c.invalidf("verify.tag", "%q is not an image tag", v.Tag)
	}
	return nil
}

func (c *Config) validateDaemon() error {
	d := c.Daemon
	if _, port, err := net.SplitHostPort(d.Listen); err != nil || port == "" {
		return c.invalidf("daemon.listen", "must be host:port or :port, got %q", d.Listen)
	}
	if msgs := validation.IsDNS1123Label(d.LeaseNamespace); len(msgs) > 0 {
		return c.invalidf("daemon.leaseNamespace", "%q is not a namespace name: %s", d.LeaseNamespace, labelRule)
	}
	// run-once's requests go to "<leaseName>-request", which must be valid too.
	if msgs := validation.IsDNS1123Subdomain(d.LeaseName + "-request"); len(msgs) > 0 {
		return c.invalidf("daemon.leaseName", "%q is not a valid name (it also names %q-request): %s", d.LeaseName, d.LeaseName, subdomainRule)
	}
	if d.RetryMin <= 0 {
		return c.invalidf("daemon.retryMin", "must be > 0, got %s", d.RetryMin)
	}
	if d.RetryMax < d.RetryMin {
		return c.invalidf("daemon.retryMax", "must be at least daemon.retryMin (%s), got %s", d.RetryMin, d.RetryMax)
	}
	return nil
}

func (c *Config) validateLog() error {
	if c.Log.Format != "json" && c.Log.Format != "text" {
		return c.invalidf("log.format", "must be json or text, got %q", c.Log.Format)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
		return nil
	}
	return c.invalidf("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
}

// readToken reads the API token. One trailing newline is allowed because
// editors and `echo` add it; anything else that is not printable ASCII would
// end up in an HTTP header and fail there in a way much harder to trace.
// placeholderToken is what deploy/base ships in the token Secret.
const placeholderToken = "REPLACE-ME"

func (c *Config) readToken() error {
	const f = "gitlab.tokenFile"
	path := c.GitLab.TokenFile
	data, err := readLimited(path, maxTokenFileSize)
	if err != nil {
		return c.invalidf(f, "read %s: %v", path, err)
	}
	s := strings.TrimSuffix(string(data), "\n")
	switch {
	case s == "":
		return c.invalidf(f, "token file %s: is empty", path)
	case s == placeholderToken:
		return c.invalidf(f, "token file %s: holds the manifests' placeholder %s; put the rotator's GitLab token in the rotator-gitlab-token Secret (docs/operations.md)", path, placeholderToken)
	case strings.Contains(s, "\r"):
		return c.invalidf(f, "token file %s: contains a carriage return (CRLF line ending?)", path)
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return c.invalidf(f, "token file %s: contains whitespace or a non-printable character at byte %d (only one trailing newline is allowed)", path, i)
		}
	}
	c.loaded.token = &redactedString{v: s}
	return nil
}

// readCA loads gitlab.caFile on top of the system roots, so a private GitLab
// and a registry behind a public CA both work.
func (c *Config) readCA() error {
	const f = "gitlab.caFile"
	path := c.GitLab.CAFile
	if path == "" {
		return nil
	}
	data, err := readLimited(path, maxFileSize)
	if err != nil {
		return c.invalidf(f, "read %s: %v", path, err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return c.invalidf(f, "%s: certificate %d: %v", path, n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return c.invalidf(f, "%s contains no PEM certificates", path)
	}
	c.loaded.caPool = pool
	return nil
}
