package node

import (
	"github.com/rke2-hanode/rke2-hanode/pkg/config"
	"github.com/rke2-hanode/rke2-hanode/pkg/vip"
)

// KubeVIPOptions maps the configuration onto the kube-vip renderer.
func KubeVIPOptions(c *config.Config) vip.ManifestOptions {
	return vip.ManifestOptions{
		Interface:     c.Interface,
		VIP:           c.VIP,
		Image:         c.KubeVIPImage,
		Version:       c.KubeVIPVersion,
		LeaseDuration: c.KubeVIPLease,
		RenewDeadline: c.KubeVIPRenew,
		RetryPeriod:   c.KubeVIPRetry,
	}
}
