package config

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

const tokenValue = "glpat-Sup3rS3cretV4lue_xyz"

// fixture is a directory with a token file and a CA bundle.
type fixture struct {
	dir, token, ca string
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	dir := t.TempDir()
	f := fixture{dir: dir, token: filepath.Join(dir, "token"), ca: filepath.Join(dir, "ca.pem")}
	writeFile(t, f.token, tokenValue+"\n")
	writeFile(t, f.ca, string(testCertPEM(t)))
	return f
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func testCertPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// base is the minimal valid config document.
func (f fixture) base() map[string]any {
	return map[string]any{
		"gitlab":  map[string]any{"tokenFile": f.token, "project": "grp/proj"},
		"targets": []any{map[string]any{"namespace": "default"}},
	}
}

// setPath sets (or with val == nil, deletes) a dotted path in a document.
func setPath(doc map[string]any, path string, val any) {
	parts := strings.Split(path, ".")
	m := doc
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	if val == nil {
		delete(m, parts[len(parts)-1])
		return
	}
	m[parts[len(parts)-1]] = val
}

func (f fixture) writeConfig(t *testing.T, doc map[string]any) string {
	t.Helper()
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(f.dir, "config.yaml")
	writeFile(t, p, string(b))
	return p
}

func envMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func parsedFlags(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse flags %v: %v", args, err)
	}
	return fs
}

func TestDefaultsFromMinimalFile(t *testing.T) {
	f := newFixture(t)
	path := f.writeConfig(t, f.base())
	c, err := Load(Sources{File: path, Env: envMap(nil)})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"gitlab.url", c.GitLab.URL, "https://gitlab.com"},
		{"gitlab.allowInsecureHTTP", c.GitLab.AllowInsecureHTTP, false},
		{"gitlab.registryHost", c.GitLab.RegistryHost, "registry.gitlab.com"},
		{"gitlab.timeout", c.GitLab.Timeout, Duration(30 * time.Second)},
		{"gitlab.project", c.GitLab.Project, "grp/proj"},
		{"token.prefix", c.Token.Prefix, "k8s-pull"},
		{"token.scopes", c.Token.Scopes, []string{"read_registry"}},
		{"token.lifetime", c.Token.Lifetime, Duration(30 * day)},
		{"token.renewBefore", c.Token.RenewBefore, Duration(10 * day)},
		{"secretName", c.SecretName, "gitlab"},
		{"serviceAccounts", c.ServiceAccounts, []string{"default", "agones-sdk"}},
		{"schedule", c.Schedule, "*/15 * * * *"},
		{"log.format", c.Log.Format, "json"},
		{"log.level", c.Log.Level, "info"},
		{"kubeconfig", c.Kubeconfig, ""},
		{"apiToken", c.APIToken(), tokenValue},
		{"caPool is nil", c.CAPool() == nil, true},
		{"targets", c.EffectiveTargets(), []Target{{Namespace: "default", SecretName: "gitlab", ServiceAccounts: []string{"default", "agones-sdk"}}}},
	}
	for _, ck := range checks {
		if !reflect.DeepEqual(ck.got, ck.want) {
			t.Errorf("%s = %#v, want %#v", ck.name, ck.got, ck.want)
		}
	}
}

func TestRenewBeforeFollowsFinalLifetime(t *testing.T) {
	f := newFixture(t)
	doc := f.base()
	setPath(doc, "token.lifetime", "90d")
	c, err := Load(Sources{File: f.writeConfig(t, doc), Env: envMap(nil), Flags: parsedFlags(t, "--token-lifetime=3d")})
	if err != nil {
		t.Fatal(err)
	}
	if c.Token.RenewBefore != Duration(day) {
		t.Errorf("renewBefore = %s, want 1d (a third of the flag's lifetime)", c.Token.RenewBefore)
	}
}

