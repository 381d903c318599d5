package gossip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/claims"
	"github.com/rke2-hanode/rke2-hanode/pkg/logging"
)

// Liveness is a member's state as this host sees it. Suspect means this host's
// own probes went unanswered (memberlist does not expose suspicions raised
// by others); it turns back to alive on any sign of life. Left means the
// member announced Leaving before it went; dead, that it just went.
type Liveness string

const (
	StateAlive   Liveness = "alive"
	StateSuspect Liveness = "suspect"
	StateDead    Liveness = "dead"
	StateLeft    Liveness = "left"
)

var allStates = []Liveness{StateAlive, StateSuspect, StateDead, StateLeft}

// MemberInfo is one member as this host sees it.
type MemberInfo struct {
	Name    string
	Addr    string // IP address memberlist reaches the member on
	Port    int    // its gossip port
	State   Liveness
	Meta    Meta
	MetaErr error // non-nil when the member's metadata could not be decoded
	// Claim is the member's newest verified server claim, nil when it has
	// none (an agent, a server of an older build, or a forger). With a
	// trusted fingerprint configured, Meta is the effective metadata: the
	// server fields (Role server, AdvertiseAddr, RaftAddr, BootstrapSet, StartedRKE2,
	// Ready, CAHash, WantJoinSlot, ClusterReady, Commands, ExpectServers,
	// RaftState) are the claim's, and a member without one is an agent
	// with those fields cleared (see "Signed claims" in doc.go).
	Claim *claims.Claim
	// Unverified: the member's metadata says server and neither a verified
	// claim nor a voter's vouching backs it; Meta shows it as an agent.
	Unverified bool
	LastChange time.Time // last change of State, address or Meta seen here
}

// Conflict records two hosts claiming one node name.
type Conflict struct {
	Name     string
	Existing string // host:port memberlist already knew under Name
	Other    string // host:port that also claimed Name
	At       time.Time
}

// maxConflicts bounds the conflicts kept for Conflicts.
const maxConflicts = 16

// Member is this host's gossip member. Its lifecycle is the project's one:
// Open binds the gossip port (failing at once when it cannot), Run joins and
// keeps the member in the cluster until its context ends, Close leaves
// gracefully and releases the port.
type Member struct {
	broadcast chan struct{} // UpdateMeta asks the broadcaster for an announcement
	selfSeen  chan struct{} // memberlist reported this member's own metadata stored
	cfg       Config
	log       *zap.Logger
	metrics   *metrics
	rejects   *rateLimiter // warnings about undecryptable traffic, per peer
	warns     *rateLimiter // other repeated warnings, per subject

	metaMu    sync.Mutex // serialises UpdateMeta and Leave's metadata change
	localMu   sync.Mutex // guards local and localWire
	local     Meta
	localWire []byte
	seenWire  []byte // this member's metadata as memberlist last reported it stored

	// Claims (nil verifier: none are checked, metadata is taken as
	// declared). ownBase and day2 are guarded by metaMu; claimsBy by mu.
	verifier   *claims.Verifier
	claimQueue *broadcastQueue
	claimsBy   map[string]*heldClaim
	ownBase    []byte       // this member's claim as last signed, with sequence 1
	day2       claims.Claim // the day-2 fields of this member's claim (UpdateClaim)
	claimDirty atomic.Bool  // a new own claim waits for the direct exchanges
	// syncOnce is the role whose alive members the next broadcast pass
	// also exchanges state with directly (UpdateMetaAndSync), "" none.
	syncOnceMu sync.Mutex
	syncOnce   string
	resign     atomic.Bool   // an earlier run's newer claim was seen: sign past it
	numAlive   atomic.Int32  // alive members, for the broadcast queue's retransmits
	stores     atomic.Uint64 // metadata stores the broadcaster began

	// mu guards the snapshot, conflicts and subscribers. Memberlist calls
	// the delegates with its own locks held: never call memberlist while
	// holding mu.
	mu        sync.Mutex
	records   map[string]*record
	conflicts []Conflict
	nameErr   error
	// established: the cluster holds this member under its name (its own
	// join answered, every seed is itself, or another member reached it
	// while it was not joining). A conflict on its own name before that
	// came with the cluster's state as it joined: this host is the
	// newcomer to a held name. One after it is an impostor's claim.
	established bool
	subs        map[int]chan struct{}
	nextSub     int
	changes     <-chan struct{}

	joining atomic.Int32 // joins of the seeds in progress (joinOnce)

	lifeMu  sync.Mutex // serialises Open, Run's start, Leave and Close
	ml      atomic.Pointer[memberlist.Memberlist]
	port    int            // bound gossip port, the default port of seeds
	self    netip.AddrPort // the address memberlist advertises
	runCtx  context.Context
	cancel  context.CancelFunc // ends Run; set by Open
	running bool
	closed  bool
	done    chan struct{} // closed when the current Run returns
	stopErr error
	left    atomic.Bool
	stopped atomic.Bool
	noLeave atomic.Bool // tests: stop like a crash, without leaving
}

type record struct {
	info     MemberInfo // Meta is the effective metadata (applyLocked)
	declared Meta       // what the member's metadata says
	rawMeta  []byte
}

