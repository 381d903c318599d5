package node

import (
	"crypto/tls"
	"errors"
	"net"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
)

// holderByCertificate names the VIP's holder by the certificate it serves
// on 9345: RKE2's serving certificate carries the holder's own node IP, which
// gossip maps to a member. It is how the holder is told on loopback, where
// every host owns every 127.x address and there is no MAC.
func (n *Node) holderByCertificate(vipAddr string) (string, bool, error) {
	d := &net.Dialer{Timeout: 2 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", net.JoinHostPort(vipAddr, "9345"), &tls.Config{InsecureSkipVerify: true}) // only reads the certificate's addresses
	if err != nil {
		return "", false, err
	}
	defer conn.Close()
	certs := conn.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return "", false, errors.New("no certificate")
	}
	ips := map[string]bool{}
	for _, ip := range certs[0].IPAddresses {
		ips[ip.String()] = true
	}
	for _, m := range n.members.Members() {
		if m.State == gossip.StateAlive && m.Meta.Role == gossip.RoleServer && ips[m.Meta.AdvertiseAddr] {
			return m.Name, m.Name == n.cfg.NodeName, nil
		}
	}
	return "", false, errors.New("the certificate names no known server")
}
