package vip

import (
	"context"
	"errors"
	"fmt"
	"github.com/rke2-hanode/rke2-hanode/pkg/check"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Status and Check are the shared preflight shapes (pkg/check).
type (
	Status = check.Status
	Check  = check.Check
)

// Check outcomes.
const (
	StatusOK   = check.OK
	StatusWarn = check.Warn
	StatusFail = check.Fail
)

// Names of the checks Preflight reports.
const (
	CheckVIP       = "vip-address"
	CheckInterface = "vip-interface"
	CheckSubnet    = "vip-subnet"
	CheckARP       = "vip-arp"
)

// Interfaces looks up network interfaces; the system's unless a test
// supplies a fake.
type Interfaces interface {
	InterfaceByName(name string) (*net.Interface, error)
	Addrs(ifi *net.Interface) ([]net.Addr, error)
}

// ARPProber is the signature of ProbeARP, injectable for tests.
type ARPProber func(ctx context.Context, iface, vip string) (net.HardwareAddr, error)

// PreflightOptions are the inputs of Preflight.
type PreflightOptions struct {
	Interface string
	VIP       string
	// CheckARP asks whether another host already answers for the VIP. Set
	// it before the bootstrap only: once the cluster runs, kube-vip on
	// another server rightly answers for it.
	CheckARP bool
	// ARPTimeout bounds the ARP probe; default DefaultARPWindow.
	ARPTimeout time.Duration

	Logger     *zap.Logger // nil: no logging
	Interfaces Interfaces  // nil: the system's
	ProbeARP   ARPProber   // nil: ProbeARP
}

type systemInterfaces struct{}

func (systemInterfaces) InterfaceByName(name string) (*net.Interface, error) {
	return net.InterfaceByName(name)
}

func (systemInterfaces) Addrs(ifi *net.Interface) ([]net.Addr, error) { return ifi.Addrs() }

var loopbackNet = netip.MustParsePrefix("127.0.0.0/8")

// Preflight checks that the VIP can live on the interface. Checks that
// depend on a failed one are left out, so every failure is reported once,
// at its cause. The ARP probe, when asked for, waits at most ARPTimeout.
func Preflight(ctx context.Context, opts PreflightOptions) []Check {
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	log = log.Named("vip")
	ifs := opts.Interfaces
	if ifs == nil {
		ifs = systemInterfaces{}
	}

	var checks []Check
	report := func(c Check) {
		checks = append(checks, c)
		log.Debug("preflight check", zap.String("check", c.Name), zap.String("status", string(c.Status)), zap.String("detail", c.Detail))
	}
	fail := func(name string, err error) {
		report(Check{Name: name, Status: StatusFail, Detail: err.Error(), Err: err})
	}

	vip, vipErr := ParseVIP(opts.VIP)
	if vipErr != nil {
		fail(CheckVIP, vipErr)
	} else {
		report(Check{Name: CheckVIP, Status: StatusOK, Detail: vip.String() + " is a valid IPv4 VIP"})
	}

	if err := ValidateInterfaceName(opts.Interface); err != nil {
		fail(CheckInterface, err)
		return checks
	}
	ifi, err := ifs.InterfaceByName(opts.Interface)
	if err != nil {
		fail(CheckInterface, fmt.Errorf("vip: interface %q not found on this host: %w", opts.Interface, err))
		return checks
	}
	loopback := ifi.Flags&net.FlagLoopback != 0
	switch {
	case ifi.Flags&net.FlagUp == 0:
		fail(CheckInterface, fmt.Errorf("vip: interface %s is down: bring it up (ip link set %s up)", ifi.Name, ifi.Name))
		return checks
	case !loopback && ifi.Flags&net.FlagRunning == 0:
		report(Check{Name: CheckInterface, Status: StatusWarn, Detail: fmt.Sprintf("interface %s is up but has no carrier", ifi.Name)})
	default:
		report(Check{Name: CheckInterface, Status: StatusOK, Detail: fmt.Sprintf("interface %s is up", ifi.Name)})
	}
	if vipErr != nil {
		return checks
	}

	addrs, err := ifs.Addrs(ifi)
	if err != nil {
		fail(CheckSubnet, fmt.Errorf("vip: addresses of %s: %w", ifi.Name, err))
		return checks
	}
	held, subnetCheck := checkSubnet(ifi.Name, loopback, vip, addrs)
	report(subnetCheck)
	if subnetCheck.Status == StatusFail || !opts.CheckARP {
		return checks
	}

	switch {
	case loopback:
		report(Check{Name: CheckARP, Status: StatusOK, Detail: fmt.Sprintf("skipped: no ARP on %s", ifi.Name)})
	case held:
		report(Check{Name: CheckARP, Status: StatusWarn, Detail: fmt.Sprintf(
			"skipped: %s is already assigned to %s on this host (left over from an earlier run?)", vip, ifi.Name)})
	default:
		report(probeForConflict(ctx, opts, ifi.Name, vip, log))
	}
	return checks
}

// checkSubnet reports whether vip lies in a subnet of the interface's
// addresses, and whether the host already holds vip itself (as kube-vip adds
// it: a /32 beside the interface's own address).
func checkSubnet(name string, loopback bool, vip netip.Addr, addrs []net.Addr) (held bool, c Check) {
	c.Name = CheckSubnet
	if loopback && loopbackNet.Contains(vip) {
		c.Status, c.Detail = StatusOK, fmt.Sprintf("%s is in %s on %s", vip, loopbackNet, name)
		return false, c
	}
	var own []string
	var inside netip.Prefix
	for _, a := range addrs {
		ipnet, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		p, ok := prefixOf(ipnet)
		if !ok || !p.Addr().Is4() {
			continue
		}
		own = append(own, p.String())
		if !p.Contains(vip) {
			continue
		}
		if p.Addr() == vip {
			if p.Bits() == 32 {
				held = true
				continue
			}
			err := fmt.Errorf("vip: %s is this host's own address on %s (%s): the VIP must be a free address of that subnet", vip, name, p)
			return false, Check{Name: CheckSubnet, Status: StatusFail, Detail: err.Error(), Err: err}
		}
		if !inside.IsValid() {
			inside = p
		}
	}
	if !inside.IsValid() {
		err := fmt.Errorf("vip: %s is not inside any IPv4 subnet of %s (%s): kube-vip's ARP mode needs the VIP in the interface's L2 subnet",
			vip, name, orNone(own))
		return held, Check{Name: CheckSubnet, Status: StatusFail, Detail: err.Error(), Err: err}
	}
	if inside.Bits() <= 30 {
		network := inside.Masked().Addr()
		if vip == network || vip == lastAddr(inside) {
			kind := "network"
			if vip != network {
				kind = "broadcast"
			}
			err := fmt.Errorf("vip: %s is the %s address of %s on %s: choose a host address", vip, kind, inside.Masked(), name)
			return held, Check{Name: CheckSubnet, Status: StatusFail, Detail: err.Error(), Err: err}
		}
	}
	c.Status, c.Detail = StatusOK, fmt.Sprintf("%s is in %s on %s", vip, inside.Masked(), name)
	return held, c
}

func prefixOf(ipnet *net.IPNet) (netip.Prefix, bool) {
	addr, ok := netip.AddrFromSlice(ipnet.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := ipnet.Mask.Size()
	return netip.PrefixFrom(addr.Unmap(), ones), true
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	for i := 3; i >= 0; i-- {
		a[i] |= byte(host >> (8 * (3 - i)))
	}
	return netip.AddrFrom4(a)
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "no IPv4 addresses"
	}
	return strings.Join(s, ", ")
}

func probeForConflict(ctx context.Context, opts PreflightOptions, iface string, vip netip.Addr, log *zap.Logger) Check {
	probe := opts.ProbeARP
	if probe == nil {
		probe = ProbeARP
	}
	timeout := opts.ARPTimeout
	if timeout <= 0 {
		timeout = DefaultARPWindow
	}
	probeCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	mac, err := probe(probeCtx, iface, vip.String())
	switch {
	case errors.Is(err, os.ErrPermission):
		return Check{Name: CheckARP, Status: StatusWarn, Err: err,
			Detail: fmt.Sprintf("skipped: probing ARP for %s needs root or CAP_NET_RAW (%v)", vip, err)}
	case err != nil:
		return Check{Name: CheckARP, Status: StatusWarn, Err: err,
			Detail: fmt.Sprintf("could not probe ARP for %s: %v", vip, err)}
	case mac != nil:
		conflict := &ConflictError{VIP: vip.String(), Interface: iface, MAC: mac}
		log.Error("VIP already in use by another host", zap.String("vip", vip.String()),
			zap.String("interface", iface), zap.Stringer("mac", mac))
		return Check{Name: CheckARP, Status: StatusFail, Detail: conflict.Error(), Err: conflict}
	}
	return Check{Name: CheckARP, Status: StatusOK, Detail: fmt.Sprintf("no host answered ARP for %s on %s within %s", vip, iface, timeout)}
}

// Failed joins the errors of the failed checks, nil when none failed.
func Failed(checks []Check) error {
	var errs []error
	for _, c := range checks {
		if c.Status == StatusFail {
			err := c.Err
			if err == nil {
				err = fmt.Errorf("vip: %s: %s", c.Name, c.Detail)
			}
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
