package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/util/retry"
)

// A manual run while a daemon leads must not race it, so run-once hands its
// request to the leader through a second Lease, "<lease>-request", whose
// annotations carry the request and, once the cycle is done, its result.
const (
	annRequestID  = "rotator.dev/request-id"
	annRequestAt  = "rotator.dev/requested-at"
	annForce      = "rotator.dev/request-force"
	annResultID   = "rotator.dev/result-id"
	annResultCode = "rotator.dev/result-exit-code"
	annResultText = "rotator.dev/result-summary"
)

// requestTTL bounds how long a request may wait: a daemon that starts long
// after its requester gave up must not run a surprise forced rotation.
const requestTTL = 2 * time.Minute

// ErrNoLeader means the daemon a request was handed to went away; the
// request has been withdrawn and the caller may act itself.
var ErrNoLeader = errors.New("no daemon holds the lease any more")

// RequestLeaseName names the Lease that carries manual requests.
func RequestLeaseName(lease string) string { return lease + "-request" }

// Result is the outcome of a cycle a daemon ran on request.
type Result struct {
	ExitCode int
	Summary  string
}

// LiveLeader returns the holder of the Lease when it is held and renewed
// recently enough to be alive.
func LiveLeader(ctx context.Context, kube kubernetes.Interface, namespace, name string, now time.Time) (string, bool, error) {
	l, err := kube.CoordinationV1().Leases(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read lease %s/%s: %w", namespace, name, err)
	}
	s := l.Spec
	if s.HolderIdentity == nil || *s.HolderIdentity == "" || s.RenewTime == nil || s.LeaseDurationSeconds == nil {
		return "", false, nil
	}
	return *s.HolderIdentity, !leaseExpired(l, now), nil
}

// leaseExpired reports whether a held Lease was last renewed longer than its
// duration ago.
func leaseExpired(l *coordinationv1.Lease, now time.Time) bool {
	s := l.Spec
	if s.HolderIdentity == nil || *s.HolderIdentity == "" || s.RenewTime == nil || s.LeaseDurationSeconds == nil {
		return false
	}
	return !now.Before(s.RenewTime.Add(time.Duration(*s.LeaseDurationSeconds) * time.Second))
}

// Request asks the leader for a cycle and waits for its result.
func Request(ctx context.Context, kube kubernetes.Interface, namespace, lease string, force bool) (Result, error) {
	id := randomID()
	leases := kube.CoordinationV1().Leases(namespace)
	name := RequestLeaseName(lease)
	lastAnswer := "" // the answer already there, which must not be taken for ours
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		l, err := leases.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			l = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
			setRequest(l, id, force)
			_, err = leases.Create(ctx, l, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				return apierrors.NewConflict(coordinationv1.Resource("leases"), name, err)
			}
			return err
		}
		if err != nil {
			return err
		}
		lastAnswer = l.Annotations[annResultID]
		setRequest(l, id, force)
		_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return Result{}, fmt.Errorf("hand the request to the daemon through lease %s/%s: %w", namespace, name, err)
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var leaderlessSince time.Time
	for {
		select {
		case <-ctx.Done():
			return Result{}, fmt.Errorf("wait for the daemon to run request %s: %w", id, ctx.Err())
		case <-tick.C:
		}
		l, err := leases.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			continue
		}
		// Another run-once may have replaced our request; the cycle that
		// answers it started after ours was written, so it serves ours too.
		if res := l.Annotations[annResultID]; res == id || (res != "" && res != lastAnswer && res == l.Annotations[annRequestID]) {
			code, _ := strconv.Atoi(l.Annotations[annResultCode])
			return Result{ExitCode: code, Summary: l.Annotations[annResultText]}, nil
		}
		// A pending request survives a leader handover (the next leader
		// picks it up); a Lease left without a leader means no answer.
		if _, live, err := LiveLeader(ctx, kube, namespace, lease, time.Now()); err == nil && !live {
			if leaderlessSince.IsZero() {
				leaderlessSince = time.Now()
			} else if time.Since(leaderlessSince) > 5*time.Second {
				withdraw(ctx, kube, namespace, name, id)
				return Result{}, fmt.Errorf("request %s on lease %s/%s: %w", id, namespace, lease, ErrNoLeader)
			}
		} else {
			leaderlessSince = time.Time{}
		}
	}
}

