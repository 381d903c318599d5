package metrics

import (
	"strings"
	"unicode"

	gometrics "github.com/hashicorp/go-metrics/compat"
)

// lintSink renames memberlist's and raft's go-metrics keys to Prometheus'
// conventions before the Prometheus sink sees them, so that `promtool check
// metrics` passes on the daemon's /metrics: camelCase parts and label names
// become snake_case (appendEntries → append_entries, getRPCType →
// get_rpc_type) and counters end in _total (udp_sent → udp_sent_total).
type lintSink struct {
	next gometrics.MetricSink
}

var _ gometrics.MetricSink = lintSink{}

func (s lintSink) SetGauge(key []string, val float32) { s.next.SetGauge(snakeKey(key), val) }
func (s lintSink) SetGaugeWithLabels(key []string, val float32, labels []gometrics.Label) {
	s.next.SetGaugeWithLabels(snakeKey(key), val, snakeLabels(labels))
}
func (s lintSink) EmitKey(key []string, val float32) { s.next.EmitKey(snakeKey(key), val) }
func (s lintSink) IncrCounter(key []string, val float32) {
	s.next.IncrCounter(counterKey(key), val)
}
func (s lintSink) IncrCounterWithLabels(key []string, val float32, labels []gometrics.Label) {
	s.next.IncrCounterWithLabels(counterKey(key), val, snakeLabels(labels))
}
func (s lintSink) AddSample(key []string, val float32) { s.next.AddSample(snakeKey(key), val) }
func (s lintSink) AddSampleWithLabels(key []string, val float32, labels []gometrics.Label) {
	s.next.AddSampleWithLabels(snakeKey(key), val, snakeLabels(labels))
}

func snakeKey(key []string) []string {
	out := make([]string, len(key))
	for i, k := range key {
		out[i] = snake(k)
	}
	return out
}

func counterKey(key []string) []string {
	out := snakeKey(key)
	if len(out) > 0 && out[len(out)-1] != "total" && !strings.HasSuffix(out[len(out)-1], "_total") {
		out = append(out, "total")
	}
	return out
}

func snakeLabels(labels []gometrics.Label) []gometrics.Label {
	if len(labels) == 0 {
		return labels
	}
	out := make([]gometrics.Label, len(labels))
	for i, l := range labels {
		out[i] = gometrics.Label{Name: snake(l.Name), Value: l.Value}
	}
	return out
}

// snake turns camelCase into snake_case; a run of capitals is one word
// (RPCType → rpc_type).
func snake(s string) string {
	rs := []rune(s)
	var b strings.Builder
	for i, r := range rs {
		if unicode.IsUpper(r) {
			prevLower := i > 0 && (unicode.IsLower(rs[i-1]) || unicode.IsDigit(rs[i-1]))
			nextLower := i > 0 && i+1 < len(rs) && unicode.IsUpper(rs[i-1]) && unicode.IsLower(rs[i+1])
			if prevLower || nextLower {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(r))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
