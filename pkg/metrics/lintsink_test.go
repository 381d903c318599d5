package metrics

import (
	"reflect"
	"testing"

	gometrics "github.com/hashicorp/go-metrics/compat"
)

func TestSnake(t *testing.T) {
	for in, want := range map[string]string{
		"appendEntries": "append_entries", "getRPCType": "get_rpc_type", "probeNode": "probe_node",
		"logsPerBatch": "logs_per_batch", "udp": "udp", "rke2_hanode": "rke2_hanode", "RPC": "rpc", "rpcType": "rpc_type",
	} {
		if got := snake(in); got != want {
			t.Errorf("snake(%q) = %q, want %q", in, got, want)
		}
	}
}

type recordSink struct{ keys [][]string }

func (r *recordSink) SetGauge(key []string, val float32) { r.keys = append(r.keys, key) }
func (r *recordSink) SetGaugeWithLabels(key []string, val float32, labels []gometrics.Label) {
	r.keys = append(r.keys, append(key, labels[0].Name))
}
func (r *recordSink) EmitKey(key []string, val float32)     { r.keys = append(r.keys, key) }
func (r *recordSink) IncrCounter(key []string, val float32) { r.keys = append(r.keys, key) }
func (r *recordSink) IncrCounterWithLabels(key []string, val float32, labels []gometrics.Label) {
	r.keys = append(r.keys, append(key, labels[0].Name))
}
func (r *recordSink) AddSample(key []string, val float32) { r.keys = append(r.keys, key) }
func (r *recordSink) AddSampleWithLabels(key []string, val float32, labels []gometrics.Label) {
	r.keys = append(r.keys, append(key, labels[0].Name))
}

func TestLintSinkRenames(t *testing.T) {
	rec := &recordSink{}
	s := lintSink{next: rec}
	s.IncrCounter([]string{"rke2_hanode", "memberlist", "udp", "sent"}, 1)
	s.IncrCounter([]string{"rke2_hanode", "x", "errors_total"}, 1)
	s.AddSampleWithLabels([]string{"rke2_hanode", "raft", "net", "rpcDecode"}, 1, []gometrics.Label{{Name: "rpcType", Value: "AppendEntries"}})
	s.SetGauge([]string{"rke2_hanode", "raft", "boltdb", "writeCapacity"}, 1)
	want := [][]string{
		{"rke2_hanode", "memberlist", "udp", "sent", "total"},
		{"rke2_hanode", "x", "errors_total"},
		{"rke2_hanode", "raft", "net", "rpc_decode", "rpc_type"},
		{"rke2_hanode", "raft", "boltdb", "write_capacity"},
	}
	if !reflect.DeepEqual(rec.keys, want) {
		t.Fatalf("keys %v, want %v", rec.keys, want)
	}
}
