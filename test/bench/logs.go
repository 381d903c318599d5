package main

import (
	"bufio"
	"encoding/json"
	"os"
	"sort"
	"strings"
	"time"
)

// stalls are the gaps, read from the daemons' logs, between the phase
// machine deciding something and doing it: "starting" entered → RKE2
// launched, and RKE2 ready (READY=1) → "ready" entered. Neither gap holds
// any simulated delay; both are the product's own latency.
type stalls struct {
	Hosts    int
	StartP50 float64
	StartMax float64
	ReadyP50 float64
	ReadyMax float64
	// Raft leaders that stepped down for lack of quorum contact, and raft
	// elections started, over every server of the run.
	StepDowns, Elections int
	StartSamples         []float64 `json:"-"`
	ReadySamples         []float64 `json:"-"`
}

type hostEvents struct {
	starting, launched, rke2Ready, ready time.Time
}

// readStalls parses zap console lines ("time\tLEVEL\tlogger\tmessage\t{fields}")
// from files; a line's host is its "host" field, else the file's host.
func readStalls(files map[string]string) stalls {
	ev := map[string]*hostEvents{}
	var stepDowns, elections int
	for fileHost, path := range files {
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			parts := strings.SplitN(sc.Text(), "\t", 5)
			if len(parts) < 4 {
				continue
			}
			ts, err := time.Parse("2006-01-02T15:04:05.000Z0700", parts[0])
			if err != nil {
				continue
			}
			msg := parts[3]
			switch msg {
			case "failed to contact quorum of nodes, stepping down":
				stepDowns++
			case "entering candidate state":
				elections++
			}
			var fields map[string]any
			if len(parts) == 5 {
				json.Unmarshal([]byte(parts[4]), &fields)
			}
			h := fileHost
			if v, ok := fields["host"].(string); ok {
				h = v
			}
			e := ev[h]
			if e == nil {
				e = &hostEvents{}
				ev[h] = e
			}
			switch {
			case msg == "phase" && fields["phase"] == "starting":
				e.starting = ts
			case msg == "rke2 started" && e.launched.IsZero():
				e.launched = ts
			case msg == "rke2 is ready" && e.rke2Ready.IsZero():
				e.rke2Ready = ts
			case msg == "phase" && fields["phase"] == "ready" && e.ready.IsZero():
				e.ready = ts
			}
		}
		f.Close()
	}
	s := stalls{StepDowns: stepDowns, Elections: elections}
	for _, e := range ev {
		if e.starting.IsZero() || e.launched.IsZero() || e.rke2Ready.IsZero() || e.ready.IsZero() {
			continue
		}
		s.Hosts++
		s.StartSamples = append(s.StartSamples, e.launched.Sub(e.starting).Seconds())
		s.ReadySamples = append(s.ReadySamples, e.ready.Sub(e.rke2Ready).Seconds())
	}
	s.StartP50, s.StartMax = medianMax(s.StartSamples)
	s.ReadyP50, s.ReadyMax = medianMax(s.ReadySamples)
	return s
}

func medianMax(v []float64) (float64, float64) {
	if len(v) == 0 {
		return 0, 0
	}
	v = append([]float64(nil), v...)
	sort.Float64s(v)
	return v[len(v)/2], v[len(v)-1]
}
