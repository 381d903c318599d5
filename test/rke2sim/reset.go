package rke2sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
)

// RKE2's words around a cluster-reset.
const (
	reasonResetDone = "Managed etcd cluster membership has been reset, restart without --cluster-reset flag now. Backup and delete ${datadir}/server/db on each peer etcd server and rejoin the nodes"
	// reasonResetAgain is k3s's refusal of a second reset, with the flag's path.
	reasonResetAgain = "cluster-reset was successfully performed, please remove the cluster-reset flag and start rke2 normally, if you need to perform another cluster reset, you must first manually delete the %s file"
)

// resetFlagPath is <data-dir>/server/db/reset-flag.
func resetFlagPath(dataDir string) string {
	return filepath.Join(dataDir, "server", "db", "reset-flag")
}

// validSnapshotName: a snapshot's base name (--name) makes a file name.
func validSnapshotName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return s[0] != '.'
}

func snapshotsDir(dataDir string) string { return filepath.Join(dataDir, "server", "db", "snapshots") }

// resetCluster is `rke2 server --cluster-reset`: the local member's data
// (or a snapshot restored in its place) started with force-new-cluster, so
// it is a one-member cluster; then reset-flag, RKE2's message, exit 0.
func (n *node) resetCluster(ctx context.Context) error {
	flag := resetFlagPath(n.cfg.DataDir)
	if _, err := os.Stat(flag); err == nil {
		return reject(reasonResetAgain, flag)
	}
	if !HasDatastore(n.cfg.DataDir) {
		return reject("cluster-reset: no etcd datastore under %s to reset (this server never ran; a reset needs its data-dir)", datastoreDir(n.cfg.DataDir))
	}
	if n.restorePath != "" {
		if err := n.restoreSnapshot(); err != nil {
			return err
		}
	}
	if err := n.resume(ctx); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := n.waitEtcdReady(wctx); err != nil {
		return fmt.Errorf("cluster-reset: etcd member %s not ready: %w", n.etcdName, err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if v := n.etcdView(); len(v.Members) == 1 && v.Leader == n.etcdName && n.quorumCheck(ctx) {
			if err := n.updateState(func(st *Evidence) { st.Etcd = v; st.Resets = append(st.Resets, stamp(n.now())) }); err != nil {
				return err
			}
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster-reset: etcd is not a one-member cluster led by %s after a minute: %+v", n.etcdName, n.etcdView())
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	n.ds.Members = []Member{{Name: n.cfg.NodeName, URL: n.supervisorURL()}}
	if err := WriteDatastore(n.cfg.DataDir, n.ds); err != nil {
		return err
	}
	if err := writeFileAtomic(flag, nil, 0o600); err != nil {
		return fmt.Errorf("reset-flag: %w", err)
	}
	n.log.Info(reasonResetDone)
	return nil
}

// restoreSnapshot moves the member's data aside (server/db/etcd-old-<unix>)
// and restores the snapshot in its place for this member alone.
func (n *node) restoreSnapshot() error {
	info, err := os.Stat(n.restorePath)
	if errors.Is(err, fs.ErrNotExist) {
		return reject("etcd: snapshot path does not exist: %s", n.restorePath)
	}
	if err != nil {
		return fmt.Errorf("etcd: snapshot: %w", err)
	}
	if info.IsDir() {
		return reject("etcd: snapshot path must be a file, not a directory: %s", n.restorePath)
	}
	ds, err := ReadDatastore(n.cfg.DataDir)
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(etcdNameFile(n.cfg.DataDir))
	if err != nil {
		return fmt.Errorf("datastore exists but its etcd member name is unreadable: %w", err)
	}
	name := strings.TrimSpace(string(raw))
	dir := datastoreDir(n.cfg.DataDir)
	old := filepath.Join(filepath.Dir(dir), "etcd-old-"+strconv.FormatInt(n.now().Unix(), 10))
	if err := os.Rename(dir, old); err != nil {
		return fmt.Errorf("cluster-reset: move the old datastore aside: %w", err)
	}
	err = snapshot.NewV3(zap.NewNop()).Restore(snapshot.RestoreConfig{
		SnapshotPath: n.restorePath, Name: name, OutputDataDir: dir, PeerURLs: []string{n.etcdPeerURL()},
		InitialCluster: name + "=" + n.etcdPeerURL(), InitialClusterToken: ds.ClusterID,
	})
	if err != nil {
		return reject("etcd: restore %s: %v", n.restorePath, err)
	}
	if err := WriteDatastore(n.cfg.DataDir, ds); err != nil {
		return err
	}
	if err := writeMemberName(n.cfg.DataDir, name); err != nil {
		return err
	}
	n.log.Info("etcd snapshot restored", zap.String("snapshot", n.restorePath), zap.String("old-data", old))
	return nil
}

// snapshotResult is POST /db/snapshot's answer.
type snapshotResult struct {
	Name string `json:"name"`
	Path string `json:"path"`
	Size int64  `json:"size"`
}

// handleSnapshot saves an on-demand snapshot of the local member with
// etcd's snapshot API (server user only).
func (n *node) handleSnapshot(w http.ResponseWriter, r *http.Request) {
	if r.Context().Value(userKey{}) != "server" {
		http.Error(w, "Forbidden", http.StatusForbidden)
		return
	}
	if !n.serving() {
		http.Error(w, "etcd: not ready", http.StatusServiceUnavailable)
		return
	}
	// The client names the snapshot's base (--name) in a JSON body; none:
	// on-demand, as RKE2's default.
	prefix := "on-demand"
	var req struct {
		Name string `json:"name"`
	}
	if body, _ := io.ReadAll(io.LimitReader(r.Body, 4096)); len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &req); err != nil || (req.Name != "" && !validSnapshotName(req.Name)) {
			http.Error(w, "invalid snapshot request", http.StatusBadRequest)
			return
		}
		if req.Name != "" {
			prefix = req.Name
		}
	}
	res, err := n.saveSnapshot(r.Context(), prefix)
	if err != nil {
		n.log.Error("etcd snapshot failed", zap.Error(err))
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// saveSnapshot writes <prefix>-<node>-<unix> under server/db/snapshots.
func (n *node) saveSnapshot(ctx context.Context, prefix string) (snapshotResult, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	dir := snapshotsDir(n.cfg.DataDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return snapshotResult{}, err
	}
	name := fmt.Sprintf("%s-%s-%d", prefix, n.cfg.NodeName, n.now().Unix())
	path := filepath.Join(dir, name)
	rc, err := n.etcdCli.Snapshot(ctx)
	if err != nil {
		return snapshotResult{}, fmt.Errorf("etcd snapshot: %w", err)
	}
	defer rc.Close()
	tmp, err := os.CreateTemp(dir, "."+name+".*")
	if err != nil {
		return snapshotResult{}, err
	}
	defer os.Remove(tmp.Name())
	size, err := io.Copy(tmp, rc)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o600)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return snapshotResult{}, fmt.Errorf("etcd snapshot %s: %w", path, err)
	}
	n.log.Info("etcd snapshot saved", zap.String("name", name), zap.Int64("size", size))
	return snapshotResult{Name: name, Path: path, Size: size}, nil
}

// snapshotSave is `rke2 etcd-snapshot save`: it asks the local server's
// supervisor (https://127.0.0.1:<supervisor port>, node-ip when that is a
// loopback address) with the server token from the data-dir, as RKE2's does.
func (n *node) snapshotSave(ctx context.Context, out io.Writer) error {
	tokPath, _ := tokenPaths(n.cfg.DataDir)
	raw, err := os.ReadFile(tokPath)
	if err != nil {
		return fmt.Errorf("etcd-snapshot: this host is no server (%w)", err)
	}
	tok, err := ParseToken(string(raw))
	if err != nil {
		return err
	}
	ca, err := LoadCA(n.cfg.DataDir)
	if err != nil {
		return err
	}
	host := "127.0.0.1"
	if !apiLoopback(n.cfg.NodeIP) {
		host = n.cfg.NodeIP
	}
	base := "https://" + net.JoinHostPort(host, strconv.Itoa(n.set.SupervisorPort))
	c := verifiedClient(ca.Pool(), 2*time.Minute)
	defer c.CloseIdleConnections()
	var reqBody io.Reader
	if n.snapshotName != "" {
		b, _ := json.Marshal(map[string]string{"name": n.snapshotName})
		reqBody = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/db/snapshot", reqBody)
	if err != nil {
		return err
	}
	req.SetBasicAuth("server", tok.Secret)
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("etcd-snapshot: the local server is not running (%s): %w", base, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("etcd-snapshot: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	var res snapshotResult
	if err := json.Unmarshal(body, &res); err != nil {
		return fmt.Errorf("etcd-snapshot: %w", err)
	}
	n.log.Info("Snapshot " + res.Name + " saved.")
	fmt.Fprintf(out, "Snapshot %s saved.\n", res.Name)
	return nil
}
