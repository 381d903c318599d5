package kubeapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
)

// Drain's calls, as kubectl drain makes them: cordon is a merge patch of
// spec.unschedulable; the pods on a node are listed by the field
// spec.nodeName; each is evicted through policy/v1 Eviction, which the
// apiserver refuses with 429 while a PodDisruptionBudget forbids it (the
// caller tries again later). DaemonSet pods (their controller would put
// them back at once) and mirror pods (static pods, which the kubelet owns)
// are left, as kubectl drain leaves them.

// ErrEvictionRefused: a PodDisruptionBudget does not allow the eviction
// now (HTTP 429); try again later.
var ErrEvictionRefused = errors.New("kubeapi: eviction refused by a PodDisruptionBudget")

// mirrorAnnotation marks a static pod's mirror in the API.
const mirrorAnnotation = "kubernetes.io/config.mirror"

// Pod is what drain reads of a pod.
type Pod struct {
	Namespace, Name string
	DaemonSet       bool   // controlled by a DaemonSet
	Mirror          bool   // the mirror of a static pod
	Phase           string // Pending, Running, Succeeded, Failed
}

// Evictable: drain evicts it (kubectl drain's default filters: not a
// DaemonSet's, not a mirror pod, not finished).
func (p Pod) Evictable() bool {
	return !p.DaemonSet && !p.Mirror && p.Phase != "Succeeded" && p.Phase != "Failed"
}

// AnnotationUpgradeCordon marks a cordon the rolling upgrade made, so
// that its uncordon never undoes a cordon somebody else set (a Node
// cordoned for maintenance before the roll stays cordoned after it).
const AnnotationUpgradeCordon = "rke2-hanode.io/upgrade-cordon"

// CordonForUpgrade cordons Node name for the rolling upgrade and marks the
// cordon as the upgrade's, unless the Node is cordoned already without the
// mark: that cordon is somebody else's and is left as it is (ours false),
// so UncordonAfterUpgrade leaves it too. The patch applies only to the
// version read: a cordon somebody sets between the read and the patch is
// read again and left as theirs.
func (c *Client) CordonForUpgrade(ctx context.Context, name string) (ours bool, err error) {
	err = c.patchRead(ctx, name, func(n Node) *nodePatch {
		if ours = !n.Unschedulable || n.UpgradeCordon != ""; !ours {
			return nil
		}
		mark := "true"
		return &nodePatch{unschedulable: true, mark: &mark}
	})
	return ours, err
}

// UncordonAfterUpgrade uncordons Node name if the upgrade's mark is on
// its cordon, and removes the mark; a cordon without the mark is left
// (kept true). A Node that is gone is ErrNotFound. As CordonForUpgrade's,
// the patch applies only to the version read.
func (c *Client) UncordonAfterUpgrade(ctx context.Context, name string) (kept bool, err error) {
	err = c.patchRead(ctx, name, func(n Node) *nodePatch {
		if n.UpgradeCordon == "" {
			kept = n.Unschedulable
			return nil
		}
		kept = false
		return &nodePatch{unschedulable: false}
	})
	return kept, err
}

// nodePatch is spec.unschedulable and the upgrade's mark: a string sets
// it, nil removes it.
type nodePatch struct {
	unschedulable bool
	mark          *string
}

// patchTries bounds patchRead's reads: each lost race is a write by
// somebody else, so a few end any honest contention.
const patchTries = 5

