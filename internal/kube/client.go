package kube

import (
	"context"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"
)

// Client implements Cluster and EventSink with a client-go clientset.
type Client struct {
	cs           kubernetes.Interface
	onEventError func(error)
}

var (
	_ Cluster   = (*Client)(nil)
	_ EventSink = (*Client)(nil)
)

// NewClient wraps a clientset. Request timeouts belong on its rest.Config.
func NewClient(cs kubernetes.Interface) *Client { return &Client{cs: cs} }

// OnEventError sets where failures to record Events are reported.
func (c *Client) OnEventError(f func(error)) { c.onEventError = f }

func (c *Client) Namespaces(ctx context.Context, selector string) ([]string, error) {
	list, err := c.cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, fmt.Errorf("list namespaces %q: %w", selector, err)
	}
	names := make([]string, 0, len(list.Items))
	for _, ns := range list.Items {
		if ns.DeletionTimestamp == nil {
			names = append(names, ns.Name)
		}
	}
	return names, nil
}

func (c *Client) PullSecret(ctx context.Context, namespace, name, registryHost string) (*PullSecret, error) {
	s, err := c.cs.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read secret %s/%s: %w", namespace, name, err)
	}
	return observeSecret(s, registryHost), nil
}

func observeSecret(s *corev1.Secret, registryHost string) *PullSecret {
	ps := &PullSecret{
		Namespace: s.Namespace,
		Name:      s.Name,
		UID:       string(s.UID),
		Type:      string(s.Type),
		Managed:   s.Labels[LabelManagedBy] == ManagedByValue,
	}
	if id, err := strconv.ParseInt(s.Annotations[AnnotationTokenID], 10, 64); err == nil && id > 0 {
		ps.TokenID = id
	}
	ps.ExpiresAt = parseTime(s.Annotations[AnnotationExpiresAt])
	ps.RotatedAt = parseTime(s.Annotations[AnnotationRotatedAt])
	if s.Type != corev1.SecretTypeDockerConfigJson {
		ps.Problem = fmt.Sprintf("type is %s, not %s", s.Type, corev1.SecretTypeDockerConfigJson)
		return ps
	}
	cred, err := parseDockerConfig(s.Data[corev1.DockerConfigJsonKey], registryHost)
	if err != nil {
		ps.Problem = err.Error()
		return ps
	}
	// Every rotator write sets the fingerprint, so a managed copy without a
	// matching one was edited by hand and must never be copied elsewhere.
	if fp, ok := s.Annotations[AnnotationFingerprint]; (ok || ps.Managed) && fp != fingerprint(cred) {
		ps.Problem = "credential was changed outside the rotator (fingerprint missing or different)"
		return ps
	}
	ps.Credential = cred
	return ps
}

func parseTime(v string) *time.Time {
	if v == "" {
		return nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return nil
	}
	t = t.UTC()
	return &t
}

func (c *Client) WritePullSecret(ctx context.Context, namespace, name string, content PullSecretContent) error {
	secrets := c.cs.CoreV1().Secrets(namespace)
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		current, err := secrets.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			s := &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
				Type:       corev1.SecretTypeDockerConfigJson,
			}
			if err := fill(s, content); err != nil {
				return err
			}
			_, err = secrets.Create(ctx, s, metav1.CreateOptions{FieldManager: fieldManager})
			if apierrors.IsAlreadyExists(err) {
				// Someone created it between our Get and Create; update it instead.
				return apierrors.NewConflict(corev1.Resource("secrets"), name, err)
			}
			return err
		}
		if err != nil {
			return err
		}
		if current.Type != corev1.SecretTypeDockerConfigJson {
			// Type is immutable; changing it would need delete-then-create,
			// which leaves pods without a Secret.
			return fmt.Errorf("type is %s and cannot be changed in place to %s; rename or remove it by hand", current.Type, corev1.SecretTypeDockerConfigJson)
		}
		updated := current.DeepCopy()
		if err := fill(updated, content); err != nil {
			return err
		}
		_, err = secrets.Update(ctx, updated, metav1.UpdateOptions{FieldManager: fieldManager})
		return err
	})
	if err != nil {
		return fmt.Errorf("write secret %s/%s: %w", namespace, name, err)
	}
	return nil
}

