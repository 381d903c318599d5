package node

import (
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/status"
	"github.com/rke2-hanode/rke2-hanode/pkg/timeline"
)

// tracker holds the host's current phase and reports every change to the
// log, to Prometheus, to systemd (STATUS=) and to a hook (gossip metadata).
type tracker struct {
	log *zap.Logger
	now func() time.Time

	phaseGauge   *prometheus.GaugeVec
	enteredGauge *prometheus.GaugeVec
	errorsTotal  *prometheus.CounterVec
	history      *timeline.Recorder // every phase entered, for /status and gossip

	mu       sync.Mutex
	phase    string
	before   string // the phase before the current failed one
	since    time.Time
	lastErr  string
	detail   string
	frozen   bool // after a permanent failure the phase stays failed
	onChange func(phase string, since time.Time)
	notify   func(state string)
}

func newTracker(log *zap.Logger, now func() time.Time, reg prometheus.Registerer) (*tracker, error) {
	t := &tracker{
		log: log,
		now: now,
		phaseGauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rke2_hanode_phase",
			Help: "1 for this host's current phase, 0 for the others.",
		}, []string{"phase"}),
		enteredGauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rke2_hanode_phase_entered_timestamp_seconds",
			Help: "Unix time this host last entered each phase.",
		}, []string{"phase"}),
		errorsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rke2_hanode_errors_total",
			Help: "Errors by the stage they happened in; each one is retried with backoff unless permanent.",
		}, []string{"stage"}),
		notify:  func(state string) { daemon.SdNotify(false, state) },
		history: timeline.NewRecorder(timeline.DefaultDepth),
	}
	for _, p := range status.Phases {
		t.phaseGauge.WithLabelValues(p).Set(0)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{t.phaseGauge, t.enteredGauge, t.errorsTotal} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return t, nil
}

// setHook installs the hook called on every phase change, and calls it
// once with the current phase.
func (t *tracker) setHook(hook func(phase string, since time.Time)) {
	t.mu.Lock()
	t.onChange = hook
	phase, since := t.phase, t.since
	t.mu.Unlock()
	hook(phase, since)
}

// set enters phase (a no-op when already in it) with a human detail line.
func (t *tracker) set(phase, detail string) {
	t.mu.Lock()
	if t.frozen {
		t.mu.Unlock()
		return
	}
	changed := phase != t.phase
	if changed {
		if t.phase != "" {
			t.phaseGauge.WithLabelValues(t.phase).Set(0)
		}
		if phase == status.PhaseFailed {
			t.before = t.phase
		}
		t.phase, t.since = phase, t.now()
		t.phaseGauge.WithLabelValues(phase).Set(1)
		t.enteredGauge.WithLabelValues(phase).Set(float64(t.since.UnixNano()) / 1e9)
		t.history.Record(phase, t.since)
		if phase != status.PhaseFailed {
			t.lastErr = ""
		}
	}
	t.detail = detail
	since, hook := t.since, t.onChange
	t.mu.Unlock()
	if changed {
		t.log.Info("phase", zap.String("phase", phase), zap.String("detail", detail))
		if hook != nil {
			hook(phase, since)
		}
	}
	t.sendStatus()
}

// setDetail changes the words shown with the current phase.
func (t *tracker) setDetail(detail string) {
	t.mu.Lock()
	same := detail == t.detail
	t.detail = detail
	t.mu.Unlock()
	if !same {
		t.sendStatus()
	}
}

// fail records err in stage and enters the failed phase.
func (t *tracker) fail(stage string, err error, permanent bool) {
	t.errorsTotal.WithLabelValues(stage).Inc()
	t.mu.Lock()
	t.lastErr = err.Error()
	t.mu.Unlock()
	if permanent {
		t.log.Error("permanent failure: fix the cause, then restart the service", zap.String("stage", stage), zap.Error(err))
	} else {
		t.log.Warn("failed; will retry", zap.String("stage", stage), zap.Error(err))
	}
	t.set(status.PhaseFailed, stage+": "+err.Error())
	if permanent {
		t.mu.Lock()
		t.frozen = true
		t.mu.Unlock()
	}
}

func (t *tracker) get() (phase string, since time.Time, lastErr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.phase, t.since, t.lastErr
}

// getDetail is the words shown with the current phase.
func (t *tracker) getDetail() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.detail
}

// lastPhase is the phase the host was in before the failure shown now (the
// current phase when none is shown).
func (t *tracker) lastPhase() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.phase == status.PhaseFailed {
		return t.before
	}
	return t.phase
}

func (t *tracker) sendStatus() {
	t.mu.Lock()
	line := t.phase
	if t.detail != "" {
		line += ": " + t.detail
	}
	t.mu.Unlock()
	t.notify("STATUS=" + line)
}
