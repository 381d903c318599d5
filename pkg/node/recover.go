package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/backoff"
	"github.com/rke2-hanode/rke2-hanode/pkg/clock"
	"github.com/rke2-hanode/rke2-hanode/pkg/config"
	"github.com/rke2-hanode/rke2-hanode/pkg/election"
	"github.com/rke2-hanode/rke2-hanode/pkg/installer"
	"github.com/rke2-hanode/rke2-hanode/pkg/statusview"
)

// Quorum-loss recovery, run by the operator on the survivor with
// `rke2-hanode recover --from NODE --confirm` while the daemon is stopped
// there (raft has lost its quorum too, so nothing can be committed; the
// daemon holds the raft store while it runs). Never automatic. The steps:
//
//  1. refuse without --confirm, on another host than NODE, on an agent, on a
//     host whose raft store is in use (the daemon runs), when this server
//     is not a voter or has no datastore, and when the quorum is not lost:
//     a majority of the voters answers on its raft port, or another voter
//     answers at all (then the survivor with the newest data must be chosen
//     first), and when the last quorum-loss assessment the daemon recorded
//     here names another survivor, or none (survivor.go), without
//     --force-survivor;
//  2. stop rke2-server (under systemd) and run RKE2's cluster-reset
//     (`rke2 server --cluster-reset`: etcd with force-new-cluster, reset-flag,
//     exit 0), unless reset-flag shows a reset already done by an earlier
//     run that stopped after it;
//  3. recover raft to this server alone with a new recovery epoch
//     (election.RecoverRaftOffline): the other servers are recorded as
//     removed and rejoin only wiped, through the join slot.
//
// Starting the daemon then starts rke2-server normally on the reset
// datastore (RKE2 removes reset-flag), the VIP comes back, and new servers
// join one at a time.

// RecoverOptions are recover's arguments.
type RecoverOptions struct {
	From    string
	Confirm bool
	// ForceSurvivor recovers from From although the last assessment this
	// host recorded names another survivor, or none (survivor.go).
	ForceSurvivor bool
	Out           io.Writer
	// Env is the environment of `rke2 server --cluster-reset` (nil: this
	// process's).
	Env []string
	// ProbeTimeout bounds each dial of another voter's raft port.
	ProbeTimeout time.Duration
	Now          func() time.Time
}

// ErrRecoverUsage wraps the refusals that are the operator's to fix
// (exit code 2 in the CLI).
var ErrRecoverUsage = errors.New("recover")

func usagef(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrRecoverUsage}, a...)...)
}

// resetMessage is what RKE2 prints once cluster-reset is done.
const resetMessage = "Managed etcd cluster membership has been reset"

// Recover runs the recovery on this host (see above).
func Recover(ctx context.Context, c *config.Config, o RecoverOptions) error {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ProbeTimeout <= 0 {
		o.ProbeTimeout = 2 * time.Second
	}
	say := func(format string, a ...any) { fmt.Fprintf(o.Out, format+"\n", a...) }
	switch {
	case o.From == "":
		return usagef("--from NODE is required: the surviving server, this host")
	case !c.IsServer():
		return usagef("this host is an agent: recover runs on the surviving server")
	case o.From != c.NodeName:
		return usagef("--from %s: this host is %s; run recover on %s itself, with its rke2-hanode stopped", o.From, c.NodeName, o.From)
	case !o.Confirm:
		return usagef("recover makes %s the only raft voter and resets etcd to its member (RKE2's cluster-reset); "+
			"every other server must then rejoin with its datastore wiped. Add --confirm to do it", c.NodeName)
	}
	disk, err := election.ReadRaftOffline(c.DataDir, c.NodeName)
	if errors.Is(err, election.ErrStoreLocked) {
		return usagef("%v", err)
	}
	if err != nil {
		return err
	}
	var others []election.RaftVoter
	self := false
	for _, v := range disk.Voters {
		if v.ID == c.NodeName {
			self = true
		} else {
			others = append(others, v)
		}
	}
	if !self {
		return usagef("%s is not a raft voter here (voters: %s): recover on a server of the cluster", c.NodeName, voterNames(disk.Voters))
	}
	if disk.State.ClusterReady == nil {
		return usagef("the cluster was never ready: nothing to recover (remove %s and start over)", filepath.Join(c.DataDir, "raft"))
	}
	ds := installer.DatastorePath(c.RKE2DataDir)
	if fi, err := os.Stat(ds); err != nil || !fi.IsDir() {
		return usagef("no RKE2 datastore at %s: this host cannot be the survivor", ds)
	}
	quorum := len(disk.Voters)/2 + 1
	var alive []string
	for _, v := range others {
		if raftAnswers(ctx, v.Address, o.ProbeTimeout) {
			alive = append(alive, v.ID)
		}
	}
	say("raft voters %s: %d of %d answer (this host included), a quorum is %d", voterNames(disk.Voters), 1+len(alive), len(disk.Voters), quorum)
	switch {
	case 1+len(alive) >= quorum:
		return usagef("quorum is not lost: %s answer on their raft ports with %s, %d of %d voters; recover only when a majority is gone for good",
			strings.Join(alive, ", "), c.NodeName, 1+len(alive), len(disk.Voters))
	case len(alive) > 0:
		return usagef("%s answers too: recover on the survivor with the newest etcd data (status cluster.etcd, the highest revision), "+
			"and stop rke2-hanode on the other survivors first", strings.Join(alive, ", "))
	}
	if err := checkSurvivor(c.DataDir, c.NodeName, o.ForceSurvivor, say); err != nil {
		return err
	}

	if err := stopRKE2Server(ctx, c, say); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(c.RKE2DataDir, "server", "db", "reset-flag")); err == nil {
		say("etcd was already reset here (server/db/reset-flag): not resetting again")
	} else if err := clusterReset(ctx, c, o.Env, say); err != nil {
		return err
	}
	advertise, _, err := HostAddress(c)
	if err != nil {
		return err
	}
	st, err := election.RecoverRaftOffline(c.DataDir, c.NodeName, net.JoinHostPort(advertise, strconv.Itoa(c.RaftPort)), o.Now())
	if err != nil {
		return err
	}
	forgetSurvivor(c.DataDir)
	say("raft recovered: %s is the only voter; recovery epoch %d; servers to rejoin wiped: %s", c.NodeName, st.Recovery.Epoch, strings.Join(st.Removed, ", "))
	say("next: start rke2-hanode here (systemctl start rke2-hanode): it starts rke2-server on the reset datastore; " +
		"then bring the other servers back (with their old disks they move server/db aside themselves, as RKE2's words ask, seeing the new recovery epoch), " +
		"or add new ones: they join one at a time")
	return nil
}

