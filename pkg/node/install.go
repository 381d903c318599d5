package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/cahash"
	"github.com/rke2-hanode/rke2-hanode/pkg/config"
	"github.com/rke2-hanode/rke2-hanode/pkg/installer"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
	"github.com/rke2-hanode/rke2-hanode/pkg/vip"
)

// install puts RKE2 on the host; a running RKE2 is adopted, never
// reinstalled, and neither is the RKE2 of a host that started it before:
// moving it to another version is the rolling upgrade's (upgrade.go), one
// host at a time, not every daemon's as it restarts with a changed
// rke2-version.
func (n *Node) install(ctx context.Context) error {
	running, _ := n.svc.Active(ctx, n.role)
	n.mu.Lock()
	started := n.prog.StartedRKE2
	n.mu.Unlock()
	return n.host.Install(ctx, running || started)
}

// rememberStart records, before the service first starts, that this host
// starts RKE2 for the cluster with caHash (empty for the bootstrap node).
func (n *Node) rememberStart(bootstrap bool, caHash string) error {
	n.mu.Lock()
	n.prog.Role = n.cfg.Role
	n.prog.StartedRKE2 = true
	n.prog.Bootstrap = bootstrap
	if caHash != "" {
		n.prog.CAHash = caHash
	}
	p := n.prog
	n.mu.Unlock()
	return saveProgress(n.cfg.DataDir, p, n.clk.Now())
}

// startService starts RKE2 without blocking and waits until it is active.
func (n *Node) startService(ctx context.Context) error {
	return withDeadline(ctx, startDeadline, "waiting for "+installer.UnitName(n.role)+" to become active", func(ctx context.Context) error {
		if err := n.svc.Start(ctx, n.role); err != nil {
			return err
		}
		if err := n.svc.WaitActive(ctx, n.role); err != nil {
			return err
		}
		n.recordRunning(ctx)
		return nil
	})
}

// rke2Installer is rke2Host on this host: pkg/installer and pkg/vip.
type rke2Installer struct {
	cfg       *config.Config
	log       *zap.Logger
	metrics   *installer.Metrics
	advertise string
}

var _ rke2Host = (*rke2Installer)(nil)

func (h *rke2Installer) Install(ctx context.Context, running bool) error {
	_, err := h.install(ctx, running, h.cfg.RKE2Version)
	return err
}

// installVersion installs version for an upgrade (the install method,
// INSTALL_RKE2_VERSION) and returns the version on disk afterwards.
func (h *rke2Installer) installVersion(ctx context.Context, version string) (string, error) {
	return h.install(ctx, false, version)
}

// InstalledVersion is what the rke2 binary on disk prints.
func (h *rke2Installer) InstalledVersion(ctx context.Context) (string, error) {
	bin, err := installer.FindRKE2(h.cfg.RKE2Bin, installer.DefaultSearchPaths)
	if err != nil {
		return "", err
	}
	return installer.RKE2Version(ctx, bin)
}

// BinaryIdentity names the rke2 binary on disk as the filesystem holds
// it: its path, device, inode, mode, size, modification and change times.
// A replacement changes the inode, a chmod the mode, a rewrite the change
// time (which no caller can set) once the file system's clock has ticked
// since (a few milliseconds at most): an unchanged identity is the file
// that was there when it was taken.
func (h *rke2Installer) BinaryIdentity() (string, error) {
	bin, err := installer.FindRKE2(h.cfg.RKE2Bin, installer.DefaultSearchPaths)
	if err != nil {
		return "", err
	}
	return fileIdentity(bin)
}

func fileIdentity(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "", fmt.Errorf("%s: no file status", path)
	}
	return fmt.Sprintf("%s dev=%d ino=%d mode=%o size=%d mtime=%d.%09d ctime=%d.%09d", path, st.Dev, st.Ino, st.Mode, st.Size,
		st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec), nil
}

func (h *rke2Installer) install(ctx context.Context, running bool, version string) (string, error) {
	c := h.cfg
	res, err := installer.Install(ctx, installer.InstallOptions{
		Running:      running,
		Method:       installer.Method(c.InstallMethod),
		Role:         installer.Role(c.Role),
		Version:      version,
		Channel:      c.RKE2Channel,
		ScriptURL:    c.InstallScriptURL,
		ScriptSHA256: c.InstallScriptSHA,
		ArtifactPath: c.ArtifactPath,
		RKE2DataDir:  c.RKE2DataDir,
		RKE2Bin:      c.RKE2Bin,
		Logger:       h.log,
		Metrics:      h.metrics,
	})
	if err != nil {
		return "", err
	}
	h.log.Info("RKE2 installed", zap.Bool("skipped", res.Skipped), zap.String("version", res.Version), zap.String("bin", res.Bin))
	return res.Version, nil
}

func (h *rke2Installer) CheckVIPFree(ctx context.Context) error {
	c := h.cfg
	return vip.Failed(vip.Preflight(ctx, vip.PreflightOptions{Interface: c.Interface, VIP: c.VIP, CheckARP: true, Logger: h.log}))
}

func (h *rke2Installer) Datastore() (datastoreOnDisk, error) {
	d := datastoreOnDisk{Path: installer.DatastorePath(h.cfg.RKE2DataDir), CAPath: installer.ServerCAPath(h.cfg.RKE2DataDir)}
	fi, err := os.Stat(d.Path)
	if err != nil || !fi.IsDir() {
		return d, nil
	}
	d.Present = true
	if pem, err := os.ReadFile(d.CAPath); err == nil {
		// A CA file that cannot be hashed is never taken for this
		// cluster's: the resume plan refuses it with the reason.
		d.CAHash, d.CAErr = cahash.Of(pem)
	}
	return d, nil
}

// WriteConfig renders and writes RKE2's config (and, on servers, the
// kube-vip manifest RKE2 applies at start).
func (h *rke2Installer) WriteConfig(kind installer.Case, caHash string) error {
	c := h.cfg
	if c.IsServer() {
		m, err := vip.RenderManifests(KubeVIPOptions(c))
		if err != nil {
			return permanent("kube-vip manifest: %w", err)
		}
		if err := vip.WriteManifest(filepath.Join(c.RKE2DataDir, "server", "manifests"), m); err != nil {
			return err
		}
	}
	data, err := installer.RenderConfig(installer.RenderOptions{
		Case:        kind,
		NodeName:    c.NodeName,
		NodeIP:      h.advertise,
		VIP:         c.VIP,
		Token:       c.Secret(),
		AgentToken:  c.AgentSecret(), // servers only; "" on agents
		CAHash:      caHash,
		TLSSANs:     c.TLSSAN,
		NodeTaints:  c.NodeTaint,
		RKE2DataDir: c.RKE2DataDir,
		Extra:       c.RKE2Config,
	})
	if err != nil {
		return permanent("RKE2 config: %w", err)
	}
	return installer.WriteConfig(c.RKE2ConfigDir, data)
}

// setStarting enters starting with the words of how RKE2 is started.
func (n *Node) setStarting(detail string) { n.t.set(status.PhaseStarting, detail) }
