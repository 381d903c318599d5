package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/config"
	"github.com/rke2-hanode/rke2-hanode/pkg/election"
	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
	"github.com/rke2-hanode/rke2-hanode/pkg/installer"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
	"github.com/rke2-hanode/rke2-hanode/pkg/vip"
)

// Hand-written fakes of the parts a role path drives. They share one
// journal of the steps taken (each with the phase the host showed when it
// took it), inject failures and crashes at named steps, keep what outlives
// a restart (raft's state, the running service, the datastore) and record
// every breach of the protocol the real parts would refuse or suffer.

const (
	testCA  = "ca0fc1a55e4c0ffeeca0fc1a55e4c0ffeeca0fc1a55e4c0ffeeca0fc1a55e4c0"
	testVIP = "10.0.0.200"
	selfIP  = "10.0.0.1"
)

// stepClock is a clock whose sleeps pass at once (after a real instant, so
// that the loops that poll do not spin).
type stepClock struct {
	mu  sync.Mutex
	now time.Time
}

func newStepClock() *stepClock { return &stepClock{now: time.Unix(1_700_000_000, 0)} }

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *stepClock) Sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(200 * time.Microsecond):
	}
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
	return ctx.Err()
}

var errCrash = errors.New("fake: the daemon died here")

// world is everything outside the phase machine, as fakes.
type world struct {
	mu         sync.Mutex
	journal    []string
	violations []string
	fails      map[string]int    // step → failures still to inject
	crashAt    string            // step at which the daemon dies
	crash      func()            // cancels the run
	after      func(step string) // called with w.mu held after a step is journaled
	phase      func() string

	// outlives a restart
	self         string
	agent        bool // an agent advertises its own Ready (for status only)
	raft         election.ClusterState
	readyCA      string // what the last ReportReady said; "" after ReportNotReady
	reported     bool
	configKind   installer.Case
	configCA     string
	serviceOn    bool
	datastore    datastoreOnDisk
	startedCount int // commits of "started"
	vipHolder    bool
	serversAlive int
	members      []gossip.MemberInfo
	// standby is the leader's reason for not admitting this server ("":
	// admitted); while set, the slot is not granted.
	standby string
	// outOfRaft: this server's raft configuration no longer lists it.
	outOfRaft bool

	phasesPublished int
	nameTaken       error // NameConflict and RetryName's answer
	nameRetries     int
}

// step journals name (with the phase shown) and says whether it fails now.
func (w *world) step(name string) error {
	w.mu.Lock()
	phase := ""
	if w.phase != nil {
		ph := w.phase
		w.mu.Unlock()
		phase = ph()
		w.mu.Lock()
	}
	defer w.mu.Unlock()
	if w.crashAt == name {
		w.crashAt = ""
		w.journal = append(w.journal, name+"@"+phase+" (crash)")
		w.crash()
		return errCrash
	}
	w.journal = append(w.journal, name+"@"+phase)
	if w.after != nil {
		w.after(name)
	}
	if w.fails[name] > 0 {
		w.fails[name]--
		return fmt.Errorf("fake: %s failed", name)
	}
	return nil
}

func (w *world) violate(format string, a ...any) {
	w.violations = append(w.violations, fmt.Sprintf(format, a...))
}

func (w *world) steps() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.journal...)
}

// fakeMembers is gossip as the role paths read it.
type fakeMembers struct{ w *world }

func (f fakeMembers) Members() []gossip.MemberInfo {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	return append([]gossip.MemberInfo(nil), f.w.members...)
}
func (f fakeMembers) Local() gossip.Meta { return gossip.Meta{} }
func (f fakeMembers) NumAlive(string) int {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	return f.w.serversAlive
}
func (f fakeMembers) AliveRank(string) (int, int) { return 0, 1 }
func (f fakeMembers) Subscribe() (<-chan struct{}, func()) {
	return make(chan struct{}), func() {}
}
func (f fakeMembers) UpdateMeta(fn func(*gossip.Meta)) error {
	var m gossip.Meta
	fn(&m)
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	if (m.Ready && !f.w.agent) || m.CAHash != "" || m.ClusterReady || m.StartedRKE2 || m.WantJoinSlot {
		f.w.violate("node wrote a field the leader acts on: %+v", m)
	}
	f.w.phasesPublished++
	return nil
}
func (f fakeMembers) NameConflict() error {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	return f.w.nameTaken
}
func (f fakeMembers) RetryName(context.Context) error {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	f.w.nameRetries++
	return f.w.nameTaken
}

// fakeCoord is raft and its leader, committing as election does: started
// once, cluster ready and the join only after the host reported ready.
type fakeCoord struct{ w *world }

