package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"

	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/installer"
	"github.com/rke2-hanode/rke2-hanode/pkg/kubeapi"
)

// hostUpgradeOps are the upgrade steps on this host: RKE2's own commands,
// pkg/installer, the service manager and the Kubernetes API.
type hostUpgradeOps struct{ n *Node }

var _ upgradeOps = (*hostUpgradeOps)(nil)

// rke2DefaultConfigDir is where RKE2's units read config.yaml from.
const rke2DefaultConfigDir = "/etc/rancher/rke2"

// stopper is the part of installer.ServiceManager a restart needs beyond
// rke2Service.
type stopper interface {
	Stop(ctx context.Context, role installer.Role) error
}

func (o *hostUpgradeOps) rke2Bin() (string, error) {
	return installer.FindRKE2(o.n.cfg.RKE2Bin, installer.DefaultSearchPaths)
}

// Snapshot runs `rke2 etcd-snapshot save --name name`; it talks to the
// local server (9345), which must be running. --config is passed only
// for a config folder other than RKE2's default: under systemd RKE2 reads
// its default file.
func (o *hostUpgradeOps) Snapshot(ctx context.Context, name string) error {
	bin, err := o.rke2Bin()
	if err != nil {
		return err
	}
	args := []string{"etcd-snapshot", "save", "--name", name}
	if dir := filepath.Clean(o.n.cfg.RKE2ConfigDir); dir != rke2DefaultConfigDir {
		args = append(args, "--config", installer.ConfigPath(dir))
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("rke2 etcd-snapshot save: %w: %s", err, lastLine(out.String()))
	}
	o.n.log.Info("etcd snapshot saved before the upgrade", zap.String("name", name), zap.String("output", lastLine(out.String())))
	return nil
}

// lastLine is the last non-empty line of a command's output, bounded.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	l := strings.TrimSpace(lines[len(lines)-1])
	if len(l) > 200 {
		l = l[:200]
	}
	return l
}

// Install runs the install method for version and returns what the
// binary on disk prints afterwards.
func (o *hostUpgradeOps) Install(ctx context.Context, version string) (string, error) {
	h, ok := o.n.host.(*rke2Installer)
	if !ok {
		return "", errors.New("no installer on this host")
	}
	return h.installVersion(ctx, version)
}

// Cordon patches this host's Node.
func (o *hostUpgradeOps) Cordon(ctx context.Context, unschedulable bool) error {
	return o.cordonNode(ctx, o.n.cfg.NodeName, unschedulable)
}

// Evict evicts this host's pods (evictNode).
func (o *hostUpgradeOps) Evict(ctx context.Context) error {
	return o.evictNode(ctx, o.n.cfg.NodeName)
}

// cordonNode cordons node's Node for the upgrade (this host's, or as
// leader an agent's), or uncordons it: only a cordon the upgrade made is
// undone (kubeapi.AnnotationUpgradeCordon), so a Node somebody cordoned
// before the roll stays cordoned after it.
func (o *hostUpgradeOps) cordonNode(ctx context.Context, node string, unschedulable bool) error {
	return o.withKube(func(c *kubeapi.Client) error {
		if unschedulable {
			ours, err := c.CordonForUpgrade(ctx, node)
			if err == nil && !ours {
				o.n.log.Info("upgrade: the Node is cordoned already, by somebody else: it is drained, and stays cordoned after its upgrade", zap.String("node", node))
			}
			return err
		}
		kept, err := c.UncordonAfterUpgrade(ctx, node)
		if err == nil && kept {
			o.n.log.Info("upgrade: the Node stays cordoned: the cordon is not the roll's", zap.String("node", node))
		}
		return err
	})
}

// evictNode evicts every pod on node kubectl drain would, again while a
// budget refuses one, until none is left or ctx ends (the step's
// deadline): then the error names the pods left.
func (o *hostUpgradeOps) evictNode(ctx context.Context, node string) error {
	return o.withKube(func(c *kubeapi.Client) error {
		b := o.n.retryPolicy.Start()
		for {
			pods, err := c.PodsOn(ctx, node)
			if err != nil {
				return fmt.Errorf("list the pods on %s: %w", node, err)
			}
			var left []string
			for _, p := range pods {
				if !p.Evictable() {
					continue
				}
				if err := c.Evict(ctx, p.Namespace, p.Name); err != nil {
					if !errors.Is(err, kubeapi.ErrEvictionRefused) && ctx.Err() == nil {
						return fmt.Errorf("evict %s/%s: %w", p.Namespace, p.Name, err)
					}
				}
				left = append(left, p.Namespace+"/"+p.Name)
			}
			if len(left) == 0 {
				return nil
			}
			if err := b.Wait(ctx, o.n.clk); err != nil {
				if len(left) > 5 {
					left = append(left[:5], fmt.Sprintf("and %d more", len(left)-5))
				}
				return fmt.Errorf("pods not evicted in time (a PodDisruptionBudget, or pods slow to go): %s", strings.Join(left, ", "))
			}
		}
	})
}

// withKube calls fn with a client of the local API server through the
// admin kubeconfig RKE2 writes on servers, or fails saying drain needs it
// (an agent never drains itself: the leader does).
func (o *hostUpgradeOps) withKube(fn func(*kubeapi.Client) error) error {
	n := o.n
	path := filepath.Join(n.cfg.RKE2ConfigDir, "rke2.yaml")
	k, err := kubeapi.LoadKubeconfig(path)
	if err != nil {
		return fmt.Errorf("upgrade-drain needs RKE2's admin kubeconfig: %w", err)
	}
	// As in removeServer: the advertise address reaches this host's own
	// apiserver where 127.0.0.1 is another host's.
	if u, err := url.Parse(k.Server); err == nil && u.Hostname() == "127.0.0.1" && n.advertise != "" {
		u.Host = net.JoinHostPort(n.advertise, u.Port())
		k.Server = u.String()
	}
	c, err := kubeapi.New(k)
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(c)
}

// Restart stops the service and starts it again from the binary on disk,
// and returns that binary's version.
func (o *hostUpgradeOps) Restart(ctx context.Context) (string, error) {
	n := o.n
	s, ok := n.svc.(stopper)
	if !ok {
		return "", errors.New("the service manager cannot stop the service")
	}
	n.reportNotReady()
	if err := s.Stop(ctx, n.role); err != nil {
		return "", fmt.Errorf("stop %s: %w", installer.UnitName(n.role), err)
	}
	if err := n.startService(ctx); err != nil {
		return "", err
	}
	n.mu.Lock()
	v := n.prog.RKE2Running
	n.mu.Unlock()
	if v == "" {
		return "", errors.New("the version of the rke2 started is unknown")
	}
	return v, nil
}

// WaitHealthy waits for the service to be active and, on servers, the
// local supervisor to answer with the cluster's CA, trying again with
// backoff; then this host reports ready again.
func (o *hostUpgradeOps) WaitHealthy(ctx context.Context) error {
	n := o.n
	if err := n.svc.WaitActive(ctx, n.role); err != nil {
		return err
	}
	if n.cfg.IsServer() {
		b := n.retryPolicy.Start()
		for {
			r := n.prober.Probe(ctx, n.advertise, n.ca())
			if r.Reachable {
				break
			}
			if err := b.Wait(ctx, n.clk); err != nil {
				return fmt.Errorf("the local supervisor %s:9345 does not answer with the cluster's CA: %v", n.advertise, r.Err)
			}
		}
		if err := n.waitEtcdVoter(ctx); err != nil {
			return err
		}
	}
	n.reportReady()
	return nil
}
