package installer

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/dbus"
	"go.uber.org/zap"
)

// SystemdConn is the part of go-systemd's *dbus.Conn the systemd manager
// uses; *dbus.Conn satisfies it, tests use a fake.
type SystemdConn interface {
	ReloadContext(ctx context.Context) error
	EnableUnitFilesContext(ctx context.Context, files []string, runtime, force bool) (bool, []dbus.EnableUnitFileChange, error)
	ResetFailedUnitContext(ctx context.Context, name string) error
	StartUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error)
	StopUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error)
	ListUnitsByNamesContext(ctx context.Context, units []string) ([]dbus.UnitStatus, error)
	GetUnitTypePropertiesContext(ctx context.Context, unit, unitType string) (map[string]any, error)
}

var _ SystemdConn = (*dbus.Conn)(nil)

// SystemdOptions configures the systemd service manager.
type SystemdOptions struct {
	// Conn talks to systemd; nil connects to the system's systemd.
	Conn SystemdConn
	// PollInterval is how often WaitActive reads the unit's state.
	PollInterval time.Duration
	// Journal returns a unit's last log lines for error messages; nil runs
	// `journalctl -u UNIT -n 20 --no-pager` when journalctl exists.
	Journal func(ctx context.Context, unit string) []string
	// ConfigFile, when set, is the RKE2 config the unit must read: Start
	// points the unit's environment file at it (PointUnitAtConfig) when it
	// is not RKE2's default.
	ConfigFile string
	// EnvRoot is prepended to the environment files' paths (tests).
	EnvRoot string
	Logger  *zap.Logger
}

// SystemdManager runs rke2-server.service / rke2-agent.service through
// systemd's D-Bus API. The units are Type=notify with TimeoutStartSec=0, so
// a start job can wait for minutes: Start only queues it, and WaitActive
// watches the unit's ActiveState instead of the job (whose result can also
// be "done" for a start its ExecCondition skipped).
type SystemdManager struct {
	conn    SystemdConn
	close   func()
	poll    time.Duration
	journal func(ctx context.Context, unit string) []string
	config  string
	envRoot string
	log     *zap.Logger
}

var _ ServiceManager = (*SystemdManager)(nil)

// OpenSystemdManager connects to systemd now (unless opts.Conn is set), so
// a host without a reachable systemd fails at once; the connection lasts
// until Close. It has no loop of its own: each call waits under its caller's
// context.
func OpenSystemdManager(opts SystemdOptions) (*SystemdManager, error) {
	m := &SystemdManager{conn: opts.Conn, close: func() {}, poll: opts.PollInterval, journal: opts.Journal,
		config: opts.ConfigFile, envRoot: opts.EnvRoot, log: opts.Logger}
	if m.conn == nil {
		// The D-Bus connection lives as long as the context it is made
		// with: Close ends both.
		life, end := context.WithCancel(context.Background())
		conn, err := dbus.NewWithContext(life)
		if err != nil {
			end()
			return nil, fmt.Errorf("installer: connect to systemd: %w", err)
		}
		m.conn, m.close = conn, func() { conn.Close(); end() }
	}
	if m.poll <= 0 {
		m.poll = time.Second
	}
	if m.journal == nil {
		m.journal = journalLines
	}
	if m.log == nil {
		m.log = zap.NewNop()
	}
	m.log = m.log.Named("installer").With(zap.String("service-manager", "systemd"))
	return m, nil
}

// Close closes the D-Bus connection OpenSystemdManager opened.
func (m *SystemdManager) Close() error {
	m.close()
	return nil
}

// Start reloads systemd (the install may have added the units), enables the
// role's unit so it comes back after a reboot, and queues its start job
// without waiting for it.
func (m *SystemdManager) Start(ctx context.Context, role Role) error {
	if err := role.valid(); err != nil {
		return err
	}
	unit := UnitName(role)
	if m.config != "" {
		changed, err := PointUnitAtConfig(UnitEnvOptions{Root: m.envRoot, Role: role, ConfigFile: m.config})
		if err != nil {
			return err
		}
		for _, f := range changed {
			m.log.Info("unit environment points RKE2 at its config", zap.String("file", f), zap.String(ConfigFileEnv, m.config))
		}
	}
	if err := m.conn.ReloadContext(ctx); err != nil {
		return fmt.Errorf("installer: systemd daemon-reload: %w", err)
	}
	if _, _, err := m.conn.EnableUnitFilesContext(ctx, []string{unit}, false, false); err != nil {
		return fmt.Errorf("installer: enable %s: %w", unit, err)
	}
	// A failed state left from an earlier run would read as this start's.
	if err := m.conn.ResetFailedUnitContext(ctx, unit); err != nil {
		m.log.Debug("reset-failed", zap.String("unit", unit), zap.Error(err))
	}
	if _, err := m.conn.StartUnitContext(ctx, unit, "replace", nil); err != nil {
		return fmt.Errorf("installer: start %s: %w", unit, err)
	}
	m.log.Info("start job queued", zap.String("unit", unit))
	return nil
}