const fieldManager = "rotator"

func fill(s *corev1.Secret, content PullSecretContent) error {
	data, err := renderDockerConfig(s.Data[corev1.DockerConfigJsonKey], content.RegistryHost, s.Annotations[AnnotationRegistryHost], content.Credential)
	if err != nil {
		return err
	}
	if s.Data == nil {
		s.Data = map[string][]byte{}
	}
	s.Data[corev1.DockerConfigJsonKey] = data
	if s.Labels == nil {
		s.Labels = map[string]string{}
	}
	s.Labels[LabelManagedBy] = ManagedByValue
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	s.Annotations[AnnotationTokenID] = strconv.FormatInt(content.Token.ID, 10)
	s.Annotations[AnnotationTokenName] = content.Token.Name
	if content.Token.ExpiresAt != nil {
		s.Annotations[AnnotationExpiresAt] = content.Token.ExpiresAt.UTC().Format(time.RFC3339)
	} else {
		delete(s.Annotations, AnnotationExpiresAt)
	}
	s.Annotations[AnnotationRotatedAt] = content.RotatedAt.UTC().Format(time.RFC3339)
	s.Annotations[AnnotationFingerprint] = fingerprint(content.Credential)
	s.Annotations[AnnotationRegistryHost] = content.RegistryHost
	return nil
}

func (c *Client) ServiceAccount(ctx context.Context, namespace, name string) (*ServiceAccount, error) {
	sa, err := c.cs.CoreV1().ServiceAccounts(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read serviceaccount %s/%s: %w", namespace, name, err)
	}
	out := &ServiceAccount{Namespace: sa.Namespace, Name: sa.Name}
	for _, ref := range sa.ImagePullSecrets {
		out.ImagePullSecrets = append(out.ImagePullSecrets, ref.Name)
	}
	return out, nil
}

// AddImagePullSecret reads, appends and updates under optimistic
// concurrency: a ServiceAccount's imagePullSecrets has no merge key, so a
// strategic merge patch would replace the user's entries.
func (c *Client) AddImagePullSecret(ctx context.Context, namespace, serviceAccount, secretName string) error {
	accounts := c.cs.CoreV1().ServiceAccounts(namespace)
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		sa, err := accounts.Get(ctx, serviceAccount, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, ref := range sa.ImagePullSecrets {
			if ref.Name == secretName {
				return nil
			}
		}
		sa.ImagePullSecrets = append(sa.ImagePullSecrets, corev1.LocalObjectReference{Name: secretName})
		_, err = accounts.Update(ctx, sa, metav1.UpdateOptions{FieldManager: fieldManager})
		return err
	})
	if err != nil {
		return fmt.Errorf("patch serviceaccount %s/%s: %w", namespace, serviceAccount, err)
	}
	return nil
}

// RESTConfig loads a kubeconfig file, or the in-cluster config when path is
// empty, and bounds every request by timeout.
func RESTConfig(path string, timeout time.Duration) (*rest.Config, error) {
	var (
		cfg *rest.Config
		err error
	)
	if path == "" {
		cfg, err = rest.InClusterConfig()
	} else {
		cfg, err = clientcmd.BuildConfigFromFlags("", path)
	}
	if err != nil {
		where := "in-cluster config"
		if path != "" {
			where = "kubeconfig " + path
		}
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	cfg.Timeout = timeout
	cfg.UserAgent = "rotator"
	// client-go's default of 5 requests a second makes a first run over a
	// few dozen namespaces crawl; the rotator's bursts are short and rare.
	cfg.QPS, cfg.Burst = 50, 100
	return cfg, nil
}
