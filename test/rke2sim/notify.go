package rke2sim

import (
	"fmt"
	"net"
)

// sdNotify sends state to the datagram socket systemd names in NOTIFY_SOCKET
// ("@name" is the abstract namespace). An empty socket is not an error: the
// sim was not started by a Type=notify unit.
func sdNotify(socket, state string) error {
	if socket == "" {
		return nil
	}
	addr := &net.UnixAddr{Name: socket, Net: "unixgram"}
	if socket[0] == '@' {
		addr.Name = "\x00" + socket[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, addr)
	if err != nil {
		return fmt.Errorf("notify %s: %w", socket, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("notify %s: %w", socket, err)
	}
	return nil
}
