package kube

import (
	"context"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Event reasons on target Secrets; users filter on these.
const (
	ReasonRotated               = "Rotated"
	ReasonRotationFailed        = "RotationFailed"
	ReasonSecretRepaired        = "SecretRepaired"
	ReasonServiceAccountPatched = "ServiceAccountPatched"
	ReasonTokenRevoked          = "TokenRevoked"
	ReasonServiceAccountMissing = "ServiceAccountMissing"
)

// EventSink records Kubernetes Events on target Secrets. Messages must not
// hold credentials; callers pass token ids and names only.
type EventSink interface {
	SecretEvent(ctx context.Context, namespace, secret, eventType, reason, message string)
}

// SecretEvent creates the Event synchronously, so that a run-once that exits
// right after still leaves it behind. A failure to record is not a cycle
// failure; it is reported to the OnEventError callback.
func (c *Client) SecretEvent(ctx context.Context, namespace, secret, eventType, reason, message string) {
	now := metav1.NewTime(time.Now())
	host, _ := os.Hostname()
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:    namespace,
			GenerateName: secret + ".",
		},
		InvolvedObject:      corev1.ObjectReference{APIVersion: "v1", Kind: "Secret", Namespace: namespace, Name: secret},
		Reason:              reason,
		Message:             message,
		Type:                eventType,
		Source:              corev1.EventSource{Component: "rotator", Host: host},
		FirstTimestamp:      now,
		LastTimestamp:       now,
		Count:               1,
		ReportingController: "rotator.dev/rotator",
		ReportingInstance:   host,
	}
	if _, err := c.cs.CoreV1().Events(namespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil && c.onEventError != nil {
		c.onEventError(fmt.Errorf("record event %s on secret %s/%s: %w", reason, namespace, secret, err))
	}
}
