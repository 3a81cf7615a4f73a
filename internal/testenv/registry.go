package testenv

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
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

	mu    sync.Mutex
	fault *RegistryFault
	seen  int
}

// RegistryFault fails matching requests (any method when Method is empty)
// from the OnCall-th on, Times of them (1 when 0): with Status, or by
// dropping the connection.
type RegistryFault struct {
	Method string
	OnCall int
	Times  int
	Status int
	Reset  bool
}

// InjectFault arms f, replacing any earlier fault; nil clears it.
func (r *Registry) InjectFault(f *RegistryFault) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fault, r.seen = f, 0
}

func (r *Registry) faulty(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		f := r.fault
		fire := false
		if f != nil && (f.Method == "" || f.Method == req.Method) {
			r.seen++
			fire = r.seen >= f.OnCall && r.seen < f.OnCall+max(f.Times, 1)
		}
		r.mu.Unlock()
		switch {
		case !fire:
			next.ServeHTTP(w, req)
		case f.Reset:
			if hj, ok := w.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					_ = conn.Close()
					return
				}
			}
			http.Error(w, "reset", http.StatusBadGateway)
		default:
			http.Error(w, `{"errors":[{"code":"UNAVAILABLE","message":"injected"}]}`, f.Status)
		}
	})
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
	}
	r.srv = &http.Server{Handler: r.faulty(app), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

// Stop closes the registry.
func (r *Registry) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return r.srv.Shutdown(ctx)
}
