package kube

import (
	"strings"
	"testing"

	"github.com/rotator-dev/rotator/internal/gitlab"
	"github.com/rotator-dev/rotator/internal/secret"
)

func TestDockerConfigRoundTripKeepsOtherRegistries(t *testing.T) {
	existing := []byte(`{"auths":{"docker.io":{"auth":"ZDpo"},"registry.example":{"auth":"b2xkOm9sZA=="}}}`)
	cred := gitlab.Credential{Username: "gitlab+deploy-token-3", Password: secret.New("gldt-aaaaaaaaaaaaaaaaaaaa")}
	out, err := renderDockerConfig(existing, "registry.example", "", cred)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"docker.io":{"auth":"ZDpo"}`) {
		t.Fatalf("other registry lost: %s", out)
	}
	got, err := parseDockerConfig(out, "registry.example")
	if err != nil || got.Username != cred.Username || !got.Password.Equal(cred.Password) {
		t.Fatalf("parse = %+v, %v", got, err)
	}
}

func TestParseDockerConfigProblems(t *testing.T) {
	cases := map[string]string{
		`not json`:     "not valid JSON",
		`{"auths":{}}`: "no entry for registry.example",
		`{"auths":{"registry.example":{"auth":"%%%"}}}`:                                "not base64",
		`{"auths":{"registry.example":{"auth":"bm9jb2xvbg=="}}}`:                       "not user:password",
		`{"auths":{"registry.example":{"username":"u"}}}`:                              "lacks username or password",
		`{"auths":{"registry.example":{"username":"a","password":"b","auth":"Yzpk"}}}`: "disagrees",
	}
	for in, want := range cases {
		_, err := parseDockerConfig([]byte(in), "registry.example")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", in, err, want)
		}
		if err != nil && (strings.Contains(err.Error(), "bm9jb2xvbg") || strings.Contains(err.Error(), "Yzpk")) {
			t.Errorf("error quotes the data: %v", err)
		}
	}
}

func TestFingerprintChangesWithCredential(t *testing.T) {
	a := fingerprint(gitlab.Credential{Username: "u", Password: secret.New("p1")})
	b := fingerprint(gitlab.Credential{Username: "u", Password: secret.New("p2")})
	if a == b || len(a) != 16 || strings.Contains(a, "p1") {
		t.Fatalf("fingerprints %q %q", a, b)
	}
}

func TestRegistryHostChangeDropsTheOldEntry(t *testing.T) {
	existing := []byte(`{"auths":{"docker.io":{"auth":"ZDpo"},"old.example":{"auth":"b2xkOm9sZA=="}}}`)
	cred := gitlab.Credential{Username: "u", Password: secret.New("p")}
	out, err := renderDockerConfig(existing, "new.example", "old.example", cred)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "old.example") || !strings.Contains(string(out), "docker.io") || !strings.Contains(string(out), "new.example") {
		t.Fatalf("auths = %s", out)
	}
}
