package timeline

import (
	"strings"
	"testing"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

var t0 = time.Date(2026, 12, 1, 22, 0, 0, 0, time.UTC)

func serverWalk() []status.Transition {
	var out []status.Transition
	at := t0
	for _, p := range []string{status.PhasePreflight, status.PhaseInstalling, status.PhaseDiscovering, status.PhaseElecting,
		status.PhaseWaitingCluster, status.PhaseWaitingJoinSlot, status.PhaseStarting, status.PhaseReady} {
		out = append(out, status.Transition{Phase: p, At: at})
		at = at.Add(1300 * time.Millisecond)
	}
	return out
}

func TestRecorderKeepsTheNewest(t *testing.T) {
	r := NewRecorder(4)
	for i := 0; i < 10; i++ {
		r.Record(codes[1+i%10], t0.Add(time.Duration(i)*time.Second))
	}
	got := r.Entries()
	if len(got) != 4 {
		t.Fatalf("kept %d entries, want 4", len(got))
	}
	if !got[0].At.Equal(t0.Add(6*time.Second)) || !got[3].At.Equal(t0.Add(9*time.Second)) {
		t.Fatalf("kept %v, want the last four", got)
	}
	got[0].Phase = "changed"
	if r.Entries()[0].Phase == "changed" {
		t.Fatal("Entries shares its slice with the recorder")
	}
}

func TestRoundTrip(t *testing.T) {
	in := serverWalk()
	b, err := Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 30 {
		t.Errorf("a server's walk takes %d bytes; the encoding should need about 3 per transition", len(b))
	}
	out, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("decoded %d transitions, want %d", len(out), len(in))
	}
	for i := range in {
		if out[i].Phase != in[i].Phase || !out[i].At.Equal(in[i].At) {
			t.Errorf("transition %d: got %v, want %v", i, out[i], in[i])
		}
	}
}

func TestEncodeKeepsNewestWithinBudget(t *testing.T) {
	// A host that failed and retried for a long time: many transitions
	// hours apart, far more than fit.
	var in []status.Transition
	for i := 0; i < DefaultDepth; i++ {
		p := status.PhaseFailed
		if i%2 == 0 {
			p = status.PhaseStarting
		}
		in = append(in, status.Transition{Phase: p, At: t0.Add(time.Duration(i) * 3 * time.Hour)})
	}
	b, err := Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > MaxEncodedLen {
		t.Fatalf("encoded %d bytes, over MaxEncodedLen %d", len(b), MaxEncodedLen)
	}
	out, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 || len(out) == len(in) {
		t.Fatalf("kept %d of %d transitions; want the newest that fit", len(out), len(in))
	}
	last := out[len(out)-1]
	if last.Phase != in[len(in)-1].Phase || !last.At.Equal(in[len(in)-1].At) {
		t.Fatalf("newest kept is %v, want %v", last, in[len(in)-1])
	}
}

func TestEncodeClockStepBack(t *testing.T) {
	in := []status.Transition{{Phase: status.PhasePreflight, At: t0}, {Phase: status.PhaseInstalling, At: t0.Add(-time.Minute)}}
	b, err := Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !out[1].At.Equal(t0) {
		t.Fatalf("a step back reads as %v, want the time before it", out[1].At)
	}
}

func TestEncodeRejects(t *testing.T) {
	for _, tc := range []struct {
		in   []status.Transition
		want string
	}{
		{[]status.Transition{{Phase: "upgrading", At: t0}}, `phase "upgrading" has no wire code`},
		{[]status.Transition{{Phase: status.PhaseReady, At: time.Date(1969, 1, 1, 0, 0, 0, 0, time.UTC)}}, "out of range"},
	} {
		if _, err := Encode(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Encode(%v) = %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
	if b, err := Encode(nil); err != nil || b != nil {
		t.Errorf("Encode(nil) = %v, %v; want nothing", b, err)
	}
}

func TestDecodeRejects(t *testing.T) {
	good, _ := Encode(serverWalk())
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"other version", append([]byte{2}, good[1:]...), "format 2"},
		{"no start time", []byte{1}, "bad start time"},
		{"no transitions", []byte{1, 5}, "without transitions"},
		{"truncated delta", []byte{1, 5, 1}, "truncated"},
		{"truncated varint", []byte{1, 5, 1, 0x80}, "truncated"},
		{"too long", make([]byte, MaxEncodedLen+1), "limit"},
		{"too many", append([]byte{1, 5}, make([]byte, 2*(DefaultDepth+1))...), "more than"},
		{"start out of range", []byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 1, 0}, "bad start time"},
	} {
		if _, err := Decode(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Decode = %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
	if out, err := Decode(nil); err != nil || out != nil {
		t.Errorf("Decode(nil) = %v, %v; want an empty timeline", out, err)
	}
}

func TestDecodeUnknownPhase(t *testing.T) {
	out, err := Decode([]byte{1, 5, 200, 0, 9, 3})
	if err != nil {
		t.Fatal(err)
	}
	if out[0].Phase != PhaseUnknown || out[1].Phase != status.PhaseReady {
		t.Fatalf("got %v, want unknown then ready", out)
	}
}

// Every phase has a code, so the tracker never meets one Encode refuses.
func TestEveryPhaseHasACode(t *testing.T) {
	for _, p := range status.Phases {
		if _, ok := codeOf(p); !ok {
			t.Errorf("phase %s has no wire code", p)
		}
	}
}

// FuzzDecode: whatever a peer gossips, Decode must not panic, must stay
// within its bounds, and what it accepts must survive Encode and Decode.
func FuzzDecode(f *testing.F) {
	good, _ := Encode(serverWalk())
	f.Add(good)
	f.Add([]byte{1, 5, 200, 0, 9, 3})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := Decode(data)
		if err != nil {
			return
		}
		if len(out) > DefaultDepth {
			t.Fatalf("decoded %d transitions", len(out))
		}
		b, err := Encode(out)
		if err != nil {
			t.Fatalf("re-encode %v: %v", out, err)
		}
		again, err := Decode(b)
		if err != nil {
			t.Fatalf("decode of re-encoded: %v", err)
		}
		if len(again) != len(out) {
			t.Fatalf("round trip kept %d of %d", len(again), len(out))
		}
		for i := range out {
			if again[i] != out[i] && !again[i].At.Equal(out[i].At) {
				t.Fatalf("transition %d: %v became %v", i, out[i], again[i])
			}
		}
	})
}
