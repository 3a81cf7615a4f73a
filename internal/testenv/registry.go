package testenv

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/sirupsen/logrus"

	_ "github.com/distribution/distribution/v3/registry/auth/token"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
)

// Registry is a real container registry (distribution) that trusts the
// GitLab emulator's token service, as GitLab's registry trusts GitLab.
type Registry struct {
	// Host is "localhost:<port>": go-containerregistry refuses a token realm
	// on a loopback IP whose host differs from the registry's.
	Host string
	srv  *http.Server
}

// StartRegistry serves distribution on a free loopback port with token auth:
// realm is the emulator's /jwt/auth URL, jwks its public keys.
func StartRegistry(dir, realm, issuer string, jwks []byte) (*Registry, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	jwksPath := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwksPath, jwks, 0o600); err != nil {
		return nil, err
	}
	cfg := &configuration.Configuration{
		Storage: configuration.Storage{"inmemory": configuration.Parameters{}},
		Auth: configuration.Auth{"token": configuration.Parameters{
			"realm":   realm,
			"service": "container_registry",
			"issuer":  issuer,
			"jwks":    jwksPath,
		}},
	}
	cfg.Log.Level = "error"
	logrus.SetOutput(io.Discard)
	app := handlers.NewApp(context.Background(), cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &Registry{
		Host: fmt.Sprintf("localhost:%d", ln.Addr().(*net.TCPAddr).Port),
		srv:  &http.Server{Handler: app, ReadHeaderTimeout: 5 * time.Second},
	}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

// Stop closes the registry.
func (r *Registry) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return r.srv.Shutdown(ctx)
}
