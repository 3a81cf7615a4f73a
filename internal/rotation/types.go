// Package rotation is the rotator's cycle: observe GitLab and the cluster,
// decide a plan with a reason for every action, then apply it in the order
// that keeps a working credential in every Secret at every moment.
package rotation

import (
	"time"

	"github.com/rotator-dev/rotator/internal/gitlab"
	"github.com/rotator-dev/rotator/internal/kube"
)

// TargetSpec is a target as configured: one namespace, or every namespace a
// label selector matches.
type TargetSpec struct {
	Namespace         string
	NamespaceSelector string
	SecretName        string
	ServiceAccounts   []string
}

// Target is one namespace's Secret and the ServiceAccounts that must list it.
type Target struct {
	Namespace       string
	SecretName      string
	ServiceAccounts []string
}

// Policy is the part of the configuration that decisions depend on.
type Policy struct {
	Prefix       string
	Scopes       []string
	Lifetime     time.Duration
	RenewBefore  time.Duration
	RegistryHost string
	// OrphanGrace spares young orphaned tokens; 0 revokes them at once.
	OrphanGrace time.Duration
}

// ReservedTokenName is exposed by GitLab to CI jobs; the rotator never
// manages a token of that name.
const ReservedTokenName = "gitlab-deploy-token"

// Observed is the state one cycle decides on.
type Observed struct {
	Now time.Time
	// Tokens are the managed deploy tokens, in GitLab's order.
	Tokens []gitlab.DeployToken
	// UnmanagedTokens counts the tokens the rotator leaves alone.
	UnmanagedTokens int
	Targets         []TargetState
	// CurrentRefused, when set, says why the registry refused the current
	// token's credential although GitLab lists it as active.
	CurrentRefused string
}

// TargetState is one target as observed.
type TargetState struct {
	Target
	// Secret is nil when the Secret does not exist.
	Secret          *kube.PullSecret
	ServiceAccounts []ServiceAccountState
}

// ServiceAccountState is one target ServiceAccount as observed.
type ServiceAccountState struct {
	Name       string
	Exists     bool
	References bool
}

// Plan is what a cycle will do, each step with its reason. Apply carries it
// out in field order: create, verify, write, patch, revoke.
type Plan struct {
	Now      time.Time
	Rotation *Rotation
	// Current is the token every target holds after the plan; nil when the
	// plan creates one.
	Current *gitlab.DeployToken
	// Targets are every target the plan was made for.
	Targets []Target
	Writes  []SecretWrite
	Patches []ServiceAccountPatch
	Revokes []Revocation
	// MissingServiceAccounts are target ServiceAccounts that do not exist.
	MissingServiceAccounts []ServiceAccountPatch
	Warnings               []string
	// Synced lists, per target ("namespace/secret"), whether it needs
	// nothing from this plan.
	Synced map[string]bool
	// Holding marks targets that hold the current token with every
	// ServiceAccount patched, whether or not a rotation is due.
	Holding map[string]bool
	// Blocked marks targets that cannot be in sync after this plan either,
	// because a ServiceAccount they name does not exist yet.
	Blocked map[string]bool
}

// Empty reports whether the plan writes nothing anywhere.
func (p Plan) Empty() bool {
	return p.Rotation == nil && len(p.Writes) == 0 && len(p.Patches) == 0 && len(p.Revokes) == 0
}

// Rotation creates one new token.
type Rotation struct {
	Reason  string
	Request gitlab.CreateRequest
}

// SecretWrite puts a token into one target Secret.
type SecretWrite struct {
	Namespace string
	Name      string
	// TokenID is the token to write; 0 means the token this cycle creates.
	TokenID int64
	Reason  string
}

// ServiceAccountPatch adds the Secret to one ServiceAccount.
type ServiceAccountPatch struct {
	Namespace  string
	Name       string
	SecretName string
	Reason     string
}

// Revocation deletes one managed token from GitLab.
type Revocation struct {
	TokenID int64
	Name    string
	Reason  string
}

func targetKey(namespace, secretName string) string { return namespace + "/" + secretName }