// patchRead reads Node name, asks decide for the patch that version
// calls for (nil: none) and sends it with the version's resourceVersion,
// so that it applies to that version only; when the Node changed in
// between (ErrConflict) it reads and decides again.
func (c *Client) patchRead(ctx context.Context, name string, decide func(Node) *nodePatch) error {
	var err error
	for range patchTries {
		var n Node
		if n, err = c.GetNode(ctx, name); err != nil {
			return err
		}
		p := decide(n)
		if p == nil {
			return nil
		}
		if err = c.patchUnschedulable(ctx, name, *p, n.ResourceVersion); !errors.Is(err, ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("kubeapi: patch node %s: it changed under each of %d patches: %w", name, patchTries, err)
}

// patchUnschedulable sends p as a merge patch, with resourceVersion rv as
// its precondition when rv is not empty.
func (c *Client) patchUnschedulable(ctx context.Context, name string, p nodePatch, rv string) error {
	if err := checkName(name); err != nil {
		return err
	}
	meta := map[string]any{"annotations": map[string]any{AnnotationUpgradeCordon: p.mark}}
	if rv != "" {
		meta["resourceVersion"] = rv
	}
	body, _ := json.Marshal(map[string]any{
		"spec":     map[string]any{"unschedulable": p.unschedulable},
		"metadata": meta,
	})
	var o struct {
		Spec struct {
			Unschedulable bool `json:"unschedulable"`
		} `json:"spec"`
	}
	if err := c.send(ctx, http.MethodPatch, "/api/v1/nodes/"+name, "application/merge-patch+json", body, &o); err != nil {
		return err
	}
	if o.Spec.Unschedulable != p.unschedulable {
		return fmt.Errorf("kubeapi: patch node %s: the API answered unschedulable=%v, want %v", name, o.Spec.Unschedulable, p.unschedulable)
	}
	return nil
}

type podObject struct {
	Metadata struct {
		Namespace       string            `json:"namespace"`
		Name            string            `json:"name"`
		Annotations     map[string]string `json:"annotations"`
		OwnerReferences []struct {
			Kind       string `json:"kind"`
			Controller bool   `json:"controller"`
		} `json:"ownerReferences"`
	} `json:"metadata"`
	Status struct {
		Phase string `json:"phase"`
	} `json:"status"`
}

// PodsOn lists the pods scheduled to node, in every namespace.
func (c *Client) PodsOn(ctx context.Context, node string) ([]Pod, error) {
	if err := checkName(node); err != nil {
		return nil, err
	}
	var list struct {
		Kind  string      `json:"kind"`
		Items []podObject `json:"items"`
	}
	path := "/api/v1/pods?fieldSelector=" + url.QueryEscape("spec.nodeName="+node)
	if err := c.do(ctx, http.MethodGet, path, &list); err != nil {
		return nil, err
	}
	if list.Kind != "PodList" {
		return nil, fmt.Errorf("kubeapi: list pods: got kind %q, want PodList", list.Kind)
	}
	out := make([]Pod, 0, len(list.Items))
	for _, o := range list.Items {
		p := Pod{Namespace: o.Metadata.Namespace, Name: o.Metadata.Name, Phase: o.Status.Phase}
		_, p.Mirror = o.Metadata.Annotations[mirrorAnnotation]
		for _, ref := range o.Metadata.OwnerReferences {
			if ref.Controller && ref.Kind == "DaemonSet" {
				p.DaemonSet = true
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// Evict asks for one pod's eviction. A pod already gone is not an error;
// ErrEvictionRefused while a PodDisruptionBudget forbids it.
func (c *Client) Evict(ctx context.Context, namespace, name string) error {
	if err := checkName(namespace); err != nil {
		return err
	}
	if err := checkName(name); err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]any{
		"apiVersion": "policy/v1", "kind": "Eviction",
		"metadata": map[string]string{"name": name, "namespace": namespace},
	})
	path := "/api/v1/namespaces/" + namespace + "/pods/" + name + "/eviction"
	err := c.send(ctx, http.MethodPost, path, "application/json", body, nil)
	var se *StatusError
	switch {
	case errors.Is(err, ErrNotFound):
		return nil
	case errors.As(err, &se) && se.Code == http.StatusTooManyRequests:
		return fmt.Errorf("%w: pod %s/%s: %s", ErrEvictionRefused, namespace, name, se.Message)
	}
	return err
}