func TestLayering(t *testing.T) {
	f := newFixture(t)
	doc := f.base()
	setPath(doc, "gitlab.url", "https://file.example.com")
	setPath(doc, "gitlab.registryHost", "reg-file.example.com")
	setPath(doc, "token.lifetime", "60d")
	setPath(doc, "token.scopes", []any{"read_registry", "read_repository"})
	setPath(doc, "log.level", "debug")
	setPath(doc, "schedule", "@hourly")
	setPath(doc, "secretName", "from-file")
	path := f.writeConfig(t, doc)

	get := map[string]func(*Config) any{
		"url":       func(c *Config) any { return c.GitLab.URL },
		"lifetime":  func(c *Config) any { return c.Token.Lifetime.String() },
		"scopes":    func(c *Config) any { return strings.Join(c.Token.Scopes, ",") },
		"level":     func(c *Config) any { return c.Log.Level },
		"schedule":  func(c *Config) any { return c.Schedule },
		"secret":    func(c *Config) any { return c.SecretName },
		"insecure":  func(c *Config) any { return c.GitLab.AllowInsecureHTTP },
		"renew":     func(c *Config) any { return c.Token.RenewBefore.String() },
		"kube":      func(c *Config) any { return c.Kubeconfig },
		"namespace": func(c *Config) any { return c.EffectiveTargets()[0].Namespace },
	}
	tests := []struct {
		name  string
		env   map[string]string
		flags []string
		want  map[string]any
	}{
		{"file only", nil, nil, map[string]any{
			"url": "https://file.example.com", "lifetime": "60d", "scopes": "read_registry,read_repository",
			"level": "debug", "schedule": "@hourly", "secret": "from-file", "insecure": false, "renew": "20d", "kube": "",
		}},
		{"env beats file", map[string]string{
			"ROTATOR_GITLAB_URL": "https://env.example.com", "ROTATOR_TOKEN_LIFETIME": "9d",
			"ROTATOR_TOKEN_SCOPES": "write_registry, read_repository", "ROTATOR_LOG_LEVEL": "warn",
			"ROTATOR_SECRET_NAME": "from-env", "ROTATOR_KUBECONFIG": "/env/kube",
		}, nil, map[string]any{
			"url": "https://env.example.com", "lifetime": "9d", "scopes": "write_registry,read_repository",
			"level": "warn", "schedule": "@hourly", "secret": "from-env", "renew": "3d", "kube": "/env/kube",
		}},
		{"flag beats env", map[string]string{
			"ROTATOR_GITLAB_URL": "https://env.example.com", "ROTATOR_TOKEN_LIFETIME": "9d",
			"ROTATOR_LOG_LEVEL": "warn", "ROTATOR_SECRET_NAME": "from-env", "ROTATOR_KUBECONFIG": "/env/kube",
			"ROTATOR_GITLAB_ALLOW_INSECURE_HTTP": "true",
		}, []string{
			"--gitlab-url=http://flag.example.com", "--token-lifetime=1d12h", "--log-level=error",
			"--secret-name=from-flag", "--token-scopes=read_registry", "--kubeconfig=/flag/kube", "--renew-before=12h",
		}, map[string]any{
			"url": "http://flag.example.com", "lifetime": "36h", "scopes": "read_registry", "level": "error",
			"schedule": "@hourly", "secret": "from-flag", "insecure": true, "renew": "12h", "kube": "/flag/kube",
		}},
		{"false flag beats true env", map[string]string{"ROTATOR_GITLAB_ALLOW_INSECURE_HTTP": "true"},
			[]string{"--gitlab-allow-insecure-http=false"}, map[string]any{"insecure": false}},
		{"empty env var is unset", map[string]string{"ROTATOR_LOG_LEVEL": "", "ROTATOR_GITLAB_URL": ""},
			nil, map[string]any{"level": "debug", "url": "https://file.example.com"}},
		{"KUBECONFIG is the fallback", map[string]string{"KUBECONFIG": "/home/kube"}, nil, map[string]any{"kube": "/home/kube"}},
		{"ROTATOR_KUBECONFIG beats KUBECONFIG", map[string]string{"KUBECONFIG": "/home/kube", "ROTATOR_KUBECONFIG": "/r/kube"},
			nil, map[string]any{"kube": "/r/kube"}},
		{"flags without env", nil, []string{"--namespaces=flagns"}, map[string]any{"namespace": "flagns", "secret": "from-file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var fs *pflag.FlagSet
			if tt.flags != nil {
				fs = parsedFlags(t, tt.flags...)
			}
			c, err := Load(Sources{File: path, Env: envMap(tt.env), Flags: fs})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			for k, want := range tt.want {
				if got := get[k](c); !reflect.DeepEqual(got, want) {
					t.Errorf("%s = %#v, want %#v", k, got, want)
				}
			}
		})
	}
}