func (f fakeCoord) State() raftView {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	st := f.w.raft
	st.Joined = append([]string(nil), st.Joined...)
	s := raftView{ClusterState: st, IsBootstrap: st.Bootstrap == f.w.self, RaftState: "follower"}
	if st.Slot != nil {
		s.SlotHolder = st.Slot.Holder
	}
	return s
}
func (f fakeCoord) IsBootstrap() bool { return f.State().IsBootstrap }
func (f fakeCoord) RemovedFromRaft() bool {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	return f.w.outOfRaft
}
func (f fakeCoord) WaitBootstrap(ctx context.Context) (string, error) {
	if err := f.w.step("wait-bootstrap"); err != nil {
		return "", err
	}
	if f.RemovedFromRaft() { // no leader ever answers a removed server
		<-ctx.Done()
		return "", ctx.Err()
	}
	return f.State().Bootstrap, nil
}
func (f fakeCoord) MarkStarted(context.Context) error {
	if err := f.w.step("mark-started"); err != nil {
		return err
	}
	w := f.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.configKind != installer.Bootstrap {
		w.violate("started committed before the bootstrap config was written")
	}
	if !w.raft.Started {
		w.raft.Started = true
		w.startedCount++
	}
	return nil
}
func (f fakeCoord) WaitClusterReady(context.Context) (election.ClusterReady, error) {
	if err := f.w.step("wait-cluster-ready"); err != nil {
		return election.ClusterReady{}, err
	}
	w := f.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.raft.ClusterReady == nil && w.raft.Bootstrap == w.self && w.readyCA != "" {
		w.raft.ClusterReady = &election.ClusterReady{VIP: testVIP, CAHash: w.readyCA}
	}
	if w.raft.ClusterReady == nil {
		return election.ClusterReady{}, errors.New("fake: cluster ready is not committed (nothing reported ready)")
	}
	return *w.raft.ClusterReady, nil
}
func (f fakeCoord) Standby() (string, bool) {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	return f.w.standby, f.w.standby != ""
}
func (f fakeCoord) AcquireJoinSlot(ctx context.Context) (election.JoinSlot, error) {
	if err := f.w.step("acquire-slot"); err != nil {
		return election.JoinSlot{}, err
	}
	w := f.w
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.standby != "" { // the leader grants nobody it does not admit
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			w.mu.Lock()
			return election.JoinSlot{}, ctx.Err()
		case <-time.After(time.Millisecond):
		}
		w.mu.Lock()
	}
	for _, j := range w.raft.Joined {
		if j == w.self {
			return election.JoinSlot{}, election.ErrJoined // as election answers
		}
	}
	w.raft.Slot = &election.JoinSlot{Holder: w.self}
	return *w.raft.Slot, nil
}
func (f fakeCoord) MarkJoined(context.Context) error {
	if err := f.w.step("mark-joined"); err != nil {
		return err
	}
	w := f.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.readyCA != testCA {
		return errors.New("fake: the leader records a join only after the server reported ready with the cluster's CA")
	}
	w.raft.Joined = append(w.raft.Joined, w.self)
	w.raft.Slot = nil
	return nil
}
func (f fakeCoord) ReportReady(ca string) {
	_ = f.w.step("report-ready")
	w := f.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.serviceOn {
		w.violate("reported ready while RKE2 is not active")
	}
	w.readyCA, w.reported = ca, true
}
func (f fakeCoord) ReportNotReady() {
	_ = f.w.step("report-not-ready")
	f.w.mu.Lock()
	f.w.readyCA = ""
	f.w.mu.Unlock()
}

// fakeProber is the supervisor port: this host's answers once its RKE2 is
// active; the VIP answers once a server of the cluster holds it.
type fakeProber struct{ w *world }

func (f fakeProber) Probe(_ context.Context, addr, ca string) vip.Result {
	if err := f.w.step("probe " + addr); err != nil {
		return vip.Result{Err: err}
	}
	w := f.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if addr == selfIP && w.serviceOn {
		return vip.Result{Reachable: true, CAHash: testCA}
	}
	return vip.Result{Err: errors.New("fake: connection refused")}
}
func (f fakeProber) WaitReachable(ctx context.Context, addr, ca string) (string, error) {
	return f.WaitReachableAmong(ctx, addr, ca, nil)
}
func (f fakeProber) WaitReachableAmong(_ context.Context, addr, ca string, _ func() vip.Slot) (string, error) {
	if err := f.w.step("wait-vip"); err != nil {
		return "", err
	}
	w := f.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.raft.Bootstrap == w.self && w.serviceOn {
		w.vipHolder = true
	}
	if !w.vipHolder && w.raft.ClusterReady == nil {
		return "", errors.New("fake: nothing holds the VIP")
	}
	return testCA, nil
}
func (f fakeProber) Holder(string, []vip.MemberMAC) (string, bool, error) {
	return "", false, vip.ErrHolderUnknown
}

// fakeService is the RKE2 unit: it runs on after the daemon dies.
type fakeService struct{ w *world }

