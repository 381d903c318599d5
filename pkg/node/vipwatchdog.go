package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/installer"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
	"github.com/rke2-hanode/rke2-hanode/pkg/statusview"
	"github.com/rke2-hanode/rke2-hanode/pkg/vip"
)

// The VIP watchdog. Stopping rke2-server (KillMode=process) leaves its pods
// running, kube-vip included: kube-vip can keep the VIP while nothing on
// this host answers on 9345, and every join and agent through the VIP fails
// until someone runs rke2-killall.sh here (RKE2's documented way to stop
// the containers). The watchdog does that, and only that: on a server whose
// rke2-server has been down (stopped or failing) for a grace period while
// the VIP is held here and does not answer with the cluster's CA, it runs
// rke2-killall.sh, so that kube-vip on another server takes the VIP. It
// never stops a running rke2-server: an active service ends the watch.

// vipReleaseLeases is the grace period in kube-vip lease durations: a
// restart of rke2-server (seconds) never triggers a release, and a kube-vip
// that still renews its lease gets two chances to hand the VIP over itself.
const vipReleaseLeases = 2

// vipWatchEvery is how often the watchdog looks.
const vipWatchEvery = 2 * time.Second

// killallPATH is the PATH rke2-killall.sh runs with.
const killallPATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// killallTimeout bounds one run of rke2-killall.sh.
const killallTimeout = 2 * time.Minute

// vipWatchFacts is what the watchdog decides from, each tick.
type vipWatchFacts struct {
	Now time.Time
	// WasReady: this server was ready once (before that, the bootstrap's
	// own start and a join are the phase machine's business).
	WasReady bool
	Active   bool // rke2-server is active
	// HeldHere: the VIP is held on this host: its address is on a local
	// interface, or (loopback, where every host has every address) the
	// last holder seen was this host and nothing else took it since.
	HeldHere bool
	// Answers: the VIP answers on 9345 with the cluster's CA.
	Answers bool
}

// vipWatch is the watchdog's memory between ticks.
type vipWatch struct {
	DownSince    time.Time // zero while rke2-server is active
	LastRelease  time.Time // zero: none since rke2-server went down
	ReleaseCount int
}

// decideVIPRelease is the watchdog's decision, with no I/O: the new memory,
// and the reason to release the VIP now ("" to do nothing).
func decideVIPRelease(w vipWatch, f vipWatchFacts, grace time.Duration) (vipWatch, string) {
	if f.Active || !f.WasReady {
		return vipWatch{ReleaseCount: w.ReleaseCount}, ""
	}
	if w.DownSince.IsZero() {
		w.DownSince = f.Now
	}
	down := f.Now.Sub(w.DownSince)
	if down < grace || !f.HeldHere || f.Answers {
		return w, ""
	}
	// One release per grace period: a kube-vip that comes back (the
	// service restarting and failing again) is released again, not in a
	// tight loop.
	if !w.LastRelease.IsZero() && f.Now.Sub(w.LastRelease) < grace {
		return w, ""
	}
	w.LastRelease = f.Now
	w.ReleaseCount++
	return w, fmt.Sprintf("rke2-server has been down for %s while kube-vip holds the VIP here and nothing answers on 9345",
		down.Round(time.Second))
}

// vipWatchdog is the watchdog's metric and what status shows of it.
type vipWatchdog struct {
	released prometheus.Counter

	mu   sync.Mutex
	last *status.VIPRelease
}

func newVIPWatchdog(reg prometheus.Registerer) (*vipWatchdog, error) {
	d := &vipWatchdog{released: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "rke2_hanode_vip_released_total",
		Help: "Times this server ran rke2-killall.sh because its rke2-server was down while its kube-vip held the VIP.",
	})}
	if err := register(reg, d.released); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *vipWatchdog) status() *status.VIPRelease {
	if d == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.last == nil {
		return nil
	}
	r := *d.last
	return &r
}

// vipReleaseGrace is how long rke2-server must be down first.
func (n *Node) vipReleaseGrace() time.Duration {
	lease := time.Duration(n.cfg.KubeVIPLease) * time.Second
	if lease <= 0 {
		lease = 15 * time.Second
	}
	return vipReleaseLeases * lease
}

