package rke2sim

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/vishvananda/netlink"
)

// hostNet is vipNet on the real host: netlink for the address, gratuitous
// ARP for the announcement.
type hostNet struct{}

var _ vipNet = hostNet{}

func vipAddr(ip net.IP) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: ip.To4(), Mask: net.CIDRMask(32, 32)}}
}

func (hostNet) HasAddr(ifname string, ip net.IP) (bool, error) {
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		return false, fmt.Errorf("vip: %s: %w", ifname, err)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return false, fmt.Errorf("vip: %s: %w", ifname, err)
	}
	for _, a := range addrs {
		if a.IP.Equal(ip) {
			return true, nil
		}
	}
	return false, nil
}

func (hostNet) AddAddr(ifname string, ip net.IP) error {
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("vip: %s: %w", ifname, err)
	}
	if err := netlink.AddrAdd(link, vipAddr(ip)); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("vip: add %s/32 to %s: %w", ip, ifname, err)
	}
	return nil
}

func (hostNet) DelAddr(ifname string, ip net.IP) error {
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("vip: %s: %w", ifname, err)
	}
	if err := netlink.AddrDel(link, vipAddr(ip)); err != nil {
		return fmt.Errorf("vip: remove %s/32 from %s: %w", ip, ifname, err)
	}
	return nil
}

func dialARP(ifname string) (*arp.Client, *net.Interface, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, nil, fmt.Errorf("vip: %s: %w", ifname, err)
	}
	c, err := arp.Dial(ifi)
	if err != nil {
		return nil, nil, fmt.Errorf("vip: arp on %s: %w", ifname, err)
	}
	return c, ifi, nil
}

// Announce sends a gratuitous ARP request and reply for ip (sender = target = VIP).
func (hostNet) Announce(ifname string, ip net.IP) error {
	c, ifi, err := dialARP(ifname)
	if err != nil {
		return err
	}
	defer c.Close()
	vip, ok := netip.AddrFromSlice(ip.To4())
	if !ok {
		return fmt.Errorf("vip: %s is not IPv4", ip)
	}
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	for _, op := range []arp.Operation{arp.OperationRequest, arp.OperationReply} {
		p, err := arp.NewPacket(op, ifi.HardwareAddr, vip, ethernet.Broadcast, vip)
		if err != nil {
			return fmt.Errorf("vip: gratuitous ARP: %w", err)
		}
		if err := c.WriteTo(p, ethernet.Broadcast); err != nil {
			return fmt.Errorf("vip: gratuitous ARP on %s: %w", ifname, err)
		}
	}
	return nil
}
