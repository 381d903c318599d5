package rke2sim

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestStateJSONHasExactlyTheContractKeys(t *testing.T) {
	dir := t.TempDir()
	if err := WriteState(dir, Evidence{Mode: ModeClusterInit, CAHash: "ab"}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(StatePath(dir))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if got := strings.Join(keys, ","); got != "ca_hash,etcd,evictions,join_finished,join_started,joined_via,mode,rejections,removed,resets,skew,version" {
		t.Fatalf("keys %s", got)
	}
	if r, ok := m["rejections"].([]any); !ok || len(r) != 0 {
		t.Fatalf("rejections %#v, want []", m["rejections"])
	}
}

func TestSupervisorRateLimit(t *testing.T) {
	n := &node{}
	release := make(chan struct{})
	var entered sync.WaitGroup
	entered.Add(10)
	h := n.limit(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered.Done()
		<-release
	}))
	var done sync.WaitGroup
	for range 10 {
		done.Add(1)
		go func() {
			defer done.Done()
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/v1-rke2/sim/join", nil))
		}()
	}
	entered.Wait()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1-rke2/sim/join", nil))
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("11th write in flight: %d, want 429", rec.Code)
	}
	close(release)
	done.Wait()
	entered.Add(1)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1-rke2/sim/join", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("after the burst: %d", rec.Code)
	}
}

func TestLoadSettings(t *testing.T) {
	env := map[string]string{"RKE2SIM_JOIN_DELAY": "2s", "RKE2SIM_SUPERVISOR_PORT": "19345", "RKE2SIM_VERSION": "v1.2.3+rke2r9", "RKE2SIM_WORKLOAD_PODS": "4"}
	s, err := LoadSettings(func(k string) string { return env[k] })
	if err != nil || s.JoinDelay != 2*time.Second || s.SupervisorPort != 19345 || s.APIPort != 6443 || s.Version != "v1.2.3+rke2r9" || s.StartDelay != 300*time.Millisecond ||
		s.WorkloadPods != 4 || s.PDBRefusals != 0 {
		t.Fatalf("%+v %v", s, err)
	}
	for k, v := range map[string]string{"RKE2SIM_START_DELAY": "3", "RKE2SIM_API_PORT": "70000", "RKE2SIM_AGENT_DELAY": "-1s",
		"RKE2SIM_WORKLOAD_PODS": "-1", "RKE2SIM_PDB_REFUSALS": "two"} {
		if _, err := LoadSettings(func(name string) string {
			if name == k {
				return v
			}
			return ""
		}); err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%s: err %v, want one naming the variable", k, v, err)
		}
	}
}