// watchVIPHolder runs the watchdog until ctx ends (servers only).
func (n *Node) watchVIPHolder(ctx context.Context) {
	grace := n.vipReleaseGrace()
	var w vipWatch
	lastSelf := false // loopback: this host was the last holder seen
	for n.clk.Sleep(ctx, vipWatchEvery) == nil {
		f := n.vipWatchFacts(ctx, &lastSelf)
		var reason string
		w, reason = decideVIPRelease(w, f, grace)
		if reason != "" {
			n.releaseVIP(ctx, reason)
		}
	}
}

// vipWatchFacts gathers the facts. On a real interface the VIP's address
// on a local interface says it is held here. On loopback every host has
// every address, the holder is known only by the certificate it serves, and
// a kube-vip left without its server serves none: so while rke2-server is
// active the watchdog notes whether this host holds the VIP (lastSelf), and
// once it is down that last sighting stands.
func (n *Node) vipWatchFacts(ctx context.Context, lastSelf *bool) vipWatchFacts {
	n.mu.Lock()
	f := vipWatchFacts{Now: n.clk.Now(), WasReady: n.prog.Ready}
	lastHolder := n.vipHolder
	n.mu.Unlock()
	active, err := n.svc.Active(ctx, n.role)
	f.Active = err == nil && active
	loopback := false
	if a, err := vip.ParseVIP(n.cfg.VIP); err == nil {
		loopback = a.IsLoopback()
	}
	if !f.WasReady {
		return f
	}
	if f.Active {
		if loopback {
			if _, local, err := n.prober.Holder(n.cfg.VIP, n.memberMACs()); err == nil {
				*lastSelf = local
			}
		}
		return f
	}
	_, local, herr := n.prober.Holder(n.cfg.VIP, n.memberMACs())
	switch {
	case herr == nil:
		f.HeldHere = local
		if loopback {
			*lastSelf = local
		}
	default:
		f.HeldHere = *lastSelf || lastHolder == n.cfg.NodeName
	}
	if f.HeldHere {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		f.Answers = n.prober.Probe(pctx, n.cfg.VIP, n.ca()).Reachable
		cancel()
	}
	return f
}

// releaseVIP runs rke2-killall.sh, which stops the containers (kube-vip
// among them) of the already stopped rke2-server.
func (n *Node) releaseVIP(ctx context.Context, reason string) {
	n.log.Warn("VIP watchdog: releasing the VIP with rke2-killall.sh", zap.String("vip", n.cfg.VIP), zap.String("reason", reason))
	err := n.runKillall(ctx)
	rel := &status.VIPRelease{At: n.clk.Now().UTC(), Reason: reason}
	if err != nil {
		rel.Error = statusview.Shorten(err.Error(), 200)
		n.log.Error("VIP watchdog: rke2-killall.sh failed; the VIP may stay held here", zap.Error(err))
	} else {
		n.watchdog.released.Inc()
		n.log.Warn("VIP watchdog: rke2-killall.sh done; kube-vip on another server can take the VIP", zap.String("vip", n.cfg.VIP))
	}
	n.watchdog.mu.Lock()
	n.watchdog.last = rel
	n.watchdog.mu.Unlock()
}

// killallPath is rke2-killall.sh beside the rke2 executable, where RKE2's
// install script puts both.
func (n *Node) killallPath() (string, error) {
	bin, err := installer.FindRKE2(n.cfg.RKE2Bin, installer.DefaultSearchPaths)
	if err != nil {
		return "", err
	}
	p := filepath.Join(filepath.Dir(bin), "rke2-killall.sh")
	if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
		return "", fmt.Errorf("no rke2-killall.sh beside %s (RKE2's install script puts it there): %v", bin, err)
	}
	return p, nil
}

func (n *Node) runKillall(ctx context.Context) error {
	path, err := n.killallPath()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, killallTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", path)
	// Only what the script reads: the daemon's own environment may hold a
	// token.
	cmd.Env = []string{"PATH=" + killallPATH, "RKE2_DATA_DIR=" + n.cfg.RKE2DataDir}
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("%s did not finish within %s: %s", path, killallTimeout, statusview.Shorten(msg, 200))
		}
		return fmt.Errorf("%s: %w: %s", path, err, statusview.Shorten(msg, 200))
	}
	return nil
}
