package kube

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/rotator-dev/rotator/internal/gitlab"
	"github.com/rotator-dev/rotator/internal/secret"
)

// dockerConfig is the content of a kubernetes.io/dockerconfigjson Secret.
// Entries are kept as raw JSON so that registries other than ours survive a
// rewrite untouched.
type dockerConfig struct {
	Auths map[string]json.RawMessage `json:"auths"`
}

type dockerAuth struct {
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	Auth     string `json:"auth,omitempty"`
}

// parseDockerConfig returns the credential for host. The errors never quote
// the data, which holds credentials.
func parseDockerConfig(data []byte, host string) (gitlab.Credential, error) {
	var cfg dockerConfig
	if err := json.Unmarshal(data, &cfg); err != nil {
		return gitlab.Credential{}, errors.New(".dockerconfigjson is not valid JSON")
	}
	raw, ok := cfg.Auths[host]
	if !ok {
		return gitlab.Credential{}, fmt.Errorf(".dockerconfigjson has no entry for %s", host)
	}
	var a dockerAuth
	if err := json.Unmarshal(raw, &a); err != nil {
		return gitlab.Credential{}, fmt.Errorf(".dockerconfigjson entry for %s is not an object", host)
	}
	if a.Auth != "" {
		dec, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil {
			return gitlab.Credential{}, fmt.Errorf(".dockerconfigjson entry for %s: auth is not base64", host)
		}
		user, pass, ok := strings.Cut(string(dec), ":")
		if !ok {
			return gitlab.Credential{}, fmt.Errorf(".dockerconfigjson entry for %s: auth is not user:password", host)
		}
		if (a.Username != "" && a.Username != user) || (a.Password != "" && a.Password != pass) {
			return gitlab.Credential{}, fmt.Errorf(".dockerconfigjson entry for %s: auth disagrees with username/password", host)
		}
		a.Username, a.Password = user, pass
	}
	if a.Username == "" || a.Password == "" {
		return gitlab.Credential{}, fmt.Errorf(".dockerconfigjson entry for %s lacks username or password", host)
	}
	return gitlab.Credential{Username: a.Username, Password: secret.New(a.Password)}, nil
}

// renderDockerConfig sets host's entry in existing (which may be empty or
// unparseable, in which case it starts afresh), removes the entry of
// previousHost (the rotator's own entry under an earlier registry host), and
// keeps every other entry.
func renderDockerConfig(existing []byte, host, previousHost string, cred gitlab.Credential) ([]byte, error) {
	var cfg dockerConfig
	if len(existing) == 0 || json.Unmarshal(existing, &cfg) != nil {
		cfg = dockerConfig{}
	}
	if cfg.Auths == nil {
		cfg.Auths = map[string]json.RawMessage{}
	}
	pass := cred.Password.Reveal()
	entry, err := json.Marshal(dockerAuth{
		Username: cred.Username,
		Password: pass,
		Auth:     base64.StdEncoding.EncodeToString([]byte(cred.Username + ":" + pass)),
	})
	if err != nil {
		return nil, errors.New("encode .dockerconfigjson entry")
	}
	if previousHost != "" && previousHost != host {
		delete(cfg.Auths, previousHost)
	}
	cfg.Auths[host] = entry
	out, err := json.Marshal(cfg)
	if err != nil {
		return nil, errors.New("encode .dockerconfigjson")
	}
	return out, nil
}

// fingerprint identifies a credential without revealing it.
func fingerprint(cred gitlab.Credential) string {
	sum := sha256.Sum256([]byte(cred.Username + ":" + cred.Password.Reveal()))
	return hex.EncodeToString(sum[:8])
}
