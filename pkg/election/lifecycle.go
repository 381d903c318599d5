package election

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/rke2-hanode/rke2-hanode/pkg/logging"
)

// The lifecycle of an Election: Open (checks the config, opens the stores,
// binds the transport: every error there is returned now), Run (raft and
// the loop, until its context ends), Close (releases what Open took).

// Open checks cfg, opens raft's stores and binds the raft transport now,
// so that a port in use or an unreadable data directory is an error here,
// not later. Run then runs raft; Close releases what Open took.
func Open(cfg Config) (*Election, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	e := &Election{
		cfg:   cfg,
		log:   cfg.Logger.Named("election").With(zap.String("node", cfg.NodeName)),
		kick:  make(chan struct{}, 1),
		watch: make(chan struct{}),
	}
	e.fsm = &fsm{notify: e.changed}
	e.unreach = newUnreachable(cfg.Clock)
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	e.metrics = m
	stores, closeStores, err := e.openStores()
	if err != nil {
		return nil, err
	}
	hasState, err := raft.HasExistingState(stores.Log, stores.Stable, stores.Snapshots)
	if err != nil {
		_ = closeStores()
		return nil, fmt.Errorf("election: read raft state: %w", err)
	}
	inner, closeInner, err := e.openTransport()
	if err != nil {
		_ = closeStores()
		return nil, err
	}
	ct := newCommitTransport(inner, &e.leaderCommit)
	trans, closeTrans := raft.Transport(ct), func() { ct.stop(); closeInner() }
	e.stores, e.trans = stores, trans
	e.release = func() error {
		closeTrans()
		return closeStores()
	}
	e.stable, e.selfAddr, e.hasState = stores.Stable, string(trans.LocalAddr()), hasState
	e.local.HasRaftState = hasState
	return e, nil
}

// Close releases the transport and the stores Open took. Call it once Run
// has returned (or instead of Run); it is safe to call more than once.
func (e *Election) Close() error {
	e.mu.Lock()
	release := e.release
	e.release = nil
	e.mu.Unlock()
	if release == nil {
		return nil
	}
	return release()
}

// Run starts raft on what Open opened, runs formation and (while leader)
// the leader's duties until ctx ends, then shuts raft down. It returns nil
// after a clean shutdown. An Election runs once.
func (e *Election) Run(ctx context.Context) (err error) {
	e.mu.Lock()
	stores, trans, ran, closed := e.stores, e.trans, e.ran, e.release == nil
	e.ran = true
	hasState := e.hasState
	e.mu.Unlock()
	switch {
	case ran:
		return errors.New("election: Run called twice: open a new Election")
	case closed:
		return errors.New("election: Run after Close: open a new Election")
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(e.cfg.NodeName)
	t := e.cfg.Timing
	rc.HeartbeatTimeout, rc.ElectionTimeout = t.HeartbeatTimeout, t.ElectionTimeout
	rc.LeaderLeaseTimeout, rc.CommitTimeout = t.LeaderLeaseTimeout, t.CommitTimeout
	rc.Logger = e.hclog()
	// applyCh stays unbuffered (BatchApplyCh off): with a buffer, an Apply
	// after raft shut itself down (ShutdownOnRemove, once the leader's own
	// removal commits) can be queued where nothing reads it, and its
	// future never ends. Unbuffered, it fails with ErrRaftShutdown.
	runStart := time.Now()
	r, err := raft.NewRaft(rc, e.fsm, stores.Log, stores.Stable, stores.Snapshots, trans)
	if err != nil {
		return fmt.Errorf("election: start raft: %w", err)
	}
	e.mu.Lock()
	e.r, e.running = r, true
	e.runStart = runStart
	e.mu.Unlock()
	e.log.Info("raft started", zap.Bool("existing_state", hasState), zap.String("raft_addr", string(trans.LocalAddr())))
	e.changed()

	defer func() {
		e.mu.Lock()
		e.running = false
		e.mu.Unlock()
		if serr := r.Shutdown().Error(); serr != nil && err == nil {
			err = fmt.Errorf("election: raft shutdown: %w", serr)
		}
		e.changed()
	}()

	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go e.unreach.watch(wctx, r)

	tick := time.NewTicker(t.Tick)
	defer tick.Stop()
	l := loop{e: e, r: r, tick: tick, book: newLeaderBook(), ca: newCAVerifier(e.cfg.FetchCA, e.log, e.changed)}
	changes := e.cfg.Membership.Changes()
	for {
		l.step(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-changes:
		case <-e.kick:
		case <-r.LeaderCh():
		}
	}
}

func (e *Election) hclog() hclog.Logger {
	if !e.cfg.Logger.Core().Enabled(zapcore.ErrorLevel) {
		return hclog.NewNullLogger()
	}
	return logging.HCLogger("raft", e.cfg.Logger)
}

func (e *Election) openStores() (*Stores, func() error, error) {
	if e.cfg.Stores != nil {
		return e.cfg.Stores, func() error { return nil }, nil
	}
	dir := filepath.Join(e.cfg.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("election: data-dir %s: %w", dir, err)
	}
	// MkdirAll keeps an existing directory's mode: tighten it.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("election: data-dir %s: %w", dir, err)
	}
	bolt, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")}) // file 0600
	if err != nil {
		return nil, nil, fmt.Errorf("election: open raft store in %s: %w", dir, err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, e.hclog())
	if err != nil {
		_ = bolt.Close()
		return nil, nil, fmt.Errorf("election: open snapshot store in %s: %w", dir, err)
	}
	closeFn := func() error {
		if err := bolt.Close(); err != nil {
			return fmt.Errorf("election: close raft store: %w", err)
		}
		return nil
	}
	return &Stores{Log: bolt, Stable: bolt, Snapshots: snaps}, closeFn, nil
}

func (e *Election) openTransport() (raft.Transport, func(), error) {
	if e.cfg.Transport != nil {
		return e.cfg.Transport, func() {}, nil
	}
	server, client, err := raftTLSConfig(e.cfg.Token, e.cfg.ClusterName, e.cfg.NodeName, e.cfg.Clock.Now())
	if err != nil {
		return nil, nil, err
	}
	port := strconv.Itoa(e.cfg.RaftPort)
	stream, err := newTLSStream(net.JoinHostPort(e.cfg.BindAddr, port), net.JoinHostPort(e.cfg.AdvertiseAddr, port), server, client)
	if err != nil {
		return nil, nil, err
	}
	stream.guard.setAdmission(e.log, e.admitRaftPeer)
	stream.guard.setRefusals(e.metrics.raftRefused)
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  e.hclog(),
	})
	return trans, func() { _ = trans.Close() }, nil
}