func setRequest(l *coordinationv1.Lease, id string, force bool) {
	if l.Annotations == nil {
		l.Annotations = map[string]string{}
	}
	l.Annotations[annRequestID] = id
	l.Annotations[annForce] = strconv.FormatBool(force)
	l.Annotations[annRequestAt] = time.Now().UTC().Format(time.RFC3339)
}

// withdraw removes request id if it is still the pending one.
func withdraw(ctx context.Context, kube kubernetes.Interface, namespace, name, id string) {
	leases := kube.CoordinationV1().Leases(namespace)
	_ = retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		l, err := leases.Get(ctx, name, metav1.GetOptions{})
		if err != nil || l.Annotations[annRequestID] != id {
			return err
		}
		delete(l.Annotations, annRequestID)
		delete(l.Annotations, annForce)
		delete(l.Annotations, annRequestAt)
		_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
		return err
	})
}

// pendingRequest reads an unanswered request, if any.
func pendingRequest(ctx context.Context, kube kubernetes.Interface, namespace, lease string) (id string, force bool, ok bool) {
	l, err := kube.CoordinationV1().Leases(namespace).Get(ctx, RequestLeaseName(lease), metav1.GetOptions{})
	if err != nil {
		return "", false, false
	}
	id = l.Annotations[annRequestID]
	if id == "" || l.Annotations[annResultID] == id {
		return "", false, false
	}
	if at, err := time.Parse(time.RFC3339, l.Annotations[annRequestAt]); err != nil || time.Since(at) > requestTTL {
		return "", false, false // its requester has given up
	}
	return id, l.Annotations[annForce] == "true", true
}

// answer records the result of request id.
func answer(ctx context.Context, kube kubernetes.Interface, namespace, lease, id string, res Result) error {
	leases := kube.CoordinationV1().Leases(namespace)
	return retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		l, err := leases.Get(ctx, RequestLeaseName(lease), metav1.GetOptions{})
		if err != nil {
			return err
		}
		if l.Annotations == nil {
			l.Annotations = map[string]string{}
		}
		l.Annotations[annResultID] = id
		l.Annotations[annResultCode] = strconv.Itoa(res.ExitCode)
		l.Annotations[annResultText] = res.Summary
		_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
		return err
	})
}

// ErrLeaseHeld means another rotator holds the Lease.
var ErrLeaseHeld = errors.New("another rotator holds the lease")

// HoldingLease runs fn while holding the Lease, so that a daemon starting
// meanwhile stands by, and releases it afterwards. It gives up with
// ErrLeaseHeld when the Lease cannot be had within wait.
func HoldingLease(ctx context.Context, kube kubernetes.Interface, lo LeaseOptions, wait time.Duration, fn func(context.Context)) error {
	// The elector only logs why it cannot create the Lease (a missing
	// namespace, RBAC); create it unheld first so such errors surface here.
	leases := kube.CoordinationV1().Leases(lo.Namespace)
	l, err := leases.Get(ctx, lo.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = leases.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: lo.Namespace, Name: lo.Name}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create lease %s/%s: %w", lo.Namespace, lo.Name, err)
		}
	case err != nil:
		return fmt.Errorf("read lease %s/%s: %w", lo.Namespace, lo.Name, err)
	case leaseExpired(l, time.Now()):
		// The elector would wait a whole lease duration from the moment it
		// first sees a dead holder's record; clear it (conditional on its
		// resourceVersion, so a live renewal wins) to take it at once.
		l.Spec.HolderIdentity = nil
		_, _ = leases.Update(ctx, l, metav1.UpdateOptions{})
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: lo.Namespace, Name: lo.Name},
		Client:     kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: lo.Identity},
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	ran := make(chan struct{})
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: lock, LeaseDuration: lo.LeaseDuration, RenewDeadline: lo.RenewDeadline, RetryPeriod: lo.RetryPeriod,
		ReleaseOnCancel: true, Name: lo.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(leCtx context.Context) {
				fn(context.WithoutCancel(leCtx))
				close(ran)
				cancel()
			},
			OnStoppedLeading: func() {},
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	timer := time.AfterFunc(wait, func() {
		select {
		case <-ran:
		default:
			if !le.IsLeader() {
				cancel()
			}
		}
	})
	defer timer.Stop()
	le.Run(runCtx)
	select {
	case <-ran:
		return nil
	default:
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("lease %s/%s: %w", lo.Namespace, lo.Name, ErrLeaseHeld)
	}
}

func randomID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
