// Package kube is the rotator's view of Kubernetes: image pull Secrets and
// the ServiceAccounts that reference them. Cluster hides client-go so that
// the cycle sees only what it reads and writes.
package kube

import (
	"context"
	"time"

	"github.com/rotator-dev/rotator/internal/gitlab"
)

// Labels and annotations the rotator puts on the Secrets it manages. Users
// and dashboards read these; they are part of the interface.
const (
	LabelManagedBy      = "app.kubernetes.io/managed-by"
	ManagedByValue      = "rotator"
	AnnotationTokenID   = "rotator.dev/token-id"
	AnnotationTokenName = "rotator.dev/token-name"
	AnnotationExpiresAt = "rotator.dev/token-expires-at"
	AnnotationRotatedAt = "rotator.dev/rotated-at"
	// AnnotationRegistryHost records which auths entry is the rotator's, so
	// that a registry host change removes the old entry instead of leaving
	// a revoked token behind in it.
	AnnotationRegistryHost = "rotator.dev/registry-host"
	// AnnotationFingerprint lets the rotator tell its own copy from one edited
	// by hand; it is a truncated SHA-256 of a high-entropy token, not the token.
	AnnotationFingerprint = "rotator.dev/credential-sha256"
)

// PullSecret is what the rotator observed of one target Secret.
type PullSecret struct {
	Namespace string
	Name      string
	UID       string
	Type      string
	// Managed is true when the Secret carries the rotator's label.
	Managed bool
	// TokenID is the deploy token the Secret says it holds, 0 when unknown.
	TokenID   int64
	ExpiresAt *time.Time
	RotatedAt *time.Time
	// Credential is the entry for the configured registry host; valid only
	// when Problem is empty.
	Credential gitlab.Credential
	// Problem says why the Secret cannot be used as it is, "" when it can.
	Problem string
}

// ServiceAccount is what the rotator observed of one target ServiceAccount.
type ServiceAccount struct {
	Namespace        string
	Name             string
	ImagePullSecrets []string
}

// References reports whether the ServiceAccount lists secretName.
func (sa ServiceAccount) References(secretName string) bool {
	for _, s := range sa.ImagePullSecrets {
		if s == secretName {
			return true
		}
	}
	return false
}

// PullSecretContent is what WritePullSecret puts into a Secret.
type PullSecretContent struct {
	RegistryHost string
	Credential   gitlab.Credential
	Token        gitlab.DeployToken
	RotatedAt    time.Time
}

// Cluster is everything the cycle does with Kubernetes.
type Cluster interface {
	// Namespaces lists namespaces matching a label selector.
	Namespaces(ctx context.Context, selector string) ([]string, error)
	// PullSecret reads a Secret and its entry for registryHost; nil when the
	// Secret does not exist.
	PullSecret(ctx context.Context, namespace, name, registryHost string) (*PullSecret, error)
	// WritePullSecret creates the Secret or updates it in place, keeping its
	// UID, other data keys and other registries' entries.
	WritePullSecret(ctx context.Context, namespace, name string, content PullSecretContent) error
	// ServiceAccount reads a ServiceAccount; nil when it does not exist.
	ServiceAccount(ctx context.Context, namespace, name string) (*ServiceAccount, error)
	// AddImagePullSecret appends secretName to a ServiceAccount's
	// imagePullSecrets, keeping every entry it has.
	AddImagePullSecret(ctx context.Context, namespace, serviceAccount, secretName string) error
}
