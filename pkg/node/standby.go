package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/election"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

// errSlotWait ends a try at the join slot that waited past slotDeadline
// while admitted.
var errSlotWait = errors.New("slot wait past its deadline")

// waitJoinSlot waits for this server's join slot. While the leader does not
// admit it (it would make the etcd voters an even count, or max-servers is
// reached) it shows standby with the reason and waits without a deadline:
// a second server arriving or a member removed admits it, whenever that is.
// Once admitted it shows waiting-join-slot, and that wait has slotDeadline.
// It keeps asking for the slot throughout, which is what makes the leader
// count it as a candidate. joined is true when raft had already recorded
// this server's join.
func (n *Node) waitJoinSlot(ctx context.Context) (joined bool, err error) {
	if reason, ok := n.coord.Standby(); ok {
		// The reason first: status never shows standby without it.
		n.setStandby(reason)
		n.t.set(status.PhaseStandby, "waiting: "+reason)
	} else {
		n.t.set(status.PhaseWaitingJoinSlot, n.slotDetail())
	}
	err = n.retry(ctx, "join-slot", func(ctx context.Context) error {
		actx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			n.watchStandby(actx, cancel)
		}()
		_, err := n.coord.AcquireJoinSlot(actx)
		cancel(nil)
		<-watched
		// The reason stays while a retry comes (the phase stays too).
		if errors.Is(err, election.ErrJoined) {
			joined = true
			return nil
		}
		if err != nil && ctx.Err() == nil && errors.Is(context.Cause(actx), errSlotWait) {
			return fmt.Errorf("still waiting for a join slot after %s admitted", slotDeadline)
		}
		return err
	})
	n.setStandby("")
	return joined, err
}

// watchStandby shows standby or waiting-join-slot as the leader's admission
// says, until ctx ends, and ends the wait (cancel) once admitted for longer
// than slotDeadline.
func (n *Node) watchStandby(ctx context.Context, cancel context.CancelCauseFunc) {
	ch, unsubscribe := n.members.Subscribe()
	defer unsubscribe()
	var admitted time.Time
	for {
		if reason, ok := n.coord.Standby(); ok {
			admitted = time.Time{}
			n.setStandby(reason)
			n.showPhase(status.PhaseStandby, "waiting: "+reason)
		} else {
			now := n.clk.Now()
			if admitted.IsZero() {
				admitted = now
			}
			n.setStandby("")
			n.showPhase(status.PhaseWaitingJoinSlot, n.slotDetail())
			if now.Sub(admitted) >= slotDeadline {
				cancel(errSlotWait)
				return
			}
		}
		if n.waitChange(ctx, ch, time.Second) != nil {
			return
		}
	}
}

// showPhase enters phase with detail, or changes only the detail when the
// host is in it already.
func (n *Node) showPhase(phase, detail string) {
	if p, _, _ := n.t.get(); p == phase {
		n.t.setDetail(detail)
		return
	}
	n.t.set(phase, detail)
}

// setStandby records why this server waits in standby ("" when it does
// not), for status.
func (n *Node) setStandby(reason string) {
	n.mu.Lock()
	n.standby = reason
	n.mu.Unlock()
}
