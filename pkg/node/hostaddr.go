package node

import (
	"fmt"
	"net"

	"github.com/rke2-hanode/rke2-hanode/pkg/config"
)

// HostAddress is the address this host advertises (advertise-address, or
// the first IPv4 address of interface other than the VIP) and the
// interface's MAC.
func HostAddress(c *config.Config) (string, net.HardwareAddr, error) {
	ifi, ifErr := net.InterfaceByName(c.Interface)
	var mac net.HardwareAddr
	if ifErr == nil {
		mac = ifi.HardwareAddr
	}
	if c.AdvertiseAddress != "" {
		return c.AdvertiseAddress, mac, nil
	}
	if ifErr != nil {
		return "", nil, fmt.Errorf("node: advertise-address is not set and interface %q cannot be read (%v): set advertise-address", c.Interface, ifErr)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return "", nil, fmt.Errorf("node: addresses of %s: %w", c.Interface, err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && ipn.IP.String() != c.VIP {
			return ipn.IP.String(), mac, nil
		}
	}
	return "", nil, fmt.Errorf("node: interface %s has no IPv4 address besides the VIP: set advertise-address", c.Interface)
}