func (f fakeService) Start(context.Context, installer.Role) error {
	if err := f.w.step("start"); err != nil {
		return err
	}
	w := f.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.configKind == 0 {
		w.violate("RKE2 started with no config written")
	}
	if w.configKind == installer.Bootstrap && !w.raft.Started {
		w.violate("RKE2 started as the bootstrap before raft committed the start")
	}
	w.serviceOn = true
	if w.configKind != installer.Agent {
		w.datastore.Present = true
		w.datastore.CAHash = testCA
	}
	return nil
}
func (f fakeService) Stop(context.Context, installer.Role) error {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	f.w.serviceOn = false
	return nil
}
func (f fakeService) WaitActive(context.Context, installer.Role) error {
	return f.w.step("wait-active")
}
func (f fakeService) Active(context.Context, installer.Role) (bool, error) {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	return f.w.serviceOn, nil
}

// fakeHost is the disk and the network before RKE2 runs.
type fakeHost struct{ w *world }

func (f fakeHost) Install(context.Context, bool) error { return f.w.step("install") }
func (f fakeHost) CheckVIPFree(context.Context) error  { return f.w.step("check-vip-free") }
func (f fakeHost) Datastore() (datastoreOnDisk, error) {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	return f.w.datastore, nil
}
func (f fakeHost) WriteConfig(kind installer.Case, ca string) error {
	if err := f.w.step("write-config"); err != nil {
		return err
	}
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	if kind == installer.JoinServer && ca != testCA || kind == installer.Agent && ca != testCA {
		f.w.violate("config %v written with CA %q", kind, ca)
	}
	f.w.configKind, f.w.configCA = kind, ca
	return nil
}

// newWorld is a three-server cluster seen from server "self" (bootstrap
// when bootstrap is true), or from an agent.
func newWorld(role string, bootstrap bool) *world {
	w := &world{self: "self", fails: map[string]int{}, serversAlive: 3,
		datastore: datastoreOnDisk{Path: "/var/lib/rancher/rke2/server/db/etcd", CAPath: "/var/lib/rancher/rke2/server/tls/server-ca.crt"}}
	if role == "server" {
		w.raft.Bootstrap = "other"
		if bootstrap {
			w.raft.Bootstrap = "self"
		} else {
			w.raft.Started = true
			w.raft.ClusterReady = &election.ClusterReady{VIP: testVIP, CAHash: testCA}
			w.vipHolder = true
		}
	} else {
		w.agent = true
		w.vipHolder = true
		w.members = []gossip.MemberInfo{{Name: "other", State: gossip.StateAlive,
			Meta: gossip.Meta{Role: gossip.RoleServer, ClusterReady: true, CAHash: testCA}}}
	}
	return w
}

// newTestNode builds a Node over w's fakes with its progress in dataDir.
func newTestNode(t *testing.T, w *world, role, dataDir string) *Node {
	t.Helper()
	c := config.Defaults()
	c.Role, c.NodeName, c.DataDir, c.VIP, c.ExpectServers = role, w.self, dataDir, testVIP, 3
	clk := newStepClock()
	tr, err := newTracker(zap.NewNop(), clk.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr.notify = func(string) {}
	n := &Node{cfg: c, log: zap.NewNop(), clk: clk, t: tr, role: installer.Role(role), advertise: selfIP,
		members: fakeMembers{w}, prober: fakeProber{w}, svc: fakeService{w}, host: fakeHost{w}, retryPolicy: retryPolicy}
	if role == "server" {
		n.coord = fakeCoord{w}
	}
	if n.prog, err = loadProgress(dataDir); err != nil {
		t.Fatal(err)
	}
	n.caHash = n.prog.CAHash
	tr.setHook(n.publishPhase) // as Run does: the phase is all node writes to gossip
	w.mu.Lock()
	w.phase = func() string { p, _, _ := tr.get(); return p }
	w.mu.Unlock()
	return n
}

// walkUntil runs the phase machine until it is ready, crashes, or fails
// for good; it returns the phase it ended in.
func walkUntil(t *testing.T, n *Node, w *world) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	crashed := make(chan struct{})
	var once sync.Once
	w.mu.Lock()
	w.crash = func() { once.Do(func() { close(crashed) }) }
	w.mu.Unlock()
	done := make(chan error, 1)
	go func() { done <- n.walk(ctx) }()
	defer func() { cancel(); <-done }()
	for {
		phase, _, lastErr := n.t.get()
		if phase == status.PhaseReady {
			return phase
		}
		n.t.mu.Lock()
		frozen := n.t.frozen
		n.t.mu.Unlock()
		if frozen {
			return phase + ": " + lastErr
		}
		select {
		case <-crashed:
			return "crashed"
		case <-ctx.Done():
			t.Fatalf("not ready after 20s: phase %s (%s); steps:\n%s", phase, lastErr, strings.Join(w.steps(), "\n"))
		case <-time.After(time.Millisecond):
		}
	}
}