// Open checks cfg, binds the gossip port (tcp+udp) and returns the member,
// ready to Run. A port in use fails here, with the address.
func Open(cfg Config) (*Member, error) {
	m, err := newMember(cfg)
	if err != nil {
		return nil, err
	}
	if err := m.listen(); err != nil {
		return nil, err
	}
	return m, nil
}

// newMember checks cfg and prepares a member; nothing is bound.
func newMember(cfg Config) (*Member, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	met, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	m := &Member{
		broadcast: make(chan struct{}, 1),
		selfSeen:  make(chan struct{}, 1),
		cfg:       cfg,
		log:       cfg.Logger.Named("gossip"),
		metrics:   met,
		rejects:   newRateLimiter(cfg.Timings.LogInterval, cfg.Clock.Now),
		warns:     newRateLimiter(cfg.Timings.LogInterval, cfg.Clock.Now),
		records:   map[string]*record{},
		subs:      map[int]chan struct{}{},
		claimsBy:  map[string]*heldClaim{},
	}
	m.claimQueue = newBroadcastQueue(cfg.Timings.RetransmitMult, func() int { return max(int(m.numAlive.Load()), 1) })
	if cfg.TrustedFingerprint != "" {
		if m.verifier, err = claims.NewVerifier(cfg.TrustedFingerprint); err != nil {
			return nil, fmt.Errorf("gossip: trusted fingerprint: %w", err)
		}
	}
	if err := m.setLocal(cfg.Meta); err != nil {
		return nil, err
	}
	m.changes, _ = m.Subscribe()
	m.metrics.setMembers(nil)
	return m, nil
}

// listen binds memberlist's transport.
func (m *Member) listen() error {
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if m.ml.Load() != nil || m.closed {
		return errors.New("gossip: member already open")
	}
	mc, err := m.cfg.memberlistConfig()
	if err != nil {
		return err
	}
	d := &delegate{m: m}
	mc.Delegate = d
	mc.Events = d
	mc.Conflict = d
	mc.Alive = d
	mc.Ping = d
	mc.Logger = log.New(&logFilter{
		next:      logging.StdLogger(m.log.Named("memberlist")).Writer(),
		onReject:  m.rejected,
		onSuspect: m.suspected,
	}, "", 0)

	if mc.Transport == nil {
		nt, err := netTransport(mc)
		if err != nil {
			return fmt.Errorf("gossip: listen on %s:%d: %w", m.cfg.BindAddr, m.cfg.BindPort, err)
		}
		mc.Transport = newGuardedTransport(nt, m.streamRefused)
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		_ = mc.Transport.Shutdown()
		return fmt.Errorf("gossip: listen on %s:%d: %w", m.cfg.BindAddr, m.cfg.BindPort, err)
	}
	// Read our own node before anything can update it: memberlist hands out
	// a pointer into its state.
	local := ml.LocalNode()
	if ip, ok := netip.AddrFromSlice(local.Addr); ok {
		m.self = netip.AddrPortFrom(ip.Unmap(), local.Port)
	}
	m.port = mc.BindPort // memberlist fills in a port picked for 0
	m.ml.Store(ml)
	// The claim names the address peers see this member on, known now.
	m.metaMu.Lock()
	_, err = m.signLocal(m.Local(), m.day2)
	m.metaMu.Unlock()
	if err != nil {
		_ = ml.Shutdown()
		return err
	}
	m.log.Info("gossip member started",
		zap.String("node", m.cfg.NodeName),
		zap.Stringer("address", m.self),
		zap.String("cluster", m.cfg.ClusterName),
		zap.Strings("join", m.cfg.Join))

	m.runCtx, m.cancel = context.WithCancel(context.Background())
	return nil
}