func TestTargetsReplacedPerLayer(t *testing.T) {
	f := newFixture(t)
	doc := f.base()
	doc["targets"] = []any{
		map[string]any{"namespace": "a", "secretName": "custom", "serviceAccounts": []any{}},
		map[string]any{"namespaceSelector": "team=games"},
		map[string]any{"namespace": "b", "serviceAccounts": []any{"builder"}},
	}
	doc["serviceAccounts"] = []any{"default"}
	path := f.writeConfig(t, doc)

	tests := []struct {
		name  string
		env   map[string]string
		flags []string
		want  []Target
	}{
		{"file targets with per-target defaults", nil, nil, []Target{
			{Namespace: "a", SecretName: "custom", ServiceAccounts: []string{}},
			{NamespaceSelector: "team=games", SecretName: "gitlab", ServiceAccounts: []string{"default"}},
			{Namespace: "b", SecretName: "gitlab", ServiceAccounts: []string{"builder"}},
		}},
		{"env namespaces replace file targets", map[string]string{"ROTATOR_NAMESPACES": "x, y"}, nil, []Target{
			{Namespace: "x", SecretName: "gitlab", ServiceAccounts: []string{"default"}},
			{Namespace: "y", SecretName: "gitlab", ServiceAccounts: []string{"default"}},
		}},
		{"env namespaces and selector", map[string]string{"ROTATOR_NAMESPACES": "x", "ROTATOR_NAMESPACE_SELECTOR": "env=prod"}, nil, []Target{
			{Namespace: "x", SecretName: "gitlab", ServiceAccounts: []string{"default"}},
			{NamespaceSelector: "env=prod", SecretName: "gitlab", ServiceAccounts: []string{"default"}},
		}},
		{"flag selector replaces env namespaces", map[string]string{"ROTATOR_NAMESPACES": "x"}, []string{"--namespace-selector=tier in (a,b)"}, []Target{
			{NamespaceSelector: "tier in (a,b)", SecretName: "gitlab", ServiceAccounts: []string{"default"}},
		}},
		{"flag namespaces with flag service accounts", nil, []string{"--namespaces=p,q", "--service-accounts=sa1,sa2"}, []Target{
			{Namespace: "p", SecretName: "gitlab", ServiceAccounts: []string{"sa1", "sa2"}},
			{Namespace: "q", SecretName: "gitlab", ServiceAccounts: []string{"sa1", "sa2"}},
		}},
		{"empty service-accounts flag means none", nil, []string{"--namespaces=p", "--service-accounts="}, []Target{
			{Namespace: "p", SecretName: "gitlab", ServiceAccounts: []string{}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var fs *pflag.FlagSet
			if tt.flags != nil {
				fs = parsedFlags(t, tt.flags...)
			}
			c, err := Load(Sources{File: path, Env: envMap(tt.env), Flags: fs})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if got := c.EffectiveTargets(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("targets = %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

func TestConfigPathSources(t *testing.T) {
	f := newFixture(t)
	good := f.writeConfig(t, f.base())
	missing := filepath.Join(f.dir, "missing.yaml")
	tests := []struct {
		name    string
		src     Sources
		wantErr string
	}{
		{"ROTATOR_CONFIG", Sources{Env: envMap(map[string]string{"ROTATOR_CONFIG": good})}, ""},
		{"--config beats ROTATOR_CONFIG", Sources{Env: envMap(map[string]string{"ROTATOR_CONFIG": missing}), Flags: parsedFlags(t, "--config="+good)}, ""},
		{"File beats --config", Sources{File: good, Env: envMap(nil), Flags: parsedFlags(t, "--config="+missing)}, ""},
		{"missing file named with its source", Sources{Env: envMap(map[string]string{"ROTATOR_CONFIG": missing})},
			"config: read " + missing + ": no such file or directory (set by ROTATOR_CONFIG)"},
		{"no file at all: tokenFile required", Sources{Env: envMap(nil)}, "config: gitlab.tokenFile: required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.src)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Load: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.wantErr)):
				t.Fatalf("Load error = %v, want prefix %q", err, tt.wantErr)
			}
		})
	}
}

func TestEnvAndFlagsOnly(t *testing.T) {
	f := newFixture(t)
	env := map[string]string{
		"ROTATOR_GITLAB_URL":        "https://gitlab.example.com/",
		"ROTATOR_GITLAB_TOKEN_FILE": f.token,
		"ROTATOR_GITLAB_CA_FILE":    f.ca,
		"ROTATOR_REGISTRY_HOST":     "registry.example.com:5050",
		"ROTATOR_GROUP":             "games/servers",
		"ROTATOR_VERIFY_REPOSITORY": "games/servers/fleet",
		"ROTATOR_NAMESPACES":        "default",
		"ROTATOR_LOG_FORMAT":        "TEXT",
	}
	c, err := Load(Sources{Env: envMap(env), Flags: parsedFlags(t, "--gitlab-timeout=1m")})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.GitLab.URL != "https://gitlab.example.com" {
		t.Errorf("url = %q, want trailing slash trimmed", c.GitLab.URL)
	}
	if c.CAPool() == nil {
		t.Error("CAPool is nil with a CA file")
	}
	if c.GitLab.Group != "games/servers" || c.GitLab.Timeout != Duration(time.Minute) || c.Log.Format != "text" {
		t.Errorf("got group %q timeout %s format %q", c.GitLab.Group, c.GitLab.Timeout, c.Log.Format)
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		format  string
		wantErr bool
	}{
		{in: "30d", want: 30 * day, format: "30d"},
		{in: "1d12h", want: 36 * time.Hour, format: "36h"},
		{in: "90m", want: 90 * time.Minute, format: "1h30m"},
		{in: "10d", want: 10 * day, format: "10d"},
		{in: "240h", want: 10 * day, format: "10d"},
		{in: "36h", want: 36 * time.Hour, format: "36h"},
		{in: "1.5d", want: 36 * time.Hour, format: "36h"},
		{in: "2d30m", want: 2*day + 30*time.Minute, format: "48h30m"},
		{in: "45s", want: 45 * time.Second, format: "45s"},
		{in: "0", want: 0, format: "0s"},
		{in: "-1h", wantErr: true},
		{in: "-1d", wantErr: true},
		{in: "1d-1h", wantErr: true},
		{in: "10x", wantErr: true},
		{in: "d", wantErr: true},
		{in: "1dd", wantErr: true},
		{in: "", wantErr: true},
		{in: "99999999999d", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseDuration(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseDuration(%q) = %s, want error", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseDuration(%q): %v", tt.in, err)
			}
			if time.Duration(got) != tt.want {
				t.Errorf("ParseDuration(%q) = %v, want %v", tt.in, time.Duration(got), tt.want)
			}
			if s := got.String(); s != tt.format {
				t.Errorf("String() = %q, want %q", s, tt.format)
			}
			b, _ := json.Marshal(got)
			var back Duration
			if err := json.Unmarshal(b, &back); err != nil || back != got {
				t.Errorf("JSON round trip %s -> %v (%v)", b, back, err)
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	f := newFixture(t)
	crlf := filepath.Join(f.dir, "token-crlf")
	writeFile(t, crlf, tokenValue+"\r\n")
	empty := filepath.Join(f.dir, "token-empty")
	writeFile(t, empty, "\n")
	spaced := filepath.Join(f.dir, "token-spaced")
	writeFile(t, spaced, tokenValue+"\n\n")
	placeholder := filepath.Join(f.dir, "token-placeholder")
	writeFile(t, placeholder, "REPLACE-ME\n")
	unreadable := filepath.Join(f.dir, "token-000")
	writeFile(t, unreadable, tokenValue)
	if err := os.Chmod(unreadable, 0); err != nil {
		t.Fatal(err)
	}
	noCerts := filepath.Join(f.dir, "nocerts.pem")
	writeFile(t, noCerts, "not a certificate\n")
	badCert := filepath.Join(f.dir, "badcert.pem")
	writeFile(t, badCert, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")

	type edit struct {
		path string
		val  any // nil deletes
	}
	tests := []struct {
		name     string
		edits    []edit
		raw      string // replaces the whole file when set
		env      map[string]string
		flags    []string
		needRoot bool // skip when root, who reads anything
		field    string
		want     string
		notWant  string // a secret in the input that the message must not repeat
	}{
		{name: "invalid cron", edits: []edit{{"schedule", "61 * * * *"}}, field: "schedule", want: "invalid cron schedule"},
		{name: "renewBefore equals lifetime", edits: []edit{{"token.renewBefore", "30d"}}, field: "token.renewBefore", want: "must be shorter than token.lifetime (30d)"},
		{name: "renewBefore beyond flag lifetime", flags: []string{"--token-lifetime=1d", "--renew-before=2d"}, field: "token.renewBefore", want: "(set by --renew-before)"},
		{name: "unknown scope", edits: []edit{{"token.scopes", []any{"read_registry", "api"}}}, field: "token.scopes", want: `unknown scope "api"`},
		{name: "duplicate scope", edits: []edit{{"token.scopes", []any{"read_registry", "read_registry"}}}, field: "token.scopes", want: "duplicate scope"},
		{name: "empty scopes", edits: []edit{{"token.scopes", []any{}}}, field: "token.scopes", want: "must not be empty"},
		{name: "scopes without registry", env: map[string]string{"ROTATOR_TOKEN_SCOPES": "read_repository"}, field: "token.scopes", want: "(set by ROTATOR_TOKEN_SCOPES)"},
		{name: "project and group", edits: []edit{{"gitlab.group", "grp"}}, field: "gitlab.project", want: "exactly one of gitlab.project and gitlab.group"},
		{name: "neither project nor group", edits: []edit{{"gitlab.project", nil}}, field: "gitlab.project", want: "is required"},
		{name: "project without group", edits: []edit{{"gitlab.project", "proj"}}, field: "gitlab.project", want: "must include its group"},
		{name: "project as URL", edits: []edit{{"gitlab.project", "https://gitlab.com/grp/proj"}}, field: "gitlab.project", want: "not a URL"},
		{name: "bad URL", edits: []edit{{"gitlab.url", "://nope"}}, field: "gitlab.url", want: "not a valid URL"},
		{name: "URL without scheme", edits: []edit{{"gitlab.url", "gitlab.example.com"}}, field: "gitlab.url", want: "absolute http(s) URL"},
		{name: "http URL without allow", edits: []edit{{"gitlab.url", "http://gitlab.example.com"}, {"gitlab.registryHost", "r.example.com"}}, field: "gitlab.url", want: "clear text"},
		{name: "URL with no host", edits: []edit{{"gitlab.url", "https:///path"}}, field: "gitlab.url", want: "has no host"},
		{name: "URL with credentials", edits: []edit{{"gitlab.url", "https://user:" + tokenValue + "@gitlab.example.com"}}, field: "gitlab.url", want: "must not contain a user"},
		{name: "URL with api path", edits: []edit{{"gitlab.url", "https://gitlab.com/api/v4/"}}, field: "gitlab.url", want: "without /api/v4"},
		{name: "missing token file", edits: []edit{{"gitlab.tokenFile", filepath.Join(f.dir, "nope")}}, field: "gitlab.tokenFile", want: "no such file or directory"},
		{name: "no token file", edits: []edit{{"gitlab.tokenFile", nil}}, field: "gitlab.tokenFile", want: "required"},
		{name: "token pasted as path", env: map[string]string{"ROTATOR_GITLAB_TOKEN_FILE": tokenValue}, field: "gitlab.tokenFile", want: "not the token itself"},
		{name: "empty token file", edits: []edit{{"gitlab.tokenFile", empty}}, field: "gitlab.tokenFile", want: "is empty"},
		{name: "unreadable token file (mode 000)", edits: []edit{{"gitlab.tokenFile", unreadable}}, needRoot: true, field: "gitlab.tokenFile", want: "permission denied"},
		{name: "unreadable token file (directory)", edits: []edit{{"gitlab.tokenFile", f.dir}}, field: "gitlab.tokenFile", want: "is a directory"},
		{name: "token file with CRLF", edits: []edit{{"gitlab.tokenFile", crlf}}, field: "gitlab.tokenFile", want: "contains a carriage return (CRLF line ending?)"},
		{name: "token file with the manifests' placeholder", edits: []edit{{"gitlab.tokenFile", placeholder}}, field: "gitlab.tokenFile", want: "placeholder REPLACE-ME"},
		{name: "token file with two newlines", edits: []edit{{"gitlab.tokenFile", spaced}}, field: "gitlab.tokenFile", want: "whitespace"},
		{name: "invalid namespace", edits: []edit{{"targets", []any{map[string]any{"namespace": "Bad_NS"}}}}, field: "targets[0].namespace", want: "not a valid namespace name"},
		{name: "invalid namespace from env", env: map[string]string{"ROTATOR_NAMESPACES": "ok,-bad"}, field: "targets[1].namespace", want: "(set by ROTATOR_NAMESPACES)"},
		{name: "invalid secret name", edits: []edit{{"secretName", "Not/Valid"}}, field: "secretName", want: "not a valid name"},
		{name: "invalid target secret name", edits: []edit{{"targets", []any{map[string]any{"namespace": "a", "secretName": "UP"}}}}, field: "targets[0].secretName", want: "not a valid name"},
		{name: "invalid SA name", edits: []edit{{"serviceAccounts", []any{"default", "bad sa"}}}, field: "serviceAccounts[1]", want: "not a valid name"},
		{name: "duplicate SA", flags: []string{"--service-accounts=a,a"}, field: "serviceAccounts[1]", want: "duplicate"},
		{name: "prefix gitlab-deploy-token", edits: []edit{{"token.prefix", "gitlab-deploy-token"}}, field: "token.prefix", want: "reserved"},
		{name: "prefix of reserved name", env: map[string]string{"ROTATOR_TOKEN_PREFIX": "gitlab"}, field: "token.prefix", want: "reserved"},
		{name: "prefix with bad chars", edits: []edit{{"token.prefix", "k8s pull"}}, field: "token.prefix", want: "only letters"},
		{name: "prefix too long", edits: []edit{{"token.prefix", strings.Repeat("p", 201)}}, field: "token.prefix", want: "at most 200"},
		{name: "unreadable CA", edits: []edit{{"gitlab.caFile", filepath.Join(f.dir, "missing.pem")}}, field: "gitlab.caFile", want: "no such file"},
		{name: "CA with no certificates", edits: []edit{{"gitlab.caFile", noCerts}}, field: "gitlab.caFile", want: "contains no PEM certificates"},
		{name: "CA with a broken certificate", edits: []edit{{"gitlab.caFile", badCert}}, field: "gitlab.caFile", want: "certificate 1"},
		{name: "unknown YAML key", edits: []edit{{"token.renewBefor", "5d"}}, field: "token.renewBefor", want: `unknown field (did you mean "renewBefore"?)`},
		{name: "unknown top-level key", edits: []edit{{"nonsense", "x"}}, field: "nonsense", want: "unknown field (valid:"},
		{name: "negative duration", edits: []edit{{"token.lifetime", "-1h"}}, field: "token.lifetime", want: "must not be negative"},
		{name: "zero lifetime", edits: []edit{{"token.lifetime", "0s"}}, field: "token.lifetime", want: "greater than 0"},
		{name: "duration as number", edits: []edit{{"gitlab.timeout", 30}}, field: "gitlab.timeout", want: "must be a duration"},
		{name: "bad duration env", env: map[string]string{"ROTATOR_GITLAB_TIMEOUT": "10x"}, field: "ROTATOR_GITLAB_TIMEOUT", want: `invalid duration "10x"`},
		{name: "lifetime over 365d", edits: []edit{{"token.lifetime", "366d"}}, field: "token.lifetime", want: "at most 365d"},
		{name: "registry host missing for self-hosted", edits: []edit{{"gitlab.url", "https://gitlab.example.com"}}, field: "gitlab.registryHost", want: "required"},
		{name: "registry host with scheme", edits: []edit{{"gitlab.registryHost", "https://registry.example.com"}}, field: "gitlab.registryHost", want: "without a scheme"},
		{name: "registry host with path", edits: []edit{{"gitlab.registryHost", "registry.example.com/v2"}}, field: "gitlab.registryHost", want: "without a path"},
		{name: "registry host bad port", edits: []edit{{"gitlab.registryHost", "registry.example.com:99999"}}, field: "gitlab.registryHost", want: "port"},
		{name: "no targets", edits: []edit{{"targets", nil}}, field: "targets", want: "at least one namespace or namespaceSelector is required"},
		{name: "target with both", edits: []edit{{"targets", []any{map[string]any{"namespace": "a", "namespaceSelector": "x=y"}}}}, field: "targets[0]", want: "not both"},
		{name: "bad selector", flags: []string{"--namespace-selector=a=(b"}, field: "targets[0].namespaceSelector", want: "invalid label selector"},
		{name: "bad log format", edits: []edit{{"log.format", "xml"}}, field: "log.format", want: "must be json or text"},
		{name: "bad listen address", edits: []edit{{"daemon.listen", "8080"}}, field: "daemon.listen", want: "host:port"},
		{name: "retryMax below retryMin", edits: []edit{{"daemon.retryMin", "10m"}, {"daemon.retryMax", "1m"}}, field: "daemon.retryMax", want: "at least"},
		{name: "bad lease namespace", edits: []edit{{"daemon.leaseNamespace", "Not_A_NS"}}, field: "daemon.leaseNamespace", want: "not a namespace"},
		{name: "pushgateway with credentials", edits: []edit{{"runOnce.pushgateway", "http://user:pw@pgw:9091"}}, field: "runOnce.pushgateway", want: "must not contain a user or password"},
		{name: "pushgateway without scheme", env: map[string]string{"ROTATOR_PUSHGATEWAY": "pgw:9091"}, field: "runOnce.pushgateway", want: "(set by ROTATOR_PUSHGATEWAY)"},
		{name: "pushgateway with push path", flags: []string{"--pushgateway=http://pgw:9091/metrics/job/x"}, field: "runOnce.pushgateway", want: "base URL"},
		{name: "pushgateway credentials without a scheme", edits: []edit{{"runOnce.pushgateway", "admin:s3cretpw@pgw:9091"}}, field: "runOnce.pushgateway", want: "must not contain a user or password", notWant: "s3cretpw"},
		{name: "pushgateway port out of range", edits: []edit{{"runOnce.pushgateway", "http://pgw:99999"}}, field: "runOnce.pushgateway", want: "1-65535"},
		{name: "pushgateway with query", edits: []edit{{"runOnce.pushgateway", "http://pgw:9091/?a=b"}}, field: "runOnce.pushgateway", want: "query"},
		{name: "verify repository missing for a group", edits: []edit{{"gitlab.project", nil}, {"gitlab.group", "games"}}, field: "verify.repository", want: "required"},
		{name: "verify repository not an image path", edits: []edit{{"verify.repository", "Games/Fleet"}}, field: "verify.repository", want: "image path"},
		{name: "bad log level", env: map[string]string{"ROTATOR_LOG_LEVEL": "loud"}, field: "log.level", want: "(set by ROTATOR_LOG_LEVEL)"},
		{name: "duplicate namespace", env: map[string]string{"ROTATOR_NAMESPACES": "a,b,a"}, field: "targets[2]", want: "duplicate target"},
		{name: "bad bool env", env: map[string]string{"ROTATOR_GITLAB_ALLOW_INSECURE_HTTP": "yes please"}, field: "ROTATOR_GITLAB_ALLOW_INSECURE_HTTP", want: `invalid boolean "yes please"`},
		{name: "wrong YAML type", edits: []edit{{"gitlab.allowInsecureHTTP", "maybe"}}, field: "gitlab.allowInsecureHTTP", want: "must be true or false"},
		{name: "Norway problem", edits: []edit{{"targets", []any{map[string]any{"namespace": true}}}}, field: "targets[0].namespace", want: "quote yes/no"},
		{name: "YAML syntax error", raw: "gitlab:\n  url: [unclosed\n", field: "config.yaml", want: "invalid YAML"},
		{name: "duplicate YAML key", raw: "schedule: a\nschedule: b\n", field: "config.yaml", want: "already set"},
		{name: "top level not a mapping", raw: "- a\n- b\n", field: "config.yaml", want: "top level must be a mapping"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.needRoot && os.Geteuid() == 0 {
				t.Skip("root can read mode-000 files; the directory case covers unreadable")
			}
			doc := f.base()
			for _, e := range tt.edits {
				setPath(doc, e.path, e.val)
			}
			path := f.writeConfig(t, doc)
			if tt.raw != "" {
				writeFile(t, path, tt.raw)
			}
			var fs *pflag.FlagSet
			if tt.flags != nil {
				fs = parsedFlags(t, tt.flags...)
			}
			c, err := Load(Sources{File: path, Env: envMap(tt.env), Flags: fs})
			if err == nil {
				t.Fatalf("Load succeeded, want error about %s (config %+v)", tt.field, c)
			}
			msg := err.Error()
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Errorf("error %T is not a *ValidationError", err)
			}
			if strings.ContainsAny(msg, "\r\n") {
				t.Errorf("error is not one line: %q", msg)
			}
			if !strings.HasPrefix(msg, "config: ") {
				t.Errorf("error %q lacks the config: prefix", msg)
			}
			if !strings.Contains(msg, tt.field) {
				t.Errorf("error %q does not name field %q", msg, tt.field)
			}
			if !strings.Contains(msg, tt.want) {
				t.Errorf("error %q does not contain %q", msg, tt.want)
			}
			if strings.Contains(msg, tokenValue) || tt.notWant != "" && strings.Contains(msg, tt.notWant) {
				t.Errorf("error reveals a secret: %q", msg)
			}
		})
	}
}

func TestFileErrorsNameTheFile(t *testing.T) {
	f := newFixture(t)
	doc := f.base()
	setPath(doc, "token.lifetime", "10x")
	path := f.writeConfig(t, doc)
	_, err := Load(Sources{File: path, Env: envMap(nil)})
	if err == nil || !strings.Contains(err.Error(), "token.lifetime") || !strings.Contains(err.Error(), path) {
		t.Fatalf("error %v should name token.lifetime and %s", err, path)
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	f := newFixture(t)
	c, err := Load(Sources{File: f.writeConfig(t, f.base()), Env: envMap(nil)})
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(c)
	var logBuf bytes.Buffer
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("cfg", "config", c, "value", *c)
	slog.New(slog.NewJSONHandler(&logBuf, nil)).Info("cfg", "config", c)
	outputs := map[string]string{
		"%v":       fmt.Sprintf("%v", c),
		"%+v":      fmt.Sprintf("%+v", c),
		"%#v":      fmt.Sprintf("%#v", c),
		"%+v val":  fmt.Sprintf("%+v", *c),
		"%s token": fmt.Sprintf("%s %v %#v", c.loaded.token, c.loaded.token, c.loaded.token),
		"json":     string(js),
		"slog":     logBuf.String(),
		"Redacted": c.Redacted(),
	}
	for name, out := range outputs {
		if strings.Contains(out, tokenValue) {
			t.Errorf("%s reveals the token: %s", name, out)
		}
	}
}

func TestRedacted(t *testing.T) {
	f := newFixture(t)
	doc := f.base()
	setPath(doc, "gitlab.caFile", f.ca)
	c, err := Load(Sources{File: f.writeConfig(t, doc), Env: envMap(nil)})
	if err != nil {
		t.Fatal(err)
	}
	out := c.Redacted()
	wantLines := []string{
		fmt.Sprintf("apiToken: <redacted, %d bytes from %s>", len(tokenValue), f.token),
		"lifetime: 30d",
		"renewBefore: 10d",
		"timeout: 30s",
		"secretName: gitlab",
		"- agones-sdk",
		"caFile: " + f.ca,
	}
	for _, w := range wantLines {
		if !strings.Contains(out, w) {
			t.Errorf("Redacted() lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, tokenValue) {
		t.Errorf("Redacted() reveals the token:\n%s", out)
	}
	// The output is itself a loadable config once apiToken is dropped.
	var back map[string]any
	if err := yaml.Unmarshal([]byte(out), &back); err != nil {
		t.Fatalf("Redacted() is not YAML: %v", err)
	}
	setPath(back, "gitlab.apiToken", nil)
	again, err := Load(Sources{File: f.writeConfig(t, back), Env: envMap(nil)})
	if err != nil {
		t.Fatalf("reloading Redacted() output: %v", err)
	}
	if again.Redacted() != out {
		t.Errorf("Redacted() not stable across a reload:\n%s\nvs\n%s", out, again.Redacted())
	}
}

func TestRegisterFlagsCoversEveryField(t *testing.T) {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	RegisterFlags(fs)
	want := map[string]string{"config": envConfig, flagNamespace: envNamespace, flagSelector: envSelector}
	for _, f := range fields {
		want[f.flag] = f.env
	}
	if len(want) != 32 {
		t.Errorf("%d flags, want 32 (one per field in the table)", len(want))
	}
	for name, env := range want {
		fl := fs.Lookup(name)
		if fl == nil {
			t.Errorf("flag --%s not registered", name)
			continue
		}
		if !strings.Contains(fl.Usage, "env "+env+")") {
			t.Errorf("--%s help %q does not name %s", name, fl.Usage, env)
		}
		if fl.DefValue != "" && fl.DefValue != "false" && fl.DefValue != "[]" {
			t.Errorf("--%s has pflag default %q; defaults belong in Load", name, fl.DefValue)
		}
	}
	// Every field in the Config struct tree is reachable from the table.
	paths := map[string]bool{}
	for _, f := range fields {
		paths[f.path] = true
	}
	for _, p := range []string{"gitlab.url", "gitlab.allowInsecureHTTP", "gitlab.caFile", "gitlab.tokenFile", "gitlab.project",
		"gitlab.group", "gitlab.registryHost", "gitlab.timeout", "token.prefix", "token.scopes", "token.lifetime",
		"token.renewBefore", "secretName", "serviceAccounts", "schedule", "log.format", "log.level", "kubeconfig", "runOnce.pushgateway"} {
		if !paths[p] {
			t.Errorf("no flag/env for %s", p)
		}
	}
	if err := fs.Parse([]string{"--token-lifetime=10x"}); err == nil || !strings.Contains(err.Error(), "token-lifetime") {
		t.Errorf("bad duration flag: err = %v, want one naming --token-lifetime", err)
	}
}
