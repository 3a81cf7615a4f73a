package daemon

import (
	"context"
	"maps"
	"reflect"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/rotator-dev/rotator/internal/rotation"
)

// watcher keeps informers on every target namespace's Secrets and
// ServiceAccounts, and on namespaces when selectors are configured, and
// calls trigger when something the rotator manages changes. It never acts
// itself: the cycle decides what a change means.
type watcher struct {
	cs      kubernetes.Interface
	trigger func(reason string)

	mu       sync.Mutex
	perNS    map[string]*nsWatch
	nsSynced bool
	// targetsKnown is set once a cycle has resolved the targets to watch.
	targetsKnown bool
	wantNames    map[string]map[string]bool // namespace -> names of interest
}

type nsWatch struct {
	cancel context.CancelFunc
	names  map[string]bool
	synced func() bool
}

func newWatcher(cs kubernetes.Interface, trigger func(string)) *watcher {
	return &watcher{cs: cs, trigger: trigger, perNS: map[string]*nsWatch{}, wantNames: map[string]map[string]bool{}}
}

// watchNamespaces triggers a cycle when a namespace matching one of the
// selectors appears or changes its labels.
func (w *watcher) watchNamespaces(ctx context.Context, selectors []string) {
	if len(selectors) == 0 {
		w.mu.Lock()
		w.nsSynced = true
		w.mu.Unlock()
		return
	}
	var synced []cache.InformerSynced
	for _, sel := range selectors {
		f := informers.NewSharedInformerFactoryWithOptions(w.cs, 0,
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = sel }))
		inf := f.Core().V1().Namespaces().Informer()
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
			AddFunc: func(obj any, initial bool) {
				if !initial {
					w.trigger("namespace " + obj.(*corev1.Namespace).Name + " matches a target selector")
				}
			},
			DeleteFunc: func(any) { w.trigger("a target namespace went away") },
		})
		f.Start(ctx.Done())
		synced = append(synced, inf.HasSynced)
	}
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), synced...) {
			w.mu.Lock()
			w.nsSynced = true
			w.mu.Unlock()
		}
	}()
}

// sync makes the per-namespace informers match targets: new namespaces get
// informers, namespaces no longer targeted lose theirs.
func (w *watcher) sync(ctx context.Context, targets []rotation.Target) {
	want := map[string]map[string]bool{}
	for _, t := range targets {
		names := want[t.Namespace]
		if names == nil {
			names = map[string]bool{}
			want[t.Namespace] = names
		}
		names["secret/"+t.SecretName] = true
		for _, sa := range t.ServiceAccounts {
			names["serviceaccount/"+sa] = true
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.targetsKnown = true
	w.wantNames = want
	for ns, nw := range w.perNS {
		if names, ok := want[ns]; !ok || !maps.Equal(names, nw.names) {
			nw.cancel()
			delete(w.perNS, ns)
		}
	}
	for ns, names := range want {
		if _, ok := w.perNS[ns]; !ok {
			w.perNS[ns] = w.start(ctx, ns, names)
		}
	}
}

func (w *watcher) interesting(ns, kind, name string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.wantNames[ns][kind+"/"+name]
}

// start watches the named objects of one namespace. Each informer is
// narrowed to one name by a field selector, which RBAC can authorise through
// resourceNames: the rotator never needs to list every Secret.
func (w *watcher) start(parent context.Context, ns string, names map[string]bool) *nsWatch {
	ctx, cancel := context.WithCancel(parent)
	var synced []cache.InformerSynced
	for key := range names {
		kind, name, _ := strings.Cut(key, "/")
		f := informers.NewSharedInformerFactoryWithOptions(w.cs, 0, informers.WithNamespace(ns),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) {
				o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
			}))
		var inf cache.SharedIndexInformer
		if kind == "secret" {
			inf = f.Core().V1().Secrets().Informer()
			_, _ = inf.AddEventHandler(w.handler(ns, kind, func(a, b any) bool {
				x, y := a.(*corev1.Secret), b.(*corev1.Secret)
				return x.Type != y.Type || !reflect.DeepEqual(x.Data, y.Data) || !reflect.DeepEqual(x.Labels, y.Labels) || !reflect.DeepEqual(x.Annotations, y.Annotations)
			}))
		} else {
			inf = f.Core().V1().ServiceAccounts().Informer()
			_, _ = inf.AddEventHandler(w.handler(ns, kind, func(a, b any) bool {
				return !reflect.DeepEqual(a.(*corev1.ServiceAccount).ImagePullSecrets, b.(*corev1.ServiceAccount).ImagePullSecrets)
			}))
		}
		f.Start(ctx.Done())
		synced = append(synced, inf.HasSynced)
	}
	return &nsWatch{cancel: cancel, names: names, synced: func() bool {
		for _, s := range synced {
			if !s() {
				return false
			}
		}
		return true
	}}
}

func (w *watcher) handler(ns, kind string, changed func(old, new any) bool) cache.ResourceEventHandler {
	name := func(obj any) string {
		if m, err := meta(obj); err == nil {
			return m.GetName()
		}
		return ""
	}
	return cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, initial bool) {
			if !initial && w.interesting(ns, kind, name(obj)) {
				w.trigger(kind + " " + ns + "/" + name(obj) + " created")
			}
		},
		UpdateFunc: func(old, obj any) {
			if w.interesting(ns, kind, name(obj)) && changed(old, obj) {
				w.trigger(kind + " " + ns + "/" + name(obj) + " changed")
			}
		},
		DeleteFunc: func(obj any) {
			if w.interesting(ns, kind, name(obj)) {
				w.trigger(kind + " " + ns + "/" + name(obj) + " deleted")
			}
		},
	}
}

func meta(obj any) (metav1.Object, error) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	return apimeta.Accessor(obj)
}

// synced reports whether every informer has its first list.
func (w *watcher) synced() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.nsSynced || !w.targetsKnown {
		return false
	}
	for _, nw := range w.perNS {
		if !nw.synced() {
			return false
		}
	}
	return true
}

// stop ends every informer.
func (w *watcher) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ns, nw := range w.perNS {
		nw.cancel()
		delete(w.perNS, ns)
	}
}

// watchRequests triggers a cycle when run-once writes a request.
func (w *watcher) watchRequests(ctx context.Context, namespace, name string) {
	f := informers.NewSharedInformerFactoryWithOptions(w.cs, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		}))
	inf := f.Coordination().V1().Leases().Informer()
	unanswered := func(obj any) bool {
		m, err := meta(obj)
		return err == nil && m.GetAnnotations()[annRequestID] != "" && m.GetAnnotations()[annRequestID] != m.GetAnnotations()[annResultID]
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if unanswered(obj) {
				w.trigger("manual request")
			}
		},
		UpdateFunc: func(_, obj any) {
			if unanswered(obj) {
				w.trigger("manual request")
			}
		},
	})
	f.Start(ctx.Done())
}