// netTransport binds memberlist's network transport as memberlist would
// (a port picked for 0, retried when the pick is taken on UDP or TCP), so
// it can be wrapped.
func netTransport(mc *memberlist.Config) (*memberlist.NetTransport, error) {
	nc := &memberlist.NetTransportConfig{BindAddrs: []string{mc.BindAddr}, BindPort: mc.BindPort, Logger: mc.Logger}
	tries := 1
	if mc.BindPort == 0 {
		tries = 10
	}
	var err error
	for range tries {
		var nt *memberlist.NetTransport
		if nt, err = memberlist.NewNetTransport(nc); err == nil {
			if mc.BindPort == 0 {
				mc.BindPort = nt.GetAutoBindPort()
				mc.AdvertisePort = mc.BindPort
			}
			return nt, nil
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, err
}

// streamRefused counts and reports (rate-limited) an inbound stream
// closed by the stream guard.
func (m *Member) streamRefused(reason, host string) {
	m.metrics.streamsRefused.WithLabelValues(reason).Inc()
	if ok, suppressed := m.warns.allow("stream " + reason); ok {
		m.log.Warn("gossip stream refused before memberlist read it",
			zap.String("reason", reason), zap.String("peer", host), zap.Int("suppressed", suppressed))
	}
}

// Run joins the seeds, retrying until one answers and again whenever this
// member finds itself alone, and gossips this member's metadata, until ctx
// ends or Close is called. It does not leave: Close does.
func (m *Member) Run(ctx context.Context) error {
	m.lifeMu.Lock()
	if m.ml.Load() == nil || m.closed {
		m.lifeMu.Unlock()
		return errors.New("gossip: run: the member is not open (Open it; a closed member cannot run again)")
	}
	if m.running {
		m.lifeMu.Unlock()
		return errors.New("gossip: run: the member is already running")
	}
	m.running = true
	m.done = make(chan struct{})
	runCtx, done := m.runCtx, m.done
	m.lifeMu.Unlock()
	defer func() {
		m.lifeMu.Lock()
		m.running = false
		m.lifeMu.Unlock()
		close(done)
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(runCtx, cancel)()
	bdone := make(chan struct{})
	go func() { defer close(bdone); m.broadcaster(ctx) }()
	m.run(ctx)
	<-bdone
	return nil
}

// Close ends Run, leaves the cluster gracefully (bounded by
// Timings.LeaveTimeout), stops memberlist and releases the port. It may be
// called more than once, and on a member that never ran.
func (m *Member) Close() error {
	m.lifeMu.Lock()
	if m.closed {
		m.lifeMu.Unlock()
		return m.stopErr
	}
	m.closed = true
	cancel, running, done := m.cancel, m.running, m.done
	m.lifeMu.Unlock()
	if cancel == nil {
		m.stopped.Store(true) // never opened
		return nil
	}
	cancel()
	if running {
		<-done
	}
	m.stop()
	return m.stopErr
}

// stop leaves (unless told to stop like a crash) and stops memberlist once
// Run has returned.
func (m *Member) stop() {
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	var errs []error
	if !m.noLeave.Load() {
		if err := m.leaveLocked(m.cfg.Timings.LeaveTimeout); err != nil {
			errs = append(errs, err)
		}
	}
	m.stopped.Store(true)
	if err := m.ml.Load().Shutdown(); err != nil {
		errs = append(errs, fmt.Errorf("gossip: shutdown: %w", err))
	}
	m.stopErr = errors.Join(errs...)
	m.log.Info("gossip member stopped")
}

// Leave tells the cluster this member leaves on purpose, so peers report it
// as left rather than dead. The member keeps answering until Close.
func (m *Member) Leave(ctx context.Context) error {
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if m.ml.Load() == nil || m.stopped.Load() {
		return errors.New("gossip: leave: member is not running")
	}
	timeout := m.cfg.Timings.LeaveTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	return m.leaveLocked(timeout)
}

func (m *Member) leaveLocked(timeout time.Duration) error {
	if m.left.Load() {
		return nil
	}
	if timeout <= 0 {
		timeout = time.Millisecond
	}
	start := time.Now()
	// Peers only learn why a member went away from its last metadata.
	if err := m.updateMeta(func(meta *Meta) { meta.Leaving = true }, timeout/4); err != nil {
		m.log.Warn("could not announce leaving", zap.Error(err))
	}
	m.pushLeaving(timeout / 4)
	m.left.Store(true)
	if err := m.ml.Load().Leave(max(timeout-time.Since(start), time.Millisecond)); err != nil {
		return fmt.Errorf("gossip: leave: %w", err)
	}
	m.log.Info("left the gossip cluster")
	return nil
}

// statePushes bounds how many peers pushState syncs with at once;
// leavePeers how many pushLeaving syncs with in all (a big cluster's
// other members learn it from those peers' gossip of the update).
const (
	statePushes = 8
	leavePeers  = 32
)

// pushTries is how often PushTo tries a peer, pushRetryMin the wait
// before its second try (doubling after each).
const (
	pushTries    = 4
	pushRetryMin = 100 * time.Millisecond
)

// pushState syncs the local state with the peers at addrs over streams
// (memberlist's push/pull, as a join does), statePushes at a time, in the
// background; the channel closes once every push ended. A push that fails
// is tried again, tries times in all, after pushRetryMin and doubling.
// Once stop closes, no further push or try starts (nil: never). what
// names the state in the debug lines of pushes.
func (m *Member) pushState(addrs []string, what string, tries int, stop <-chan struct{}) <-chan struct{} {
	done := make(chan struct{})
	ml := m.ml.Load()
	if ml == nil || len(addrs) == 0 {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		sem := make(chan struct{}, statePushes)
		for _, a := range addrs {
			select {
			case sem <- struct{}{}:
			case <-stop:
				wg.Wait()
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				wait := pushRetryMin
				for try := 1; ; try++ {
					_, err := ml.Join([]string{a})
					if err == nil {
						m.log.Debug("pushed "+what, zap.String("peer", a), zap.Int("try", try))
						return
					}
					m.log.Debug("could not push "+what, zap.String("peer", a), zap.Int("try", try), zap.Error(err))
					if try >= tries || m.left.Load() || m.stopped.Load() {
						return
					}
					select {
					case <-time.After(m.cfg.Jitter(wait/2) + wait/2):
					case <-stop:
						return
					}
					wait *= 2
				}
			}()
		}
		wg.Wait()
	}()
	return done
}

// pushLeaving syncs the local state (its metadata now says Leaving) with
// alive peers (leavePeers at most, at random) over streams, within
// timeout; no push starts after it. The metadata broadcast alone is not
// enough: it is a datagram a peer can miss, and memberlist's
// leave message invalidates it in the broadcast queue; a peer that sees the
// leave before the metadata keeps the old metadata of a dead node (it takes
// no update for one) and reports a member that left as failed. Peers not
// reached in time still learn it from gossip, as before.
func (m *Member) pushLeaving(timeout time.Duration) {
	var addrs []string
	for _, n := range m.ml.Load().Members() {
		if n.Name != m.cfg.NodeName {
			addrs = append(addrs, n.Address())
		}
	}
	rand.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
	addrs = addrs[:min(len(addrs), leavePeers)]
	stop := make(chan struct{})
	defer close(stop)
	select {
	case <-m.pushState(addrs, "the leaving metadata", 1, stop):
	case <-time.After(timeout):
		m.log.Debug("pushing the leaving metadata took longer than its share of the leave timeout")
	}
}

// PushTo syncs this member's state, its claim with it, with the alive
// members named, over streams, in the background: for a change they must
// see soon, since a claim too big for a broadcast packet otherwise reaches
// them only at push/pull's interval. A push that fails is tried again
// (pushTries in all, while the member runs): the caller pushes each change
// once. Names not alive here are skipped.
func (m *Member) PushTo(names []string) {
	if m.left.Load() || m.stopped.Load() {
		return
	}
	ml := m.ml.Load()
	if ml == nil {
		return
	}
	var addrs []string
	for _, n := range ml.Members() {
		if n.Name != m.cfg.NodeName && slices.Contains(names, n.Name) {
			addrs = append(addrs, n.Address())
		}
	}
	m.pushState(addrs, "this member's state", pushTries, m.runCtx.Done())
}

// UpdateMeta changes the local metadata with fn and has it gossiped at once
// in the background: it never waits for the broadcast (memberlist's can take
// seconds on a busy cluster, and callers such as the phase machine and the
// election loop must not stall on it). Updates that come faster than they
// can be broadcast coalesce; peers always end with the newest. An invalid
// result is rejected and the metadata stays as it was.
func (m *Member) UpdateMeta(fn func(*Meta)) error { return m.updateMetaSync(fn, "") }

// updateMetaSync is UpdateMeta; a role asks for a direct exchange with its
// members once the new metadata is stored. The ask is set only after the
// metadata it is for, and a broadcast pass takes it before it stores, so
// the pass that takes it stores this metadata or newer.
func (m *Member) updateMetaSync(fn func(*Meta), role string) error {
	if m.left.Load() || m.stopped.Load() {
		return errors.New("gossip: update meta: member has left or stopped")
	}
	m.metaMu.Lock()
	next := m.Local()
	fn(&next)
	err := m.setLocal(next)
	if err == nil && role != "" {
		m.syncOnceMu.Lock()
		m.syncOnce = role
		m.syncOnceMu.Unlock()
	}
	m.metaMu.Unlock()
	if err != nil {
		return err
	}
	m.kick()
	return nil
}

// UpdateMetaAndSync is UpdateMeta, and once the new metadata is stored
// this member also exchanges its state directly with every alive member
// of role, as SyncRole does after every change: for a rare change those
// members must see at once (an agent's upgrade report, which the leader
// waits for), without a direct exchange after every change of a member
// that has many peers.
func (m *Member) UpdateMetaAndSync(fn func(*Meta), role string) error {
	return m.updateMetaSync(fn, role)
}

func (m *Member) takeSyncOnce() string {
	m.syncOnceMu.Lock()
	defer m.syncOnceMu.Unlock()
	r := m.syncOnce
	m.syncOnce = ""
	return r
}

// kick asks the broadcaster to announce the local metadata and claim.
func (m *Member) kick() {
	select {
	case m.broadcast <- struct{}{}:
	default: // one is pending; it will carry this change too
	}
}

// broadcaster announces the local metadata after UpdateMeta until ctx
// ends. memberlist's UpdateNode stores the new metadata at once and then
// waits until its broadcast has been retransmitted enough (or a newer one
// replaced it), which takes a few gossip rounds: that wait runs on its own,
// so the next change never queues behind it.
func (m *Member) broadcaster(ctx context.Context) {
	// The member stops once the broadcasts and exchanges it started have
	// ended, or after UpdateTimeout: an exchange with a peer that just
	// died can take several TCP timeouts, and must not delay the leave
	// (systemd's stop timeout); it fails against the stopped memberlist.
	var bg sync.WaitGroup
	defer func() {
		ended := make(chan struct{})
		go func() { bg.Wait(); close(ended) }()
		select {
		case <-ended:
		case <-time.After(m.cfg.Timings.UpdateTimeout):
			m.log.Debug("stopping with direct exchanges still in flight")
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.broadcast:
		}
		ml := m.ml.Load()
		if ml == nil {
			continue
		}
		m.resignIfAsked()
		once := m.takeSyncOnce()
		// An earlier pass may already have carried this change (UpdateNode
		// reads the newest metadata): memberlist would store nothing new
		// and report nothing.
		m.localMu.Lock()
		before := m.seenWire
		stored := bytes.Equal(m.localWire, before)
		m.localMu.Unlock()
		claimed := m.claimDirty.Swap(false)
		if stored && !claimed {
			// Carried by an earlier pass; a direct exchange asked for
			// with it is still owed.
			m.exchange(&bg, ml, m.peersOf(once))
			continue
		}
		if !stored && !m.storeMeta(ctx, ml, &bg, before, m.stores.Add(1)) {
			return
		}
		peers := m.peersOf(m.cfg.SyncRole)
		if once != m.cfg.SyncRole {
			peers = append(peers, m.peersOf(once)...)
		}
		m.exchange(&bg, ml, peers)
	}
}

// exchange syncs state with each peer directly. One exchange per peer,
// each on its own: a peer that died a moment ago (still alive here) costs
// a TCP timeout, and must not hold up the others or the next change.
func (m *Member) exchange(bg *sync.WaitGroup, ml *memberlist.Memberlist, peers []string) {
	for _, peer := range peers {
		bg.Go(func() {
			_, err := ml.Join([]string{peer})
			m.log.Debug("metadata synced directly", zap.String("peer", peer), zap.Error(err))
		})
	}
}

// storeMeta has memberlist store and broadcast the local metadata, and
// waits until it is stored; false when ctx ended first.
func (m *Member) storeMeta(ctx context.Context, ml *memberlist.Memberlist, bg *sync.WaitGroup, before []byte, gen uint64) bool {
	finished := make(chan struct{})
	bg.Go(func() {
		defer close(finished)
		err := m.storeNode(ml, m.cfg.Timings.UpdateTimeout)
		if err == nil {
			return
		}
		// UpdateNode takes its incarnation number before it takes
		// memberlist's lock. A refute of a suspicion in that gap takes a
		// higher one and broadcasts the old metadata with it, and then
		// memberlist drops this alive message as older: it stores
		// nothing, reports nothing, and its broadcast never ends. Push/pull
		// would then spread the old metadata until the next change, so a
		// change memberlist did not store is stored again, at most once
		// per UpdateTimeout. NotifyUpdate runs before UpdateNode returns:
		// seenWire already shows any store.
		m.localMu.Lock()
		lost := bytes.Equal(m.seenWire, before) && !bytes.Equal(m.localWire, before)
		m.localMu.Unlock()
		if lost && !m.left.Load() && !m.stopped.Load() {
			m.log.Debug("metadata update not stored by memberlist: storing it again", zap.Error(err))
			m.kick()
			return
		}
		// Memberlist stored it, and its broadcast did not end in time.
		// That broadcast may be lost: memberlist's queue (the version
		// this module builds with) silently drops a message that took
		// the place of the only one queued, once a later message of the
		// same length comes in (see broadcastQueue), and this member's
		// alive message replaces its previous one whenever two changes
		// follow each other closely. Push/pull would carry it only at its
		// next round, 30 s on a LAN. So unless a newer store began since,
		// which has its own broadcast, this member hands its state to a
		// few members directly; they take the newer metadata and relay
		// it as gossip does.
		if m.stores.Load() == gen && !m.left.Load() && !m.stopped.Load() {
			if peers := m.randomPeers(directSyncPeers); len(peers) > 0 {
				m.log.Debug("metadata broadcast not confirmed: exchanging state directly", zap.Int("peers", len(peers)), zap.Error(err))
				m.exchange(bg, ml, peers)
				return
			}
		}
		m.log.Debug("metadata broadcast not confirmed", zap.Error(err))
	})
	// UpdateNode stores the metadata (memberlist then reports it
	// through NotifyUpdate, see observe) before it waits for the
	// broadcast: a matter of microseconds. Only then may the next
	// UpdateNode start: two storing at once can take incarnations in
	// the opposite order to the metadata they read, and leave the older
	// metadata in place. Nothing else stores this member's metadata, so
	// the first change memberlist reports is this UpdateNode's (a
	// signal left from before changes nothing and is ignored).
	for {
		select {
		case <-ctx.Done():
			return false
		case <-finished:
			return true
		case <-m.selfSeen:
			m.localMu.Lock()
			stored := !bytes.Equal(m.seenWire, before)
			m.localMu.Unlock()
			if stored {
				return true
			}
		}
	}
}

// storeNode has memberlist store and broadcast the local metadata.
func (m *Member) storeNode(ml *memberlist.Memberlist, timeout time.Duration) error {
	if m.cfg.updateNode != nil {
		return m.cfg.updateNode(ml, timeout)
	}
	return ml.UpdateNode(timeout)
}

// directSyncPeers is how many members an unconfirmed metadata broadcast
// is handed to directly: as many as memberlist gossips each message to
// per round.
const directSyncPeers = 3

// randomPeers are the addresses of at most n other alive members, taken
// at random.
func (m *Member) randomPeers(n int) []string {
	out := m.alivePeers(func(MemberInfo) bool { return true })
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out[:min(n, len(out))]
}

// peersOf are the addresses of the other alive members of role ("":
// none).
func (m *Member) peersOf(role string) []string {
	if role == "" {
		return nil
	}
	return m.alivePeers(func(i MemberInfo) bool { return i.MetaErr == nil && i.Meta.Role == role })
}

// alivePeers are the gossip addresses of the other alive members that
// match.
func (m *Member) alivePeers(match func(MemberInfo) bool) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, r := range m.records {
		if i := r.info; i.Name != m.cfg.NodeName && i.State == StateAlive && match(i) {
			out = append(out, net.JoinHostPort(i.Addr, strconv.Itoa(int(i.Port))))
		}
	}
	return out
}

func (m *Member) updateMeta(fn func(*Meta), timeout time.Duration) error {
	m.metaMu.Lock()
	defer m.metaMu.Unlock()
	next := m.Local()
	fn(&next)
	if err := m.setLocal(next); err != nil {
		return err
	}
	ml := m.ml.Load()
	if ml == nil {
		return nil // Start announces it
	}
	if err := m.storeNode(ml, timeout); err != nil {
		// The new metadata is in place and push/pull spreads it anyway.
		m.log.Debug("metadata broadcast not confirmed", zap.Error(err))
	}
	return nil
}

// setLocal stores meta in its canonical (decoded) form, so Local shows
// exactly what peers see.
func (m *Member) setLocal(meta Meta) error {
	wire, err := meta.Encode()
	if err != nil {
		return err
	}
	canonical, err := DecodeMeta(wire)
	if err != nil {
		return fmt.Errorf("gossip: local meta does not decode: %w", err)
	}
	if _, err := m.signLocal(canonical, m.day2); err != nil {
		return err
	}
	m.localMu.Lock()
	m.local, m.localWire = canonical, wire
	m.localMu.Unlock()
	return nil
}

// Local returns this member's current metadata.
func (m *Member) Local() Meta {
	m.localMu.Lock()
	defer m.localMu.Unlock()
	return cloneMeta(m.local)
}

// Members returns every member known, this one included, sorted by name.
// Dead and left members stay for Timings.DeadRetention.
func (m *Member) Members() []MemberInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.snapshotLocked()
}

func (m *Member) snapshotLocked() []MemberInfo {
	out := make([]MemberInfo, 0, len(m.records))
	for _, r := range m.records {
		mi := r.info
		mi.Meta = cloneMeta(mi.Meta)
		out = append(out, mi)
	}
	slices.SortFunc(out, func(a, b MemberInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// countLocked counts members by role and state without copying them: it
// runs on every change, and large clusters change often.
func (m *Member) countLocked() map[roleState]int {
	counts := map[roleState]int{}
	for _, r := range m.records {
		role := r.info.Meta.Role
		if r.info.MetaErr != nil || role == "" {
			role = roleUnknown
		}
		counts[roleState{role, r.info.State}]++
	}
	return counts
}

// AliveRank is the position of the member called name among all alive
// members sorted by name, and their number: an order every member that
// sees the same membership agrees on. rank is -1 when name is not alive.
func (m *Member) AliveRank(name string) (rank, of int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	found := false
	for _, r := range m.records {
		if r.info.State != StateAlive || r.info.MetaErr != nil {
			continue
		}
		of++
		switch {
		case r.info.Name == name:
			found = true
		case r.info.Name < name:
			rank++
		}
	}
	if !found {
		return -1, of
	}
	return rank, of
}

// NumAlive counts alive members (this one included) with the given role, or
// of any role when role is "".
func (m *Member) NumAlive(role string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, r := range m.records {
		if r.info.State == StateAlive && r.info.MetaErr == nil && (role == "" || r.info.Meta.Role == role) {
			n++
		}
	}
	return n
}

// Changes signals (coalesced, buffer of one) whenever Members, Conflicts or
// NameConflict may have changed: a signal means "look again". It is one
// subscription made by New; more consumers call Subscribe.
func (m *Member) Changes() <-chan struct{} { return m.changes }

// Subscribe returns a new change channel, signalled like Changes and once
// right away, and a function that ends the subscription and closes the
// channel.
func (m *Member) Subscribe() (<-chan struct{}, func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id := m.nextSub
	m.nextSub++
	ch := make(chan struct{}, 1)
	ch <- struct{}{}
	m.subs[id] = ch
	return ch, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if _, ok := m.subs[id]; ok {
			delete(m.subs, id)
			close(ch)
		}
	}
}

// Conflicts returns the recent cases of two hosts claiming one node name,
// oldest first.
func (m *Member) Conflicts() []Conflict {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.conflicts)
}

// Verifying reports whether this member checks servers' claims (it has a
// trusted fingerprint): then a server without a claim of its own is one of
// a build without claims, vouched for by others' claims.
func (m *Member) Verifying() bool { return m.verifier != nil }

// NameConflict returns a non-nil error once another host was seen claiming
// this member's own node name. The cluster then keeps whichever host it
// knew first; the other one must be renamed.
func (m *Member) NameConflict() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.nameErr
}

// RetryName asks the cluster again, after NameConflict, whether this
// member's node name is free: it joins the seeds once more, and the state
// a seed sends back carries the holder's alive message again while
// another host still holds the name. The name comes free when its holder
// leaves, or has been dead long enough for the members to forget it. It
// returns NameConflict afterwards (nil: the cluster now holds the name as
// this member's), or the conflict unchanged when no seed answered.
func (m *Member) RetryName(ctx context.Context) error {
	m.mu.Lock()
	prev := m.nameErr
	m.mu.Unlock()
	if prev == nil {
		return nil
	}
	m.joining.Add(1) // a conflict from here on is a newcomer's, not an impostor's
	m.mu.Lock()
	m.nameErr, m.established = nil, false
	m.mu.Unlock()
	joined := m.joinOnce(ctx)
	m.joining.Add(-1)
	m.mu.Lock()
	defer m.mu.Unlock()
	if !joined && m.nameErr == nil {
		m.nameErr = prev
	}
	m.changedLocked()
	return m.nameErr
}

// changedLocked publishes the counts to the metrics and wakes subscribers.
func (m *Member) changedLocked() {
	counts := m.countLocked()
	m.metrics.setMembers(counts)
	alive := 0
	for rs, n := range counts {
		if rs.state == StateAlive {
			alive += n
		}
	}
	m.numAlive.Store(int32(alive))
	for _, ch := range m.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// observe records memberlist's news about a node.
func (m *Member) observe(n *memberlist.Node, state Liveness) {
	if n.Name == m.cfg.NodeName {
		m.localMu.Lock()
		m.seenWire = bytes.Clone(n.Meta)
		m.localMu.Unlock()
		select {
		case m.selfSeen <- struct{}{}:
		default:
		}
	}
	now := m.cfg.Clock.Now()
	meta, metaErr := DecodeMeta(n.Meta)
	info := MemberInfo{
		Name:       n.Name,
		Addr:       n.Addr.String(),
		Port:       int(n.Port),
		State:      state,
		Meta:       meta,
		MetaErr:    metaErr,
		LastChange: now,
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if n.Name != m.cfg.NodeName && state == StateAlive && m.joining.Load() == 0 {
		m.established = true
	}
	if old, ok := m.records[n.Name]; ok {
		if old.info.State == state && old.info.Addr == info.Addr && old.info.Port == info.Port && bytes.Equal(old.rawMeta, n.Meta) {
			return
		}
		if old.info.MetaErr == nil && metaErr != nil {
			m.log.Warn("member metadata could not be decoded", zap.String("member", n.Name), zap.Error(metaErr))
		}
	}
	r := &record{info: info, declared: meta, rawMeta: bytes.Clone(n.Meta)}
	m.applyLocked(r, m.vouchedLocked())
	m.records[n.Name] = r
	m.changedLocked()
}

// setState moves a known member from one state to another, if it is in from.
func (m *Member) setState(name string, from, to Liveness) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.records[name]
	if !ok || r.info.State != from {
		return
	}
	r.info.State = to
	r.info.LastChange = m.cfg.Clock.Now()
	m.changedLocked()
}

// suspected is called when this member's failure detector suspects a node.
func (m *Member) suspected(name string) {
	m.setState(name, StateAlive, StateSuspect)
}

// rejected counts and reports traffic from another key or cluster name.
func (m *Member) rejected(host string, wrongLabel bool) {
	m.metrics.decryptFailures.Inc()
	ok, suppressed := m.rejects.allow(host)
	if !ok {
		return
	}
	reason := "no key could decrypt it"
	if wrongLabel {
		reason = "it carries another cluster name label"
	}
	m.log.Warn("could not decrypt gossip from "+host+" — different token or cluster name?",
		zap.String("peer", host),
		zap.String("reason", reason),
		zap.Int("suppressed", suppressed))
}

// establish records that the cluster holds this member under its name.
func (m *Member) establish() {
	m.mu.Lock()
	m.established = true
	m.mu.Unlock()
}

func (m *Member) conflict(existing, other *memberlist.Node) {
	m.metrics.nameConflicts.Inc()
	c := Conflict{Name: existing.Name, Existing: existing.Address(), Other: other.Address(), At: m.cfg.Clock.Now()}
	m.mu.Lock()
	defer m.mu.Unlock()
	idx := slices.IndexFunc(m.conflicts, func(o Conflict) bool {
		return o.Name == c.Name && o.Existing == c.Existing && o.Other == c.Other
	})
	if idx >= 0 {
		m.conflicts = slices.Delete(m.conflicts, idx, idx+1)
	}
	m.conflicts = append(m.conflicts, c)
	if len(m.conflicts) > maxConflicts {
		m.conflicts = slices.Delete(m.conflicts, 0, len(m.conflicts)-maxConflicts)
	}
	mine := c.Name == m.cfg.NodeName
	// Names are owned: memberlist keeps the host it knew first and refuses
	// the other's alive messages. Only a newcomer to a held name (the
	// conflict arrived with the cluster's state as this host joined)
	// stops; the holder refuses the impostor and keeps running.
	if mine && m.established {
		m.metrics.nameImpostors.Inc()
		if ok, suppressed := m.warns.allow("impostor " + c.Other); ok {
			m.log.Error("another host claims this host's node name: refused, this host keeps it",
				zap.String("name", c.Name), zap.String("holder", c.Existing), zap.String("impostor", c.Other),
				zap.Int("suppressed", suppressed))
		}
		m.changedLocked()
		return
	}
	if mine && m.nameErr == nil {
		m.nameErr = fmt.Errorf("gossip: node name %q is claimed by this host (%s) and by %s: every host needs its own node name",
			c.Name, c.Existing, c.Other)
	}
	if ok, suppressed := m.warns.allow("conflict " + c.Name + " " + c.Other); ok {
		m.log.Error("two hosts claim one node name; the cluster keeps the one it knew first",
			zap.String("name", c.Name),
			zap.String("known", c.Existing),
			zap.String("other", c.Other),
			zap.Bool("ours", mine),
			zap.Int("suppressed", suppressed))
	}
	m.changedLocked()
}

// prune forgets dead and left members older than DeadRetention.
func (m *Member) prune() {
	cutoff := m.cfg.Clock.Now().Add(-m.cfg.Timings.DeadRetention)
	m.mu.Lock()
	defer m.mu.Unlock()
	pruned := false
	for name, r := range m.records {
		if (r.info.State == StateDead || r.info.State == StateLeft) && r.info.LastChange.Before(cutoff) {
			delete(m.records, name)
			delete(m.claimsBy, name) // the verifier keeps its sequence: no replay after
			pruned = true
		}
	}
	if pruned {
		m.applyAllLocked()
		m.changedLocked()
	}
}

func cloneMeta(meta Meta) Meta {
	meta.MAC = bytes.Clone(meta.MAC)
	return meta
}

// delegate receives memberlist's callbacks. They run with memberlist's
// locks held and must not call back into memberlist.
type delegate struct{ m *Member }

var (
	_ memberlist.Delegate         = (*delegate)(nil)
	_ memberlist.EventDelegate    = (*delegate)(nil)
	_ memberlist.ConflictDelegate = (*delegate)(nil)
	_ memberlist.AliveDelegate    = (*delegate)(nil)
	_ memberlist.PingDelegate     = (*delegate)(nil)
)

func (d *delegate) NodeMeta(limit int) []byte {
	d.m.localMu.Lock()
	defer d.m.localMu.Unlock()
	if len(d.m.localWire) > limit {
		return nil // cannot happen: Encode enforces the limit
	}
	return bytes.Clone(d.m.localWire)
}

func (d *delegate) NotifyMsg(b []byte)                              { d.m.mergeClaims(b) }
func (d *delegate) LocalState(bool) []byte                          { return d.m.localClaimState() }
func (d *delegate) MergeRemoteState(b []byte, _ bool)               { d.m.mergeClaims(b) }
func (d *delegate) NotifyJoin(n *memberlist.Node)                   { d.m.observe(n, StateAlive) }
func (d *delegate) NotifyUpdate(n *memberlist.Node)                 { d.m.observe(n, StateAlive) }
func (d *delegate) NotifyConflict(existing, other *memberlist.Node) { d.m.conflict(existing, other) }
func (d *delegate) AckPayload() []byte                              { return nil }

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.m.claimQueue.GetBroadcasts(overhead, limit)
}

// NotifyLeave reports a node gone. Memberlist does not say whether it left
// or failed; a member announces Leaving in its metadata before it leaves.
func (d *delegate) NotifyLeave(n *memberlist.Node) {
	state := StateDead
	if meta, err := DecodeMeta(n.Meta); n.Name == d.m.cfg.NodeName || (err == nil && meta.Leaving) {
		state = StateLeft
	}
	d.m.observe(n, state)
}

// NotifyAlive sees every alive message; one about a node this member
// suspected means it answered after all. An alive message for a server's
// name from another address than its held verified claim names is refused
// (memberlist drops it): memberlist hands a left or dead node's name to
// any address, and a server restarting would find its name taken by a
// holder of the agent token. A server that really moved sends its new
// claim in the push/pull of its join; its alive messages are taken once
// that claim is held.
func (d *delegate) NotifyAlive(n *memberlist.Node) error {
	if err := d.m.heldElsewhere(n); err != nil {
		return err
	}
	d.m.setState(n.Name, StateSuspect, StateAlive)
	return nil
}

// heldElsewhere reports the held verified claim of n's name when it names
// another address than n's.
func (m *Member) heldElsewhere(n *memberlist.Node) error {
	if n.Name == m.cfg.NodeName || m.verifier == nil {
		return nil
	}
	m.mu.Lock()
	h := m.claimsBy[n.Name]
	m.mu.Unlock()
	if h == nil || sameIP(h.claim.AdvertiseAddr, n.Addr.String()) {
		return nil
	}
	m.metrics.aliveRefused.Inc()
	if ok, suppressed := m.warns.allow("alive elsewhere " + n.Name + " " + n.Addr.String()); ok {
		m.log.Warn("alive message for a server's node name from another address than its signed claim's: refused, the name stays the server's",
			zap.String("member", n.Name), zap.String("address", n.Addr.String()),
			zap.String("claimed", h.claim.AdvertiseAddr), zap.Int("suppressed", suppressed))
	}
	return fmt.Errorf("node %q: its signed claim names %s, not %s", n.Name, h.claim.AdvertiseAddr, n.Addr)
}

func (d *delegate) NotifyPingComplete(n *memberlist.Node, _ time.Duration, _ []byte) {
	d.m.setState(n.Name, StateSuspect, StateAlive)
}