// unitState is what WaitActive reads of a unit.
type unitState struct {
	load, active, sub string
	jobQueued         bool
	result            string
	restarts          uint32
}

func (s unitState) String() string {
	return fmt.Sprintf("%s/%s, result %s, %d restarts", s.active, s.sub, s.result, s.restarts)
}

func (m *SystemdManager) state(ctx context.Context, unit string) (unitState, error) {
	units, err := m.conn.ListUnitsByNamesContext(ctx, []string{unit})
	if err != nil {
		return unitState{}, fmt.Errorf("installer: read %s: %w", unit, err)
	}
	if len(units) != 1 {
		return unitState{}, fmt.Errorf("installer: read %s: systemd returned %d units", unit, len(units))
	}
	u := units[0]
	st := unitState{load: u.LoadState, active: u.ActiveState, sub: u.SubState, jobQueued: u.JobId != 0}
	if st.load == "not-found" {
		return st, nil
	}
	props, err := m.conn.GetUnitTypePropertiesContext(ctx, unit, "Service")
	if err != nil {
		return unitState{}, fmt.Errorf("installer: read %s: %w", unit, err)
	}
	st.result, _ = props["Result"].(string)
	st.restarts, _ = props["NRestarts"].(uint32)
	return st, nil
}

// WaitActive polls the unit until it is active (Type=notify: RKE2 sent
// READY=1), failed, or inactive with no start job left; ctx bounds the wait.
// Restarts (Restart=always) are logged and waited through.
func (m *SystemdManager) WaitActive(ctx context.Context, role Role) error {
	if err := role.valid(); err != nil {
		return err
	}
	unit := UnitName(role)
	var last unitState
	var lastErr error
	for {
		st, err := m.state(ctx, unit)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				m.log.Warn("cannot read unit state; retrying", zap.String("unit", unit), zap.Error(err))
			}
			lastErr = err
		case st.load == "not-found":
			return fmt.Errorf("installer: %s not found: is RKE2 installed (install-method)?", unit)
		case st.active == "active":
			m.log.Info("unit active", zap.String("unit", unit), zap.String("sub-state", st.sub))
			return nil
		case st.active == "failed":
			return m.failure(ctx, unit, "failed", st)
		case st.active == "inactive" && !st.jobQueued:
			return m.failure(ctx, unit, "is inactive with no start job left (skipped by a condition: is the other rke2 unit active? or never started)", st)
		default:
			if st.restarts != last.restarts {
				m.log.Warn("unit restarting", zap.String("unit", unit), zap.String("result", st.result), zap.Uint32("restarts", st.restarts))
			}
			last, lastErr = st, nil
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("installer: %s not active: %w (last error: %w)", unit, ctx.Err(), lastErr)
			}
			return m.failure(ctx, unit, fmt.Sprintf("not active: %v", ctx.Err()), last)
		case <-time.After(m.poll):
		}
	}
}

// failure is an error naming the unit's state and its last journal lines.
func (m *SystemdManager) failure(ctx context.Context, unit, what string, st unitState) error {
	err := fmt.Errorf("installer: %s %s (%s)", unit, what, st)
	if lines := m.journal(context.WithoutCancel(ctx), unit); len(lines) > 0 {
		err = fmt.Errorf("%w; last journal lines:\n%s", err, strings.Join(lines, "\n"))
	}
	return err
}

// Active reports whether the role's unit is active now.
func (m *SystemdManager) Active(ctx context.Context, role Role) (bool, error) {
	if err := role.valid(); err != nil {
		return false, err
	}
	st, err := m.state(ctx, UnitName(role))
	if err != nil {
		return false, err
	}
	return st.active == "active", nil
}

// Stop queues a stop job and waits for its result.
func (m *SystemdManager) Stop(ctx context.Context, role Role) error {
	if err := role.valid(); err != nil {
		return err
	}
	unit := UnitName(role)
	done := make(chan string, 1) // buffered: go-systemd blocks on an unread channel
	if _, err := m.conn.StopUnitContext(ctx, unit, "replace", done); err != nil {
		return fmt.Errorf("installer: stop %s: %w", unit, err)
	}
	select {
	case result := <-done:
		if result != "done" {
			return fmt.Errorf("installer: stop %s: job %s", unit, result)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("installer: stop %s: %w", unit, ctx.Err())
	}
}

// journalLines returns a unit's last 20 journal lines, if journalctl exists.
func journalLines(ctx context.Context, unit string) []string {
	path, err := exec.LookPath("journalctl")
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "-u", unit, "-n", "20", "--no-pager").Output()
	if err != nil && len(out) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(out), "\n"), "\n")
}
