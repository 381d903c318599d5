package clock

import (
	"context"
	"testing"
	"time"
)

func TestFakeSleepWakesOnAdvance(t *testing.T) {
	f := NewFake(time.Unix(1000, 0))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- f.Sleep(ctx, 10*time.Second) }()
	if err := f.WaitSleepers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	f.Advance(9 * time.Second)
	select {
	case <-done:
		t.Fatal("woke before its time")
	default:
	}
	if f.Sleepers() != 1 {
		t.Fatalf("sleepers = %d, want 1", f.Sleepers())
	}
	f.Advance(time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := f.Now(); !got.Equal(time.Unix(1010, 0)) {
		t.Fatalf("now = %v", got)
	}
}

func TestFakeSleepCancelled(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Sleep(ctx, time.Hour) }()
	if err := f.WaitSleepers(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("err = %v, want Canceled", err)
	}
	if f.Sleepers() != 0 {
		t.Fatalf("a cancelled sleeper stayed: %d", f.Sleepers())
	}
}

func TestSystemSleepHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := System.Sleep(ctx, time.Hour); err != context.Canceled {
		t.Fatalf("err = %v", err)
	}
	if Or(nil) != System {
		t.Fatal("Or(nil) is not System")
	}
}
