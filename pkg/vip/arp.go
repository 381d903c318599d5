package vip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/mdlayher/arp"
)

// DefaultARPWindow bounds ProbeARP when its context has no earlier deadline.
const DefaultARPWindow = 1500 * time.Millisecond

// arpRequests is how many requests ProbeARP spreads over its window: one
// lost request or a slow neighbour must not hide a conflict.
const arpRequests = 3

// ErrVIPConflict is wrapped by the error reported when another host already
// answers ARP for the VIP. It is permanent: retrying will not help, someone
// must free the address or the config must name another VIP.
var ErrVIPConflict = errors.New("vip: address already in use")

// ConflictError names the VIP and the MAC address that answered for it.
type ConflictError struct {
	VIP       string
	Interface string
	MAC       net.HardwareAddr
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("vip: %s is already answered for on %s by MAC %s: another host holds the VIP; free it or choose another vip",
		e.VIP, e.Interface, e.MAC)
}

// Unwrap makes errors.Is(err, ErrVIPConflict) true.
func (e *ConflictError) Unwrap() error { return ErrVIPConflict }

// Permanent reports that retrying cannot clear the conflict.
func (e *ConflictError) Permanent() bool { return true }

// ProbeARP asks on iface who has vip and returns the MAC of the first other
// host that answers (or announces the address), or nil when nobody does
// within the window: the context's deadline, or DefaultARPWindow when that
// comes first. It sends a few requests spread over the window. Opening the
// raw socket needs root or CAP_NET_RAW; without it the error wraps
// os.ErrPermission.
func ProbeARP(ctx context.Context, iface, vip string) (net.HardwareAddr, error) {
	addr, err := ParseVIP(vip)
	if err != nil {
		return nil, err
	}
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("vip: ARP probe on %s: %w", iface, err)
	}
	if ifi.Flags&net.FlagLoopback != 0 || len(ifi.HardwareAddr) == 0 {
		return nil, fmt.Errorf("vip: ARP probe on %s: the interface has no link-layer address to probe from", iface)
	}
	client, err := arp.Dial(ifi)
	if err != nil {
		return nil, fmt.Errorf("vip: ARP probe on %s: %w", iface, err)
	}
	defer client.Close()

	start := time.Now()
	end := start.Add(DefaultARPWindow)
	if d, ok := ctx.Deadline(); ok && d.Before(end) {
		end = d
	}
	interval := end.Sub(start) / arpRequests
	// Cancellation interrupts a blocked read by moving its deadline into the past.
	stop := context.AfterFunc(ctx, func() { _ = client.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	nextSend := start
	for {
		now := time.Now()
		if !now.Before(end) {
			return nil, nil
		}
		if !now.Before(nextSend) {
			if err := client.Request(addr); err != nil {
				return nil, fmt.Errorf("vip: ARP probe on %s: send request for %s: %w", iface, vip, err)
			}
			nextSend = now.Add(interval)
		}
		if err := client.SetReadDeadline(minTime(nextSend, end)); err != nil {
			return nil, fmt.Errorf("vip: ARP probe on %s: %w", iface, err)
		}
		// Checked after setting the deadline: a cancellation from here on
		// resets it into the past, one from before is seen now.
		if err := ctx.Err(); err != nil {
			return nil, arpContextResult(iface, err)
		}
		pkt, _, err := client.Read()
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return nil, arpContextResult(iface, ctxErr)
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			return nil, fmt.Errorf("vip: ARP probe on %s: read: %w", iface, err)
		}
		// A reply to us, or any request or announcement sent from the VIP,
		// shows that another host uses it.
		if pkt.SenderIP == addr && !bytes.Equal(pkt.SenderHardwareAddr, ifi.HardwareAddr) {
			return pkt.SenderHardwareAddr, nil
		}
	}
}

// arpContextResult maps the end of the caller's context: its deadline is the
// probe window ending with nobody answering, a cancellation is an error.
func arpContextResult(iface string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return fmt.Errorf("vip: ARP probe on %s: %w", iface, err)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