func voterNames(vs []election.RaftVoter) string {
	var names []string
	for _, v := range vs {
		names = append(names, v.ID)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// raftAnswers reports whether something accepts a connection on a voter's
// raft address, tried three times with backoff.
func raftAnswers(ctx context.Context, addr string, timeout time.Duration) bool {
	b := backoff.Policy{Base: 200 * time.Millisecond, Max: time.Second}.Start()
	for range 3 {
		conn, err := (&net.Dialer{Timeout: timeout}).DialContext(ctx, "tcp", addr)
		if err == nil {
			conn.Close()
			return true
		}
		if b.Wait(ctx, clock.System) != nil {
			return false
		}
	}
	return false
}

// stopRKE2Server stops rke2-server under systemd (the exec manager's child
// stopped with the daemon).
func stopRKE2Server(ctx context.Context, c *config.Config, say func(string, ...any)) error {
	if c.ServiceManager == "exec" {
		return nil
	}
	m, err := installer.OpenSystemdManager(installer.SystemdOptions{ConfigFile: installer.ConfigPath(c.RKE2ConfigDir)})
	if err != nil {
		return fmt.Errorf("recover: stop rke2-server: %w", err)
	}
	defer m.Close()
	sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	say("stopping rke2-server")
	if err := m.Stop(sctx, installer.RoleServer); err != nil {
		return fmt.Errorf("recover: stop rke2-server: %w", err)
	}
	return nil
}

// clusterReset runs `rke2 server --cluster-reset` with this host's RKE2
// config and checks it did what RKE2 says it does.
func clusterReset(ctx context.Context, c *config.Config, env []string, say func(string, ...any)) error {
	bin, err := installer.FindRKE2(c.RKE2Bin, installer.DefaultSearchPaths)
	if err != nil {
		return err
	}
	if env == nil {
		env = os.Environ()
	}
	// RKE2 reads its own config; this daemon's variables (a token among
	// them, perhaps) are none of its business.
	env = slices.DeleteFunc(slices.Clone(env), func(kv string) bool { return strings.HasPrefix(kv, config.EnvPrefix) })
	rctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	say("running %s server --cluster-reset", bin)
	cmd := exec.CommandContext(rctx, bin, "server", "--cluster-reset", "--config", installer.ConfigPath(c.RKE2ConfigDir))
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	tail := statusview.Shorten(strings.TrimSpace(out.String()), 400)
	if err != nil {
		return fmt.Errorf("recover: %s server --cluster-reset: %w: %s", bin, err, tail)
	}
	if !strings.Contains(out.String(), resetMessage) {
		return fmt.Errorf("recover: %s server --cluster-reset exited 0 without %q: %s", bin, resetMessage, tail)
	}
	say("etcd reset to this member: %s", resetMessage)
	return nil
}
