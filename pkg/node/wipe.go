package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/adminsock"
	"github.com/rke2-hanode/rke2-hanode/pkg/config"
	"github.com/rke2-hanode/rke2-hanode/pkg/installer"
)

// Wipe is `rke2-hanode rejoin --wipe`, run with the daemon stopped: it
// stops RKE2, moves aside what would make this server resume as the member
// it was, and resets this host's progress, so that the daemon, started
// again, joins in its turn as a fresh member (a removed host says it was
// wiped; a member wiped while still listed has its old self cleared first,
// like a reinstalled host).
//
// Moved aside (renamed with a .wiped-<time> suffix, never deleted, so an
// operator can still take data from them):
//   - <rke2-data-dir>/server/db: RKE2's etcd datastore, as RKE2 wants it
//     gone before a removed server rejoins; the tokens and certificates in
//     server/ stay, as they do with RKE2's own reset;
//   - <data-dir>/raft: this daemon's raft store: a removed server is no
//     longer in the raft configuration and is only added back without one.
//
// It returns a line per thing it did.
func Wipe(ctx context.Context, c *config.Config, log *zap.Logger, now time.Time) ([]string, error) {
	if !c.IsServer() {
		return nil, errors.New("rejoin --wipe: this host is an agent: an agent keeps no datastore; restart its daemon instead")
	}
	sock := adminsock.Path(c.DataDir)
	if conn, err := net.DialTimeout("unix", sock, 2*time.Second); err == nil {
		conn.Close()
		return nil, fmt.Errorf("rejoin --wipe: the daemon is running (it answers on %s): stop it first (systemctl stop rke2-hanode), then run this again", sock)
	}
	return wipeHost(ctx, c, log, now)
}

// wipeHost is Wipe's work once the daemon is known not to hold the host:
// RKE2 stopped, server/db and the raft store moved aside, the progress
// reset with the wiped mark. The daemon also runs it itself, before its
// raft opens, when the cluster was recovered while this server was off
// (wipeIfRecovered).
func wipeHost(ctx context.Context, c *config.Config, log *zap.Logger, now time.Time) ([]string, error) {
	var did []string
	if c.ServiceManager == "exec" {
		did = append(did, "RKE2 ran as the daemon's child: it stopped with the daemon")
	} else {
		m, closeSvc, err := newServiceManager(c, log)
		if err != nil {
			return nil, fmt.Errorf("rejoin --wipe: %w", err)
		}
		defer closeSvc()
		sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		if err := m.Stop(sctx, installer.RoleServer); err != nil {
			return nil, fmt.Errorf("rejoin --wipe: stop %s: %w; stop it by hand, then run this again", installer.UnitName(installer.RoleServer), err)
		}
		did = append(did, "stopped "+installer.UnitName(installer.RoleServer))
	}
	suffix := ".wiped-" + now.UTC().Format("20060102T150405Z")
	for _, dir := range []string{filepath.Join(c.RKE2DataDir, "server", "db"), filepath.Join(c.DataDir, "raft")} {
		if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
			did = append(did, dir+": not there")
			continue
		}
		if err := os.Rename(dir, dir+suffix); err != nil {
			return did, fmt.Errorf("rejoin --wipe: move %s aside: %w", dir, err)
		}
		did = append(did, "moved "+dir+" to "+dir+suffix)
	}
	p, err := loadProgress(c.DataDir)
	if err != nil {
		return did, fmt.Errorf("rejoin --wipe: %w", err)
	}
	p = progress{Version: p.Version, Role: p.Role, Wiped: true}
	if err := saveProgress(c.DataDir, p, now); err != nil {
		return did, fmt.Errorf("rejoin --wipe: %w", err)
	}
	did = append(did, "reset "+progressPath(c.DataDir)+": this host has not started RKE2 for the cluster")
	return did, nil
}
